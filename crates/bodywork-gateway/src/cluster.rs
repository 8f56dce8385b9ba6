//! A service's cluster address: a TCP (layer 4) balancer spreading client
//! connections round-robin over the service's ready replicas, moving on to the
//! next replica when one refuses the connection (nothing was sent yet, so
//! nothing is lost), and piping bytes both ways until either side closes.
//!
//! It looks at the first bytes of a connection only: when they are an
//! HTTP/1.x request head, its `Host` must be one of the service's own names
//! or a loopback address (DNS rebinding, as the gateway refuses it);
//! anything else (another protocol, a replica that speaks first) passes
//! untouched. It must not look further into the bytes (that is the
//! gateway's job) nor decide which replicas are ready (the [`Directory`] does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::host::{self, HostError, HostPort};
use crate::listener::{AcceptBackoff, ConnectionLimit, accept_or_shutdown};
use crate::traffic::{ErrorKind, Traffic};
use crate::{Directory, Vetting};

/// How long connecting to one replica may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most of a request head read to check its `Host` (larger: 431).
const HEAD_MAX: usize = 64 * 1024;
/// How long a request head may take to arrive, from its first byte (then 408).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client that sent the start of what could be an HTTP request
/// line (a bare word: no space, no line end yet) may pause before its bytes
/// are passed on as another protocol's. A browser sends its request head
/// in one go, so it never pauses there.
const UNDECIDED_WAIT: Duration = Duration::from_millis(500);
/// Headers a checked request head may have (as hyper's server allows).
const MAX_HEADERS: usize = 100;

/// A service's cluster address: a TCP (L4) balancer on `listener` (e.g.
/// 127.1.0.7:5000) spreading connections over the ready replicas of
/// (namespace, service), round-robin; a connection refused before any byte was
/// sent is retried on another replica. A client is disconnected at once when
/// no replica is ready or reachable. A connection whose first bytes are an
/// HTTP/1.x request addressed to a foreign host is answered 403 (400 when
/// its head is malformed) and closed. At most `limit` connections (shared
/// with the other cluster addresses it is given to) are served at once.
/// Runs until `shutdown` fires; connections already piped then run to their
/// natural end.
pub async fn serve_cluster_address(
    listener: TcpListener,
    namespace: String,
    service: String,
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    limit: ConnectionLimit,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut backoff = AcceptBackoff::new(match listener.local_addr() {
        Ok(addr) => format!("the cluster address {addr} of {namespace}/{service}"),
        Err(_) => format!("the cluster address of {namespace}/{service}"),
    });
    let target = Arc::new(Target::new(namespace, service));
    while let Some((client, peer, slot)) =
        accept_or_shutdown(&listener, &limit, &mut backoff, &shutdown).await
    {
        let target = target.clone();
        let directory = directory.clone();
        let traffic = traffic.clone();
        tokio::spawn(async move {
            pipe(client, &target, directory.as_ref(), &traffic).await;
            drop(slot);
            let (namespace, service) = (&target.namespace, &target.service);
            tracing::trace!("cluster connection from {peer} to {namespace}/{service} closed");
        });
    }
    Ok(())
}

/// The service a cluster address serves, and the host names it answers.
struct Target {
    namespace: String,
    service: String,
    /// `NAME`, `NAME.NS`, `NAME.NS.svc`, `NAME.NS.svc.cluster.local`.
    names: [String; 4],
}

impl Target {
    fn new(namespace: String, service: String) -> Target {
        let names = [
            service.clone(),
            format!("{service}.{namespace}"),
            format!("{service}.{namespace}.svc"),
            format!("{service}.{namespace}.svc.cluster.local"),
        ];
        Target {
            namespace,
            service,
            names,
        }
    }

    /// Whether an HTTP request addressed to `host` is the service's.
    fn answers(&self, host: &HostPort<'_>) -> bool {
        host.is_loopback_address()
            || host.name.eq_ignore_ascii_case("localhost")
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(host.name))
    }
}

async fn pipe(
    mut client: TcpStream,
    target: &Target,
    directory: &dyn Directory,
    traffic: &Traffic,
) {
    let (namespace, service) = (target.namespace.as_str(), target.service.as_str());
    let Some(replicas) = directory.ready_replicas(namespace, service) else {
        return;
    };
    let stats = traffic.service(namespace, service);
    stats.record_connection();
    if replicas.is_empty() {
        stats.record_error(ErrorKind::NoReadyReplica);
        stats.record_failed_connection();
        return;
    }
    let start = stats.next_start();
    for attempt in 0..replicas.len() {
        let replica = replicas[(start + attempt) % replicas.len()];
        match connect(replica, || directory.vet(namespace, service, replica)).await {
            Ok(mut upstream) => {
                let _in_flight = traffic.track(replica);
                let mut first = Vec::new();
                match screen(&mut client, &upstream, &mut first, target).await {
                    Screened::Pass => {}
                    Screened::Refuse(answer) => {
                        tracing::debug!(
                            "cluster address of {namespace}/{service}: refused a request ({})",
                            answer.message
                        );
                        refuse(client, &answer, target).await;
                        return;
                    }
                    Screened::Gone => return,
                }
                if !first.is_empty() && upstream.write_all(&first).await.is_err() {
                    return;
                }
                drop(first);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!("cluster connection to replica {replica} ended: {err}");
                }
                return;
            }
            Err(err) => {
                tracing::debug!("replica {replica} of {namespace}/{service} refused: {err}");
                stats.record_error(ErrorKind::Connect);
            }
        }
    }
    stats.record_failed_connection();
}

/// A new connection to `replica`, which `vet` accepts before it is opened
/// and once it is (see [`Directory::vet`]); dropped unused otherwise.
async fn connect<'a>(
    replica: SocketAddr,
    vet: impl Fn() -> Vetting<'a>,
) -> std::io::Result<TcpStream> {
    vet().await.map_err(std::io::Error::other)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(replica))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    vet().await.map_err(std::io::Error::other)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// What the first bytes of a connection decided.
#[derive(Debug)]
enum Screened {
    /// Forward what was read, then pipe both ways.
    Pass,
    /// Answer this and close.
    Refuse(Answer),
    /// The client failed; close.
    Gone,
}

/// An HTTP error answer.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    reason: &'static str,
    message: String,
}

/// Refuse with an HTTP error answer.
fn refusal(status: u16, reason: &'static str, message: impl Into<String>) -> Screened {
    Screened::Refuse(Answer {
        status,
        reason,
        message: message.into(),
    })
}

/// Read the first bytes of `client` into `first` and judge them. The
/// replica speaking first means another protocol than HTTP: passed at
/// once, before the client sent anything.
async fn screen(
    client: &mut TcpStream,
    upstream: &TcpStream,
    first: &mut Vec<u8>,
    target: &Target,
) -> Screened {
    first.reserve(2048);
    let mut peeked = [0u8; 1];
    tokio::select! {
        biased;
        read = client.read_buf(first) => match read {
            // Half-closed at once: nothing to judge.
            Ok(0) => return Screened::Pass,
            Ok(_) => {}
            Err(_) => return Screened::Gone,
        },
        _ = upstream.peek(&mut peeked) => return Screened::Pass,
    }
    let deadline = Instant::now() + HEAD_TIMEOUT;
    loop {
        let looked = look(first, target);
        let http = match looked {
            Look::Done(screened) => return screened,
            Look::More { http } => http,
        };
        if first.len() >= HEAD_MAX {
            return match http {
                true => refusal(
                    431,
                    "Request Header Fields Too Large",
                    format!("the request head is larger than {} KiB", HEAD_MAX / 1024),
                ),
                false => Screened::Pass,
            };
        }
        if first.capacity() - first.len() < 1024 {
            first.reserve(first.len().min(HEAD_MAX));
        }
        let until = match http {
            true => deadline,
            false => deadline.min(Instant::now() + UNDECIDED_WAIT),
        };
        match tokio::time::timeout_at(until, client.read_buf(first)).await {
            Ok(Ok(0)) if http => return Screened::Gone,
            Ok(Ok(0)) => return Screened::Pass,
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Screened::Gone,
            Err(_elapsed) if http => {
                return refusal(
                    408,
                    "Request Timeout",
                    format!(
                        "the request head did not arrive within {} s",
                        HEAD_TIMEOUT.as_secs()
                    ),
                );
            }
            Err(_elapsed) => return Screened::Pass,
        }
    }
}

/// What the bytes read so far say.
#[derive(Debug)]
enum Look {
    Done(Screened),
    /// Not enough to decide; `http`: they are an HTTP/1.x request line.
    More {
        http: bool,
    },
}

/// Judge the first bytes of a connection: not an HTTP/1.x request line
/// (pass), one with its head complete (checked), or not enough yet.
fn look(bytes: &[u8], target: &Target) -> Look {
    match request_line(bytes) {
        Line::NotHttp => return Look::Done(Screened::Pass),
        Line::Partial => return Look::More { http: false },
        Line::Http => {}
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Look::More { http: true },
        Err(httparse::Error::TooManyHeaders) => {
            return Look::Done(refusal(
                431,
                "Request Header Fields Too Large",
                format!("the request has more than {MAX_HEADERS} headers"),
            ));
        }
        Err(err) => {
            return Look::Done(refusal(
                400,
                "Bad Request",
                format!("malformed request head: {err}"),
            ));
        }
    }
    Look::Done(check(&request, target))
}

/// Whether a parsed request head may go to the service.
fn check(request: &httparse::Request<'_, '_>, target: &Target) -> Screened {
    let path = request.path.unwrap_or("/");
    let uri;
    let absolute = if path.starts_with('/') || path == "*" {
        None
    } else {
        uri = match path.parse::<http::Uri>() {
            Ok(uri) => uri,
            Err(err) => {
                return refusal(
                    400,
                    "Bad Request",
                    format!("malformed request target: {err}"),
                );
            }
        };
        uri.authority().map(|a| (uri.scheme_str(), a.as_str()))
    };
    let hosts = request
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .map(|h| h.value);
    let http11 = request.version != Some(0);
    match host::check(http11, hosts, absolute, |h| target.answers(h)) {
        Ok(()) => Screened::Pass,
        Err(HostError::Bad(message)) => refusal(400, "Bad Request", message),
        Err(HostError::Foreign(host)) => refusal(
            403,
            "Forbidden",
            format!(
                "requests addressed to host {host} are refused: the cluster address of {} in \
                 namespace {} answers only a loopback address, localhost, or the service's \
                 names ({}, {}.{ns}, {}.{ns}.svc, {}.{ns}.svc.cluster.local)",
                target.service,
                target.namespace,
                target.service,
                target.service,
                target.service,
                target.service,
                ns = target.namespace,
            ),
        ),
    }
}

/// What a connection's first line looks like so far.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// `TOKEN SP TARGET SP HTTP/1.D`, ended by a line feed.
    Http,
    /// Could still become one.
    Partial,
    /// Anything else: another protocol (HTTP/2's preface included).
    NotHttp,
}

/// Judge the first line of `bytes` as an HTTP/1.x request line. Lenient on
/// spacing (servers are), strict enough that a binary or line-based
/// protocol is told apart at its first bytes.
fn request_line(bytes: &[u8]) -> Line {
    let (line, complete) = match bytes.iter().position(|&b| b == b'\n') {
        Some(end) => (&bytes[..end], true),
        None => (bytes, false),
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // The method: a token, up to the first space.
    let method_end = line.iter().position(|&b| b == b' ');
    let method = &line[..method_end.unwrap_or(line.len())];
    if !method.iter().all(|&b| is_tchar(b)) || (method.is_empty() && !line.is_empty()) {
        return Line::NotHttp;
    }
    // Control bytes other than a tab have no place in a request line.
    if line.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Line::NotHttp;
    }
    if !complete {
        return Line::Partial;
    }
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    match (words.next(), words.next(), words.next(), words.next()) {
        (Some(_), Some(_), Some(version), None) if version.starts_with(b"HTTP/1.") => Line::Http,
        _ => Line::NotHttp,
    }
}

/// A byte of an HTTP token (RFC 9110 §5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Answer a refused request and close, after reading (bounded) what the
/// client still sends, so that closing does not reset the connection
/// before the answer is read.
async fn refuse(mut client: TcpStream, answer: &Answer, target: &Target) {
    let body = serde_json::json!({
        "error": answer.message,
        "namespace": target.namespace,
        "service": target.service,
    })
    .to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        answer.status,
        answer.reason,
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    if client.write_all(&out).await.is_err() || client.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = 256 * 1024;
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left -= n.min(left),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("ns".into(), "web".into())
    }

    fn status(bytes: &[u8]) -> Option<u16> {
        match look(bytes, &target()) {
            Look::Done(Screened::Pass) => None,
            Look::Done(Screened::Refuse(answer)) => Some(answer.status),
            other => panic!("undecided: {other:?}"),
        }
    }

    #[test]
    fn first_lines_are_told_apart() {
        for http in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"POST /x?y=1 HTTP/1.0\n",
            b"foo /custom-method HTTP/1.1\r\n",
            b"GET  /double-space  HTTP/1.1 \r\n",
            b"GET http://web:5000/ HTTP/1.1\r\n",
        ] {
            assert_eq!(request_line(http), Line::Http, "{http:?}");
        }
        for partial in [&b"G"[..], b"GET", b"GET /", b"GET / HTTP/1.1\r", b""] {
            assert_eq!(request_line(partial), Line::Partial, "{partial:?}");
        }
        for other in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"\x16\x03\x01\x02\x00",
            b"*1\r\n$4\r\nPING\r\n",
            b"SET key value\r\n",
            b"hello\n",
            b"\x00\x00\x00\x08\x04\xd2\x16/",
            b" GET / HTTP/1.1\r\n",
            b"GET / HTTP/1.1 extra\r\n",
        ] {
            assert_eq!(request_line(other), Line::NotHttp, "{other:?}");
        }
    }

    #[test]
    fn the_services_names_and_loopback_hosts_are_answered() {
        for host in [
            "web",
            "web:5000",
            "WEB.ns",
            "web.ns.svc",
            "web.ns.svc.cluster.local:5000",
            "localhost:5000",
            "127.10.0.1:5000",
            "127.0.0.1",
            "[::1]:5000",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status(head.as_bytes()), None, "{host}");
        }
        for host in [
            "evil.example",
            "attacker.example:5000",
            "other.ns",
            "web.other",
            "10.0.0.1:5000",
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(status(head.as_bytes()), Some(403), "{host}");
        }
    }

    #[test]
    fn malformed_heads_are_bad_requests() {
        for bad in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: web\r\nHost: web\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: web:65536\r\n\r\n",
            b"GET http://evil.example/ HTTP/1.1\r\nHost: web\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost web\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: web\r\n\r\n",
        ] {
            assert_eq!(status(bad), Some(400), "{}", String::from_utf8_lossy(bad));
        }
        // HTTP/1.0 may go without a Host.
        assert_eq!(status(b"GET / HTTP/1.0\r\n\r\n"), None);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: y\r\n")).collect();
        let head = format!("GET / HTTP/1.1\r\nHost: web\r\n{many}\r\n");
        assert_eq!(status(head.as_bytes()), Some(431));
    }

    #[test]
    fn an_incomplete_head_asks_for_more() {
        assert!(matches!(
            look(b"GET / HTTP/1.1\r\nHost: evil", &target()),
            Look::More { http: true }
        ));
        assert!(matches!(
            look(b"GET / HT", &target()),
            Look::More { http: false }
        ));
    }
}
