//! The accept loop shared by the gateway and the cluster-address balancers:
//! waits for the next connection or for shutdown, survives transient accept
//! errors (a client resetting early, running out of file descriptors) and
//! sets `TCP_NODELAY` on every accepted socket.
//!
//! It must not serve connections itself; callers spawn a task per connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Back-off after an accept error that is not the peer's fault (e.g. EMFILE).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// The next accepted connection, or `None` once `shutdown` fires.
pub(crate) async fn accept_or_shutdown(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Small request/response exchanges must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Some((stream, peer));
            }
            Err(err) if is_peer_error(&err) => {}
            Err(err) => {
                tracing::warn!("accepting a connection failed: {err}");
                tokio::select! {
                    () = shutdown.cancelled() => return None,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

fn is_peer_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}
