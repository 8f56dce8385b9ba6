//! Helpers of the local-runtime integration tests: a private
//! `$BODYWORK_HOME` per test whose daemon is always stopped (and killed if
//! it will not stop) and whose files are always removed, even when an
//! assertion fails; one shared `uv` for the whole suite, so no test home
//! bootstraps its own; stdlib-only projects written into temp dirs; and
//! waiting on conditions instead of sleeping.
//!
//! Must not: talk to anything but loopback and PyPI (through uv), touch the
//! user's own `~/.bodywork`, or leave a process running.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub mod daemon;
pub mod http;
pub mod middlemen;
pub mod old_pins;
pub mod wait;

pub use daemon::*;
pub use http::http;
pub use wait::*;

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
