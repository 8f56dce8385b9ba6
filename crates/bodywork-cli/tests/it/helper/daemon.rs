//! A private `$BODYWORK_HOME` per test whose daemon is always stopped (and
//! killed if it will not stop) and whose files are always removed, even when
//! an assertion fails; one shared `uv` for the whole suite, so no test home
//! bootstraps its own; the binary under test, run in the foreground or the
//! background.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::wait::{is_alive, kill, wait_for};

/// The `bodywork` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bodywork")
}

/// A directory holding a `uv` executable shared by every test home, or
/// `None` when it cannot be installed (the homes then bootstrap their own).
///
/// Installed once per target dir the way bodywork bootstraps its own uv
/// (same pinned version, file lock, temporary directory renamed into place).
pub fn shared_uv_bin() -> Option<&'static Path> {
    static UV: OnceLock<Option<PathBuf>> = OnceLock::new();
    UV.get_or_init(|| {
        let uv =
            bodywork_pyenv::bootstrap_uv(Path::new("python3"), &shared_tools_dir(), &mut |_| {})
                .ok()?;
        uv.parent().map(Path::to_path_buf)
    })
    .as_deref()
}

/// Where the shared uv is bootstrapped (bodywork's `tools` directory).
pub fn shared_tools_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-cache")
}

/// One uv package cache for every test home: packages are downloaded once
/// per target dir, and each home's environments link from it.
pub fn shared_uv_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("test-cache")
        .join("uv-cache")
}

/// `PATH` for the CLI (and so the daemon it starts): the shared uv first.
fn test_path() -> OsString {
    let system = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    match shared_uv_bin() {
        Some(uv) => {
            let mut dirs = vec![uv.to_path_buf()];
            dirs.extend(std::env::split_paths(&system));
            std::env::join_paths(dirs).unwrap_or(system)
        }
        None => system,
    }
}

/// A private `$BODYWORK_HOME`. Dropping it stops its daemon (politely, then
/// with SIGKILL) and removes the directory.
pub struct TestHome {
    dir: tempfile::TempDir,
    path: OsString,
    extra_env: Vec<(String, String)>,
    /// Second octet of this home's loopback addresses (services), unique
    /// among the homes of this test process, so parallel daemons never
    /// hand out the same cluster or pod address.
    block: u8,
}

/// A loopback block for a new home: spread by process id, then counted,
/// skipping blocks where a socket of this machine has a local address now.
/// An earlier test process's sockets linger in TIME_WAIT for a minute, and
/// the daemon never hands out an address any socket holds, so a block in
/// use would shift the addresses a test expects.
fn next_block() -> u8 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let busy = busy_loopback_blocks();
    let mut block = 0;
    for _ in 0..230 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        block = (20 + (std::process::id().wrapping_mul(7) + n * 13) % 230) as u8;
        if !busy.contains(&block) {
            break;
        }
    }
    block
}

/// The second octets of the 127.0.0.0/8 addresses sockets of this machine
/// have as local address (the daemon's own reading of `/proc/net`).
fn busy_loopback_blocks() -> std::collections::HashSet<u8> {
    bodywork_local::sockets::bound_ipv4_addresses()
        .into_iter()
        .filter(|ip| ip.is_loopback())
        .map(|ip| ip.octets()[1])
        .collect()
}

impl TestHome {
    pub fn new() -> TestHome {
        TestHome {
            dir: tempfile::Builder::new()
                .prefix("bw-home-")
                .tempdir()
                .expect("temp dir for BODYWORK_HOME"),
            path: test_path(),
            extra_env: Vec::new(),
            block: next_block(),
        }
    }

    /// The gateway's address (`127.0.0.1:PORT`) once the daemon runs: each
    /// test daemon listens on a free port, never the user's 8001.
    pub fn gateway(&self) -> String {
        std::fs::read_to_string(self.root().join("gateway.addr"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Also set `name=value` for every command (and so for a daemon they start).
    pub fn with_env(mut self, name: &str, value: &str) -> TestHome {
        self.extra_env.push((name.into(), value.into()));
        self
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `bodywork ARGS...` with this home, no colour, the shared uv on PATH,
    /// and no Python downloaded by uv (no test downloads one).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("BODYWORK_HOME", self.root())
            .env("PATH", &self.path)
            .env("NO_COLOR", "1")
            .env("BODYWORK_PYTHON_DOWNLOADS", "never")
            .env("BODYWORK_GATEWAY_ADDR", "127.0.0.1:0")
            .env("BODYWORK_UV_CACHE_DIR", shared_uv_cache())
            .env("BODYWORK_LOOPBACK_BLOCK", self.block.to_string())
            .env_remove("BODYWORK_RUNTIME")
            .env_remove("BODYWORK_PYENV_INSTALLER")
            .stdin(Stdio::null());
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Run to the end and capture everything.
    pub fn run(&self, args: &[&str]) -> Run {
        let started = Instant::now();
        let output = self
            .cmd(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run bodywork {args:?}: {e}"));
        Run::new(args, output, started.elapsed())
    }

    /// Run and require exit code 0; returns the run.
    pub fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(run.code, Some(0), "bodywork {args:?} failed:\n{run}");
        run
    }

    /// Start in the background with stdout/stderr captured.
    pub fn spawn(&self, args: &[&str]) -> Background {
        let child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start bodywork {args:?}: {e}"));
        Background {
            args: args.iter().map(|s| s.to_string()).collect(),
            child: Some(child),
            started: Instant::now(),
        }
    }

    /// Pid of the running daemon, from `daemon.pid`.
    pub fn daemon_pid(&self) -> Option<i32> {
        fs::read_to_string(self.root().join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Pid of the daemon's supervisor (`bodywork daemon`, the parent of
    /// the `bodywork daemon --worker` in `daemon.pid`), if it runs.
    pub fn supervisor_pid(&self) -> Option<i32> {
        let daemon = self.daemon_pid()?;
        let stat = fs::read_to_string(format!("/proc/{daemon}/stat")).ok()?;
        // pid (comm) state ppid ...: comm may hold spaces, so from its end.
        let ppid: i32 = stat
            .rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let cmdline = fs::read(format!("/proc/{ppid}/cmdline")).ok()?;
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let supervisor =
            args.iter().any(|a| *a == b"daemon") && !args.iter().any(|a| *a == b"--worker");
        supervisor.then_some(ppid)
    }

    /// `kill -9` of the daemon and of its supervisor first, so that no new
    /// daemon comes up until a command starts one (as after a crash of the
    /// whole machine's user session, or of both); returns once both are gone.
    pub fn kill_daemon_for_good(&self) {
        let daemon = self.daemon_pid().expect("daemon pid");
        let supervisor = self.supervisor_pid().expect("the daemon's supervisor");
        kill(supervisor, "KILL");
        kill(daemon, "KILL");
        wait_for(
            "the daemon and its supervisor to die",
            Duration::from_secs(10),
            || !is_alive(daemon as u32) && !is_alive(supervisor as u32),
        );
    }

    /// `bodywork setup-namespace NS`.
    pub fn namespace(&self, ns: &str) {
        self.ok(&["setup-namespace", ns]);
    }

    /// The runs of a namespace as JSON (`bodywork runs -o json`).
    pub fn runs_json(&self, ns: &str) -> Vec<serde_json::Value> {
        let run = self.ok(&["runs", "--namespace", ns, "-o", "json"]);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("runs -o json is not JSON ({e}):\n{run}"))
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        let supervisor = self.supervisor_pid();
        let stopped = self
            .cmd(&["daemon", "--stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if let Some(pid) = pid
            && (!stopped || is_alive(pid as u32))
        {
            // The supervisor first, or it would start the daemon again.
            if let Some(supervisor) = supervisor {
                kill(supervisor, "KILL");
            }
            kill(pid, "KILL");
        }
    }
}

/// A finished command.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    fn new(args: &[&str], output: Output, elapsed: Duration) -> Run {
        Run {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            elapsed,
        }
    }

    /// stdout then stderr.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Assert the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "unexpected exit code:\n{self}");
        self
    }

    /// Assert that the combined output contains `needle`.
    pub fn expect_output(&self, needle: &str) -> &Run {
        assert!(
            self.all().contains(needle),
            "missing {needle:?} in:\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ bodywork {}\n(exit {:?} after {:?})\n--- stdout\n{}--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// A command running in the background; killed if dropped unfinished.
pub struct Background {
    args: Vec<String>,
    child: Option<Child>,
    started: Instant,
}

impl Background {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Wait for the end (at most `limit`) and capture the output.
    pub fn finish(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().expect("not finished yet");
        let deadline = Instant::now() + limit;
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output of a killed child");
                panic!(
                    "bodywork {:?} did not finish within {limit:?}:\n{}",
                    self.args,
                    Run::new(&[], output, self.started.elapsed())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child
            .wait_with_output()
            .expect("output of a finished child");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        Run::new(&args, output, self.started.elapsed())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
