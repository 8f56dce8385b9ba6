//! Middlemen between the CLI and an API server, for the cluster tests of
//! what a real network does to a client: a plain HTTP proxy that injects
//! faults into chosen requests ([`FaultProxy`], in front of `kubectl
//! proxy`), an HTTP `CONNECT` proxy ([`ConnectProxy`], for a kubeconfig's
//! `proxy-url`) and a TCP forwarder ([`Forwarder`], to reach the API server
//! at an address its certificate does not name).
//!
//! Each runs on its own small tokio runtime, listens on a free loopback
//! port and stops when dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// What a rule does to a request it matches.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answer this status (with a Kubernetes `Status` body), and
    /// `Retry-After: SECONDS` when given.
    Status { code: u16, retry_after: Option<u64> },
    /// Reset the connection (RST) without answering.
    Reset,
    /// Answer a watch with `200` and one `ERROR` event of this code, then
    /// end the stream (what an API server does when, say, etcd fails).
    WatchError { code: u16 },
}

impl Fault {
    /// Answer `code`, with no `Retry-After`.
    pub fn status(code: u16) -> Fault {
        Fault::Status {
            code,
            retry_after: None,
        }
    }
}

/// Which requests a [`Rule`] matches: by method, exact path, whether they
/// are watches (`watch=true` in the query; `None`: either), and what else
/// their query holds.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub method: &'static str,
    pub path: String,
    pub watch: Option<bool>,
    pub query_has: Option<String>,
}

/// A fault for the first `times` requests a matcher matches.
#[derive(Debug)]
pub struct Rule {
    pub matcher: Matcher,
    pub fault: Fault,
    pub times: usize,
    /// When each matching request came.
    matched: Mutex<Vec<Instant>>,
    fired: AtomicUsize,
}

impl Rule {
    pub fn new(method: &'static str, path: &str, watch: Option<bool>, fault: Fault) -> Rule {
        Rule {
            matcher: Matcher {
                method,
                path: path.to_string(),
                watch,
                query_has: None,
            },
            fault,
            times: 1,
            matched: Mutex::new(Vec::new()),
            fired: AtomicUsize::new(0),
        }
    }

    /// Only requests whose query holds `text` (as sent, URL-encoded).
    pub fn query_has(mut self, text: &str) -> Rule {
        self.matcher.query_has = Some(text.to_string());
        self
    }

    /// Fire `n` times (`usize::MAX`: always).
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let watch = query
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        method == self.matcher.method
            && path == self.matcher.path
            && self.matcher.watch.is_none_or(|w| w == watch)
            && self
                .matcher
                .query_has
                .as_deref()
                .is_none_or(|q| query.contains(q))
    }
}

/// A plain HTTP proxy that forwards to `upstream` (`kubectl proxy`), except
/// that the requests its rules match get their fault instead.
pub struct FaultProxy {
    rules: Arc<Vec<Rule>>,
    seen: Arc<Mutex<Vec<String>>>,
    served: Served,
}

impl FaultProxy {
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let rules = Arc::new(rules);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let upstream = upstream.to_string();
        let (r, s) = (rules.clone(), seen.clone());
        let served = serve("127.0.0.1", move |client| {
            let (upstream, rules, seen) = (upstream.clone(), r.clone(), s.clone());
            async move { fault_or_forward(client, &upstream, &rules, &seen).await }
        });
        FaultProxy {
            rules,
            seen,
            served,
        }
    }

    /// `http://127.0.0.1:PORT`, for a kubeconfig's `server:`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// How many times rule `i` fired its fault.
    pub fn fired(&self, i: usize) -> usize {
        self.rules[i].fired.load(Ordering::SeqCst)
    }

    /// When each request rule `i` matched came (fired or forwarded).
    pub fn matched(&self, i: usize) -> Vec<Instant> {
        self.rules[i]
            .matched
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Every request seen, `METHOD TARGET`, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// An HTTP proxy that only tunnels (`CONNECT host:port`), recording where to.
pub struct ConnectProxy {
    tunnels: Arc<Mutex<Vec<String>>>,
    served: Served,
}

impl ConnectProxy {
    pub fn start() -> ConnectProxy {
        let tunnels = Arc::new(Mutex::new(Vec::new()));
        let t = tunnels.clone();
        let served = serve("127.0.0.1", move |client| {
            let tunnels = t.clone();
            async move { tunnel(client, &tunnels).await }
        });
        ConnectProxy { tunnels, served }
    }

    /// `http://127.0.0.1:PORT`, for a kubeconfig's `proxy-url:`.
    pub fn url(&self) -> String {
        format!("http://{}", self.served.addr)
    }

    /// The `host:port` of every tunnel asked for, in order.
    pub fn tunnels(&self) -> Vec<String> {
        self.tunnels.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// Forwards every connection to `target`, byte for byte (TLS included).
pub struct Forwarder {
    connections: Arc<AtomicUsize>,
    served: Served,
}

impl Forwarder {
    /// Listen on `ip` (a loopback address, say 127.0.0.2), any free port.
    pub fn start(ip: &str, target: &str) -> Forwarder {
        let connections = Arc::new(AtomicUsize::new(0));
        let (n, target) = (connections.clone(), target.to_string());
        let served = serve(ip, move |mut client| {
            let target = target.clone();
            n.fetch_add(1, Ordering::SeqCst);
            async move {
                if let Ok(mut upstream) = TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            }
        });
        Forwarder {
            connections,
            served,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.served.addr
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A listener and the runtime that serves it, stopped when dropped.
struct Served {
    addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Accept connections on `ip`:free port, each handled by `handle` in its
/// own task, on a runtime of its own.
fn serve<F, Fut>(ip: &str, handle: F) -> Served
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let listener = runtime
        .block_on(TcpListener::bind((ip, 0)))
        .unwrap_or_else(|e| panic!("listen on {ip}: {e}"));
    let addr = listener.local_addr().expect("local address");
    runtime.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(handle(client));
        }
    });
    Served {
        addr,
        runtime: Some(runtime),
    }
}

/// Read up to the end of an HTTP request's head: the head's lines and the
/// bytes read past it (the start of a body). `None`: the client went away.
async fn read_head(client: &mut TcpStream) -> Option<(Vec<String>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let rest = buf[end + 4..].to_vec();
            return Some((head.split("\r\n").map(str::to_string).collect(), rest));
        }
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn fault_or_forward(
    mut client: TcpStream,
    upstream: &str,
    rules: &[Rule],
    seen: &Mutex<Vec<String>>,
) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let mut first = head[0].split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    if let Ok(mut seen) = seen.lock() {
        seen.push(format!("{method} {target}"));
    }
    let fault = rules.iter().find_map(|rule| {
        if !rule.matches(method, target) {
            return None;
        }
        if let Ok(mut m) = rule.matched.lock() {
            m.push(Instant::now());
        }
        let fired = rule
            .fired
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < rule.times).then_some(n + 1)
            });
        fired.is_ok().then_some(rule.fault)
    });
    match fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0: closing sends RST, not FIN.
            let _ = client.set_zero_linger();
            drop(client);
        }
        Some(Fault::Status { code, retry_after }) => {
            let (reason, text) = match code {
                429 => ("TooManyRequests", "Too Many Requests"),
                500 => ("InternalError", "Internal Server Error"),
                502 => ("InternalError", "Bad Gateway"),
                503 => ("ServiceUnavailable", "Service Unavailable"),
                504 => ("Timeout", "Gateway Timeout"),
                _ => ("Unknown", "Error"),
            };
            let body = status_json(code, reason);
            let retry = retry_after
                .map(|s| format!("Retry-After: {s}\r\n"))
                .unwrap_or_default();
            let answer = format!(
                "HTTP/1.1 {code} {text}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 {retry}Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        Some(Fault::WatchError { code }) => {
            let event = format!(
                "{{\"type\":\"ERROR\",\"object\":{}}}\n",
                status_json(code, "InternalError")
            );
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
                event.len()
            );
            let _ = client.write_all(answer.as_bytes()).await;
            let _ = client.shutdown().await;
        }
        None => forward(client, upstream, &head, &rest).await,
    }
}

/// A Kubernetes `Status` of a failure, as JSON.
fn status_json(code: u16, reason: &str) -> String {
    serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("injected by the test's fault proxy ({code})"),
        "reason": reason, "code": code,
    })
    .to_string()
}

/// Send the request on to `upstream` on a connection of its own (one
/// request per connection: `Connection: close`) and relay everything back,
/// a watch's stream included.
async fn forward(mut client: TcpStream, upstream: &str, head: &[String], rest: &[u8]) {
    let Ok(mut up) = TcpStream::connect(upstream).await else {
        return;
    };
    let mut out = String::new();
    for line in head.iter().filter(|l| {
        let name = l.split(':').next().unwrap_or_default().to_ascii_lowercase();
        name != "connection" && name != "keep-alive"
    }) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    if up.write_all(out.as_bytes()).await.is_err() || up.write_all(rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}

/// Tunnel a `CONNECT host:port` request to its target.
async fn tunnel(mut client: TcpStream, tunnels: &Mutex<Vec<String>>) {
    let Some((head, rest)) = read_head(&mut client).await else {
        return;
    };
    let mut first = head[0].split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default().to_string(),
    );
    if method != "CONNECT" {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    }
    if let Ok(mut t) = tunnels.lock() {
        t.push(target.clone());
    }
    let Ok(mut up) = TcpStream::connect(&target).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_err()
        || up.write_all(&rest).await.is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
}
