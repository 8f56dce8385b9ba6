//! The gateway's accept loop: starts the worker threads, accepts client
//! connections under the connection limit (backing off when the process is
//! out of file descriptors), and hands each to a worker in turn.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::worker::{Handed, worker};
use super::{Gateway, GatewayOptions};
use crate::Directory;
use crate::deadline::{Deadlines, TICK};
use crate::listener::{AcceptBackoff, ConnectionLimit, accept_or_shutdown};
use crate::pool::SWEEP_INTERVAL;
use crate::traffic::Traffic;

/// At most this many gateway worker threads, however many cores there are.
const MAX_WORKERS: usize = 4;

/// Serve the gateway on `listener` until `shutdown` fires; the future then
/// ends once open client connections have finished their current request
/// and closed.
///
/// Connections are served on a few worker threads of the gateway's own (one
/// per core, at most 4), each a single-threaded runtime with its own upstream
/// pool: a request then never hops between threads, which on a busy machine
/// is worth a third of the throughput compared with a work-stealing runtime.
/// This future only accepts and hands connections out.
pub async fn serve_gateway(
    listener: TcpListener,
    directory: Arc<dyn Directory>,
    traffic: Arc<Traffic>,
    opts: GatewayOptions,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let count = opts
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, MAX_WORKERS);
    let mut workers = Vec::with_capacity(count);
    let mut ticked = Vec::with_capacity(count);
    let mut threads = Vec::with_capacity(count);
    for i in 0..count {
        let (tx, rx) = mpsc::unbounded_channel();
        let deadlines = Arc::new(Deadlines::new());
        ticked.push((tx.clone(), deadlines.clone()));
        let gateway = Gateway::new(directory.clone(), traffic.clone(), deadlines, opts.clone());
        let shutdown = shutdown.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("bodywork-gateway-{i}"))
                .spawn(move || worker(rx, gateway, shutdown))?,
        );
        workers.push(tx);
    }
    // Stopped with this future, even one dropped before its end: the
    // ticker holds the workers' channels, which must close for them to end.
    let ticker = StopOnDrop(tokio::spawn(tick(ticked)));
    let limit = ConnectionLimit::new(opts.max_connections);
    let mut backoff = AcceptBackoff::new(match listener.local_addr() {
        Ok(addr) => format!("the gateway ({addr})"),
        Err(_) => "the gateway".to_string(),
    });
    let mut next = 0;
    while let Some((stream, peer, slot)) =
        accept_or_shutdown(&listener, &limit, &mut backoff, &shutdown).await
    {
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::warn!("cannot hand over the connection from {peer}: {err}");
                continue;
            }
        };
        // Round-robin; a worker whose thread died is skipped.
        let mut handoff = Handed::Connection(stream, peer, slot);
        let mut delivered = false;
        for _ in 0..workers.len() {
            next = (next + 1) % workers.len();
            match workers[next].send(handoff) {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(mpsc::error::SendError(back)) => handoff = back,
            }
        }
        if !delivered {
            return Err(std::io::Error::other(
                "every gateway worker thread has stopped",
            ));
        }
    }
    // Shut down: the workers finish the requests in flight, then end.
    drop(ticker);
    drop(workers);
    let _ = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    })
    .await;
    Ok(())
}

/// A task aborted when this is dropped.
struct StopOnDrop(tokio::task::JoinHandle<()>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Send each worker its ticks: every [`TICK`] while it has connections (to
/// check their deadlines), and every [`SWEEP_INTERVAL`] in any case (to
/// close expired idle upstream connections too).
async fn tick(workers: Vec<(mpsc::UnboundedSender<Handed>, Arc<Deadlines>)>) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let every = (SWEEP_INTERVAL.as_millis() / TICK.as_millis()).max(1);
    let mut ticks: u128 = 0;
    loop {
        interval.tick().await;
        ticks += 1;
        let sweep = ticks.is_multiple_of(every);
        for (worker, deadlines) in &workers {
            if sweep || deadlines.any() {
                let _ = worker.send(Handed::Tick { sweep });
            }
        }
    }
}
