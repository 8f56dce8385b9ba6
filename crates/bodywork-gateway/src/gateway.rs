//! The HTTP gateway: accepts HTTP/1.1 clients (keep-alive), routes each
//! request to a ready replica of the named service (round-robin per request,
//! not per connection), streams bodies both ways through a per-replica
//! keep-alive connection pool, and answers errors as JSON.
//!
//! Small bodies with a `Content-Length` are read whole so head and body
//! leave in one write; larger or open-ended ones stream.
//!
//! It must not know how replicas are started or judged ready (the
//! [`Directory`] says) and must not buffer bodies beyond that small limit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use crate::Directory;
use crate::body::{GatewayBody, SMALL_BODY, UpstreamBody, read_whole};
use crate::forward;
use crate::host::{self, HostError};
use crate::listener::{AcceptBackoff, ConnectionLimit, Slot, accept_or_shutdown};
use crate::pool::{CheckoutError, Lease, Pool};
use crate::route::{Route, Via, check_target, merged_slashes, route};
use crate::traffic::{ErrorKind, Traffic};

/// Tunables of the gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// How long a replica may take to send its response head, and the whole
    /// of a small response (504 after that).
    pub upstream_timeout: Duration,
    /// How long connecting to one replica may take before the next is tried.
    pub connect_timeout: Duration,
    /// Worker threads serving connections; `None`: one per core, at most 4.
    pub workers: Option<usize>,
    /// The host names a request may be addressed to (its `Host` header,
    /// without the port), as `kubectl proxy --accept-hosts` has them:
    /// `localhost`, `127.0.0.1` and `[::1]` by default, so a web page cannot
    /// reach the services through the browser with a DNS name of its own
    /// (DNS rebinding). Others are answered 403; a request with no `Host`
    /// (HTTP/1.1), two, a malformed one or one whose port is out of range,
    /// or an absolute-form target naming another host than `Host`, 400.
    pub accept_hosts: Vec<String>,
    /// At most this many client connections served at once; more wait in
    /// the listening socket's backlog (the kernel's) until one ends, so a
    /// flood of connections cannot take every file descriptor of the
    /// process. The daemon derives it from its `RLIMIT_NOFILE`.
    pub max_connections: usize,
    /// A connection with no request under way for this long (idle between
    /// keep-alive requests, or slow to send a request head) is closed.
    pub idle_timeout: Duration,
}

/// What `kubectl proxy` accepts by default.
pub const DEFAULT_ACCEPT_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            upstream_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            workers: None,
            accept_hosts: DEFAULT_ACCEPT_HOSTS.map(String::from).to_vec(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// [`GatewayOptions::max_connections`] unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// [`GatewayOptions::idle_timeout`] unless told otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// At most this many gateway worker threads, however many cores there are.
const MAX_WORKERS: usize = 4;

/// How often a worker closes expired idle upstream connections.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

/// Serve the gateway on `listener` until `shutdown` fires; the future then
/// ends once open client connections have finished their current request
/// and closed.
///
/// Connections are served on a few worker threads of the gateway's own (one
/// per core, at most 4), each a single-threaded runtime with its own upstream
/// pool: a request then never hops between threads, which on a busy machine
/// is worth a third of the throughput compared with a work-stealing runtime.
/// This future only accepts and hands connections out.
pub async fn serve_gateway(
    listener: TcpListener,
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    opts: GatewayOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let count = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, MAX_WORKERS);
    let mut workers = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for i in 0..count {
        let (tx, rx) = mpsc::unbounded_channel();
        let gateway = Gateway::new(directory.clone(), traffic.clone(), opts.clone());
        let shutdown = shutdown.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("bodywork-gateway-{i}"))
                .spawn(move || worker(rx, gateway, shutdown))?,
        );
        workers.push(tx);
    }
    let limit = ConnectionLimit::new(opts.max_connections);
    let mut backoff = AcceptBackoff::new(match listener.local_addr() {
        Ok(addr) => format!("the gateway ({addr})"),
        Err(_) => "the gateway".to_string(),
    });
    let mut next = 0;
    while let Some((stream, peer, slot)) =
        accept_or_shutdown(&listener, &limit, &mut backoff, &shutdown).await
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!("cannot hand over the connection from {peer}: {err}");
                continue;
            }
        };
        // Round-robin; a worker whose thread died is skipped.
        let mut handoff = (stream, peer, slot);
        let mut delivered = false;
        for _ in 0..workers.len() {
            next = (next + 1) % workers.len();
            match workers[next].send(handoff) {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(mpsc::error::SendError(back)) => handoff = back,
            }
        }
        if !delivered {
            return Err(std::io::Error::other(
                "every gateway worker thread has stopped",
            ));
        }
    }
    // Shut down: the workers finish the requests in flight, then end.
    drop(workers);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    Ok(())
}

/// One worker thread: a single-threaded runtime serving the connections it is handed.
fn worker(
    mut connections: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr, Slot)>,
    gateway: Gateway,
    shutdown: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start a gateway worker: {err}");
            return;
        }
    };
    // Cancelled by a shutdown, or when the accept loop goes away.
    let stop = shutdown.child_token();
    runtime.block_on(async move {
        let gateway = Arc::new(gateway);
        let mut http = http1::Builder::new();
        // hyper's header read timeout runs from the moment a connection
        // waits for a request head, so it closes idle keep-alive
        // connections as well as slow heads.
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(gateway.opts.idle_timeout);
        let mut served = JoinSet::new();
        // Housekeeping: idle upstream connections past their time are closed.
        // The tick also keeps a timer due within a second, so the per-request
        // timers (connect, upstream, header read) are never the earliest and
        // never have to wake the reactor through its eventfd when registered.
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = housekeeping.tick() => gateway.pool.sweep(),
                handed = connections.recv() => match handed {
                    Some((stream, peer, slot)) => match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            served.spawn(serve_connection(stream, peer, slot, gateway.clone(), http.clone(), stop.clone()));
                        }
                        Err(err) => tracing::warn!("cannot take over the connection from {peer}: {err}"),
                    },
                    None => break,
                },
                Some(_) = served.join_next() => {}
            }
        }
        // Let open connections finish their current request before the runtime goes.
        stop.cancel();
        while served.join_next().await.is_some() {}
    });
}

/// How long a connection accepted before a shutdown, whose first request
/// has not been read yet, is given for it to arrive.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Serve one client connection; its `slot` under the connection limit is
/// given back when it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    gateway: Arc<Gateway>,
    http: http1::Builder,
    stop: CancellationToken,
) {
    // Holds a permit once a request has started on this connection.
    let started = Arc::new(Notify::new());
    let seen = started.clone();
    let service = service_fn(move |req| {
        seen.notify_one();
        let gateway = gateway.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req, peer).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop.cancelled() => {
            // A graceful shutdown closes a connection at once when no
            // request is under way: one accepted just before the stop,
            // whose request is still on its way or unread, would be closed
            // unanswered (as a daemon handing over saw). It gets a moment
            // for that first request, which is then answered.
            let ended = tokio::select! {
                served = conn.as_mut() => Some(served),
                () = started.notified() => None,
                () = tokio::time::sleep(FIRST_REQUEST_GRACE) => None,
            };
            match ended {
                Some(served) => served,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(err) = served {
        tracing::debug!("gateway connection from {peer} ended: {err}");
    }
    drop(slot);
}

struct Gateway {
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    pool: Arc<Pool>,
    opts: GatewayOptions,
}

/// How often a request whose pooled connection turned out closed before it
/// was sent is tried again on a fresh connection.
const STALE_RETRIES: usize = 3;

impl Gateway {
    fn new(directory: Arc<dyn Directory>, traffic: Arc<Traffic>, opts: GatewayOptions) -> Self {
        Gateway {
            directory,
            traffic,
            pool: Arc::new(Pool::new(opts.connect_timeout)),
            opts,
        }
    }

    /// The `Host` rules ([`host::check`]) with the hosts this gateway answers.
    fn check_host(&self, req: &Request<Incoming>) -> Result<(), HostError> {
        let uri = req.uri();
        host::check(
            req.version() >= Version::HTTP_11,
            req.headers()
                .get_all(header::HOST)
                .iter()
                .map(HeaderValue::as_bytes),
            uri.authority().map(|a| (uri.scheme_str(), a.as_str())),
            |host| {
                self.opts
                    .accept_hosts
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(host.name))
            },
        )
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<GatewayBody> {
        let started = Instant::now();
        if let Err(refused) = self.check_host(&req) {
            self.traffic.record_unrouted();
            return match refused {
                HostError::Bad(message) => error(StatusCode::BAD_REQUEST, &message, None, None),
                HostError::Foreign(host) => {
                    let message = format!(
                        "requests addressed to host {host} are refused: like kubectl proxy, the \
                         gateway answers only localhost, 127.0.0.1 and [::1] (add hosts with \
                         BODYWORK_GATEWAY_ACCEPT_HOSTS=NAME,NAME)"
                    );
                    error(StatusCode::FORBIDDEN, &message, None, None)
                }
            };
        }
        let (mut parts, body) = req.into_parts();
        let uri = std::mem::take(&mut parts.uri);
        let merged = merged_slashes(uri.path());
        let (namespace, service, target, path, via) = match route(&merged) {
            Route::Service {
                namespace,
                service,
                target,
                path,
                via,
            } => (namespace, service, target, path, via),
            Route::Healthz => return text(StatusCode::OK, "text/plain", "ok"),
            Route::Metrics => {
                return text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    self.traffic.render_metrics(),
                );
            }
            Route::Unknown => {
                self.traffic.record_unrouted();
                let message = format!(
                    "no route for {}: use /api/v1/namespaces/NAMESPACE/services/NAME/proxy/PATH or /NAMESPACE/NAME/PATH",
                    uri.path()
                );
                return error(StatusCode::NOT_FOUND, &message, None, None);
            }
        };
        let Some(replicas) = self.directory.ready_replicas(namespace, service) else {
            self.traffic.record_unrouted();
            let message = format!("service {service} not found in namespace {namespace}");
            return error(
                StatusCode::NOT_FOUND,
                &message,
                Some(namespace),
                Some(service),
            );
        };
        // As the API server does: a port the service does not serve is 503,
        // never the service on its own port.
        if let Err(message) = check_target(service, target, self.directory.port(namespace, service))
        {
            self.traffic.record_unrouted();
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &message,
                Some(namespace),
                Some(service),
            );
        }
        if via == Via::Ingress && !self.directory.exposed(namespace, service) {
            self.traffic.record_unrouted();
            let message = format!(
                "service {service} in namespace {namespace} is not exposed at the ingress path (ingress is false); use /api/v1/namespaces/{namespace}/services/{service}/proxy/PATH"
            );
            return error(
                StatusCode::NOT_FOUND,
                &message,
                Some(namespace),
                Some(service),
            );
        }
        let stats = self.traffic.service(namespace, service);
        let fail = |status: StatusCode, kind: ErrorKind, message: &str| {
            stats.record_error(kind);
            stats.record_request(status.as_u16(), started.elapsed());
            error(status, message, Some(namespace), Some(service))
        };
        if replicas.is_empty() {
            let message =
                format!("service {service} in namespace {namespace} has no ready replica");
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::NoReadyReplica,
                &message,
            );
        }
        let Some(path_and_query) = upstream_path(path, uri.query()) else {
            let message = format!("cannot forward path {path}");
            return error(
                StatusCode::BAD_REQUEST,
                &message,
                Some(namespace),
                Some(service),
            );
        };

        let body = match announced_length(&parts.headers) {
            Some(len) if len <= SMALL_BODY && !body.is_end_stream() => match read_whole(body).await
            {
                Ok(read) => UpstreamBody::Read(Some(read)),
                Err(err) => {
                    let message = format!("reading the request body failed: {err}");
                    return error(
                        StatusCode::BAD_REQUEST,
                        &message,
                        Some(namespace),
                        Some(service),
                    );
                }
            },
            _ => UpstreamBody::Streamed(body),
        };
        forward::request_headers(&mut parts.headers, peer.ip());
        parts.uri = Uri::from(path_and_query);
        parts.version = Version::HTTP_11;
        let mut request = Request::from_parts(parts, body);
        // A configured timeout too large for the clock means "practically never".
        let deadline = started
            .checked_add(self.opts.upstream_timeout)
            .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
        // One timer for every phase of the request (connect, send, read a
        // small answer): registered once, not once per phase.
        let upstream_timer = tokio::time::sleep_until(deadline);
        tokio::pin!(upstream_timer);
        let timed_out = |replica: SocketAddr| {
            let message = format!(
                "replica {replica} did not answer within {} s",
                self.opts.upstream_timeout.as_secs_f64()
            );
            fail(StatusCode::GATEWAY_TIMEOUT, ErrorKind::Timeout, &message)
        };
        let start = stats.next_start();
        let mut next = 0;
        let mut stale_retries = 0;
        let mut last_refusal = String::new();
        // Replicas whose new connection the directory refused.
        let mut vetted_out = 0;
        while next < replicas.len() {
            let replica = replicas[(start + next) % replicas.len()];
            let vet = || self.directory.vet(namespace, service, replica);
            // Connecting sends nothing: on failure the request is intact for the next replica.
            let mut conn = match within(upstream_timer.as_mut(), self.pool.checkout(replica, vet))
                .await
            {
                Ok(Ok(conn)) => conn,
                Ok(Err(CheckoutError::Refused(why))) => {
                    tracing::debug!("replica {replica} of {namespace}/{service} not used: {why}");
                    stats.record_error(ErrorKind::Connect);
                    last_refusal = format!("replica {replica} was not used: {why}");
                    vetted_out += 1;
                    next += 1;
                    continue;
                }
                Ok(Err(err)) => {
                    tracing::debug!(
                        "replica {replica} of {namespace}/{service}: {err}; trying the next one"
                    );
                    stats.record_error(ErrorKind::Connect);
                    last_refusal = format!("replica {replica} could not be reached: {err}");
                    next += 1;
                    continue;
                }
                Err(_elapsed) => return timed_out(replica),
            };
            request
                .headers_mut()
                .insert(header::HOST, conn.host.clone());
            let in_flight = self.traffic.track(replica);
            let sent = within(
                upstream_timer.as_mut(),
                conn.sender.try_send_request(request),
            )
            .await;
            match sent {
                Ok(Ok(response)) => {
                    let (mut head, inner) = response.into_parts();
                    // A replica that said it closes the connection (Flask's
                    // development server does, every time) is not pooled.
                    let lease = forward::keeps_alive(head.version, &head.headers)
                        .then(|| Lease::new(self.pool.clone(), conn));
                    forward::strip_hop_by_hop(&mut head.headers);
                    head.version = Version::HTTP_11;
                    if announced_length(&head.headers).is_some_and(|len| len <= SMALL_BODY)
                        && !inner.is_end_stream()
                    {
                        // A small answer is read whole, so its head and body
                        // reach the client in one write (nginx's
                        // postpone_output does the same).
                        let read = within(upstream_timer.as_mut(), read_whole(inner)).await;
                        drop(in_flight);
                        return match read {
                            Ok(Ok(read)) => {
                                if let Some(lease) = lease {
                                    lease.release();
                                }
                                stats.record_request(head.status.as_u16(), started.elapsed());
                                Response::from_parts(head, GatewayBody::full(read))
                            }
                            Ok(Err(err)) => {
                                let message = format!(
                                    "replica {replica} failed while sending its answer: {}",
                                    cause_chain(&err)
                                );
                                fail(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, &message)
                            }
                            Err(_elapsed) => timed_out(replica),
                        };
                    }
                    stats.record_request(head.status.as_u16(), started.elapsed());
                    let body = GatewayBody::Upstream {
                        inner,
                        in_flight: Some(in_flight),
                        lease,
                    };
                    return Response::from_parts(head, body);
                }
                Ok(Err(mut err)) => match err.take_message() {
                    // Nothing was sent: a pooled connection that closed just
                    // before we used it gets a fresh one; else the next replica.
                    Some(unsent) => {
                        request = unsent;
                        if conn.reused && stale_retries < STALE_RETRIES {
                            stale_retries += 1;
                        } else {
                            stats.record_error(ErrorKind::Connect);
                            last_refusal = format!(
                                "replica {replica} closed the connection before the request was sent: {}",
                                cause_chain(&err.into_error())
                            );
                            next += 1;
                        }
                    }
                    None => {
                        let err = err.into_error();
                        // The client's own body broke off or was malformed
                        // (a bad chunk): its fault, not the replica's.
                        if client_body_failed(&err) {
                            let message =
                                format!("reading the request body failed: {}", cause_chain(&err));
                            stats.record_request(400, started.elapsed());
                            return error(
                                StatusCode::BAD_REQUEST,
                                &message,
                                Some(namespace),
                                Some(service),
                            );
                        }
                        let message = format!("replica {replica} failed: {}", cause_chain(&err));
                        return fail(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, &message);
                    }
                },
                Err(_elapsed) => return timed_out(replica),
            }
        }
        if vetted_out == replicas.len() {
            let message = format!(
                "service {service} in namespace {namespace} has no ready replica: {last_refusal}"
            );
            return fail(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorKind::NoReadyReplica,
                &message,
            );
        }
        fail(StatusCode::BAD_GATEWAY, ErrorKind::Connect, &last_refusal)
    }
}

/// `work`'s output, or `Err(Elapsed)` if `timer` fires first.
async fn within<F: Future>(timer: Pin<&mut Sleep>, work: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = timer => Err(Elapsed),
    }
}

/// The upstream timeout fired.
struct Elapsed;

/// The request body length the client announced with `Content-Length`.
fn announced_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The path and query a replica sees: `path` plus the client's query string.
fn upstream_path(path: &str, query: Option<&str>) -> Option<PathAndQuery> {
    match query {
        None => PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())).ok(),
        Some(query) => {
            let mut buf = BytesMut::with_capacity(path.len() + 1 + query.len());
            buf.put_slice(path.as_bytes());
            buf.put_u8(b'?');
            buf.put_slice(query.as_bytes());
            PathAndQuery::from_maybe_shared(buf.freeze()).ok()
        }
    }
}

/// Whether sending a request to a replica failed because the request body
/// failed: hyper calls that a user error whose cause is the body's error,
/// and the only body that can fail is the client's, streamed through.
fn client_body_failed(err: &hyper::Error) -> bool {
    use std::error::Error as _;
    err.is_user()
        && err
            .source()
            .is_some_and(|cause| cause.downcast_ref::<hyper::Error>().is_some())
}

/// `outer: inner: innermost`, for error messages a user can act on.
fn cause_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON error: `{"error": ..., "namespace": ..., "service": ...}`.
fn error(
    status: StatusCode,
    message: &str,
    namespace: Option<&str>,
    service: Option<&str>,
) -> Response<GatewayBody> {
    let body = serde_json::json!({
        "error": message,
        "namespace": namespace,
        "service": service,
    });
    text(status, "application/json", body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_string_is_kept() {
        let pq = upstream_path("/iris/v1/score", Some("a=1&b=%20")).unwrap();
        assert_eq!(pq.as_str(), "/iris/v1/score?a=1&b=%20");
        assert_eq!(upstream_path("/", None).unwrap().as_str(), "/");
    }

    #[test]
    fn announced_length_reads_content_length_only_when_valid() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(announced_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("89"));
        assert_eq!(announced_length(&headers), Some(89));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("lots"));
        assert_eq!(announced_length(&headers), None);
    }

    #[test]
    fn error_body_is_json_with_context() {
        let response = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no \"ready\"",
            Some("ns"),
            None,
        );
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body();
        let GatewayBody::Full(Some(bytes)) = &body else {
            panic!("expected a full body");
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(value["error"], "no \"ready\"");
        assert_eq!(value["namespace"], "ns");
        assert!(value["service"].is_null());
    }
}
