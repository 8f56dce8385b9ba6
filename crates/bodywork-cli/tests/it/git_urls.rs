//! Git URLs as the local runtime handles them,
//! through the real `bodywork` binary and its daemon: tokens in a URL's
//! user-info, query or fragment are never shown nor kept at rest by a run,
//! and Ctrl-C cancels a run whose `git clone` is stalled on a server that
//! never answers, leaving no git process behind.
//!
//! Must not: talk to anything but loopback, or sleep where it can wait on
//! a condition.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::helper::{TestHome, kill, wait_for};

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(kind) if kind.is_dir() => out.extend(walk(&path)),
            Ok(kind) if kind.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

/// The files under `dir` whose bytes hold `needle`.
fn files_with(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|path| {
            std::fs::read(path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

#[test]
fn tokens_in_a_git_urls_user_info_query_or_fragment_are_never_shown_nor_kept() {
    // Port 1 on loopback refuses: each run fails fast, after the URL has
    // been logged, listed and stored.
    const USER_TOKEN: &str = "u53r-t0ken-91";
    const QUERY_TOKEN: &str = "qu3ry-t0ken-27";
    const FRAGMENT_TOKEN: &str = "fr4g-t0ken-64";
    let tokens = [USER_TOKEN, QUERY_TOKEN, FRAGMENT_TOKEN];
    let with_user = format!("https://deploy:{USER_TOKEN}@127.0.0.1:1/org/repo.git");
    let with_query = format!(
        "https://127.0.0.1:1/org/repo.git?access_token={QUERY_TOKEN}&ref=main#{FRAGMENT_TOKEN}"
    );
    let shown_query = "https://127.0.0.1:1/org/repo.git?access_token=***&ref=***#***";
    let home = TestHome::new();
    home.namespace("creds");
    for url in [&with_user, &with_query] {
        let run = home.run(&["workflow", "--namespace", "creds", url]);
        run.expect_code(1);
        for token in tokens {
            assert!(!run.all().contains(token), "{run}");
        }
    }
    home.run(&["workflow", "--namespace", "creds", &with_query])
        .expect_output(shown_query);
    // At rest: no file of the home holds a token (the runs table in the
    // state, the run logs, the daemon's log).
    for token in tokens {
        let kept = files_with(home.root(), token);
        assert!(kept.is_empty(), "{token} is kept in {kept:?}");
    }
    // A cron job keeps its URL whole (each run fetches again), and shows it
    // redacted.
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        "creds",
        "--name",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--git-repo-url",
        &with_query,
    ]);
    for args in [
        &["runs", "--namespace", "creds"][..],
        &["-o", "json", "runs", "--namespace", "creds"],
        &["cronjob", "display", "--namespace", "creds"],
        &["-o", "json", "cronjob", "display", "--namespace", "creds"],
        &["logs", "--namespace", "creds", "1"],
        &["logs", "--namespace", "creds", "2"],
    ] {
        let shown = home.ok(args);
        for token in tokens {
            assert!(!shown.all().contains(token), "{args:?}: {shown}");
        }
    }
    let display = home.ok(&["-o", "json", "cronjob", "display", "--namespace", "creds"]);
    assert!(display.stdout.contains(shown_query), "{display}");
    let runs = home.ok(&["runs", "--namespace", "creds"]);
    assert!(runs.stdout.contains("https://***@127.0.0.1:1"), "{runs}");
}

/// A git server that accepts connections and never answers: counts them,
/// holds them open, and lets go of them when dropped.
struct StalledServer {
    port: u16,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl StalledServer {
    fn start() -> StalledServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (connections, stop) = (connections.clone(), stop.clone());
            thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            connections.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        StalledServer {
            port,
            connections,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StalledServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The command lines of the processes that name `needle`.
fn processes_naming(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let line = String::from_utf8_lossy(&raw).replace('\0', " ");
            // A zombie's command line is empty: only live processes count.
            if line.contains(needle) {
                found.push(line);
            }
        }
    }
    found
}

#[test]
fn ctrl_c_cancels_a_run_whose_clone_is_stalled_and_kills_git() {
    let server = StalledServer::start();
    let home = TestHome::new();
    home.namespace("stall");
    let address = format!("127.0.0.1:{}", server.port);
    let url = format!("http://{address}/repo.git");
    let cli = home.spawn(&["workflow", "--namespace", "stall", &url]);
    wait_for(
        "git to reach the stalled server",
        Duration::from_secs(60),
        || server.connections.load(Ordering::SeqCst) > 0,
    );
    assert!(!processes_naming(&address).is_empty(), "no git process");
    let interrupted = Instant::now();
    kill(cli.pid() as i32, "INT");
    let run = cli.finish(Duration::from_secs(30));
    let took = interrupted.elapsed();
    run.expect_code(1)
        .expect_output("cancelling the run (Ctrl-C again to leave at once)")
        .expect_output("run cancelled");
    assert!(
        took < Duration::from_secs(5),
        "the CLI took {took:?}:\n{run}"
    );
    let runs = home.runs_json("stall");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["status"], "cancelled", "{runs:?}");
    // git and git-remote-http are gone (killed, then reaped).
    wait_for("no git process left", Duration::from_secs(5), || {
        processes_naming(&address).is_empty()
    });
}
