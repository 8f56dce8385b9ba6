//! The gateway's worker threads: each a single-threaded runtime serving the
//! client connections it is handed (HTTP/1.1, keep-alive, idle timeout),
//! closing expired idle upstream connections, and letting open connections
//! finish their current request on a shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Gateway, handler};
use crate::forward::ForwardedFor;
use crate::listener::Slot;
use crate::server;

/// How often a worker closes expired idle upstream connections.
const HOUSEKEEPING: Duration = crate::pool::SWEEP_INTERVAL;

/// One worker thread: a single-threaded runtime serving the connections it is handed.
pub(super) fn worker(
    mut connections: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr, Slot)>,
    gateway: Gateway,
    shutdown: CancellationToken,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("cannot start a gateway worker: {err}");
            return;
        }
    };
    // Cancelled by a shutdown, or when the accept loop goes away.
    let stop = shutdown.child_token();
    runtime.block_on(async move {
        let gateway = Arc::new(gateway);
        let mut served = JoinSet::new();
        // Housekeeping: idle upstream connections past their time are closed.
        // The tick also keeps a timer due within a second, so the per-request
        // timers (connect, upstream, header read) are never the earliest and
        // never have to wake the reactor through its eventfd when registered.
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = housekeeping.tick() => gateway.pool.sweep(),
                handed = connections.recv() => match handed {
                    Some((stream, peer, slot)) => match TcpStream::from_std(stream) {
                        Ok(stream) => {
                            served.spawn(serve_connection(stream, peer, slot, gateway.clone(), stop.clone()));
                        }
                        Err(err) => tracing::warn!("cannot take over the connection from {peer}: {err}"),
                    },
                    None => break,
                },
                Some(_) = served.join_next() => {}
            }
        }
        // Let open connections finish their current request before the runtime goes.
        stop.cancel();
        while served.join_next().await.is_some() {}
    });
}

/// Serve one client connection; its `slot` under the connection limit is
/// given back when it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) {
    let client = ForwardedFor::new(peer.ip());
    let idle = gateway.opts.idle_timeout;
    server::serve(
        stream,
        idle,
        stop,
        |request| gateway.handle(request, &client),
        |status, why| handler::error(status, why, None, None),
    )
    .await;
    drop(slot);
}
