//! A flood of idle connections against the gateway of a daemon whose file
//! descriptor limit is low: the daemon keeps answering
//! the CLI at once and its log stays small, and the gateway serves again
//! once the flood is gone.
//!
//! Must not: assert timings beyond generous limits
//! (`bench/connection_flood.py` measures them).

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::helper::{TestHome, http, wait_for};

/// The daemon's `RLIMIT_NOFILE`.
const FD_LIMIT: u64 = 256;
/// Idle connections opened to the gateway: more than the daemon may open.
const IDLE: usize = 320;

#[test]
fn idle_connections_beyond_the_fd_limit_leave_the_daemon_answering() {
    let home = TestHome::new();
    // The daemon inherits the limit from the command that starts it.
    let mut start = home.cmd(&["setup-namespace", "flood"]);
    // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
    unsafe {
        start.pre_exec(|| {
            nix::sys::resource::setrlimit(
                nix::sys::resource::Resource::RLIMIT_NOFILE,
                FD_LIMIT,
                FD_LIMIT,
            )
            .map_err(std::io::Error::from)
        });
    }
    let started = start.output().expect("bodywork setup-namespace");
    assert!(started.status.success(), "{started:?}");
    let gateway = home.gateway();
    assert!(!gateway.is_empty(), "the gateway listens");
    let log = home.root().join("logs").join("daemon.log");
    let log_size = || std::fs::metadata(&log).map_or(0, |m| m.len());
    let before = log_size();

    let mut idle = Vec::with_capacity(IDLE);
    for i in 0..IDLE {
        let addr = gateway.parse().expect("gateway address");
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => idle.push(stream),
            Err(e) => panic!("idle connection {i} of {IDLE}: {e}"),
        }
    }

    // (b) A quick command answers quickly all the same.
    let asked = Instant::now();
    let mut runs = home
        .cmd(&["runs", "--namespace", "flood"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("bodywork runs");
    let limit = Duration::from_secs(10);
    let status = loop {
        if let Some(status) = runs.try_wait().expect("waiting for bodywork runs") {
            break Some(status);
        }
        if asked.elapsed() > limit {
            let _ = runs.kill();
            let _ = runs.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = asked.elapsed();
    // (a) The daemon's log stays small.
    let written = log_size().saturating_sub(before);
    assert!(
        status.is_some_and(|s| s.success()),
        "bodywork runs did not answer within {limit:?} under {IDLE} idle gateway connections \
         (daemon log grew {written} bytes)"
    );
    assert!(
        written < 100 * 1024,
        "the daemon's log grew {written} bytes in {took:?} under {IDLE} idle gateway connections"
    );

    // (c) Once the idle connections are gone, the gateway serves again.
    drop(idle);
    wait_for(
        "the gateway to serve again",
        Duration::from_secs(20),
        || matches!(http(&gateway, "GET", "/healthz", None), Ok((200, _))),
    );
}
