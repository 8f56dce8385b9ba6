//! Test fixtures: tiny hyper upstreams on ephemeral loopback ports, a static
//! directory, a running gateway, and a keep-alive client connection.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bodywork_gateway::{Directory, GatewayOptions, Traffic, Vetting, serve_gateway};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type ClientBody = BoxBody<Bytes, Infallible>;

/// A directory whose answers the test sets: ready replicas and whether the
/// service is exposed at the ingress path (`set` exposes it); new
/// connections to the replicas given to `refuse` are refused, and every
/// vetting is counted.
#[derive(Default)]
pub struct StaticDirectory(
    RwLock<HashMap<(String, String), Entry>>,
    RwLock<HashMap<SocketAddr, String>>,
    AtomicUsize,
);

/// Ready replicas, and whether the service is exposed at the ingress path.
type Entry = (Vec<SocketAddr>, bool);

impl StaticDirectory {
    pub fn set(&self, namespace: &str, service: &str, replicas: &[SocketAddr]) {
        self.set_exposed(namespace, service, replicas, true);
    }

    pub fn set_exposed(
        &self,
        namespace: &str,
        service: &str,
        replicas: &[SocketAddr],
        exposed: bool,
    ) {
        self.0.write().unwrap().insert(
            (namespace.into(), service.into()),
            (replicas.to_vec(), exposed),
        );
    }

    /// Refuse new connections to `replica`, saying `why`.
    pub fn refuse(&self, replica: SocketAddr, why: &str) {
        self.1.write().unwrap().insert(replica, why.into());
    }

    /// How many times a new connection was vetted.
    pub fn vettings(&self) -> usize {
        self.2.load(Ordering::Relaxed)
    }

    fn entry(&self, namespace: &str, service: &str) -> Option<Entry> {
        self.0
            .read()
            .unwrap()
            .get(&(namespace.to_owned(), service.to_owned()))
            .cloned()
    }
}

impl Directory for StaticDirectory {
    fn ready_replicas(&self, namespace: &str, service: &str) -> Option<Vec<SocketAddr>> {
        self.entry(namespace, service).map(|(replicas, _)| replicas)
    }

    fn exposed(&self, namespace: &str, service: &str) -> bool {
        self.entry(namespace, service)
            .is_some_and(|(_, exposed)| exposed)
    }

    /// Every service here serves port 5000, as the seed tutorial's does.
    fn port(&self, namespace: &str, service: &str) -> Option<u16> {
        self.entry(namespace, service).map(|_| SERVICE_PORT)
    }

    fn vet<'a>(&'a self, _: &'a str, _: &'a str, replica: SocketAddr) -> Vetting<'a> {
        self.2.fetch_add(1, Ordering::Relaxed);
        let refused = self.1.read().unwrap().get(&replica).cloned();
        Box::pin(std::future::ready(refused.map_or(Ok(()), Err)))
    }
}

/// The port every service of a [`StaticDirectory`] serves.
pub const SERVICE_PORT: u16 = 5000;

/// A running gateway on an ephemeral port.
pub struct Gateway {
    pub addr: SocketAddr,
    pub directory: Arc<StaticDirectory>,
    pub traffic: Arc<Traffic>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<std::io::Result<()>>,
}

pub async fn gateway(opts: GatewayOptions) -> Gateway {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = Arc::new(StaticDirectory::default());
    let traffic = Traffic::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_gateway(
        listener,
        directory.clone(),
        traffic.clone(),
        opts,
        shutdown.clone(),
    ));
    Gateway {
        addr,
        directory,
        traffic,
        shutdown,
        task,
    }
}

/// An address nothing listens on (connections are refused).
pub async fn refused_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// The byte at position `i` of every generated test body.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// A generated body of `len` bytes, sent in 64 KiB chunks.
pub struct Pattern {
    sent: usize,
    len: usize,
}

impl Pattern {
    pub fn new(len: usize) -> Self {
        Pattern { sent: 0, len }
    }
}

impl Body for Pattern {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.sent == this.len {
            return Poll::Ready(None);
        }
        let n = (this.len - this.sent).min(64 * 1024);
        let chunk: Vec<u8> = (this.sent..this.sent + n).map(pattern_byte).collect();
        this.sent += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// Check a received body against the pattern.
pub fn assert_pattern(bytes: &[u8], len: usize) {
    assert_eq!(bytes.len(), len, "body length");
    let bad = bytes
        .iter()
        .enumerate()
        .position(|(i, b)| *b != pattern_byte(i));
    assert_eq!(bad, None, "first corrupted byte");
}

type UpstreamBody = BoxBody<Bytes, hyper::Error>;

/// A tiny upstream replica named `name`:
/// - `/echo` streams the request body back as it arrives;
/// - `/slow?ms=N` answers `name` after N ms;
/// - `/big?bytes=N` streams N generated bytes;
/// - anything else answers JSON describing the request it saw.
///
/// Every response carries `x-replica: NAME`.
pub async fn upstream(name: &'static str) -> SocketAddr {
    upstream_counted(name).await.0
}

/// [`upstream`], also counting the connections it accepted.
pub async fn upstream_counted(name: &'static str) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(name, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<Response<UpstreamBody>, Infallible> {
    let query = req.uri().query().unwrap_or("").to_owned();
    let number = |key: &str| -> u64 {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let body: UpstreamBody = match req.uri().path() {
        "/echo" => req.into_body().boxed(),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(number("ms"))).await;
            full(name)
        }
        "/big" => Pattern::new(number("bytes") as usize)
            .map_err(|never| match never {})
            .boxed(),
        _ => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = serde_json::json!({
                "replica": name,
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "headers": headers,
                "body": String::from_utf8_lossy(&body),
            });
            full(seen.to_string())
        }
    };
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert("x-replica", http::HeaderValue::from_static(name));
    Ok(response)
}

fn full(text: impl Into<Bytes>) -> UpstreamBody {
    Full::new(text.into())
        .map_err(|never| match never {})
        .boxed()
}

/// One keep-alive HTTP/1.1 client connection.
pub async fn connect(addr: SocketAddr) -> SendRequest<ClientBody> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

pub fn empty() -> ClientBody {
    Full::new(Bytes::new()).boxed()
}

pub fn text_body(text: &str) -> ClientBody {
    Full::new(Bytes::copy_from_slice(text.as_bytes())).boxed()
}

/// A finished response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn replica(&self) -> &str {
        self.headers
            .get("x-replica")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// Send one request on `sender` and read the whole answer.
pub async fn send(
    sender: &mut SendRequest<ClientBody>,
    method: &str,
    uri: &str,
    body: ClientBody,
) -> Answer {
    sender.ready().await.unwrap();
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost:8001")
        .body(body)
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), sender.send_request(request))
        .await
        .expect("response head in time")
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

/// One request on a fresh connection.
pub async fn get(addr: SocketAddr, uri: &str) -> Answer {
    let mut sender = connect(addr).await;
    send(&mut sender, "GET", uri, empty()).await
}

/// Wait (up to 10 s) until `cond` holds.
pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
