//! A burst of saves as one change: paths gather until none has come for
//! [`QUIET`] (or [`LONGEST`] after the first, so that a file rewritten
//! without pause still counts). Pure: the caller says what time it is.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long the files must stay quiet for a burst to end: an editor's
/// save (a temp file, a rename, a write of the file) takes a few ms; a
/// "save all" of several files well under this.
pub const QUIET: Duration = Duration::from_millis(150);

/// The longest a burst may last before it is one change all the same.
pub const LONGEST: Duration = Duration::from_secs(2);

/// One change: the paths saved (relative to the project root), and when
/// the first of them was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub paths: BTreeSet<PathBuf>,
    pub first: Instant,
}

/// Saves gathered into bursts.
#[derive(Debug)]
pub struct Debounce {
    quiet: Duration,
    longest: Duration,
    pending: Option<(Burst, Instant)>,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce::new(QUIET, LONGEST)
    }
}

impl Debounce {
    pub fn new(quiet: Duration, longest: Duration) -> Debounce {
        Debounce {
            quiet,
            longest,
            pending: None,
        }
    }

    /// `path` was saved at `now`.
    pub fn saved(&mut self, path: PathBuf, now: Instant) {
        match &mut self.pending {
            Some((burst, last)) => {
                burst.paths.insert(path);
                *last = now;
            }
            None => {
                self.pending = Some((
                    Burst {
                        paths: BTreeSet::from([path]),
                        first: now,
                    },
                    now,
                ))
            }
        }
    }

    /// When the burst under way ends, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|(burst, last)| (*last + self.quiet).min(burst.first + self.longest))
    }

    /// The burst, once it has ended at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Burst> {
        if self.due().is_some_and(|due| now >= due) {
            self.pending.take().map(|(burst, _)| burst)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn saves_close_together_are_one_change() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(150), ms(2000));
        assert_eq!(d.due(), None);
        assert_eq!(d.take(t0), None);
        d.saved("a.py".into(), t0);
        d.saved("a.py".into(), t0 + ms(10));
        d.saved("b.py".into(), t0 + ms(100));
        assert_eq!(d.due(), Some(t0 + ms(250)));
        assert_eq!(d.take(t0 + ms(200)), None);
        let burst = d.take(t0 + ms(250)).expect("the burst has ended");
        assert_eq!(
            burst
                .paths
                .iter()
                .map(|p| p.to_str().unwrap())
                .collect::<Vec<_>>(),
            ["a.py", "b.py"]
        );
        assert_eq!(burst.first, t0);
        assert_eq!(d.due(), None);
        // The next save starts a new burst.
        d.saved("c.py".into(), t0 + ms(400));
        assert_eq!(d.take(t0 + ms(560)).map(|b| b.paths.len()), Some(1));
    }

    #[test]
    fn a_file_saved_without_pause_still_counts_after_the_longest_burst() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(150), ms(500));
        for i in 0..10 {
            d.saved("log.txt".into(), t0 + ms(i * 100));
        }
        assert_eq!(d.due(), Some(t0 + ms(500)));
        assert!(d.take(t0 + ms(500)).is_some());
    }
}
