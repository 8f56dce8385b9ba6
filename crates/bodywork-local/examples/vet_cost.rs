//! What the checks made on each new connection to a replica cost on this
//! machine: the fast check (the sockets listening on
//! the pod address's port from the kernel's `sock_diag`, all already known
//! to be the replica's), the full ownership check it falls back to for an
//! unknown socket, a read of `/proc/net/tcp` + `tcp6` (what the full check
//! read before), and a loopback connect for scale. Prints a table of
//! median and p95 in microseconds. A gateway or cluster address makes the
//! fast check twice per new connection (before connecting and once
//! connected).
//!
//! Usage: cargo run --release -p bodywork-local --example vet_cost [-- N]

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bodywork_local::sockets::{self, Ownership};

fn percentiles(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1e6
    };
    (at(0.5), at(0.95))
}

fn time(n: usize, mut f: impl FnMut()) -> (f64, f64) {
    let samples = (0..n)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    percentiles(samples)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let SocketAddr::V4(target) = listener.local_addr().expect("address") else {
        unreachable!("an IPv4 listener");
    };
    let me = std::process::id();
    let Ok(Ownership::Ours { cleared }) = sockets::ownership(target, me, Duration::ZERO) else {
        eprintln!("error: this process's own listener was not found its own");
        std::process::exit(1);
    };
    let known: HashSet<u64> = cleared.into_iter().collect();
    let fast = time(n, || assert!(sockets::only_known_listen(target, &known)));
    let twice = time(n, || {
        assert!(sockets::only_known_listen(target, &known));
        assert!(sockets::only_known_listen(target, &known));
    });
    let full = time(n / 10 + 1, || {
        assert!(matches!(
            sockets::ownership(target, me, Duration::ZERO),
            Ok(Ownership::Ours { .. })
        ))
    });
    let tables = time(n / 10 + 1, || {
        sockets::tcp_sockets(Duration::ZERO).expect("/proc/net/tcp");
    });
    let connect = time(n, || {
        let _client = TcpStream::connect(target).expect("connect");
        let _ = listener.accept().expect("accept");
    });
    let sockets_here = sockets::tcp_sockets(Duration::ZERO).map_or(0, |t| t.len());
    println!("| check ({sockets_here} TCP sockets on this machine) | median | p95 |");
    println!("| --- | --- | --- |");
    for (what, (median, p95)) in [
        ("fast check (sock_diag, listeners all known)", fast),
        ("per new connection (the fast check twice)", twice),
        ("full ownership check (unknown listener)", full),
        (
            "read of /proc/net/tcp + tcp6 (the old full check's)",
            tables,
        ),
        ("loopback connect + accept, for scale", connect),
    ] {
        println!("| {what} | {median:.0} µs | {p95:.0} µs |");
    }
}
