//! The tests' one HTTP client: hyper-util's, one request per connection,
//! for tests that are plain threads (each call runs on a small runtime of
//! its own).

use std::io;
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_TYPE, HeaderMap};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// How long a request may take, connection to last byte.
const LIMIT: Duration = Duration::from_secs(20);

/// An HTTP answer: status, headers and body (lossily UTF-8).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    /// A header's value, if it is present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }
}

/// `METHOD path` on `addr` (`host:port`), with a JSON body if given.
pub fn request(addr: &str, method: &str, path: &str, body: Option<&str>) -> io::Result<Answer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build_http::<Full<Bytes>>();
        let request = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header(CONNECTION, "close")
            .header(CONTENT_TYPE, "application/json")
            .body(Full::from(body.unwrap_or_default().to_owned()))
            .map_err(io::Error::other)?;
        let answer = tokio::time::timeout(LIMIT, async {
            let response = client.request(request).await.map_err(io::Error::other)?;
            let (head, body) = response.into_parts();
            let body = body.collect().await.map_err(io::Error::other)?.to_bytes();
            Ok::<_, io::Error>(Answer {
                status: head.status.as_u16(),
                headers: head.headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            })
        })
        .await
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{method} {path}: no answer in {LIMIT:?}"),
            )
        })??;
        Ok(answer)
    })
}

/// [`request`], as status code and body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> io::Result<(u16, String)> {
    request(addr, method, path, body).map(|a| (a.status, a.body))
}
