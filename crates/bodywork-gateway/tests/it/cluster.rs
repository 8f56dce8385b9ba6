//! Cluster addresses: the TCP balancer in front of a service's replicas.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::helper::{StaticDirectory, refused_addr, wait_until};
use bodywork_gateway::{ConnectionLimit, Traffic, serve_cluster_address};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A TCP replica answering every line it reads with `NAME: LINE`.
async fn replica(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let reply = format!("{name}: {}", String::from_utf8_lossy(&buf[..n]));
                            if stream.write_all(reply.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

struct Cluster {
    addr: SocketAddr,
    directory: Arc<StaticDirectory>,
    traffic: Arc<Traffic>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

async fn cluster(replicas: &[SocketAddr]) -> Cluster {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let directory = Arc::new(StaticDirectory::default());
    directory.set("ns", "web", replicas);
    let traffic = Traffic::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_cluster_address(
        listener,
        "ns".into(),
        "web".into(),
        directory.clone(),
        traffic.clone(),
        ConnectionLimit::new(64),
        shutdown.clone(),
    ));
    Cluster {
        addr,
        directory,
        traffic,
        shutdown,
        task,
    }
}

/// Open a connection, say `hello` (a line), return who answered.
async fn ask(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
}

#[tokio::test]
async fn connections_are_spread_over_both_replicas() {
    let a = replica("a").await;
    let b = replica("b").await;
    let c = cluster(&[a, b]).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(ask(c.addr).await);
    }
    assert_eq!(
        answers.iter().filter(|s| *s == "a: hello").count(),
        2,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|s| *s == "b: hello").count(),
        2,
        "{answers:?}"
    );
}

#[tokio::test]
async fn a_refused_replica_is_skipped() {
    let a = replica("a").await;
    let dead = refused_addr().await;
    let c = cluster(&[dead, a]).await;
    for _ in 0..4 {
        assert_eq!(ask(c.addr).await, "a: hello");
    }
    let metrics = c.traffic.render_metrics();
    assert!(
        metrics.contains(
            r#"bodywork_gateway_errors_total{namespace="ns",service="web",kind="connect"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"bodywork_cluster_connections_total{namespace="ns",service="web"} 4"#)
    );
}

#[tokio::test]
async fn open_connections_count_as_in_flight() {
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    let mut stream = TcpStream::connect(c.addr).await.unwrap();
    stream.write_all(b"ping\n").await.unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"a: ping\n");
    assert_eq!(c.traffic.in_flight(a), 1);
    drop(stream);
    let traffic = c.traffic.clone();
    wait_until("the connection is released", || traffic.in_flight(a) == 0).await;
}

#[tokio::test]
async fn no_ready_replica_closes_the_connection() {
    let c = cluster(&[]).await;
    let mut stream = TcpStream::connect(c.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // Once a replica is ready, new connections go through.
    let a = replica("a").await;
    c.directory.set("ns", "web", &[a]);
    assert_eq!(ask(c.addr).await, "a: hello");
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    assert_eq!(ask(c.addr).await, "a: hello");
    c.shutdown.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), c.task)
        .await
        .expect("serve_cluster_address returns after shutdown")
        .unwrap();
    assert!(result.is_ok());
    assert!(TcpStream::connect(c.addr).await.is_err());
}

/// Send `request` on a new connection, close the sending side, and read
/// everything that comes back.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// What replica "a" echoed, its `a: ` prefixes (one per read) removed.
fn echoed(answer: &str) -> String {
    assert!(answer.starts_with("a: "), "{answer:?}");
    answer.replace("a: ", "")
}

#[tokio::test]
async fn an_http_request_for_a_foreign_host_is_refused_at_the_cluster_address() {
    // DNS rebinding: a web page whose own name resolves to the cluster
    // address must not reach the service through the visitor's browser.
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    for host in ["evil.example", "evil.example:5000", "web.other", "10.0.0.1"] {
        let request = format!("GET /admin HTTP/1.1\r\nHost: {host}\r\nAccept: */*\r\n\r\n");
        let answer = exchange(c.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{host}: {answer}");
        let (_, body) = answer.split_once("\r\n\r\n").unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["namespace"], "ns");
        assert_eq!(body["service"], "web");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(host), "{message}");
    }
}

#[tokio::test]
async fn an_http_request_for_the_services_names_or_loopback_passes_untouched() {
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    for host in [
        "web",
        "web:5000",
        "web.ns",
        "web.ns.svc",
        "web.ns.svc.cluster.local:5000",
        "localhost:5000",
        "127.10.0.1:5000",
        "[::1]:5000",
    ] {
        let request =
            format!("POST /score HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\n{{\"x\"}}");
        let answer = exchange(c.addr, request.as_bytes()).await;
        assert_eq!(echoed(&answer), request, "{host}");
    }
}

#[tokio::test]
async fn a_malformed_http_head_is_400_at_the_cluster_address() {
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    for request in [
        "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: web\r\nHost: evil.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: web:65536\r\n\r\n",
        "GET http://evil.example/ HTTP/1.1\r\nHost: web\r\n\r\n",
    ] {
        let answer = exchange(c.addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{request:?}: {answer}");
    }
}

#[tokio::test]
async fn other_protocols_pass_untouched_and_at_once() {
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    for request in [
        &b"SET key value\r\n"[..],
        b"*1\r\n$4\r\nPING\r\n",
        b"\x16\x03\x01\x00\x05hello",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        // Sent without closing: the answer must come while the client waits.
        let mut stream = TcpStream::connect(c.addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 256];
        while answer.len() < request.len() + 3 {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an answer in time")
                .unwrap();
            assert!(n > 0, "closed after {answer:?}");
            answer.extend_from_slice(&buf[..n]);
        }
        let mut expected = b"a: ".to_vec();
        expected.extend_from_slice(request);
        assert_eq!(answer, expected);
    }
}

#[tokio::test]
async fn a_replica_that_speaks_first_is_heard_before_the_client_says_anything() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let greeter = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(b"220 ready\r\n").await;
                let mut buf = [0u8; 64];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let c = cluster(&[greeter]).await;
    let mut stream = TcpStream::connect(c.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the greeting in time")
        .unwrap();
    assert_eq!(&buf[..n], b"220 ready\r\n");
    // An HTTP-looking line after the greeting is the protocol's business.
    stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the echo in time")
        .unwrap();
    assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
}

#[tokio::test]
async fn a_bare_word_that_could_start_a_request_passes_after_a_short_wait() {
    // `hello` could be the method of an HTTP request whose next bytes are
    // on their way; a client that says no more and waits is taken for
    // another protocol after half a second.
    let a = replica("a").await;
    let c = cluster(&[a]).await;
    let mut stream = TcpStream::connect(c.addr).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    assert_eq!(&buf[..n], b"a: hello");
}

#[tokio::test]
async fn a_replica_whose_new_connection_is_refused_gets_no_connection() {
    let a = replica("a").await;
    let b = replica("b").await;
    let c = cluster(&[a, b]).await;
    c.directory
        .refuse(a, "pod address held by pid 1234 (python3 squat.py)");
    for _ in 0..4 {
        assert_eq!(ask(c.addr).await, "b: hello");
    }
    // Each connection to b was vetted before it was opened and once open.
    assert!(c.directory.vettings() >= 8);
}
