//! Coarse deadlines for the gateway's client connections (the idle timeout
//! and each request's upstream timeout) without a tokio timer per
//! connection or per request.
//!
//! A tokio timer registered on a worker makes each of its waits an
//! `epoll_wait` with a timeout (a kernel timer armed and cancelled every
//! time) followed by a pass over the timer wheel. A proxied request waits
//! twice, and that cost more than all of the gateway's own parsing and
//! routing: 2 to 3 µs of added p50 on the benchmark's trivial upstream.
//! Instead each worker keeps its connections' deadlines ([`Deadlines`]),
//! checked on a tick every [`TICK`] while it has connections: a deadline is
//! met at most one tick late, and a worker with none is left asleep.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

/// How often a worker with connections checks their deadlines.
pub(crate) const TICK: Duration = Duration::from_millis(100);

/// No deadline set.
const NONE: u64 = u64::MAX;

/// One connection's deadline: set, moved and cleared as the connection
/// goes from waiting for a request to serving one; what waits on it is
/// woken by the worker's tick once it has passed.
pub(crate) struct Deadline {
    epoch: Instant,
    /// Nanoseconds after `epoch`, or [`NONE`].
    at: AtomicU64,
    /// The tick found `at` passed.
    fired: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Deadline {
    /// Set the deadline to `at` (a fired one is rearmed).
    pub(crate) fn set(&self, at: Instant) {
        let nanos = at.saturating_duration_since(self.epoch).as_nanos();
        self.at
            .store(u64::try_from(nanos).unwrap_or(NONE - 1), Ordering::Relaxed);
        self.fired.store(false, Ordering::Relaxed);
    }

    /// The deadline set, if any.
    pub(crate) fn at(&self) -> Option<Instant> {
        match self.at.load(Ordering::Relaxed) {
            NONE => None,
            nanos => Some(self.epoch + Duration::from_nanos(nanos)),
        }
    }

    /// No deadline until the next [`Deadline::set`].
    pub(crate) fn clear(&self) {
        self.at.store(NONE, Ordering::Relaxed);
        self.fired.store(false, Ordering::Relaxed);
    }

    /// Ready once the deadline has passed (as of a tick).
    pub(crate) fn poll_passed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.fired.load(Ordering::Relaxed) {
            return Poll::Ready(());
        }
        let mut waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner);
        match waker.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// [`Deadline::poll_passed`] as a future.
    pub(crate) async fn passed(&self) {
        std::future::poll_fn(|cx| self.poll_passed(cx)).await;
    }

    /// Fire if the deadline is at or before `now`.
    fn check(&self, now: u64) {
        let at = self.at.load(Ordering::Relaxed);
        if at != NONE && at <= now && !self.fired.swap(true, Ordering::Relaxed) {
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

/// A worker's connections' deadlines.
pub(crate) struct Deadlines {
    epoch: Instant,
    live: Mutex<Vec<Weak<Deadline>>>,
}

impl Deadlines {
    pub(crate) fn new() -> Self {
        Deadlines {
            epoch: Instant::now(),
            live: Mutex::new(Vec::new()),
        }
    }

    /// A deadline for a new connection, none set; it is checked on every
    /// tick until dropped.
    pub(crate) fn register(&self) -> Arc<Deadline> {
        let deadline = Arc::new(Deadline {
            epoch: self.epoch,
            at: AtomicU64::new(NONE),
            fired: AtomicBool::new(false),
            waker: Mutex::new(None),
        });
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&deadline));
        deadline
    }

    /// Whether any connection is registered (a tick has work).
    pub(crate) fn any(&self) -> bool {
        !self
            .live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Wake what waits on each deadline passed by now; forget the
    /// connections gone.
    pub(crate) fn tick(&self) {
        let now = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        let now = u64::try_from(now).unwrap_or(NONE - 1);
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.retain(|weak| match weak.upgrade() {
            Some(deadline) => {
                deadline.check(now);
                true
            }
            None => false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deadline_fires_on_the_first_tick_after_it_and_can_be_moved_or_cleared() {
        let deadlines = Deadlines::new();
        let deadline = deadlines.register();
        assert!(deadlines.any());
        let waiting = || {
            let mut cx = Context::from_waker(Waker::noop());
            deadline.poll_passed(&mut cx).is_pending()
        };
        // None set: never.
        deadlines.tick();
        assert!(waiting());
        // Set in the future: not yet.
        deadline.set(Instant::now() + Duration::from_secs(60));
        assert!(deadline.at().is_some());
        deadlines.tick();
        assert!(waiting());
        // Moved into the past: fires on the next tick, and wakes the waiter.
        let passed = tokio::spawn({
            let deadline = deadline.clone();
            async move { deadline.passed().await }
        });
        tokio::task::yield_now().await;
        deadline.set(Instant::now());
        deadlines.tick();
        tokio::time::timeout(Duration::from_secs(5), passed)
            .await
            .expect("woken")
            .unwrap();
        assert!(!waiting());
        // Set again: rearmed. Cleared: never.
        deadline.set(Instant::now() + Duration::from_secs(60));
        assert!(waiting());
        deadline.set(Instant::now());
        deadline.clear();
        deadlines.tick();
        assert!(waiting());
        assert_eq!(deadline.at(), None);
        // A connection gone is forgotten.
        drop(deadline);
        deadlines.tick();
        assert!(!deadlines.any());
    }
}
