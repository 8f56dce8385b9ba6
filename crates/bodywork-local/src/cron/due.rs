//! The scheduler's pure decisions: when a cron job is due (and whether it
//! is a catch-up run), and how long a retry waits. No I/O, no clock of its
//! own: the time comes in through a [`Clock`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bodywork_config::schedule::{Schedule, seconds_allowed};
use bodywork_runtime::CronRunKind;
use bodywork_state::CronJobRow;
use chrono::{DateTime, Utc};

/// How often the scheduler looks for due cron jobs.
const TICK: Duration = Duration::from_secs(1);
/// ... and in the seconds test mode.
const TEST_TICK: Duration = Duration::from_millis(200);

/// The back-off before the first retry; each further retry waits twice as
/// long as the one before, up to [`MAX_BACK_OFF_STEPS`] doublings.
const RETRY_BACK_OFF: Duration = Duration::from_secs(10);
/// ... and in the seconds test mode.
const TEST_RETRY_BACK_OFF: Duration = Duration::from_secs(1);
/// 10 s · 36 = 6 min, a Job's longest pod back-off.
const MAX_BACK_OFF_FACTOR: u32 = 36;

/// The wait before retry `retry` (1 for the first retry): the base back-off,
/// doubled for each retry after the first, at most 36 times the base.
pub fn retry_delay(retry: u32, base: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(retry.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(MAX_BACK_OFF_FACTOR);
    base.saturating_mul(factor)
}

/// How often the scheduler looks, and the retry back-off base, in this process.
pub(crate) fn tick_and_back_off() -> (Duration, Duration) {
    if seconds_allowed() {
        (TEST_TICK, TEST_RETRY_BACK_OFF)
    } else {
        (TICK, RETRY_BACK_OFF)
    }
}

/// Where the scheduler reads the time: the system clock, or a test's own.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The environment variable naming a file whose content, a number of
/// seconds, moves the daemon's cron clock on. Read only in the seconds test
/// mode, so tests move time on instead of waiting for it.
pub const CLOCK_OFFSET_ENV: &str = "BODYWORK_CRON_CLOCK_OFFSET_FILE";

/// The system clock moved on by the seconds written in a file (none while
/// the file is missing or unreadable): the seconds test mode's clock.
#[derive(Debug, Clone)]
pub struct OffsetClock {
    file: PathBuf,
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = std::fs::read_to_string(&self.file)
            .ok()
            .and_then(|text| text.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Utc::now() + chrono::Duration::seconds(offset)
    }
}

/// The daemon's clock: the system clock, or in the seconds test mode with
/// [`CLOCK_OFFSET_ENV`] set, an [`OffsetClock`].
pub fn daemon_clock() -> Arc<dyn Clock> {
    match std::env::var_os(CLOCK_OFFSET_ENV) {
        Some(file) if seconds_allowed() => Arc::new(OffsetClock { file: file.into() }),
        _ => Arc::new(SystemClock),
    }
}

/// A scheduled time that is due now, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The scheduled time the run is for (the newest one that has passed).
    pub scheduled: DateTime<Utc>,
    /// `CatchUp` when the time passed while the daemon was down.
    pub kind: CronRunKind,
}

/// Decides whether a cron job is due at `now`. `after_start` is true on the
/// scheduler's first look after the daemon started: whatever is due then
/// was missed while the daemon was down, and however many times were missed,
/// only the newest is run, as one catch-up run. Later looks coalesce times a
/// slow tick missed the same way, as an ordinary scheduled run.
pub fn due(
    schedule: &Schedule,
    job: &CronJobRow,
    now: DateTime<Utc>,
    after_start: bool,
) -> Option<Due> {
    let anchor = job.last_scheduled.unwrap_or(job.created);
    let next = schedule.next_after(anchor)?;
    if next > now {
        return None;
    }
    let scheduled = schedule
        .latest_at_or_before(now)
        .filter(|t| *t >= next)
        .unwrap_or(next);
    let kind = if after_start {
        CronRunKind::CatchUp
    } else {
        CronRunKind::Scheduled
    };
    Some(Due { scheduled, kind })
}

#[cfg(test)]
mod tests {
    use bodywork_runtime::CronJobSpec;

    use crate::cron::test_time as t;

    use super::*;

    #[test]
    fn the_offset_clock_moves_on_by_the_seconds_in_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = OffsetClock {
            file: dir.path().join("offset"),
        };
        let close = |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_seconds().abs() <= 1;
        // No file yet: the system clock.
        assert!(close(clock.now(), Utc::now()));
        std::fs::write(&clock.file, "3600\n").expect("write");
        assert!(close(clock.now(), Utc::now() + chrono::Duration::hours(1)));
        std::fs::write(&clock.file, "soon").expect("write");
        assert!(close(clock.now(), Utc::now()));
    }

    #[test]
    fn retries_back_off_like_a_jobs_pods() {
        let secs: Vec<u64> = (1..=9)
            .map(|retry| retry_delay(retry, RETRY_BACK_OFF).as_secs())
            .collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360, 360]);
        // No overflow however many retries a job allows.
        assert_eq!(retry_delay(u32::MAX, RETRY_BACK_OFF).as_secs(), 360);
        assert_eq!(retry_delay(2, TEST_RETRY_BACK_OFF).as_secs(), 2);
        // Retry 0 does not exist; it waits as the first would.
        assert_eq!(retry_delay(0, RETRY_BACK_OFF).as_secs(), 10);
    }

    fn job(schedule: &str, created: DateTime<Utc>, last: Option<DateTime<Utc>>) -> CronJobRow {
        CronJobRow {
            spec: CronJobSpec {
                namespace: "ns".into(),
                name: "nightly".into(),
                schedule: schedule.into(),
                timezone: None,
                repo: "/src".into(),
                branch: None,
                retries: 0,
                history_limit: 3,
                secrets_group: None,
                resolve_as_of: None,
                python: None,
            },
            created,
            last_scheduled: last,
        }
    }

    fn schedule(expression: &str) -> Schedule {
        Schedule::parse(expression, None, false).expect("valid")
    }

    #[test]
    fn nothing_is_due_before_the_first_time() {
        let s = schedule("*/5 * * * *");
        let j = job("*/5 * * * *", t(10, 1, 0), None);
        assert_eq!(due(&s, &j, t(10, 4, 59), false), None);
        assert_eq!(
            due(&s, &j, t(10, 5, 0), false),
            Some(Due {
                scheduled: t(10, 5, 0),
                kind: CronRunKind::Scheduled
            })
        );
    }

    #[test]
    fn a_time_already_dealt_with_is_not_due_again() {
        let s = schedule("*/5 * * * *");
        let j = job("*/5 * * * *", t(9, 0, 0), Some(t(10, 5, 0)));
        assert_eq!(due(&s, &j, t(10, 5, 0), false), None);
        assert_eq!(due(&s, &j, t(10, 9, 59), true), None);
        assert_eq!(
            due(&s, &j, t(10, 10, 1), false).map(|d| d.scheduled),
            Some(t(10, 10, 0))
        );
    }

    #[test]
    fn times_missed_while_down_make_one_catch_up_run() {
        let s = schedule("*/5 * * * *");
        // Last dealt with 10:05; the daemon comes back at 12:42: 27 times
        // were missed, only the newest (12:40) runs, as a catch-up.
        let j = job("*/5 * * * *", t(9, 0, 0), Some(t(10, 5, 0)));
        assert_eq!(
            due(&s, &j, t(12, 42, 0), true),
            Some(Due {
                scheduled: t(12, 40, 0),
                kind: CronRunKind::CatchUp
            })
        );
        // Once that is recorded, nothing more is due until 12:45.
        let j = job("*/5 * * * *", t(9, 0, 0), Some(t(12, 40, 0)));
        assert_eq!(due(&s, &j, t(12, 44, 59), false), None);
        // A slow tick while up coalesces too, but is an ordinary run.
        let j = job("*/5 * * * *", t(9, 0, 0), Some(t(12, 40, 0)));
        assert_eq!(
            due(&s, &j, t(12, 55, 3), false),
            Some(Due {
                scheduled: t(12, 55, 0),
                kind: CronRunKind::Scheduled
            })
        );
    }
}
