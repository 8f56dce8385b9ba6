//! Serving the pages: GET only, on a listener the caller bound (loopback),
//! each request read through [`ControlPlane`] when it comes. A request
//! whose `Host` is not this loopback address and port is refused (421), so
//! a page of another site cannot reach the dashboard by DNS rebinding.

use std::convert::Infallible;
use std::future::Future;
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

use crate::render::{self, Base};

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

/// Serve `site` on `listener` until `shutdown` resolves. Connections are
/// served side by side on this task (nothing is spawned, so the control
/// plane is only borrowed); each is closed after its answer.
pub async fn serve(
    listener: TcpListener,
    site: Site<'_>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DashboardError> {
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = FuturesUnordered::new();
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
                connections.push(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .serve_connection(
                            TokioIo::new(stream),
                            service_fn(move |request: Request<Incoming>| async move {
                                let answer = answer(site, request.method(), request.uri().path(), host(request.headers())).await;
                                Ok::<_, Infallible>(answer.map(Full::new))
                            }),
                        );
                    match tokio::time::timeout(CONNECTION_LIMIT, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!("dashboard connection: {e}"),
                        Err(_) => tracing::debug!("dashboard connection took too long"),
                    }
                });
            }
        }
    }
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

/// The answer to one request: its method, path (no query) and `Host`.
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

/// The page at `path` (the whole path, with the site's base).
pub async fn page(site: Site<'_>, path: &str) -> Response<Bytes> {
    let base = Base(site.base);
    let runtime = site.control.name();
    let Some(rest) = path.strip_prefix(site.base) else {
        let html = render::not_found(base, runtime, "such page", Utc::now());
        return html_response(StatusCode::NOT_FOUND, html);
    };
    match rest {
        "" | "/" => {
            let overview = crate::data::overview(site.control).await;
            html_response(StatusCode::OK, render::overview(base, &overview))
        }
        "/style.css" => respond(
            StatusCode::OK,
            "text/css; charset=utf-8",
            "max-age=300",
            Bytes::from_static(render::STYLE.as_bytes()),
        ),
        _ => match rest
            .strip_prefix("/namespaces/")
            .filter(|s| !s.contains('/'))
            .and_then(crate::html::decode_segment)
        {
            Some(ns) => match crate::data::namespace(site.control, &ns).await {
                Ok(Some(data)) => html_response(StatusCode::OK, render::namespace(base, &data)),
                Ok(None) => html_response(
                    StatusCode::NOT_FOUND,
                    render::not_found(base, runtime, &format!("namespace {ns}"), Utc::now()),
                ),
                Err(e) => html_response(
                    StatusCode::BAD_GATEWAY,
                    render::failure(
                        base,
                        runtime,
                        &bodywork_runtime::error_chain(&e)
                            .collect::<Vec<_>>()
                            .join(": "),
                        Utc::now(),
                    ),
                ),
            },
            None => html_response(
                StatusCode::NOT_FOUND,
                render::not_found(base, runtime, "such page", Utc::now()),
            ),
        },
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

/// An answer with the headers every answer has: no script, no frame,
/// nothing from elsewhere.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    cache: &'static str,
    body: Bytes,
) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, cache),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
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
