//! A burst of saves as one change: paths gather until none has come for
//! [`QUIET`] (or [`LONGEST`] after the first, so that a file rewritten
//! without pause still counts). A file created and gone again within the
//! burst (a temp file an editor or `sed -i` renames over the real one) is
//! not part of it. Pure: the caller says what time it is and what exists.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
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
    /// Paths created during the burst under way.
    created: BTreeSet<PathBuf>,
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
            created: BTreeSet::new(),
        }
    }

    /// `path` was saved at `now` (`created`: it did not exist before).
    pub fn saved(&mut self, path: PathBuf, created: bool, now: Instant) {
        if created {
            self.created.insert(path.clone());
        }
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

    /// The burst, once it has ended at `now`, less the files it created
    /// that no longer `exist`; `None` when nothing is left of it.
    pub fn take(&mut self, now: Instant, exists: impl Fn(&Path) -> bool) -> Option<Burst> {
        if self.due().is_none_or(|due| now < due) {
            return None;
        }
        let created = std::mem::take(&mut self.created);
        let (mut burst, _) = self.pending.take()?;
        burst.paths.retain(|p| !created.contains(p) || exists(p));
        (!burst.paths.is_empty()).then_some(burst)
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
        assert_eq!(d.take(t0, all), None);
        d.saved("a.py".into(), false, t0);
        d.saved("a.py".into(), false, t0 + ms(10));
        d.saved("b.py".into(), false, t0 + ms(100));
        assert_eq!(d.due(), Some(t0 + ms(250)));
        assert_eq!(d.take(t0 + ms(200), all), None);
        let burst = d.take(t0 + ms(250), all).expect("the burst has ended");
        assert_eq!(names(&burst), ["a.py", "b.py"]);
        assert_eq!(burst.first, t0);
        assert_eq!(d.due(), None);
        // The next save starts a new burst.
        d.saved("c.py".into(), false, t0 + ms(400));
        assert_eq!(d.take(t0 + ms(560), all).map(|b| b.paths.len()), Some(1));
    }

    fn all(_: &Path) -> bool {
        true
    }

    fn names(burst: &Burst) -> Vec<&str> {
        burst.paths.iter().filter_map(|p| p.to_str()).collect()
    }

    #[test]
    fn a_file_created_and_gone_within_the_burst_is_not_part_of_it() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(150), ms(2000));
        // `sed -i`: a temp file written, then renamed over the file.
        d.saved("svc/sedX1".into(), true, t0);
        d.saved("svc/server.py".into(), false, t0 + ms(1));
        // A file removed is a change all the same.
        d.saved("svc/old.py".into(), false, t0 + ms(2));
        let none = |_: &Path| false;
        let burst = d.take(t0 + ms(200), none).expect("a change");
        assert_eq!(names(&burst), ["svc/old.py", "svc/server.py"]);
        // A burst of nothing but temp files is no change.
        d.saved("svc/sedX2".into(), true, t0 + ms(300));
        assert_eq!(d.take(t0 + ms(500), none), None);
        assert_eq!(d.due(), None);
        // A new file that stays is a change.
        d.saved("svc/new.py".into(), true, t0 + ms(600));
        assert!(d.take(t0 + ms(800), all).is_some());
    }

    #[test]
    fn a_file_saved_without_pause_still_counts_after_the_longest_burst() {
        let t0 = Instant::now();
        let mut d = Debounce::new(ms(150), ms(500));
        for i in 0..10 {
            d.saved("log.txt".into(), false, t0 + ms(i * 100));
        }
        assert_eq!(d.due(), Some(t0 + ms(500)));
        assert!(d.take(t0 + ms(500), all).is_some());
    }
}
