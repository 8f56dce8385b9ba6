//! A trivial HTTP/1.1 upstream for the gateway benchmark (`bench/gateway.sh`):
//! answers every request with a small fixed JSON body, keep-alive, no logging.
//!
//! Usage: `bench_upstream [ADDR]` (default 127.0.0.1:18080); `BENCH_THREADS`
//! sets the worker threads (default: one per core).

use std::convert::Infallible;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const ANSWER: &[u8] = br#"{"species_prediction":"setosa","probabilities":"setosa=1.0|versicolor=0.0|virginica=0.0","model_info":"DecisionTreeClassifier(class_weight='balanced', random_state=42)"}"#;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18080".into());
    runtime()?.block_on(async move {
        let listener = TcpListener::bind(&addr).await?;
        eprintln!("bench_upstream listening on {}", listener.local_addr()?);
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    })
}

async fn answer(req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Read (and drop) any request body, as a real service would.
    let _ = req.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// A tokio runtime with `BENCH_THREADS` workers (default: one per core).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        builder.worker_threads(n);
    }
    builder.enable_all().build()
}
