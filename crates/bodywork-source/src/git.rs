//! Running the `git` binary.
//!
//! Owns: the one place a `git` process is built and run: a clean environment
//! (no inherited `GIT_DIR` & co., C locale so stderr can be classified, never
//! a password prompt), arguments passed as a vector, configuration passed
//! through the environment (`GIT_CONFIG_*`: never seen by `ps`), optional
//! time limit and cancellation (git and its helpers killed as a group).
//!
//! Must not: go through a shell, decide what a failure means (see
//! `error.rs`), or build arguments from unchecked user strings (callers pass
//! strings already validated by `parse.rs`, after `--` where git allows it).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Variables that point git at another repository or configuration; a
/// bodywork started from a git hook or an IDE may inherit them.
const REPOSITORY_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_CEILING_DIRECTORIES",
    "GIT_DISCOVERY_ACROSS_FILESYSTEM",
];

/// What a finished git process said.
#[derive(Debug)]
pub(crate) struct Output {
    /// Exit status was zero.
    pub success: bool,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Why a git process could not be run to completion.
#[derive(Debug)]
pub(crate) enum RunError {
    /// The program is not installed / not on `PATH`.
    NotInstalled,
    /// It ran longer than allowed and was killed.
    TimedOut,
    /// Its caller cancelled it, and it was killed.
    Cancelled,
    /// Any other failure to start or wait for it.
    Io(std::io::Error),
}

/// A `git` command with the environment every invocation needs.
pub(crate) fn git() -> Command {
    let mut cmd = Command::new("git");
    for var in REPOSITORY_VARS {
        cmd.env_remove(var);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        // English messages, so `error.rs` can recognise them.
        .env("LC_ALL", "C")
        .env_remove("LANGUAGE")
        // `git status` in the user's directory must not rewrite its index.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null());
    cmd
}

/// A `git -C dir` command (the directory is an argument, never parsed as an
/// option because it follows `-C`).
pub(crate) fn git_in(dir: &Path) -> Command {
    let mut cmd = git();
    cmd.arg("-C").arg(dir);
    cmd
}

/// Add `key=value` to the configuration of the git that `cmd` runs, through
/// the environment (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_n`,
/// `GIT_CONFIG_VALUE_n`, git 2.31+), after any pairs the caller's own
/// environment already holds. Unlike `-c key=value`, a value given this way
/// is not in any process's argument list, which every local user can read
/// (`ps`, `/proc/PID/cmdline`); a process's environment is readable by its
/// own user only. Git passes it on to its helpers (`git-remote-https`).
pub(crate) fn add_config(cmd: &mut Command, key: &str, value: &str) {
    let set = |name: &str| {
        cmd.get_envs()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.map(|v| v.to_os_string()))
            .unwrap_or_else(|| std::env::var_os(name))
    };
    let n: usize = set("GIT_CONFIG_COUNT")
        .and_then(|v| v.to_str().and_then(|v| v.trim().parse().ok()))
        .unwrap_or(0);
    cmd.env(format!("GIT_CONFIG_KEY_{n}"), key)
        .env(format!("GIT_CONFIG_VALUE_{n}"), value)
        .env("GIT_CONFIG_COUNT", (n + 1).to_string());
}

/// Asks, while git runs, whether to stop it (see [`crate::CancelCheck`]).
pub(crate) type Cancel<'a> = Option<&'a crate::CancelCheck>;

/// Run `cmd` to completion, capturing its output; kill it after `timeout`.
pub(crate) fn run(cmd: Command, timeout: Option<Duration>) -> Result<Output, RunError> {
    run_until(cmd, timeout, None)
}

/// Run `cmd` to completion, capturing its output; kill it after `timeout`
/// or as soon as `cancel` says so.
///
/// With a `cancel`, git runs in a process group of its own, and the whole
/// group is killed: its helpers (`git-remote-https`, `ssh`) go with it,
/// even one stalled on a server that never answers, which would otherwise
/// outlive git for as long as the server keeps the connection open. (A
/// caller that passes a `cancel` stops the fetch on its own Ctrl-C; one
/// that does not keeps git in the caller's process group, where a
/// terminal's Ctrl-C reaches git and its helpers directly.)
pub(crate) fn run_until(
    mut cmd: Command,
    timeout: Option<Duration>,
    cancel: Cancel<'_>,
) -> Result<Output, RunError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let own_group = cancel.is_some();
    if own_group {
        cmd.process_group(0);
    }
    let mut child = cmd.spawn().map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => RunError::NotInstalled,
        _ => RunError::Io(err),
    })?;
    // Read both pipes while waiting, so a chatty child never blocks on a full
    // pipe (and so a time limit can be enforced while it runs).
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = match (timeout, cancel) {
        (None, None) => child.wait().map_err(RunError::Io)?,
        _ => wait_until(&mut child, timeout, cancel, own_group)?,
    };
    Ok(Output {
        success: status.success(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn wait_until(
    child: &mut Child,
    timeout: Option<Duration>,
    cancel: Cancel<'_>,
    own_group: bool,
) -> Result<ExitStatus, RunError> {
    let deadline = timeout.map(|limit| Instant::now() + limit);
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            return Ok(status);
        }
        let now = Instant::now();
        let why = if cancel.is_some_and(crate::CancelCheck::is_cancelled) {
            Some(RunError::Cancelled)
        } else if deadline.is_some_and(|deadline| now >= deadline) {
            Some(RunError::TimedOut)
        } else {
            None
        };
        if let Some(why) = why {
            stop(child, own_group);
            return Err(why);
        }
        let pause = Duration::from_millis(20);
        thread::sleep(deadline.map_or(pause, |d| (d - now).min(pause)));
    }
}

/// Kill `child` (not yet reaped, so its pid and group are still its own),
/// with its whole process group when it has one of its own. The pipe
/// readers finish on their own once the last writer is gone; they are not
/// waited for.
fn stop(child: &mut Child, own_group: bool) {
    if own_group && let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error only loses diagnostics; the exit status still counts.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn collect(reader: Option<JoinHandle<Vec<u8>>>) -> String {
    reader
        .and_then(|handle| handle.join().ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Quote `value` for a POSIX shell: single quotes, with each `'` written as
/// `'\''`. Inside single quotes a shell interprets nothing at all.
pub(crate) fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let mut cmd = git();
        cmd.arg("--version");
        let out = run(cmd, None).expect("git runs");
        assert!(out.success);
        assert!(out.stdout.starts_with("git version"), "{}", out.stdout);
    }

    #[test]
    fn failure_keeps_stderr() {
        let mut cmd = git();
        cmd.arg("no-such-subcommand-xyz");
        let out = run(cmd, Some(Duration::from_secs(30))).expect("git runs");
        assert!(!out.success);
        assert!(
            out.stderr.contains("no-such-subcommand-xyz"),
            "{}",
            out.stderr
        );
    }

    #[test]
    fn missing_program_is_reported_as_not_installed() {
        let cmd = Command::new("bodywork-no-such-program-3f9a");
        assert!(matches!(run(cmd, None), Err(RunError::NotInstalled)));
    }

    #[test]
    fn time_limit_kills_a_slow_process() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let started = Instant::now();
        let result = run(cmd, Some(Duration::from_millis(200)));
        assert!(matches!(result, Err(RunError::TimedOut)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn cancelling_kills_the_whole_process_group_at_once() {
        // A "git" whose helper (here a background sleep, as
        // git-remote-https is git's child) would outlive it.
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("helper.pid");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(format!(
            "sleep 300 & echo $! > '{}'; wait",
            pid_file.display()
        ));
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let check = {
            let flag = flag.clone();
            crate::CancelCheck::new(move || flag.load(std::sync::atomic::Ordering::SeqCst))
        };
        let started = Instant::now();
        let runner = thread::spawn(move || run_until(cmd, None, Some(&check)));
        let deadline = Instant::now() + Duration::from_secs(10);
        let helper = loop {
            if let Some(pid) = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the helper never started");
            thread::sleep(Duration::from_millis(10));
        };
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
        let result = runner.join().expect("runner");
        assert!(matches!(result, Err(RunError::Cancelled)), "{result:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // The helper is gone too (killed, then reaped by init: it may show
        // as a zombie for a moment).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state = std::fs::read_to_string(format!("/proc/{helper}/stat"))
                .ok()
                .and_then(|stat| {
                    let end = stat.rfind(')')?;
                    stat[end + 1..].split_whitespace().next().map(str::to_owned)
                });
            if state.as_deref().is_none_or(|s| s == "Z" || s == "X") {
                break;
            }
            assert!(Instant::now() < deadline, "helper {helper} still runs");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn configuration_goes_through_the_environment_after_the_callers() {
        let mut cmd = git();
        cmd.env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "bodywork.first")
            .env("GIT_CONFIG_VALUE_0", "one");
        add_config(&mut cmd, "bodywork.second", "two words");
        add_config(&mut cmd, "bodywork.third", "3");
        cmd.args(["config", "--get-regexp", "^bodywork\\."]);
        let args: Vec<_> = cmd.get_args().collect();
        assert!(
            !args
                .iter()
                .any(|a| a.to_string_lossy().contains("two words"))
        );
        let out = run(cmd, None).expect("git runs");
        assert_eq!(
            out.stdout, "bodywork.first one\nbodywork.second two words\nbodywork.third 3\n",
            "{}",
            out.stderr
        );
    }

    #[test]
    fn environment_is_cleaned() {
        // Apply git()'s environment changes to a shell that inherited
        // GIT_DIR, and observe what a child of git() would see.
        let mut shell = Command::new("sh");
        shell
            .args([
                "-c",
                "printf %s \"${GIT_TERMINAL_PROMPT}-${LC_ALL}-${GIT_DIR:-unset}\"",
            ])
            .env("GIT_DIR", "/elsewhere");
        for (key, value) in git().get_envs() {
            match value {
                Some(value) => shell.env(key, value),
                None => shell.env_remove(key),
            };
        }
        let out = run(shell, None).expect("sh runs");
        assert_eq!(out.stdout, "0-C-unset");
    }

    #[test]
    fn shell_quoting_survives_a_real_shell() {
        for value in [
            "/home/me/.ssh/id_ed25519",
            "/keys/with space/id",
            "/keys/it's/id",
            "/keys/$(touch pwned)/`id`;|&><*?\"\\",
        ] {
            let mut sh = Command::new("sh");
            sh.arg("-c")
                .arg(format!("printf %s {}", shell_quote(value)));
            let out = run(sh, None).expect("sh runs");
            assert_eq!(out.stdout, value);
        }
    }
}
