//! Scheduled workflows: what the daemon's scheduler and its cron requests
//! share, and what they decide without acting.
//!
//! Layout: `due` decides (pure: when a cron job is due, whether a due time
//! is a catch-up run, how long a retry waits); this module holds the
//! scheduler's shared handle (jobs with a run going or a retry pending, its
//! command queue, its clock) and the names of runs. The scheduler task is
//! `daemon::scheduler`, the cron requests `daemon::requests::cron`; the
//! schedule itself is parsed by `bodywork_config::schedule`, once for both
//! runtimes. Nothing here knows the daemon, so no module imports in a circle.
//!
//! What the scheduler guarantees: each due run is an ordinary workflow run
//! (the same controller and logs as `bodywork workflow`); a failed run is
//! retried after a back-off (10 s, 20 s, 40 s, ... at most 6 min, as a
//! Job's pods); two runs of one cron job never overlap (a due time that
//! finds a run still going is skipped and recorded); only the newest
//! `history_limit` runs are kept with their logs; times missed while the
//! daemon was down make at most one catch-up run. Every decision is recorded
//! in the state before it is acted on, so a restarted daemon carries on.
//!
//! Test seam (tests only, not a user feature): with
//! `BODYWORK_CRON_SECONDS=1` in the daemon's and the CLI's environment, a
//! 6-field expression whose first field is seconds is accepted too, so tests
//! need not wait a minute per case, and retry back-offs are a tenth as long.
//! The scheduler reads the time through a [`Clock`]; in that mode, with
//! `BODYWORK_CRON_CLOCK_OFFSET_FILE=FILE` in the daemon's environment too,
//! its clock runs as many seconds ahead as FILE says, so a test moves time
//! on instead of waiting for it.

mod due;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bodywork_config::schedule::{Schedule, ScheduleError};
use bodywork_runtime::{CancellationToken, CronJobSpec};
use bodywork_state::CronJobRow;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

pub(crate) use due::tick_and_back_off;
pub use due::{
    CLOCK_OFFSET_ENV, Clock, Due, OffsetClock, SystemClock, daemon_clock, due, retry_delay,
};

/// Parses a schedule kept in the state. It was validated when the cron job
/// was created, possibly under the seconds test seam, so seconds are
/// accepted here.
pub(crate) fn stored_schedule(job: &CronJobRow) -> Result<Schedule, ScheduleError> {
    Schedule::parse(&job.spec.schedule, job.spec.timezone.as_deref(), true)
}

/// `(namespace, cron job)`.
pub(crate) type JobKey = (String, String);

pub(crate) fn job_key(job: &CronJobSpec) -> JobKey {
    (job.namespace.clone(), job.name.clone())
}

/// A request for the scheduler task.
pub(crate) enum Command {
    /// `bodywork cronjob trigger`: start a run now; answer with its id.
    Trigger {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Result<i64, bodywork_runtime::RuntimeError>>,
    },
}

/// The daemon's handle on its scheduler: what request handlers share with it.
pub(crate) struct CronHandle {
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// Cron jobs with a run going or a retry pending.
    active: Mutex<HashMap<JobKey, Active>>,
    pub(crate) stop: CancellationToken,
    pub(crate) clock: Arc<dyn Clock>,
}

/// A cron job's run in progress: its current attempt, or the retry it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Active {
    /// The attempt's run id, once it has one; while a retry is pending, the
    /// failed attempt's.
    pub(crate) run: Option<i64>,
    /// When the pending retry starts; `None` while an attempt runs.
    pub(crate) retry_at: Option<DateTime<Utc>>,
}

/// The receiving end, for the daemon's scheduler task.
pub(crate) struct CronCommands(pub(crate) mpsc::UnboundedReceiver<Command>);

impl CronHandle {
    /// A handle and the command queue its scheduler task reads.
    pub fn new() -> (CronHandle, CronCommands) {
        Self::with_clock(daemon_clock())
    }

    /// Like [`CronHandle::new`] with another clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> (CronHandle, CronCommands) {
        let (tx, rx) = mpsc::unbounded_channel();
        let handle = CronHandle {
            commands: tx,
            active: Mutex::new(HashMap::new()),
            stop: CancellationToken::new(),
            clock,
        };
        (handle, CronCommands(rx))
    }

    /// Stops the scheduler: no new run and no retry starts from now on.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub(crate) fn active(&self, key: &JobKey) -> Option<Active> {
        self.active.lock().ok().and_then(|a| a.get(key).copied())
    }

    pub(crate) fn set_active(
        &self,
        key: &JobKey,
        run: Option<i64>,
        retry_at: Option<DateTime<Utc>>,
    ) {
        if let Ok(mut active) = self.active.lock() {
            active.insert(key.clone(), Active { run, retry_at });
        }
    }

    pub(crate) fn clear_active(&self, key: &JobKey) {
        if let Ok(mut active) = self.active.lock() {
            active.remove(key);
        }
    }
}

/// The name of one run of a cron job, as history shows it: `NAME-RUN`.
pub fn job_run_name(job: &str, run: i64) -> String {
    format!("{job}-{run}")
}

/// Reads `NAME-RUN`, `run-RUN` or `RUN` into the run id and, when given,
/// the cron job's name.
pub fn parse_job_run_name(text: &str) -> Option<(Option<&str>, i64)> {
    let (job, number) = match text.rsplit_once('-') {
        Some(("run", number)) => (None, number),
        Some((job, number)) => (Some(job), number),
        None => (None, text),
    };
    let id: i64 = number.parse().ok().filter(|n| *n > 0)?;
    Some((job.filter(|j| !j.is_empty()), id))
}

/// 2 March 2026 at `h:m:s` UTC: the day the scheduler's tests happen on.
#[cfg(test)]
pub(crate) fn test_time(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    use chrono::TimeZone;
    Utc.with_ymd_and_hms(2026, 3, 2, h, m, s)
        .single()
        .expect("valid time")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_run_names_round_trip() {
        assert_eq!(job_run_name("nightly", 17), "nightly-17");
        assert_eq!(
            parse_job_run_name("nightly-17"),
            Some((Some("nightly"), 17))
        );
        assert_eq!(parse_job_run_name("job-2-5"), Some((Some("job-2"), 5)));
        assert_eq!(parse_job_run_name("17"), Some((None, 17)));
        assert_eq!(parse_job_run_name("run-3"), Some((None, 3)));
        assert_eq!(parse_job_run_name("nightly"), None);
        assert_eq!(parse_job_run_name("nightly-0"), None);
        assert_eq!(parse_job_run_name("-4"), Some((None, 4)));
    }
}
