//! Retrying what a busy or restarting API server answers, as `kubectl`
//! (client-go) does: a `tower` retry policy in the client's stack, under
//! every call bodywork makes.
//!
//! Owns: which failed requests are sent again and how long to wait first.
//! Retried, with backoff (250 ms, doubling up to 8 s, jittered; or the
//! server's `Retry-After` when it gives one, up to 30 s), at most
//! [`RETRIES`] times:
//! - `429 Too Many Requests`, whatever the method: the API server's
//!   max-in-flight and priority-and-fairness filters answer it before any
//!   handler runs, so the request did nothing (client-go retries it too);
//! - a connection reset while it was being opened, whatever the method:
//!   nothing was sent;
//! - `500`, `502`, `503`, `504`, and a connection reset or closed before the
//!   answer, for idempotent requests only: `GET` (gets, lists, the start of
//!   watches and log streams), `HEAD`, and server-side apply (`PATCH` with
//!   `application/apply-patch+yaml`), which sets the same fields to the same
//!   values however often it lands. A `POST` (a Job created by hand from a
//!   CronJob) or a `DELETE` that may have landed is never sent twice: the
//!   second would fail with `AlreadyExists` or `NotFound` for what the first
//!   did.
//!
//! Must not: retry an answer the user must act on (401, 403, 404, 409,
//! 422), a certificate the client refuses, a connection refused or timed
//! out (no API server there: the user hears so at once, as from
//! `kubectl`), or a watch that broke after it started (`runtime/watch.rs`
//! resumes those).

use std::error::Error as StdError;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// How many times one request is sent again at most.
pub const RETRIES: u32 = 5;
/// The first backoff; each next one doubles, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// The longest `Retry-After` honoured; a server asking for more is not
/// retried (its answer is the error).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Why a request failed, as far as retrying goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The request did nothing (429, or a connection reset before it was
    /// sent): retried whatever its method.
    NotDone,
    /// It may or may not have landed (5xx, a connection cut before the
    /// answer): retried when sending it twice does no harm.
    Unknown,
}

/// The retry policy of one request (tower clones it per request, so its
/// count is that request's).
#[derive(Debug, Clone, Default)]
pub struct RetryPolicy {
    retried: u32,
}

impl RetryPolicy {
    /// How long to wait before retrying a request that failed as `failure`
    /// (with the server's `Retry-After`, if it sent one); `None`: not
    /// retried.
    fn delay(
        &mut self,
        idempotent: bool,
        failure: Failure,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        if self.retried >= RETRIES || (failure == Failure::Unknown && !idempotent) {
            return None;
        }
        let delay = match retry_after {
            Some(wait) if wait > MAX_RETRY_AFTER => return None,
            Some(wait) => wait,
            None => backoff(self.retried, jitter()),
        };
        self.retried += 1;
        Some(delay)
    }
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for RetryPolicy {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        req: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let (failure, retry_after, what) = match result {
            Ok(res) => (
                status_failure(res.status())?,
                retry_after(res.headers()),
                res.status().to_string(),
            ),
            Err(e) => (
                error_failure(e.as_ref())?,
                None,
                crate::errors::root_cause(e.as_ref()),
            ),
        };
        let delay = self.delay(is_idempotent(req), failure, retry_after)?;
        tracing::debug!(
            "{} {}: {what}; retry {} of {RETRIES} in {} ms",
            req.method(),
            req.uri().path(),
            self.retried,
            delay.as_millis()
        );
        Some(tokio::time::sleep(delay))
    }

    fn clone_request(&mut self, req: &Request<Body>) -> Option<Request<Body>> {
        // Bodies kube sends whole can be sent again; a streamed one cannot.
        let body = req.body().try_clone()?;
        let mut copy = Request::new(body);
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }
}

/// Whether sending `req` twice does what sending it once does.
fn is_idempotent<B>(req: &Request<B>) -> bool {
    match *req.method() {
        Method::GET | Method::HEAD | Method::OPTIONS => true,
        Method::PATCH => req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/apply-patch")),
        _ => false,
    }
}

fn status_failure(status: StatusCode) -> Option<Failure> {
    match status.as_u16() {
        429 => Some(Failure::NotDone),
        500 | 502 | 503 | 504 => Some(Failure::Unknown),
        _ => None,
    }
}

/// How a transport error failed the request, when it is one that passes:
/// a connection reset or cut. A connection refused or timed out, TLS errors
/// (a certificate refused) and the like are not.
fn error_failure(err: &(dyn StdError + 'static)) -> Option<Failure> {
    let mut connecting = false;
    let mut cut = false;
    for e in crate::errors::causes(err) {
        if let Some(e) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            connecting |= e.is_connect();
        }
        if let Some(e) = e.downcast_ref::<hyper::Error>() {
            // The server closed the connection before answering.
            cut |= e.is_incomplete_message();
        }
        if let Some(e) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            match e.kind() {
                ConnectionReset | ConnectionAborted | NotConnected | BrokenPipe | UnexpectedEof => {
                    cut = true
                }
                // A wrapper (hyper-rustls wraps TLS errors): what it wraps says.
                Other if e.get_ref().is_some() => {}
                // Nobody there, TLS, and other errors an attempt more does
                // not change.
                _ => return None,
            }
        }
    }
    match (connecting, cut) {
        (true, true) => Some(Failure::NotDone),
        (false, true) => Some(Failure::Unknown),
        _ => None,
    }
}

/// `Retry-After` in seconds (the API server never sends a date).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The `n`th backoff (from 0): [`FIRST_BACKOFF`] doubled `n` times, at
/// most [`MAX_BACKOFF`], scaled into its upper half by `jitter` (0..1), so
/// that clients refused together do not come back together.
fn backoff(n: u32, jitter: f64) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(2u32.saturating_pow(n))
        .min(MAX_BACKOFF);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in 0..1, different each call.
fn jitter() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn request(method: Method, content_type: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        *req.method_mut() = method;
        if let Some(ct) = content_type {
            req.headers_mut()
                .insert(http::header::CONTENT_TYPE, ct.parse().unwrap());
        }
        req
    }

    #[test]
    fn reads_and_server_side_applies_are_idempotent_creates_and_merges_are_not() {
        assert!(is_idempotent(&request(Method::GET, None)));
        assert!(is_idempotent(&request(
            Method::PATCH,
            Some("application/apply-patch+yaml")
        )));
        assert!(!is_idempotent(&request(
            Method::PATCH,
            Some("application/merge-patch+json")
        )));
        assert!(!is_idempotent(&request(Method::POST, None)));
        assert!(!is_idempotent(&request(Method::DELETE, None)));
    }

    #[test]
    fn a_request_that_may_have_landed_is_retried_only_when_idempotent() {
        let mut policy = RetryPolicy::default();
        assert_eq!(policy.delay(false, Failure::Unknown, None), None);
        assert!(policy.delay(true, Failure::Unknown, None).is_some());
        // 429 and a connection never made: nothing happened, any method.
        assert!(policy.delay(false, Failure::NotDone, None).is_some());
    }

    #[test]
    fn retries_are_bounded_and_honour_retry_after() {
        let mut policy = RetryPolicy::default();
        let after = Duration::from_secs(3);
        for _ in 0..RETRIES {
            assert_eq!(
                policy.delay(true, Failure::Unknown, Some(after)),
                Some(after)
            );
        }
        assert_eq!(policy.delay(true, Failure::Unknown, Some(after)), None);
        assert_eq!(policy.delay(false, Failure::NotDone, None), None);
        // A server asking for more than we wait is answered with its error.
        let mut policy = RetryPolicy::default();
        let long = MAX_RETRY_AFTER + Duration::from_secs(1);
        assert_eq!(policy.delay(true, Failure::NotDone, Some(long)), None);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(250));
        assert_eq!(backoff(0, 0.0), Duration::from_millis(125));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(10, 1.0), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX, 0.0), MAX_BACKOFF / 2);
        let total: Duration = (0..RETRIES).map(|n| backoff(n, 1.0)).sum();
        assert!(total < Duration::from_secs(10), "{total:?}");
        let j = jitter();
        assert!((0.0..1.0).contains(&j), "{j}");
    }

    #[test]
    fn which_answers_and_errors_are_retried() {
        assert_eq!(
            status_failure(StatusCode::TOO_MANY_REQUESTS),
            Some(Failure::NotDone)
        );
        for code in [500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_failure(status), Some(Failure::Unknown), "{code}");
        }
        for code in [400, 401, 403, 404, 409, 410, 422, 501] {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(status_failure(status), None, "{code}");
        }
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(error_failure(&reset), Some(Failure::Unknown));
        let tls = io::Error::new(io::ErrorKind::InvalidData, "invalid peer certificate");
        assert_eq!(error_failure(&io::Error::other(tls)), None);
        // A reset during the TLS handshake, as hyper-rustls wraps it.
        let wrapped = io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(error_failure(&wrapped), Some(Failure::Unknown));
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(http::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers), None);
    }

    #[tokio::test]
    async fn a_refused_connection_is_not_retried() {
        // A port nothing listens on: the client's own error, as it comes.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
        let err = client.get(uri).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        assert_eq!(error_failure(&err), None);
    }
}
