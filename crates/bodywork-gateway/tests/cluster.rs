//! Cluster addresses: the TCP balancer in front of a service's replicas.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bodywork_gateway::{Traffic, serve_cluster_address};
use common::{StaticDirectory, refused_addr, wait_until};
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

/// Open a connection, say `hello`, return who answered.
async fn ask(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
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
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 16];
    let n = stream.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"a: ping");
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
