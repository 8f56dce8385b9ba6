//! Sequential keep-alive requests over one connection, for the gateway
//! benchmark (`bench/gateway.sh`): prints `p50_us p90_us p99_us` of the
//! request round trips. A server answering `Connection: close` gets a new
//! connection for the next request, its connect timed as part of it, and
//! so does every request with `BENCH_NEW_CONNECTION=1` (the cost of a new
//! connection, e.g. through a cluster address, which looks at each
//! connection's first bytes).
//!
//! Usage: `bench_latency URL [REQUESTS] [POST_BODY]` with URL like
//! `http://127.0.0.1:18001/bench/up/`; a POST_BODY sends JSON POSTs.

use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url: hyper::Uri = args
        .next()
        .ok_or("usage: bench_latency URL [REQUESTS] [POST_BODY]")?
        .parse()?;
    let requests: usize = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let body = args.next();
    let new_connections = std::env::var("BENCH_NEW_CONNECTION").is_ok_and(|v| v == "1");
    if requests == 0 {
        return Err("REQUESTS must be at least 1".into());
    }
    let authority = url.authority().ok_or("URL needs host:port")?.clone();
    let path = url.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let connect = || async {
            let stream = TcpStream::connect(authority.as_str()).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                    .await?;
            tokio::spawn(conn);
            Ok::<_, Box<dyn std::error::Error>>(sender)
        };
        let mut connection = None;
        let warmup = requests / 10;
        let mut samples = Vec::with_capacity(requests);
        for i in 0..warmup + requests {
            let mut request = Request::builder()
                .uri(path.as_str())
                .header("host", authority.as_str());
            let payload = match &body {
                Some(b) => {
                    request = request
                        .method("POST")
                        .header("content-type", "application/json");
                    Bytes::copy_from_slice(b.as_bytes())
                }
                None => Bytes::new(),
            };
            let request = request.body(Full::new(payload))?;
            let started = Instant::now();
            // A server that closes after each answer (Flask's development
            // server) costs a connect per request, timed like the request.
            let mut sender = match connection.take() {
                Some(sender) => sender,
                None => connect().await?,
            };
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let closes = response
                .headers()
                .get("connection")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
            response.into_body().collect().await?;
            if !closes && !new_connections {
                connection = Some(sender);
            }
            if !status.is_success() {
                return Err(format!("request answered {status}").into());
            }
            if i >= warmup {
                samples.push(started.elapsed());
            }
        }
        samples.sort();
        let pct = |p: f64| -> f64 {
            let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
            samples[i].as_secs_f64() * 1e6
        };
        println!("{:.1} {:.1} {:.1}", pct(0.50), pct(0.90), pct(0.99));
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
