//! Keep-alive HTTP/1.1 connections to replicas, pooled per replica address.
//!
//! A connection is checked out for one request and checked back in by the
//! response body once its last byte has passed (no task per request, unlike
//! hyper-util's legacy client). Connecting is a separate step from sending, so
//! a refused connect leaves the request untouched for another replica.
//! This module must not pick replicas or rewrite requests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::UpstreamBody;

/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// At most this many idle connections are kept per replica.
const MAX_IDLE_PER_REPLICA: usize = 256;

/// Pooled connections to every replica the gateway has talked to.
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    connect_timeout: Duration,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// One connection to a replica, ready to send a request.
pub(crate) struct Conn {
    /// Sends requests on the connection.
    pub(crate) sender: SendRequest<UpstreamBody>,
    /// The replica's address as a `Host` header value.
    pub(crate) host: HeaderValue,
    /// Where the connection goes.
    pub(crate) replica: SocketAddr,
    /// Whether this connection served requests before (it may have gone stale).
    pub(crate) reused: bool,
}

impl Pool {
    /// An empty pool whose connects give up after `connect_timeout`.
    pub(crate) fn new(connect_timeout: Duration) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// A ready connection to `replica`: an idle one, else a new one.
    pub(crate) async fn checkout(&self, replica: SocketAddr) -> std::io::Result<Conn> {
        while let Some(mut conn) = self.pop_idle(replica) {
            if conn.sender.ready().await.is_ok() {
                conn.reused = true;
                return Ok(conn);
            }
        }
        self.connect(replica).await
    }

    /// Give a connection back after its response ended cleanly.
    pub(crate) fn checkin(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(conn.replica).or_default();
        list.retain(|i| !i.conn.sender.is_closed());
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Close idle connections that expired or whose replica hung up, and
    /// forget replicas left with none.
    pub(crate) fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain(|i| i.since.elapsed() < IDLE_TIMEOUT && !i.conn.sender.is_closed());
            !list.is_empty()
        });
    }

    /// How many idle connections the pool holds.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.values().map(Vec::len).sum()
    }

    fn pop_idle(&self, replica: SocketAddr) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&replica)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && !entry.conn.sender.is_closed() {
                return Some(entry.conn);
            }
        }
        // Forget replicas with nothing idle, so departed replicas leave no trace.
        idle.remove(&replica);
        None
    }

    async fn connect(&self, replica: SocketAddr) -> std::io::Result<Conn> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(replica))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connect timed out after {} ms",
                        self.connect_timeout.as_millis()
                    ),
                )
            })??;
        stream.set_nodelay(true)?;
        let (sender, connection) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("connection to replica {replica} ended: {err}");
            }
        });
        let host = HeaderValue::from_maybe_shared(Bytes::from(replica.to_string()))
            .map_err(std::io::Error::other)?;
        Ok(Conn {
            sender,
            host,
            replica,
            reused: false,
        })
    }
}

/// A connection lent to one response; returned to the pool when the body ends.
pub(crate) struct Lease {
    pool: Arc<Pool>,
    conn: Option<Conn>,
}

impl Lease {
    /// Lend `conn` until [`Lease::release`] (reusable) or drop (discarded).
    pub(crate) fn new(pool: Arc<Pool>, conn: Conn) -> Self {
        Lease {
            pool,
            conn: Some(conn),
        }
    }

    /// The response ended cleanly: the connection may serve the next request.
    pub(crate) fn release(mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.checkin(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sweep_drops_connections_the_replica_closed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(1));
        let conn = pool.checkout(addr).await.unwrap();
        pool.checkin(conn);
        assert_eq!(pool.idle_count(), 1);
        pool.sweep();
        assert_eq!(pool.idle_count(), 1, "an open idle connection stays");
        // The replica accepts, then hangs up.
        let (accepted, _) = listener.accept().await.unwrap();
        drop(accepted);
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.idle_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
            pool.sweep();
        }
        assert_eq!(pool.idle_count(), 0);
    }

    #[tokio::test]
    async fn refused_connect_is_an_error_not_a_panic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let pool = Pool::new(Duration::from_secs(1));
        let err = pool.checkout(addr).await.err().unwrap();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    }
}
