//! Serving the pages on a listener the caller bound (loopback), each
//! request read through [`ControlPlane`] when it comes; the two actions
//! (redeploy, delete a service) are `POST`s checked by [`crate::actions`].
//! A request whose `Host` is not this loopback address and port is refused
//! (421), so a page of another site cannot reach the dashboard by DNS
//! rebinding. [`Embedded`] answers the same requests inside another server
//! (the local gateway's `/ui/`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bodywork_runtime::{CancellationToken, ControlPlane};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot};

use crate::actions::{self, ActionError, MAX_FORM, Refusal, Token, TokenError};
use crate::data::LogSubject;
use crate::render::{self, Base};
use crate::stream::{EventBody, Follow};

/// Why the dashboard stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("cannot accept connections on the dashboard's address")]
    Accept(#[source] std::io::Error),
}

/// How long one connection may take, first byte to last.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// At most this many connections served at once; more wait in the
/// listening socket's backlog.
const MAX_CONNECTIONS: usize = 64;

/// The pause after an accept that failed for want of a file descriptor,
/// or for a client gone before it was accepted.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// An accept error that passes: out of file descriptors (for now), or a
/// connection the client gave up before it was accepted.
fn transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionReset, Interrupted};
    matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted)
        || matches!(e.raw_os_error(), Some(23 | 24)) // ENFILE, EMFILE
}

/// What answers a request: the runtime read, where the pages live, the
/// port a `Host` must name, and the token every form carries.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub control: &'a dyn ControlPlane,
    /// `""` when the pages are the whole server (see [`Base`]).
    pub base: &'a str,
    pub port: u16,
    pub token: &'a Token,
}

/// At most this many live tails streamed at once; more are answered 503.
pub const MAX_STREAMS: usize = 16;

/// How long a live tail may stream before it is closed (the page's
/// `EventSource` reconnects and goes on after its last line).
const STREAM_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A body: a page whole, or a live tail's events.
pub enum Body {
    Whole(Full<Bytes>),
    Events(EventBody),
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            Body::Whole(b) => std::pin::Pin::new(b).poll_frame(cx),
            Body::Events(b) => std::pin::Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Whole(b) => b.is_end_stream(),
            Body::Events(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self {
            Body::Whole(b) => b.size_hint(),
            Body::Events(b) => b.size_hint(),
        }
    }
}

/// Serve `site` on `listener` until `shutdown` resolves. Connections are
/// served side by side on this task (nothing is spawned, so the control
/// plane is only borrowed); each is closed after its answer. A live tail's
/// follow is driven beside its connection and dropped with it.
pub async fn serve(
    listener: TcpListener,
    site: Site<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DashboardError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = FuturesUnordered::new();
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            Some(()) = connections.next(), if !connections.is_empty() => {}
            accepted = listener.accept(), if connections.len() < MAX_CONNECTIONS => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) if transient(&e) => {
                        tracing::warn!("the dashboard cannot accept a connection now: {e}");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                        continue;
                    }
                    Err(e) => return Err(DashboardError::Accept(e)),
                };
                let streams = streams.clone();
                connections.push(async move {
                    let (follow_tx, follow_rx) = oneshot::channel::<Follow<'_>>();
                    let slot = Mutex::new(Some(follow_tx));
                    let slot = &slot;
                    let streams = &streams;
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(
                            TokioIo::new(stream),
                            service_fn(move |request: Request<Incoming>| async move {
                                let answer = match open_stream(site.control, site.base, site.port, &request, streams) {
                                    Some(Ok((response, follow))) => {
                                        if let Some(tx) = slot.lock().ok().and_then(|mut s| s.take()) {
                                            let _ = tx.send(follow);
                                        }
                                        response.map(Body::Events)
                                    }
                                    Some(Err(refused)) => refused.map(|b| Body::Whole(Full::new(b))),
                                    None => answer(site, request)
                                        .await
                                        .map(|b| Body::Whole(Full::new(b))),
                                };
                                Ok::<Response<Body>, Infallible>(answer)
                            }),
                        );
                    let mut connection = std::pin::pin!(connection);
                    let first = tokio::time::timeout(CONNECTION_LIMIT, async {
                        tokio::select! {
                            done = &mut connection => Err(done),
                            Ok(follow) = follow_rx => Ok(follow),
                        }
                    })
                    .await;
                    let done = match first {
                        Err(_) => Err(()),
                        Ok(Err(done)) => Ok(done),
                        Ok(Ok(follow)) => tokio::time::timeout(STREAM_LIMIT, async {
                            tokio::select! {
                                done = &mut connection => done,
                                () = follow => connection.await,
                            }
                        })
                        .await
                        .map_err(|_| ()),
                    };
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!("dashboard connection: {e}"),
                        Err(()) => tracing::debug!("dashboard connection took too long"),
                    }
                });
            }
        }
    }
}

/// A live tail's answer, and the follow that fills it.
type Opened<'a> = (Response<EventBody>, Follow<'a>);

/// For a request of a live tail: its answer and the follow that fills
/// it (reading through `control`), or why it is refused; `None` for any
/// other request.
fn open_stream<'a, C, B>(
    control: C,
    base: &str,
    port: u16,
    request: &Request<B>,
    streams: &Arc<Semaphore>,
) -> Option<Result<Opened<'a>, Response<Bytes>>>
where
    C: std::ops::Deref + Send + Sync + 'a,
    C::Target: ControlPlane,
{
    let path = request.uri().path();
    let Some(Route::Stream(namespace, subject)) = path.strip_prefix(base).and_then(route) else {
        return None;
    };
    if !host_allowed(host(request.headers()), port) || request.method() != Method::GET {
        return None; // refused as every other request is, by `answer`
    }
    let Ok(permit) = streams.clone().try_acquire_owned() else {
        let mut busy = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many live tails are open; close one, or reload later\n",
        );
        busy.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        return Some(Err(busy));
    };
    let after = last_event_id(request.headers())
        .or_else(|| after_query(request.uri().query()))
        .unwrap_or(0);
    let (body, follow) = crate::stream::open(control, namespace, subject, after, permit);
    let mut response = Response::new(body);
    for (name, value) in security_headers("text/event-stream", "no-store") {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Some(Ok((response, follow)))
}

/// The last line a reconnecting `EventSource` had (`Last-Event-ID`).
fn last_event_id(headers: &http::HeaderMap) -> Option<usize> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// A request's path with its query, as [`answer`] takes it.
pub fn path_and_query(uri: &http::Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |p| p.as_str())
}

/// `NAME=N` of a query, a positive number.
fn number_query(query: &str, name: &str) -> Option<i64> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .filter(|n| *n > 0)
}

/// `after=N` of a query: the lines the page already shows.
fn after_query(query: Option<&str>) -> Option<usize> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("after="))
        .and_then(|n| n.parse().ok())
}

/// True when `host` (a `Host` header) names this server on loopback:
/// `localhost`, `127.0.0.1` or `[::1]`, with `port`.
pub fn host_allowed(host: Option<&str>, port: u16) -> bool {
    let Some(host) = host else { return false };
    let Some((name, given)) = host.rsplit_once(':') else {
        return false;
    };
    given.parse::<u16>().ok() == Some(port)
        && (name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "[::1]")
}

/// A request's `Host`, when it has one that is text.
pub fn host(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|h| h.to_str().ok())
}

/// The answer to one request (a live tail's is [`open_stream`]'s): a
/// page for `GET`, an action for a `POST` that passes
/// [`actions::check`]; the body is read only for such a `POST`.
pub async fn answer<B>(site: Site<'_>, request: Request<B>) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    if !host_allowed(host(request.headers()), site.port) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers only to localhost, 127.0.0.1 or [::1] with its port\n",
        );
    }
    let route = request.uri().path().strip_prefix(site.base).and_then(route);
    let before = request
        .uri()
        .query()
        .and_then(|q| number_query(q, "before"));
    let method = request.method().clone();
    match (&method, route) {
        (&Method::GET | &Method::HEAD, Some(Route::Redeploy(..))) => not_allowed("POST"),
        (&Method::GET | &Method::HEAD, route) => page(site, route, before).await,
        (&Method::POST, Some(Route::Redeploy(ns, service))) => {
            post(site, request, Action::Redeploy, ns, service).await
        }
        (&Method::POST, Some(Route::Delete(ns, service))) => {
            post(site, request, Action::Delete, ns, service).await
        }
        (_, Some(Route::Delete(..))) => not_allowed("GET, HEAD, POST"),
        _ => not_allowed("GET, HEAD"),
    }
}

fn not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut response = plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "the dashboard writes only through its forms\n",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The two writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Redeploy,
    Delete,
}

/// A body read whole, `None` past [`MAX_FORM`] bytes (or cut short).
async fn read_form<B>(headers: &http::HeaderMap, body: B) -> Option<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    use http_body_util::BodyExt as _;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_FORM as u64) {
        return None;
    }
    let read = http_body_util::Limited::new(body, MAX_FORM).collect();
    match tokio::time::timeout(Duration::from_secs(10), read).await {
        Ok(Ok(collected)) => Some(collected.to_bytes()),
        _ => None,
    }
}

/// A `POST` of an action's form: checked, then done; a `303` to the
/// namespace's page when it was, else a page that says why not.
async fn post<B>(
    site: Site<'_>,
    request: Request<B>,
    action: Action,
    namespace: String,
    service: String,
) -> Response<Bytes>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let base = Base(site.base);
    let runtime = site.control.name();
    let (head, body) = request.into_parts();
    let form = read_form(&head.headers, body).await;
    if let Err(refusal) = actions::check(&head.headers, form.as_deref(), site.port, site.token) {
        let status = match refusal {
            Refusal::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::Origin | Refusal::Token => StatusCode::FORBIDDEN,
        };
        return html_response(status, render::refused(base, runtime, refusal, Utc::now()));
    }
    let done = match action {
        Action::Redeploy => actions::redeploy(site.control, &namespace, &service)
            .await
            .map(|_| "#runs"),
        Action::Delete => actions::delete(site.control, &namespace, &service)
            .await
            .map(|()| "#services"),
    };
    match done {
        Ok(anchor) => {
            let mut response = respond(
                StatusCode::SEE_OTHER,
                "text/plain; charset=utf-8",
                "no-store",
                Bytes::new(),
            );
            let location = format!("{}{anchor}", base.namespace(&namespace));
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => {
            let status = match &e {
                ActionError::NoSuchService { .. } => StatusCode::NOT_FOUND,
                ActionError::NoRecord { .. } | ActionError::KeyNotKept { .. } => {
                    StatusCode::CONFLICT
                }
                ActionError::Runtime(_) => StatusCode::BAD_GATEWAY,
            };
            let what = match action {
                Action::Redeploy => render::Verb::Redeploy,
                Action::Delete => render::Verb::Delete,
            };
            html_response(
                status,
                render::action_failed(base, runtime, what, &namespace, &service, &e, Utc::now()),
            )
        }
    }
}

/// What a path (after the site's base) names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Overview,
    /// The cached Python environments and their build locks.
    Environments,
    Style,
    TailScript,
    Namespace(String),
    Run(String, i64),
    /// A log page: the lines so far.
    Log(String, LogSubject),
    /// A log's live stream (server-sent events).
    Stream(String, LogSubject),
    /// `POST`: run a service's project again.
    Redeploy(String, String),
    /// `GET`: the confirmation page; `POST`: delete the service.
    Delete(String, String),
}

/// The route of `rest` (a path after the base), `None` for no page.
pub fn route(rest: &str) -> Option<Route> {
    match rest {
        "" | "/" => return Some(Route::Overview),
        "/environments" => return Some(Route::Environments),
        "/style.css" => return Some(Route::Style),
        "/assets/tail.js" => return Some(Route::TailScript),
        _ => {}
    }
    let parts: Vec<&str> = rest.strip_prefix("/namespaces/")?.split('/').collect();
    let decode = |i: usize| parts.get(i).and_then(|s| crate::html::decode_segment(s));
    let ns = decode(0).filter(|ns| !ns.is_empty())?;
    let service = || decode(2).filter(|s| !s.is_empty());
    let run = || {
        parts
            .get(2)
            .and_then(|id| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
    };
    match parts[1..] {
        [] => Some(Route::Namespace(ns)),
        ["runs", _] => Some(Route::Run(ns, run()?)),
        ["runs", _, "logs"] => Some(Route::Log(ns, LogSubject::Run(run()?))),
        ["runs", _, "logs", "stream"] => Some(Route::Stream(ns, LogSubject::Run(run()?))),
        ["services", _, "logs"] => Some(Route::Log(ns, LogSubject::Service(service()?))),
        ["services", _, "logs", "stream"] => {
            Some(Route::Stream(ns, LogSubject::Service(service()?)))
        }
        ["services", _, "redeploy"] => Some(Route::Redeploy(ns, service()?)),
        ["services", _, "delete"] => Some(Route::Delete(ns, service()?)),
        _ => None,
    }
}

/// The page at `path` (the whole path, with the site's base, and its
/// query: `?before=ID` on a namespace page, its older runs).
pub async fn page_at(site: Site<'_>, path: &str) -> Response<Bytes> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let route = path.strip_prefix(site.base).and_then(route);
    page(site, route, number_query(query, "before")).await
}

/// The page of `route` (`None` for a path that names no page); `before`:
/// a namespace page's runs older than that one.
async fn page(site: Site<'_>, route: Option<Route>, before: Option<i64>) -> Response<Bytes> {
    let base = Base(site.base);
    let runtime = site.control.name();
    let not_found = |what: &str| {
        html_response(
            StatusCode::NOT_FOUND,
            render::not_found(base, runtime, what, Utc::now()),
        )
    };
    let failed = |e: bodywork_runtime::RuntimeError| {
        html_response(
            StatusCode::BAD_GATEWAY,
            render::failure(
                base,
                runtime,
                &bodywork_runtime::error_chain(&e)
                    .collect::<Vec<_>>()
                    .join(": "),
                Utc::now(),
            ),
        )
    };
    let Some(route) = route else {
        return not_found("such page");
    };
    match route {
        Route::Overview => {
            let overview = crate::data::overview(site.control).await;
            html_response(StatusCode::OK, render::overview(base, &overview))
        }
        Route::Environments => {
            let page = crate::data::environments(site.control).await;
            html_response(StatusCode::OK, render::environments(base, &page))
        }
        Route::Style => respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            "max-age=300",
            Bytes::from_static(render::STYLE.as_bytes()),
        ),
        Route::TailScript => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            "max-age=300",
            Bytes::from_static(render::TAIL_SCRIPT.as_bytes()),
        ),
        Route::Namespace(ns) => match crate::data::namespace(site.control, &ns, before).await {
            Ok(Some(data)) => {
                html_response(StatusCode::OK, render::namespace(base, &data, site.token))
            }
            Ok(None) => not_found(&format!("namespace {ns}")),
            Err(e) => failed(e),
        },
        Route::Run(ns, id) => match crate::data::run(site.control, &ns, id).await {
            Ok(Some(data)) => html_response(StatusCode::OK, render::run(base, &data)),
            Ok(None) => not_found(&format!("run {id} in namespace {ns}")),
            Err(e) => failed(e),
        },
        Route::Log(ns, subject) => {
            let data = crate::data::log(site.control, &ns, subject).await;
            html_response(StatusCode::OK, render::log(base, &data))
        }
        Route::Delete(ns, service) => match site.control.list_services(&ns).await {
            Ok(services) if services.iter().any(|s| s.name == service) => html_response(
                StatusCode::OK,
                render::confirm_delete(base, runtime, &ns, &service, site.token, Utc::now()),
            ),
            Ok(_) => not_found(&format!("service {service} in namespace {ns}")),
            Err(e) => failed(e),
        },
        // Answered before: a stream by `open_stream`, a redeploy's GET by `answer`.
        Route::Stream(..) | Route::Redeploy(..) => not_found("such page"),
    }
}

fn html_response(status: StatusCode, html: String) -> Response<Bytes> {
    respond(
        status,
        "text/html; charset=utf-8",
        "no-store",
        Bytes::from(html),
    )
}

fn plain(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let body = Bytes::from_static(text.as_bytes());
    respond(status, "text/plain; charset=utf-8", "no-store", body)
}

/// The headers every answer has: no script but the dashboard's own, no
/// frame, nothing from elsewhere.
fn security_headers(
    content_type: &'static str,
    cache: &'static str,
) -> [(header::HeaderName, &'static str); 5] {
    [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        // Same-origin requests (the forms) carry their `Origin` and
        // `Referer`; nothing is sent to other sites.
        (header::REFERRER_POLICY, "same-origin"),
    ]
}

/// An answer with the headers every answer has.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in security_headers(content_type, cache) {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The dashboard inside another server (the local gateway's `/ui/`):
/// whole requests in, whole answers out; a live tail's body drives its
/// own follow (the follow ends when the server drops the body, as when
/// its client goes away, and when `stop` is cancelled, so a server
/// shutting down gracefully is not held by a tail). It holds its control
/// plane, so its answers borrow nothing.
pub struct Embedded {
    control: Arc<dyn ControlPlane>,
    base: &'static str,
    port: u16,
    token: Token,
    streams: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Embedded {
    /// The pages under `base` on a server at `port` (a request's `Host`
    /// must name it), read through `control`, with a new token.
    pub fn new(
        control: Arc<dyn ControlPlane>,
        base: &'static str,
        port: u16,
        stop: CancellationToken,
    ) -> Result<Embedded, TokenError> {
        Ok(Embedded {
            control,
            base,
            port,
            token: Token::random()?,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            stop,
        })
    }

    /// The answer to `request`, whatever it is.
    pub async fn answer<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let whole = |r: Response<Bytes>| r.map(|b| Body::Whole(Full::new(b)));
        match open_stream(
            self.control.clone(),
            self.base,
            self.port,
            &request,
            &self.streams,
        ) {
            Some(Ok((response, follow))) => {
                let stop = self.stop.clone().cancelled_owned();
                let follow: Follow<'static> = Box::pin(async move {
                    tokio::select! {
                        () = follow => {}
                        () = stop => {}
                    }
                });
                response.map(|body| Body::Events(crate::stream::driven(body, follow)))
            }
            Some(Err(refused)) => whole(refused),
            None => {
                let site = Site {
                    control: &*self.control,
                    base: self.base,
                    port: self.port,
                    token: &self.token,
                };
                whole(answer(site, request).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_allowed;

    #[test]
    fn only_loopback_hosts_with_the_port_are_served() {
        for host in [
            "localhost:8002",
            "LocalHost:8002",
            "127.0.0.1:8002",
            "[::1]:8002",
        ] {
            assert!(host_allowed(Some(host), 8002), "{host}");
        }
        for host in [
            "evil.example:8002",
            "evil.example",
            "localhost",
            "localhost:8003",
            "127.0.0.1:80",
            "127.0.0.2:8002",
            "localhost.evil.example:8002",
            "[::1]",
            "0.0.0.0:8002",
            "",
        ] {
            assert!(!host_allowed(Some(host), 8002), "{host}");
        }
        assert!(!host_allowed(None, 8002));
    }
}
