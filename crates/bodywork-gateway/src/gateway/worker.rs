//! The gateway's worker threads: each a single-threaded runtime serving the
//! client connections it is handed (HTTP/1.1, keep-alive, idle timeout),
//! checking their deadlines and closing expired idle upstream connections
//! on the ticks it is sent, and letting open connections finish their
//! current request on a shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Gateway, handler};
use crate::forward::ForwardedFor;
use crate::listener::Slot;
use crate::server;

/// What the accept loop hands a worker.
pub(super) enum Handed {
    /// A client connection to serve.
    Connection(std::net::TcpStream, SocketAddr, Slot),
    /// Check the connections' deadlines ([`crate::deadline`]); with
    /// `sweep`, also close expired idle upstream connections.
    Tick { sweep: bool },
}

/// One worker thread: a single-threaded runtime serving the connections it is handed.
pub(super) fn worker(
    mut connections: mpsc::UnboundedReceiver<Handed>,
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
        // No tokio timer is registered here while requests flow (see
        // `crate::deadline`): the accept loop's ticks drive the deadlines
        // and the upstream pool's housekeeping.
        loop {
            tokio::select! {
                handed = connections.recv() => match handed {
                    Some(Handed::Tick { sweep }) => {
                        gateway.deadlines.tick();
                        if sweep {
                            gateway.pool.sweep();
                        }
                    }
                    Some(Handed::Connection(stream, peer, slot)) => match TcpStream::from_std(stream) {
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
    let deadline = gateway.deadlines.register();
    server::serve(
        stream,
        idle,
        &deadline,
        stop,
        |request| gateway.handle(request, &client, &deadline),
        |status, why| handler::error(status, why, None, None),
    )
    .await;
    drop(slot);
}
