//! Serving the pages: GET only, on a listener the caller bound (loopback),
//! each request read through [`ControlPlane`] when it comes. A request
//! whose `Host` is not this loopback address and port is refused (421), so
//! a page of another site cannot reach the dashboard by DNS rebinding.

use std::convert::Infallible;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bodywork_runtime::ControlPlane;
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

/// What answers a request: the runtime read, where the pages live, and
/// the port a `Host` must name.
#[derive(Clone, Copy)]
pub struct Site<'a> {
    pub control: &'a dyn ControlPlane,
    /// `""` when the pages are the whole server (see [`Base`]).
    pub base: &'a str,
    pub port: u16,
}

/// At most this many live tails streamed at once; more are answered 503.
pub const MAX_STREAMS: usize = 16;

/// How long a live tail may stream before it is closed (the page's
/// `EventSource` reconnects and goes on after its last line).
const STREAM_LIMIT: Duration = Duration::from_secs(30 * 60);

/// A body: a page whole, or a live tail's events.
type Body = http_body_util::Either<Full<Bytes>, EventBody>;

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
                                let answer = match open_stream(site, &request, streams) {
                                    Some(Ok((response, follow))) => {
                                        if let Some(tx) = slot.lock().ok().and_then(|mut s| s.take()) {
                                            let _ = tx.send(follow);
                                        }
                                        response.map(http_body_util::Either::Right)
                                    }
                                    Some(Err(refused)) => refused.map(|b| http_body_util::Either::Left(Full::new(b))),
                                    None => answer(site, request.method(), path_and_query(request.uri()), host(request.headers()))
                                        .await
                                        .map(|b| http_body_util::Either::Left(Full::new(b))),
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
/// it, or why it is refused; `None` for any other request.
fn open_stream<'a, B>(
    site: Site<'a>,
    request: &Request<B>,
    streams: &Arc<Semaphore>,
) -> Option<Result<Opened<'a>, Response<Bytes>>> {
    let path = request.uri().path();
    let Some(Route::Stream(namespace, subject)) = path.strip_prefix(site.base).and_then(route)
    else {
        return None;
    };
    if !host_allowed(host(request.headers()), site.port) || request.method() != Method::GET {
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
    let (body, follow) = crate::stream::open(site.control, namespace, subject, after, permit);
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

/// The answer to one request: its method, path (with its query, if any)
/// and `Host`.
pub async fn answer(
    site: Site<'_>,
    method: &Method,
    path: &str,
    host: Option<&str>,
) -> Response<Bytes> {
    if !host_allowed(host, site.port) {
        return plain(
            StatusCode::MISDIRECTED_REQUEST,
            "this dashboard answers only to localhost, 127.0.0.1 or [::1] with its port\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut response = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard is read-only\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    page(site, path).await
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
        ["services", _, "logs"] => Some(Route::Log(
            ns,
            LogSubject::Service(decode(2).filter(|s| !s.is_empty())?),
        )),
        ["services", _, "logs", "stream"] => Some(Route::Stream(
            ns,
            LogSubject::Service(decode(2).filter(|s| !s.is_empty())?),
        )),
        _ => None,
    }
}

/// The page at `path` (the whole path, with the site's base, and its
/// query: `?before=ID` on a namespace page, its older runs).
pub async fn page(site: Site<'_>, path: &str) -> Response<Bytes> {
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
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let before = number_query(query, "before");
    let Some(route) = path.strip_prefix(site.base).and_then(route) else {
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
            Ok(Some(data)) => html_response(StatusCode::OK, render::namespace(base, &data)),
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
        Route::Stream(..) => plain(
            StatusCode::NOT_IMPLEMENTED,
            "live tails are served by `bodywork dashboard`; reload the page for newer lines\n",
        ),
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
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
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
