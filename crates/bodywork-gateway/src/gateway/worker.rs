//! The gateway's worker threads: each a single-threaded runtime serving the
//! client connections it is handed (HTTP/1.1, keep-alive, idle timeout),
//! closing expired idle upstream connections, and letting open connections
//! finish their current request on a shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use crate::forward::ForwardedFor;
use crate::listener::Slot;

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
        let mut http = http1::Builder::new();
        // hyper's header read timeout runs from the moment a connection
        // waits for a request head, so it closes idle keep-alive
        // connections as well as slow heads.
        http.timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(gateway.opts.idle_timeout);
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
                            served.spawn(serve_connection(stream, peer, slot, gateway.clone(), http.clone(), stop.clone()));
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

/// How long a connection accepted before a shutdown, whose first request
/// has not been read yet, is given for it to arrive.
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Serve one client connection; its `slot` under the connection limit is
/// given back when it ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    gateway: Arc<Gateway>,
    http: http1::Builder,
    stop: CancellationToken,
) {
    // Holds a permit once a request has started on this connection.
    let started = Arc::new(Notify::new());
    let seen = started.clone();
    let client = ForwardedFor::new(peer.ip());
    let service = service_fn(move |req| {
        seen.notify_one();
        let gateway = gateway.clone();
        let client = client.clone();
        async move { Ok::<_, Infallible>(gateway.handle(req, &client).await) }
    });
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let served = tokio::select! {
        served = conn.as_mut() => served,
        () = stop.cancelled() => {
            // A graceful shutdown closes a connection at once when no
            // request is under way: one accepted just before the stop,
            // whose request is still on its way or unread, would be closed
            // unanswered (as a daemon handing over saw). It gets a moment
            // for that first request, which is then answered.
            let ended = tokio::select! {
                served = conn.as_mut() => Some(served),
                () = started.notified() => None,
                () = tokio::time::sleep(FIRST_REQUEST_GRACE) => None,
            };
            match ended {
                Some(served) => served,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            }
        }
    };
    if let Err(err) = served {
        tracing::debug!("gateway connection from {peer} ended: {err}");
    }
    drop(slot);
}
