//! Keep-alive HTTP/1.1 connections to replicas, pooled per replica address.
//!
//! A connection is checked out for one request and checked back in once its
//! answer's last byte has passed; no task watches it in between
//! ([`crate::upstream`] speaks HTTP on it from the request's own task), and
//! whether an idle one is still open is read from the reactor's readiness.
//! Connecting is a separate step from sending, so a refused connect leaves
//! the request untouched for another replica; so does a new connection the
//! caller's vetting refuses (asked before the connect and once connected,
//! never for an idle connection reused).
//! This module must not pick replicas or rewrite requests.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use tokio::net::TcpStream;

use crate::traffic::Traffic;
use crate::upstream::Stream;

/// How often the pool's owner calls [`Pool::sweep`].
pub(crate) const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// [`IDLE_TIMEOUT`] counted in sweeps: a connection's idle age is measured in
/// sweeps since its checkin, so neither a checkin nor a checkout reads the clock.
const IDLE_SWEEPS: u64 = IDLE_TIMEOUT.as_secs() / SWEEP_INTERVAL.as_secs();
/// At most this many idle connections are kept per replica.
const MAX_IDLE_PER_REPLICA: usize = 256;

/// Why [`Pool::checkout`] gave no connection.
#[derive(Debug)]
pub(crate) enum CheckoutError {
    /// Connecting failed.
    Io(std::io::Error),
    /// The vetting refused the new connection: why.
    Refused(String),
}

impl From<std::io::Error> for CheckoutError {
    fn from(err: std::io::Error) -> Self {
        CheckoutError::Io(err)
    }
}

impl fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckoutError::Io(err) => err.fmt(f),
            CheckoutError::Refused(why) => f.write_str(why),
        }
    }
}

/// Pooled connections to every replica the gateway has talked to.
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>>>,
    /// Sweeps so far: the pool's clock, in [`SWEEP_INTERVAL`]s.
    sweeps: AtomicU64,
    connect_timeout: Duration,
    traffic: Arc<Traffic>,
}

struct Idle {
    conn: Conn,
    /// [`Pool::sweeps`] when it was checked in.
    since: u64,
}

impl Idle {
    /// Still worth reusing at sweep `now`.
    fn usable(&mut self, now: u64) -> bool {
        now.saturating_sub(self.since) < IDLE_SWEEPS && self.conn.stream.idle_usable()
    }
}

/// One connection to a replica, ready to send a request.
pub(crate) struct Conn {
    /// The connection.
    pub(crate) stream: Stream,
    /// The replica's address as a `Host` header value.
    pub(crate) host: HeaderValue,
    /// Where the connection goes.
    pub(crate) replica: SocketAddr,
    /// The replica's in-flight counter ([`Traffic::counter`]), looked up
    /// once per connection rather than once per request.
    pub(crate) in_flight: Arc<AtomicUsize>,
    /// Whether this connection served requests before (it may have gone stale).
    pub(crate) reused: bool,
}

impl Pool {
    /// An empty pool whose connects give up after `connect_timeout`; its
    /// connections count their requests in flight in `traffic`.
    pub(crate) fn new(connect_timeout: Duration, traffic: Arc<Traffic>) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            sweeps: AtomicU64::new(0),
            connect_timeout,
            traffic,
        }
    }

    /// A ready connection to `replica`: an idle one, else a new one that
    /// `vet` accepts (asked before connecting and once connected, before
    /// anything is sent: see [`crate::Directory::vet`]).
    pub(crate) async fn checkout<V>(
        &self,
        replica: SocketAddr,
        vet: impl Fn() -> V,
    ) -> Result<Conn, CheckoutError>
    where
        V: Future<Output = Result<(), String>>,
    {
        if let Some(mut conn) = self.pop_idle(replica) {
            conn.reused = true;
            return Ok(conn);
        }
        vet().await.map_err(CheckoutError::Refused)?;
        self.connect(replica, vet).await
    }

    /// Give a connection back after its response ended cleanly.
    pub(crate) fn checkin(&self, mut conn: Conn) {
        if !conn.stream.idle_usable() {
            return;
        }
        let since = self.sweeps.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.entry(conn.replica).or_default();
        if list.len() < MAX_IDLE_PER_REPLICA {
            list.push(Idle { conn, since });
        }
    }

    /// Close idle connections that expired or whose replica hung up, and
    /// forget replicas left with none; called every [`SWEEP_INTERVAL`].
    pub(crate) fn sweep(&self) {
        let now = self.sweeps.fetch_add(1, Ordering::Relaxed) + 1;
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|_, list| {
            list.retain_mut(|i| i.usable(now));
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
        let now = self.sweeps.load(Ordering::Relaxed);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(&replica)?;
        while let Some(mut entry) = list.pop() {
            if entry.usable(now) {
                return Some(entry.conn);
            }
        }
        // Forget replicas with nothing idle, so departed replicas leave no trace.
        idle.remove(&replica);
        None
    }

    async fn connect<V>(
        &self,
        replica: SocketAddr,
        vet: impl Fn() -> V,
    ) -> Result<Conn, CheckoutError>
    where
        V: Future<Output = Result<(), String>>,
    {
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
        // Nothing sent yet: a socket that began listening for the replica's
        // address since the first look cannot have it.
        vet().await.map_err(CheckoutError::Refused)?;
        stream.set_nodelay(true)?;
        let host = HeaderValue::from_maybe_shared(Bytes::from(replica.to_string()))
            .map_err(|err| CheckoutError::Io(std::io::Error::other(err)))?;
        Ok(Conn {
            stream: Stream::new(stream),
            host,
            replica,
            in_flight: self.traffic.counter(replica),
            reused: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    /// A listener and a pool holding one idle connection to it.
    async fn one_idle() -> (tokio::net::TcpListener, SocketAddr, Pool) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(1), Traffic::new());
        let conn = pool.checkout(addr, allow).await.unwrap();
        pool.checkin(conn);
        (listener, addr, pool)
    }

    #[tokio::test]
    async fn an_idle_connection_expires_after_the_idle_timeout_in_sweeps() {
        let (_listener, addr, pool) = one_idle().await;
        for _ in 1..IDLE_SWEEPS {
            pool.sweep();
        }
        assert_eq!(pool.idle_count(), 1, "idle for less than the timeout: kept");
        let conn = pool.checkout(addr, allow).await.unwrap();
        assert!(conn.reused);
        pool.checkin(conn);
        for _ in 1..IDLE_SWEEPS {
            pool.sweep();
        }
        assert_eq!(
            pool.idle_count(),
            1,
            "a checkin starts its idle time afresh"
        );
        pool.sweep();
        assert_eq!(pool.idle_count(), 0, "idle for the timeout: closed");
    }

    #[tokio::test]
    async fn sweep_drops_connections_the_replica_closed() {
        let (listener, _addr, pool) = one_idle().await;
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
        let pool = Pool::new(Duration::from_secs(1), Traffic::new());
        let err = pool.checkout(addr, allow).await.err().unwrap();
        assert!(
            matches!(&err, CheckoutError::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err:?}"
        );
    }

    async fn allow() -> Result<(), String> {
        Ok(())
    }

    #[tokio::test]
    async fn a_new_connection_is_vetted_before_and_after_connecting_and_a_pooled_one_not() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::new(Duration::from_secs(1), Traffic::new());
        let asked = AtomicUsize::new(0);
        let count = || {
            asked.fetch_add(1, Ordering::Relaxed);
            allow()
        };
        let conn = pool.checkout(addr, count).await.unwrap();
        assert_eq!(asked.load(Ordering::Relaxed), 2);
        pool.checkin(conn);
        let conn = pool.checkout(addr, count).await.unwrap();
        assert!(conn.reused);
        assert_eq!(
            asked.load(Ordering::Relaxed),
            2,
            "a pooled connection is not vetted"
        );
        drop(conn);

        // Refused before connecting: nothing reaches the replica.
        let refuse = || async { Err::<(), _>("held by pid 1".to_string()) };
        let err = pool.checkout(addr, refuse).await.err().unwrap();
        assert!(
            matches!(&err, CheckoutError::Refused(why) if why == "held by pid 1"),
            "{err:?}"
        );
        // Refused once connected: the connection is closed, nothing sent.
        let second = AtomicUsize::new(0);
        let refuse_second = || {
            let n = second.fetch_add(1, Ordering::Relaxed);
            async move {
                if n == 0 {
                    Ok(())
                } else {
                    Err("appeared".to_string())
                }
            }
        };
        let err = pool.checkout(addr, refuse_second).await.err().unwrap();
        assert!(matches!(err, CheckoutError::Refused(_)), "{err:?}");
        // The first accepted connection is the pooled one; then the one
        // refused once open: closed, with nothing written to it.
        let (_pooled, _) = listener.accept().await.unwrap();
        let (mut refused, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut refused, &mut buf),
        )
        .await
        .expect("closed, not left open");
        assert_eq!(read.unwrap_or(0), 0);
    }
}
