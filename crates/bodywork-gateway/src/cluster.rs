//! A service's cluster address: a TCP (layer 4) balancer spreading client
//! connections round-robin over the service's ready replicas, moving on to the
//! next replica when one refuses the connection (nothing was sent yet, so
//! nothing is lost), and piping bytes both ways until either side closes.
//!
//! It must not look inside the bytes (that is the gateway's job) nor decide
//! which replicas are ready (the [`Directory`] does).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::listener::accept_or_shutdown;
use crate::traffic::{ErrorKind, Traffic};
use crate::{Directory, Vetting};

/// How long connecting to one replica may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A service's cluster address: a TCP (L4) balancer on `listener` (e.g.
/// 127.1.0.7:5000) spreading connections over the ready replicas of
/// (namespace, service), round-robin; a connection refused before any byte was
/// sent is retried on another replica. A client is disconnected at once when
/// no replica is ready or reachable. Runs until `shutdown` fires; connections
/// already piped then run to their natural end.
pub async fn serve_cluster_address(
    listener: TcpListener,
    namespace: String,
    service: String,
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let target = Arc::new((namespace, service));
    while let Some((client, peer)) = accept_or_shutdown(&listener, &shutdown).await {
        let target = target.clone();
        let directory = directory.clone();
        let traffic = traffic.clone();
        tokio::spawn(async move {
            let (namespace, service) = (&target.0, &target.1);
            pipe(client, namespace, service, directory.as_ref(), &traffic).await;
            tracing::trace!("cluster connection from {peer} to {namespace}/{service} closed");
        });
    }
    Ok(())
}

async fn pipe(
    mut client: TcpStream,
    namespace: &str,
    service: &str,
    directory: &dyn Directory,
    traffic: &Traffic,
) {
    let Some(replicas) = directory.ready_replicas(namespace, service) else {
        return;
    };
    let stats = traffic.service(namespace, service);
    stats.record_connection();
    if replicas.is_empty() {
        stats.record_error(ErrorKind::NoReadyReplica);
        return;
    }
    let start = stats.next_start();
    for attempt in 0..replicas.len() {
        let replica = replicas[(start + attempt) % replicas.len()];
        match connect(replica, || directory.vet(namespace, service, replica)).await {
            Ok(mut upstream) => {
                let _in_flight = traffic.track(replica);
                if let Err(err) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!("cluster connection to replica {replica} ended: {err}");
                }
                return;
            }
            Err(err) => {
                tracing::debug!("replica {replica} of {namespace}/{service} refused: {err}");
                stats.record_error(ErrorKind::Connect);
            }
        }
    }
}

/// A new connection to `replica`, which `vet` accepts before it is opened
/// and once it is (see [`Directory::vet`]); dropped unused otherwise.
async fn connect<'a>(
    replica: SocketAddr,
    vet: impl Fn() -> Vetting<'a>,
) -> std::io::Result<TcpStream> {
    vet().await.map_err(std::io::Error::other)?;
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(replica))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    vet().await.map_err(std::io::Error::other)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}
