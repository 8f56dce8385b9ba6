//! The accept loop shared by the gateway and the cluster-address balancers:
//! waits for a free connection slot, then for the next connection or for
//! shutdown; survives accept errors (a client resetting early, running out of
//! file descriptors) by backing off; and sets `TCP_NODELAY` on every accepted
//! socket. [`AcceptBackoff`] is public so the daemon's own socket backs off
//! the same way.
//!
//! It must not serve connections itself; callers spawn a task per connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The first pause after an accept error that is not the peer's fault
/// (e.g. EMFILE); it doubles at each failure in a row, up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// The longest pause between two accepts while they keep failing.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While accepts keep failing, how often a line says so again.
const REMINDER: Duration = Duration::from_secs(60);

/// How an accept loop meets errors: the peer's own (a connection reset
/// before it was accepted) are skipped at once; any other (out of file
/// descriptors, of buffers, of memory) pauses the loop 10 ms, doubling at
/// each failure in a row up to 1 s, since retrying at once would fail again
/// at once and spin. It is logged once when the failures start, once a
/// minute while they last, and once when accepting works again, never per
/// failure.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: String,
    next_pause: Duration,
    failing: Option<Failing>,
    /// Lines logged, for tests.
    said: u64,
}

#[derive(Debug)]
struct Failing {
    since: Instant,
    failures: u64,
    last_said: Instant,
}

impl AcceptBackoff {
    /// A back-off for the listener described by `what` (e.g. "the gateway
    /// on 127.0.0.1:8001"), as log lines name it.
    pub fn new(what: impl Into<String>) -> AcceptBackoff {
        AcceptBackoff {
            what: what.into(),
            next_pause: BACKOFF_FIRST,
            failing: None,
            said: 0,
        }
    }

    /// An accept succeeded: a back-off in progress ends, and says so.
    pub fn succeeded(&mut self) {
        if let Some(failing) = self.failing.take() {
            self.said += 1;
            tracing::warn!(
                "accepting connections on {} works again, after {} failed attempt(s) over {:.1} s",
                self.what,
                failing.failures,
                failing.since.elapsed().as_secs_f64()
            );
        }
        self.next_pause = BACKOFF_FIRST;
    }

    /// An accept failed with `err`: how long to pause before the next one
    /// (zero for an error of the peer's).
    pub fn failed(&mut self, err: &std::io::Error) -> Duration {
        if is_peer_error(err) {
            return Duration::ZERO;
        }
        let now = Instant::now();
        let pause = self.next_pause;
        self.next_pause = (pause * 2).min(BACKOFF_MAX);
        match &mut self.failing {
            None => {
                self.failing = Some(Failing {
                    since: now,
                    failures: 1,
                    last_said: now,
                });
                self.said += 1;
                tracing::warn!(
                    "accepting a connection on {} failed: {err}{}; retrying after a pause \
                     ({} ms, doubling up to {} s) until it works",
                    self.what,
                    hint(err),
                    pause.as_millis(),
                    BACKOFF_MAX.as_secs()
                );
            }
            Some(failing) => {
                failing.failures += 1;
                if now.duration_since(failing.last_said) >= REMINDER {
                    failing.last_said = now;
                    self.said += 1;
                    tracing::warn!(
                        "accepting connections on {} still fails ({err}): {} failed attempt(s) \
                         over {:.0} s",
                        self.what,
                        failing.failures,
                        now.duration_since(failing.since).as_secs_f64()
                    );
                }
            }
        }
        pause
    }

    /// Whether the last accept failed (the loop is backing off).
    pub fn is_backing_off(&self) -> bool {
        self.failing.is_some()
    }
}

/// What a user can do about a resource error.
fn hint(err: &std::io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(code) if code == EMFILE || code == ENFILE => {
            " (out of file descriptors: raise the limit with `ulimit -n`, or close connections)"
        }
        _ => "",
    }
}

const EMFILE: i32 = 24;
const ENFILE: i32 = 23;

fn is_peer_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

/// At most this many connections served at once, shared by the accept
/// loops it is given to: a connection over the limit is not accepted, and
/// waits in the listening socket's backlog (the kernel's, which costs the
/// process no file descriptor) until one ends.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
    max: usize,
}

impl ConnectionLimit {
    /// A limit of `max` connections at once (at least 1).
    pub fn new(max: usize) -> ConnectionLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections being served now.
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// A slot; `None` only if the semaphore were closed, which nothing does.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        self.slots.clone().acquire_owned().await.ok()
    }
}

/// A connection slot, held as long as the connection is served.
pub(crate) type Slot = OwnedSemaphorePermit;

/// The next accepted connection and its slot under `limit`, or `None` once
/// `shutdown` fires.
pub(crate) async fn accept_or_shutdown(
    listener: &TcpListener,
    limit: &ConnectionLimit,
    backoff: &mut AcceptBackoff,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, Slot)> {
    // Taken before accepting: over the limit, connections queue in the backlog.
    let slot = tokio::select! {
        biased;
        () = shutdown.cancelled() => return None,
        slot = limit.slot() => slot?,
    };
    loop {
        let accepted = tokio::select! {
            biased;
            () = shutdown.cancelled() => return None,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.succeeded();
                // Small request/response exchanges must not wait for Nagle.
                let _ = stream.set_nodelay(true);
                return Some((stream, peer, slot));
            }
            Err(err) => {
                let pause = backoff.failed(&err);
                if !pause.is_zero() {
                    tokio::select! {
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> std::io::Error {
        std::io::Error::from_raw_os_error(EMFILE)
    }

    #[tokio::test(start_paused = true)]
    async fn out_of_file_descriptors_backs_off_and_says_so_once() {
        let mut backoff = AcceptBackoff::new("test");
        let start = Instant::now();
        let mut attempts = 0;
        let mut pauses = Vec::new();
        // Thirty seconds of accepts failing with EMFILE, as fast as the loop goes.
        while start.elapsed() < Duration::from_secs(30) {
            attempts += 1;
            let pause = backoff.failed(&emfile());
            pauses.push(pause);
            tokio::time::sleep(pause).await;
        }
        assert_eq!(
            &pauses[..8],
            [10, 20, 40, 80, 160, 320, 640, 1000].map(Duration::from_millis)
        );
        assert!(pauses[8..].iter().all(|p| *p == BACKOFF_MAX));
        // 1.27 s of doubling pauses, then one attempt a second.
        assert!((35..=40).contains(&attempts), "{attempts} attempts");
        assert_eq!(backoff.said, 1, "one line for the whole episode");
        assert!(backoff.is_backing_off());
        // Another 60 s: one reminder.
        let now = Instant::now();
        while now.elapsed() < Duration::from_secs(61) {
            let pause = backoff.failed(&emfile());
            tokio::time::sleep(pause).await;
        }
        assert_eq!(backoff.said, 2);
        backoff.succeeded();
        assert_eq!(backoff.said, 3, "the end of the episode is said");
        assert!(!backoff.is_backing_off());
        // The next episode starts from the first pause again.
        assert_eq!(backoff.failed(&emfile()), BACKOFF_FIRST);
    }

    #[test]
    fn a_peer_that_reset_early_is_skipped_at_once_and_not_logged() {
        let mut backoff = AcceptBackoff::new("test");
        for kind in [
            std::io::ErrorKind::ConnectionAborted,
            std::io::ErrorKind::ConnectionReset,
        ] {
            assert_eq!(backoff.failed(&kind.into()), Duration::ZERO);
        }
        assert_eq!(backoff.said, 0);
        assert!(!backoff.is_backing_off());
        for code in [ENFILE, 105 /* ENOBUFS */, 12 /* ENOMEM */] {
            let mut backoff = AcceptBackoff::new("test");
            let err = std::io::Error::from_raw_os_error(code);
            assert_eq!(backoff.failed(&err), BACKOFF_FIRST, "{err}");
        }
    }

    #[tokio::test]
    async fn a_connection_over_the_limit_waits_until_a_slot_frees() {
        let limit = ConnectionLimit::new(2);
        let a = limit.slot().await.unwrap();
        let _b = limit.slot().await.unwrap();
        assert_eq!(limit.in_use(), 2);
        let waiting = tokio::spawn({
            let limit = limit.clone();
            async move { limit.slot().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(a);
        let _c = waiting.await.unwrap().unwrap();
        assert_eq!(limit.in_use(), 2);
    }
}
