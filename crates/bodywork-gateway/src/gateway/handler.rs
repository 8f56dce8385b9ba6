//! The gateway's request handler: checks the `Host`, routes the request,
//! and forwards it to a ready replica of the service (the next one when a
//! connection fails before anything was sent), within the upstream
//! timeout; errors are answered as JSON.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::time::Instant;

use super::Gateway;
use crate::Lookup;
use crate::body::{GatewayBody, ReplicaBody, SMALL_BODY, read_whole};
use crate::deadline::Deadline;
use crate::forward::{self, ForwardedFor};
use crate::host::{self, HostError};
use crate::pool::CheckoutError;
use crate::route::{Route, Via, check_target, merged_slashes, route};
use crate::server::ClientBody;
use crate::traffic::{ErrorKind, InFlight};
use crate::upstream::{BodyKind, Decoder, Failed, RequestBody, RequestHead};

/// How often a request whose pooled connection turned out closed before it
/// was sent is tried again on a fresh connection.
const STALE_RETRIES: usize = 3;

impl Gateway {
    /// The `Host` rules ([`host::check`]) with the hosts this gateway answers.
    fn check_host(&self, req: &Request<ClientBody>) -> Result<(), HostError> {
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

    /// Whether `path` is the ingress path of a service exposed there.
    fn exposed_at(&self, path: &str) -> bool {
        match route(&merged_slashes(path)) {
            Route::Service {
                namespace,
                service,
                via: Via::Ingress,
                ..
            } => self
                .directory
                .lookup(namespace, service)
                .is_some_and(|found| found.exposed),
            _ => false,
        }
    }

    pub(super) async fn handle(
        &self,
        req: Request<ClientBody>,
        client: &ForwardedFor,
        deadline: &Deadline,
    ) -> Response<GatewayBody> {
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
        if let Some(pages) = &self.opts.pages
            && pages.0.serves(req.uri().path())
            && !self.exposed_at(req.uri().path())
        {
            return pages.0.answer(req).await.map(GatewayBody::Page);
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
        let Some(Lookup {
            ready: replicas,
            exposed,
            port,
        }) = self.directory.lookup(namespace, service)
        else {
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
        if let Err(message) = check_target(service, target, port) {
            self.traffic.record_unrouted();
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &message,
                Some(namespace),
                Some(service),
            );
        }
        if via == Via::Ingress && !exposed {
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
        // A body of a length said (by `Content-Length`; the server has
        // read most of a small one already) and small is read whole.
        let mut body = match body.size_hint().exact() {
            Some(len) if len <= SMALL_BODY && !body.is_end_stream() => match read_whole(body).await
            {
                Ok(read) => RequestBody::Read(read),
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
            _ if body.is_end_stream() => RequestBody::Read(Bytes::new()),
            _ => RequestBody::Streamed(Some(body)),
        };
        let rewrite = forward::Rewrite::new(&parts.headers, client);
        // A configured timeout too large for the clock means "practically never".
        let until = started
            .checked_add(self.opts.upstream_timeout)
            .unwrap_or_else(|| started + Duration::from_secs(365 * 24 * 3600));
        // One deadline for every phase of the request (connect, send, read
        // a small answer): the connection's, with no timer of its own.
        deadline.set(until);
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
            let mut conn = match within(deadline, self.pool.checkout(replica, vet)).await {
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
            let in_flight = InFlight::start(&conn.in_flight);
            let head = RequestHead {
                method: &parts.method,
                path,
                query: uri.query(),
                host: &conn.host,
                headers: &parts.headers,
                rewrite: &rewrite,
            };
            let sent = within(deadline, conn.stream.exchange(&head, &mut body)).await;
            match sent {
                Ok(Ok((answer, kind))) => {
                    let (mut head, ()) = answer.into_parts();
                    // A replica that said it closes the connection (Flask's
                    // development server does, every time) is not pooled.
                    let reusable = forward::keeps_alive(head.version, &head.headers);
                    forward::strip_hop_by_hop(&mut head.headers);
                    head.version = Version::HTTP_11;
                    let small = match kind {
                        BodyKind::Empty => Some(0),
                        BodyKind::Length(len) if len <= SMALL_BODY => Some(len as usize),
                        _ => None,
                    };
                    let Some(len) = small else {
                        stats.record_request(head.status.as_u16(), started.elapsed());
                        let pool = reusable.then(|| self.pool.clone());
                        let body = ReplicaBody::new(conn, Decoder::new(kind), pool, in_flight);
                        return Response::from_parts(head, GatewayBody::Upstream(Box::new(body)));
                    };
                    // A small answer is read whole, so its head and body
                    // reach the client in one write (nginx's
                    // postpone_output does the same).
                    let read = within(deadline, conn.stream.read_whole(len)).await;
                    drop(in_flight);
                    return match read {
                        Ok(Ok(read)) => {
                            if reusable {
                                self.pool.checkin(conn);
                            }
                            stats.record_request(head.status.as_u16(), started.elapsed());
                            let body = if read.is_empty() {
                                GatewayBody::Full(None)
                            } else {
                                GatewayBody::full(read)
                            };
                            Response::from_parts(head, body)
                        }
                        Ok(Err(err)) => {
                            let message =
                                format!("replica {replica} failed while sending its answer: {err}");
                            fail(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, &message)
                        }
                        Err(_elapsed) => timed_out(replica),
                    };
                }
                // Nothing of an answer came. A request that cannot have
                // been acted on (not written whole, or idempotent) is sent
                // again: on a fresh connection when a pooled one had gone
                // stale, else to the next replica.
                Ok(Err(Failed::Closed { written, err }))
                    if body.replayable() && (!written || idempotent(&parts.method)) =>
                {
                    if conn.reused && stale_retries < STALE_RETRIES {
                        stale_retries += 1;
                    } else {
                        stats.record_error(ErrorKind::Connect);
                        last_refusal = format!(
                            "replica {replica} closed the connection before answering: {err}"
                        );
                        next += 1;
                    }
                }
                Ok(Err(Failed::Closed { err, .. } | Failed::Upstream(err))) => {
                    let message = format!("replica {replica} failed: {}", cause_chain(&err));
                    return fail(StatusCode::BAD_GATEWAY, ErrorKind::Upstream, &message);
                }
                // The client's own body broke off or was malformed (a bad
                // chunk): its fault, not the replica's.
                Ok(Err(Failed::ClientBody(err))) => {
                    let message = format!("reading the request body failed: {}", cause_chain(&err));
                    stats.record_request(400, started.elapsed());
                    return error(
                        StatusCode::BAD_REQUEST,
                        &message,
                        Some(namespace),
                        Some(service),
                    );
                }
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

/// `work`'s output, or `Err(Elapsed)` if `deadline` passes first.
async fn within<F: Future>(deadline: &Deadline, work: F) -> Result<F::Output, Elapsed> {
    tokio::select! {
        biased;
        out = work => Ok(out),
        () = deadline.passed() => Err(Elapsed),
    }
}

/// The upstream timeout fired.
struct Elapsed;

/// Methods a replica may get twice without harm (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
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

pub(super) fn text(
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
pub(super) fn error(
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
