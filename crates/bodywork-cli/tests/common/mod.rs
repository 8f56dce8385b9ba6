//! Helpers of the local-runtime integration tests: a private
//! `$BODYWORK_HOME` per test whose daemon is always stopped (and killed if
//! it will not stop) and whose files are always removed, even when an
//! assertion fails; one shared `uv` for the whole suite, so no test home
//! bootstraps its own; stdlib-only projects written into temp dirs; and
//! waiting on conditions instead of sleeping.
//!
//! Must not: talk to anything but loopback and PyPI (through uv), touch the
//! user's own `~/.bodywork`, or leave a process running.

#![allow(dead_code)]

use std::ffi::OsString;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod middlemen;
pub mod old_pins;

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

/// Wait until `cond` holds, polling; panics with `what` after `limit`.
pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// True while `pid` is a live process (a zombie waiting to be reaped is dead).
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Send a signal with `kill -SIG PID` (no unsafe, no extra dependency).
pub fn kill(pid: i32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Read a pid written by a stage, once the file is complete.
pub fn read_pid(file: &Path) -> Option<u32> {
    fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// A project written into a temp dir: `bodywork.yaml` plus stage scripts.
pub struct TestProject {
    dir: tempfile::TempDir,
}

impl TestProject {
    /// `files` are (relative path, contents); `bodywork.yaml` among them.
    pub fn new(files: &[(&str, &str)]) -> TestProject {
        let dir = tempfile::Builder::new()
            .prefix("bw-project-")
            .tempdir()
            .expect("temp dir for a project");
        for (rel, contents) in files {
            let path = dir.path().join(rel);
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).expect("project subdirectory");
            }
            fs::write(&path, contents).expect("project file");
        }
        TestProject { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory as a command-line argument.
    pub fn arg(&self) -> &str {
        self.dir.path().to_str().expect("temp paths are UTF-8")
    }

    /// A scratch file path next to (not inside) the project, for stages to
    /// write to: stages run from a copy of the project.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.dir.path().with_extension("scratch");
        fs::create_dir_all(&dir).expect("scratch dir");
        dir.join(name)
    }
}

impl Drop for TestProject {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.dir.path().with_extension("scratch"));
    }
}

/// `bodywork.yaml` text: `pipeline` header lines plus stage blocks.
pub fn yaml(name: &str, dag: &str, extra_pipeline: &str, stages: &[String]) -> String {
    let mut out = format!(
        "version: \"1.1\"\npipeline:\n  name: {name}\n  docker_image: bodyworkml/bodywork-core:latest\n  DAG: {dag}\n{extra_pipeline}stages:\n"
    );
    for s in stages {
        out.push_str(s);
    }
    out
}

/// One batch stage block; `extra` holds more indented keys (args, secrets...).
pub fn batch_stage(name: &str, script: &str, timeout: u64, retries: u32, extra: &str) -> String {
    format!(
        "  {name}:\n    executable_module_path: {script}\n{extra}    batch:\n      max_completion_time_seconds: {timeout}\n      retries: {retries}\n"
    )
}

/// `    args: ["a", "b"]` for a stage block (paths are quoted as JSON strings).
pub fn args_line(args: &[&str]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| serde_json::Value::String(a.to_string()).to_string())
        .collect();
    format!("    args: [{}]\n", quoted.join(", "))
}

/// `cronjob trigger` of the cron job `name` (Bodywork 3's `get cronjob`
/// finds it), waiting until that run has succeeded; returns its job name,
/// what `cronjob logs --name` takes.
pub fn trigger_and_wait(home: &TestHome, namespace: &str, name: &str) -> String {
    let newest = || {
        let run = home.ok(&["get", "cronjob", name, "--history", "-o", "json"]);
        let history: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
        history[0].clone()
    };
    let before = newest()["job_name"].clone();
    home.ok(&["cronjob", "trigger", "--ns", namespace, "--name", name]);
    let mut job = String::new();
    wait_for(
        "the triggered run to succeed",
        Duration::from_secs(120),
        || {
            let entry = newest();
            let done = entry["job_name"] != before && entry["succeeded"] == 1;
            if done {
                job = entry["job_name"].as_str().unwrap_or_default().to_string();
            }
            done
        },
    );
    job
}

/// Run `git` in `dir`, requiring success; returns stdout trimmed.
pub fn git(dir: &Path, args: &[&str]) -> String {
    run_ok(git_cmd(dir).args(args))
}

/// `git` in `dir` as the tests' user `t`, with neither the system's nor
/// the user's configuration.
pub fn git_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir);
    cmd
}

/// Runs `cmd` (a [`git_cmd`], a tool), requiring success; returns stdout
/// trimmed.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A tiny HTTP/1.1 client: one request per connection. Returns the status
/// code and body.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {text:?}")))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, body))
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A batch stage that calls every URL it is given and prints the answers.
pub const CALLER: &str = r#"
import json, sys, urllib.request
for url in sys.argv[1:]:
    with urllib.request.urlopen(url, timeout=10) as r:
        print("reached", url, "->", json.load(r)["stage"], flush=True)
"#;

/// A stdlib HTTP service answering `ok` on `$PORT`. It says it starts
/// before it listens, so the line is in the log before the service is
/// ready on either runtime.
pub const SERVE_PY: &str = r#"
import http.server, os
port = int(os.environ["PORT"])
print(f"starting the service on port {port}", flush=True)
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass
http.server.HTTPServer(("0.0.0.0", port), Handler).serve_forever()
"#;

/// Counts requests of a bounded load loop (GETs of one path, each on its
/// own connection) and the `version` fields the answers carried.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub ok: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    failed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    versions: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `workers` sequential clients, each stopping after `limit` at most.
    pub fn start(addr: String, path: String, workers: usize, limit: Duration) -> Load {
        let load = Load {
            stop: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
            ok: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            failed: std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            versions: std::sync::Arc::default(),
            failures: std::sync::Arc::default(),
            threads: Vec::new(),
        };
        let mut threads = Vec::new();
        for _ in 0..workers {
            let (addr, path) = (addr.clone(), path.clone());
            let (stop, ok, failed) = (load.stop.clone(), load.ok.clone(), load.failed.clone());
            let (versions, failures) = (load.versions.clone(), load.failures.clone());
            threads.push(std::thread::spawn(move || {
                let until = Instant::now() + limit;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < until {
                    match http(&addr, "GET", &path, None) {
                        Ok((200, body)) => {
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&body)
                                && let Some(version) = v["version"].as_str()
                            {
                                let mut seen = versions.lock().unwrap();
                                if !seen.iter().any(|s| s == version) {
                                    seen.push(version.to_string());
                                }
                            }
                        }
                        other => {
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            failures.lock().unwrap().push(format!("{other:?}"));
                        }
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
            }));
        }
        Load { threads, ..load }
    }

    /// Stop and return (ok, failed, versions seen in order, failure details).
    pub fn finish(self) -> (usize, usize, Vec<String>, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
        (
            self.ok.load(std::sync::atomic::Ordering::Relaxed),
            self.failed.load(std::sync::atomic::Ordering::Relaxed),
            self.versions.lock().unwrap().clone(),
            self.failures.lock().unwrap().clone(),
        )
    }
}

/// A stdlib HTTP service: answers `{"stage", "version", "pid", "uid"}`; `/slow`
/// sleeps 5 s; with the argument `never` it never listens, with `crash` it
/// exits (code 3) at once.
pub const SERVER: &str = r#"
import http.server, json, os, sys, time
version = sys.argv[1] if len(sys.argv) > 1 else "v0"
if version == "never":
    print("this version never becomes ready", flush=True)
    time.sleep(3600)
if version == "crash":
    print("this version crashes at start", flush=True)
    sys.exit(3)
stage = sys.argv[2] if len(sys.argv) > 2 else "?"
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(5)
        body = json.dumps({"stage": stage, "version": version, "pid": os.getpid(), "uid": os.getuid()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler)
print(f"{stage} {version} listening on port {os.environ['PORT']}", flush=True)
server.serve_forever()
"#;

/// Copy the directory tree `from` into `to` (which exists).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_name() == "__pycache__" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The name of a detached run, from what `create deployment --async` says:
/// `Created workflow-job=NAME.` (Bodywork 3), or `deployment started
/// detached as NAME (...)` (Bodywork 2).
pub fn detached_run_name(started: &Run) -> String {
    let bodywork3 = started.stdout.lines().find_map(|l| {
        l.strip_prefix("Created workflow-job=")
            .and_then(|n| n.strip_suffix('.'))
    });
    bodywork3
        .or_else(|| {
            started
                .stdout
                .split_whitespace()
                .skip_while(|w| *w != "as")
                .nth(1)
        })
        .unwrap_or_else(|| panic!("the run's name in {started}"))
        .to_string()
}

/// Every document of a YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    yaml.split("\n---\n")
        .flat_map(|d| d.strip_prefix("---\n").or(Some(d)))
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_norway::from_str(d).expect("a YAML document"))
        .collect()
}

/// The manifests `--runtime kubernetes workflow --dry-run` prints for the
/// repository at `url`, branch `trunk` (the dry run needs no cluster).
pub fn dry_run_manifests(home: &TestHome, namespace: &str, url: &str) -> Vec<serde_json::Value> {
    let out = home
        .cmd(&[
            "--runtime",
            "kubernetes",
            "workflow",
            "--namespace",
            namespace,
            url,
            "trunk",
            "--dry-run",
        ])
        .output()
        .expect("dry run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout))
}

/// A time of a `-o json` document: RFC 3339, in UTC to the second
/// (`2026-03-02T10:00:01Z`). Returns it.
pub fn assert_rfc3339(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("not RFC 3339: {text}: {e}"))
        .with_timezone(&chrono::Utc);
    assert_eq!(
        parsed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        text,
        "not in UTC to the second"
    );
    parsed
}

/// A time of a `-o json` document as tables show it (local time).
pub fn shown_time(value: &serde_json::Value) -> String {
    bodywork_cli::output::time::local(&assert_rfc3339(value))
}
