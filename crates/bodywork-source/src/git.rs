//! Running the `git` binary.
//!
//! Owns: the one place a `git` process is built and run: a clean environment
//! (no inherited `GIT_DIR` & co., C locale so stderr can be classified, never
//! a password prompt), arguments passed as a vector, configuration passed
//! through the environment (`GIT_CONFIG_*`: never seen by `ps`), optional
//! time limit.
//!
//! Must not: go through a shell, decide what a failure means (see
//! `error.rs`), or build arguments from unchecked user strings (callers pass
//! strings already validated by `parse.rs`, after `--` where git allows it).

use std::io::Read;
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

/// Run `cmd` to completion, capturing its output; kill it after `timeout`.
pub(crate) fn run(mut cmd: Command, timeout: Option<Duration>) -> Result<Output, RunError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => RunError::NotInstalled,
        _ => RunError::Io(err),
    })?;
    // Read both pipes while waiting, so a chatty child never blocks on a full
    // pipe (and so a time limit can be enforced while it runs).
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = match timeout {
        None => child.wait().map_err(RunError::Io)?,
        Some(limit) => wait_at_most(&mut child, limit)?,
    };
    Ok(Output {
        success: status.success(),
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn wait_at_most(child: &mut Child, limit: Duration) -> Result<ExitStatus, RunError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().map_err(RunError::Io)? {
            return Ok(status);
        }
        let now = Instant::now();
        if now >= deadline {
            // Killing git closes its pipes, which ends its helpers (ssh,
            // git-remote-https) too. The reader threads finish on their own
            // once the last writer is gone; we do not wait for them.
            let _ = child.kill();
            let _ = child.wait();
            return Err(RunError::TimedOut);
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
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
