//! Scheduled workflows: the daemon's cron scheduler and the cron requests.
//!
//! Owns: parsing and validating cron expressions (standard 5 fields, in UTC
//! or an IANA time zone), deciding when a cron job is due, starting each due
//! run as an ordinary workflow run (the same controller and logs as
//! `bodywork workflow`), retrying a failed run after a back-off (10 s, 20 s,
//! 40 s, ... at most 6 min, as a Job's pods), never running two runs of one
//! cron job at once (a due time that finds a run still going is skipped and
//! recorded), keeping only the newest `history_limit` runs with their logs,
//! and making up for times missed while the daemon was down with at most one
//! catch-up run. Every decision is recorded in the state before it is acted
//! on, so a restarted daemon carries on where it stopped.
//!
//! Must not: run workflows itself (`daemon::runs` does), or hold the state
//! store across an `await`.
//!
//! Test seam (tests only, not a user feature): with
//! `BODYWORK_CRON_SECONDS=1` in the daemon's and the CLI's environment, a
//! 6-field expression whose first field is seconds is accepted too, so tests
//! need not wait a minute per case, and retry back-offs are a tenth as long.
//! The scheduler reads the time through a [`Clock`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bodywork_runtime::CancellationToken;
use bodywork_state::{CronJobRow, CronRunKind, CronRunRow, NewCronJob, RunStatus};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{mpsc, oneshot};

use crate::daemon::Daemon;
use crate::daemon::runs::{execute_run, prepare_run, stream_logs};
use crate::protocol::{CronJobSpec, CronJobSummary, CronRunSummary, Response, WorkflowSubmission};

/// The environment variable that lets 6-field (seconds) expressions through.
/// For tests only: real schedules have minute granularity.
pub const SECONDS_ENV: &str = "BODYWORK_CRON_SECONDS";

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
fn tick_and_back_off() -> (Duration, Duration) {
    if seconds_allowed() {
        (TEST_TICK, TEST_RETRY_BACK_OFF)
    } else {
        (TICK, RETRY_BACK_OFF)
    }
}

/// Whether the seconds test seam is on in this process.
pub fn seconds_allowed() -> bool {
    std::env::var(SECONDS_ENV).is_ok_and(|v| v == "1")
}

/// Why a schedule cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The expression does not have the expected number of fields.
    #[error(
        "invalid cron schedule {expression:?}: expected 5 fields (minute hour day-of-month month \
         day-of-week, e.g. \"0 * * * *\"), found {found}"
    )]
    FieldCount {
        /// The expression as given.
        expression: String,
        /// How many fields it has.
        found: usize,
    },
    /// The cron crate refused the expression.
    #[error("invalid cron schedule {expression:?}: {reason}")]
    Invalid {
        /// The expression as given.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The time zone is not an IANA name.
    #[error("unknown time zone {0:?}: use an IANA name such as \"Europe/London\" or \"UTC\"")]
    TimeZone(String),
}

/// A validated cron expression in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
}

impl Schedule {
    /// Parses a standard 5-field expression (6 fields with seconds first when
    /// `seconds` is true: the test seam) in `timezone` (UTC when `None`).
    pub fn parse(
        expression: &str,
        timezone: Option<&str>,
        seconds: bool,
    ) -> Result<Schedule, ScheduleError> {
        let tz = match timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::TimeZone(name.into()))?,
        };
        let found = expression.split_whitespace().count();
        let nickname = expression.trim_start().starts_with('@');
        if !nickname && found != 5 && !(seconds && found == 6) {
            return Err(ScheduleError::FieldCount {
                expression: expression.to_string(),
                found,
            });
        }
        let parser = CronParser::builder()
            .seconds(if seconds {
                Seconds::Optional
            } else {
                Seconds::Disallowed
            })
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression)
            .map_err(|e| ScheduleError::Invalid {
                expression: expression.to_string(),
                reason: e.to_string(),
            })?;
        let schedule = Schedule { cron, tz };
        // An expression that never matches (30 February) is useless.
        if schedule.next_after(Utc::now()).is_none() {
            return Err(ScheduleError::Invalid {
                expression: expression.to_string(),
                reason: "it never matches a real date".into(),
            });
        }
        Ok(schedule)
    }

    /// Parses a schedule kept in the state. It was validated when the cron
    /// job was created, possibly under the seconds test seam, so seconds are
    /// accepted here.
    pub fn stored(job: &CronJobRow) -> Result<Schedule, ScheduleError> {
        Schedule::parse(&job.spec.schedule, job.spec.timezone.as_deref(), true)
    }

    /// The first scheduled time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The newest scheduled time at or before `t`.
    pub fn latest_at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&t.with_timezone(&self.tz), true)
            .ok()
            .map(|t| t.with_timezone(&Utc))
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

/// `(namespace, cron job)`.
type JobKey = (String, String);

fn job_key(job: &NewCronJob) -> JobKey {
    (job.namespace.clone(), job.name.clone())
}

/// A request for the scheduler task.
enum Command {
    /// `bodywork cronjob trigger`: start a run now; answer with its id.
    Trigger {
        namespace: String,
        name: String,
        reply: oneshot::Sender<Result<i64, String>>,
    },
}

/// The daemon's handle on its scheduler: what request handlers share with it.
pub(crate) struct CronHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Cron jobs with a run going or a retry pending.
    active: Mutex<HashMap<JobKey, Active>>,
    stop: CancellationToken,
    clock: Arc<dyn Clock>,
}

/// A cron job's run in progress: its current attempt, or the retry it waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Active {
    /// The attempt's run id, once it has one; while a retry is pending, the
    /// failed attempt's.
    run: Option<i64>,
    /// When the pending retry starts; `None` while an attempt runs.
    retry_at: Option<DateTime<Utc>>,
}

/// The receiving end, for [`run_scheduler`].
pub(crate) struct CronCommands(mpsc::UnboundedReceiver<Command>);

impl CronHandle {
    /// A handle and the command queue its scheduler task reads.
    pub fn new() -> (CronHandle, CronCommands) {
        Self::with_clock(Arc::new(SystemClock))
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

    fn active(&self, key: &JobKey) -> Option<Active> {
        self.active.lock().ok().and_then(|a| a.get(key).copied())
    }

    fn set_active(&self, key: &JobKey, run: Option<i64>, retry_at: Option<DateTime<Utc>>) {
        if let Ok(mut active) = self.active.lock() {
            active.insert(key.clone(), Active { run, retry_at });
        }
    }

    fn clear_active(&self, key: &JobKey) {
        if let Ok(mut active) = self.active.lock() {
            active.remove(key);
        }
    }
}

/// The scheduler task: looks for due cron jobs every tick and starts their
/// runs, until the daemon stops it ([`CronHandle::stop`]).
pub(crate) async fn run_scheduler(daemon: Arc<Daemon>, commands: CronCommands) {
    let CronCommands(mut commands) = commands;
    let (tick, _) = tick_and_back_off();
    // Pending retries first: a due time that finds one waiting is skipped.
    resume_retries(&daemon);
    let mut after_start = true;
    loop {
        look_for_due_jobs(&daemon, after_start);
        after_start = false;
        tokio::select! {
            _ = daemon.cron.stop.cancelled() => break,
            command = commands.recv() => match command {
                Some(Command::Trigger { namespace, name, reply }) => {
                    let _ = reply.send(trigger_now(&daemon, &namespace, &name));
                }
                None => break,
            },
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// One look at every cron job: start (or skip) what is due.
fn look_for_due_jobs(daemon: &Arc<Daemon>, after_start: bool) {
    let jobs = match daemon.runtime.with_store(|s| s.list_cron_jobs(None)) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(target: "cron", "cannot read the cron jobs: {e}");
            return;
        }
    };
    let now = daemon.cron.clock.now();
    for job in jobs {
        let schedule = match Schedule::stored(&job) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(target: "cron", "cron job {} in {}: {e}", job.spec.name, job.spec.namespace);
                continue;
            }
        };
        let Some(due) = due(&schedule, &job, now, after_start) else {
            continue;
        };
        // Write before acting: this scheduled time is dealt with, whatever
        // happens next, so a restart never runs it twice.
        if let Err(e) = daemon.runtime.with_store(|s| {
            s.set_cron_last_scheduled(&job.spec.namespace, &job.spec.name, &due.scheduled)
        }) {
            tracing::error!(target: "cron", "cannot record the schedule of cron job {}: {e}", job.spec.name);
            continue;
        }
        let key = job_key(&job.spec);
        if let Some(going) = daemon.cron.active(&key) {
            // While a retry is pending no run is going: say only that one is.
            let still_going = going.run.filter(|_| going.retry_at.is_none());
            skip(daemon, &job, due, still_going);
            continue;
        }
        if let Err(e) = start(daemon, job, due.scheduled, due.kind) {
            tracing::error!(target: "cron", "{e}");
        }
    }
}

/// Records a due time skipped because a run of the same cron job is going.
fn skip(daemon: &Daemon, job: &CronJobRow, due: Due, still_going: Option<i64>) {
    let going = still_going.map_or_else(|| "a run".to_string(), |id| format!("run {id}"));
    tracing::warn!(target: "cron",
        "cron job {} in {}: skipping the run due at {} because {going} is still going",
        job.spec.name, job.spec.namespace, due.scheduled);
    let recorded = daemon.runtime.with_store(|s| {
        s.insert_cron_skip(
            &job.spec.namespace,
            &job.spec.name,
            &due.scheduled,
            due.kind,
            still_going,
        )
    });
    if let Err(e) = recorded {
        tracing::error!(target: "cron", "cannot record the skipped run of cron job {}: {e}", job.spec.name);
    }
    prune_history(daemon, job);
}

/// `bodywork cronjob trigger`: start a run now unless one is going.
fn trigger_now(daemon: &Arc<Daemon>, namespace: &str, name: &str) -> Result<i64, String> {
    if daemon.cron.stop.is_cancelled() {
        return Err("the daemon is stopping".into());
    }
    let job = daemon
        .runtime
        .with_store(|s| s.get_cron_job(namespace, name))
        .map_err(|e| e.to_string())?
        .ok_or_else(|| no_such_job(namespace, name))?;
    let key = job_key(&job.spec);
    if let Some(going) = daemon.cron.active(&key) {
        let run = going
            .run
            .map_or_else(String::new, |id| format!(" ({name}-{id})"));
        return Err(match going.retry_at {
            Some(at) => format!(
                "cron job {name} in namespace {namespace} has a failed run{run} to retry at {}; \
                 wait for it to finish, then try again",
                crate::time::display(&at)
            ),
            None => format!(
                "cron job {name} in namespace {namespace} has a run going{run}; \
                 wait for it to finish, then try again"
            ),
        });
    }
    let now = daemon.cron.clock.now();
    start(daemon, job, now, CronRunKind::Manual)
}

/// What every attempt of one due time shares: the cron job, what its runs
/// submit, when the run was due and why it started.
struct DueRun {
    job: CronJobRow,
    submission: WorkflowSubmission,
    scheduled: DateTime<Utc>,
    kind: CronRunKind,
}

impl DueRun {
    fn new(job: CronJobRow, scheduled: DateTime<Utc>, kind: CronRunKind) -> DueRun {
        let submission = WorkflowSubmission {
            repo: job.spec.repo.clone(),
            branch: job.spec.branch.clone(),
            namespace: Some(job.spec.namespace.clone()),
            ssh_key: None,
        };
        DueRun {
            job,
            submission,
            scheduled,
            kind,
        }
    }
}

/// Starts the first run for a due time and, in the background, drives it
/// and its retries. Returns the first run's id.
fn start(
    daemon: &Arc<Daemon>,
    job: CronJobRow,
    scheduled: DateTime<Utc>,
    kind: CronRunKind,
) -> Result<i64, String> {
    let key = job_key(&job.spec);
    daemon.cron.set_active(&key, None, None);
    let due = DueRun::new(job, scheduled, kind);
    let first = match begin_attempt(daemon, &due, 1) {
        Ok(run) => run,
        Err(e) => {
            daemon.cron.clear_active(&key);
            return Err(e);
        }
    };
    let id = first.id;
    let daemon = daemon.clone();
    tokio::spawn(async move {
        drive(&daemon, &due, first, 1).await;
        daemon.cron.clear_active(&key);
    });
    Ok(id)
}

/// How long after it was due a retry the daemon was down for is still made
/// up (older ones are dropped: the next scheduled run comes instead).
const RESUME_LIMIT: Duration = Duration::from_secs(3600);

/// After a restart: start waiting again for the retries a previous daemon
/// was waiting to start (a cron job whose newest run failed with retries
/// left). A retry overdue by more than [`RESUME_LIMIT`] is dropped.
fn resume_retries(daemon: &Arc<Daemon>) {
    let jobs = match daemon.runtime.with_store(|s| s.list_cron_jobs(None)) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(target: "cron", "cannot read the cron jobs: {e}");
            return;
        }
    };
    let (_, base) = tick_and_back_off();
    let now = daemon.cron.clock.now();
    for job in jobs {
        let newest = daemon
            .runtime
            .with_store(|s| s.list_cron_runs(&job.spec.namespace, &job.spec.name, usize::MAX))
            .ok()
            .and_then(|entries| entries.into_iter().find(|e| !e.skipped));
        let Some(entry) = newest else { continue };
        let Some(run) = entry.run.as_ref() else {
            continue;
        };
        let Some(finished) = run.finished else {
            continue;
        };
        if run.status != RunStatus::Failed || entry.attempt > job.spec.retries {
            continue;
        }
        let delay =
            chrono::Duration::from_std(retry_delay(entry.attempt, base)).unwrap_or_default();
        let due_at = finished + delay;
        let overdue = (now - due_at).to_std().unwrap_or_default();
        if overdue > RESUME_LIMIT {
            continue;
        }
        let remaining = (due_at - now).to_std().unwrap_or_default();
        tracing::info!(target: "cron", "cron job {} in {}: resuming retry {} of {} (run {} failed)",
            job.spec.name, job.spec.namespace, entry.attempt, job.spec.retries, run.id);
        let key = job_key(&job.spec);
        let (failed, daemon) = (run.id, daemon.clone());
        daemon.cron.set_active(&key, Some(failed), Some(due_at));
        let due = DueRun::new(job, entry.scheduled, entry.kind);
        let attempt = entry.attempt + 1;
        tokio::spawn(async move {
            if let Some(next) = retry_after(&daemon, &due, attempt, failed, remaining).await {
                drive(&daemon, &due, next, attempt).await;
            }
            daemon.cron.clear_active(&key);
        });
    }
}

/// Records one attempt's workflow run, linked to its cron job.
fn begin_attempt(
    daemon: &Daemon,
    due: &DueRun,
    attempt: u32,
) -> Result<crate::daemon::runs::PreparedRun, String> {
    let job = &due.job;
    let trigger = format!("cron:{}", job.spec.name);
    let prepared = prepare_run(daemon, &due.submission, &trigger)
        .map_err(|e| format!("cannot start a run of cron job {}: {e}", job.spec.name))?;
    let key = job_key(&job.spec);
    daemon.cron.set_active(&key, Some(prepared.id), None);
    let linked = daemon.runtime.with_store(|s| {
        s.insert_cron_run(
            &job.spec.namespace,
            &job.spec.name,
            &due.scheduled,
            due.kind,
            attempt,
            prepared.id,
        )
    });
    if let Err(e) = linked {
        // The cron job was deleted meanwhile: this run has no one to keep it.
        tracing::warn!(target: "cron", "run {} of cron job {}: {e}", prepared.id, job.spec.name);
        prepared.cancel.cancel();
    }
    tracing::info!(target: "cron", "cron job {} in {}: started run {} ({}, attempt {attempt})",
        job.spec.name, job.spec.namespace, prepared.id, due.kind);
    Ok(prepared)
}

/// Runs the attempts of one due time from `first` (attempt number
/// `attempt`): after each failure and its back-off, a retry, up to the cron
/// job's `retries`.
async fn drive(
    daemon: &Daemon,
    due: &DueRun,
    first: crate::daemon::runs::PreparedRun,
    mut attempt: u32,
) {
    let job = &due.job;
    let mut prepared = first;
    loop {
        let id = prepared.id;
        let (status, _) = execute_run(daemon, prepared, due.submission.clone(), None).await;
        if !still_exists(daemon, job) {
            // Deleted while it ran: its history goes with it.
            let removed = daemon.runtime.with_store(|s| s.delete_run(id));
            remove_runs(daemon, removed.map(|run| run.into_iter().collect()));
            return;
        }
        prune_history(daemon, job);
        if status != RunStatus::Failed
            || attempt > job.spec.retries
            || daemon.cron.stop.is_cancelled()
        {
            return;
        }
        let delay = retry_delay(attempt, tick_and_back_off().1);
        attempt += 1;
        match retry_after(daemon, due, attempt, id, delay).await {
            Some(next) => prepared = next,
            None => return,
        }
    }
}

/// Wait out the back-off after run `failed`, then begin attempt `attempt`;
/// `None` when the retry is dropped (scheduler stopping, job deleted) or
/// cannot start.
async fn retry_after(
    daemon: &Daemon,
    due: &DueRun,
    attempt: u32,
    failed: i64,
    delay: Duration,
) -> Option<crate::daemon::runs::PreparedRun> {
    let job = &due.job;
    tracing::info!(target: "cron", "cron job {}: run {failed} failed; retry {} of {} in {} s",
        job.spec.name, attempt - 1, job.spec.retries, delay.as_secs_f64());
    if !back_off(daemon, job, failed, delay).await {
        return None;
    }
    begin_attempt(daemon, due, attempt)
        .map_err(|e| tracing::error!(target: "cron", "{e}"))
        .ok()
}

/// Waits `delay` before a retry of the cron job whose run `failed` failed.
/// False when the scheduler stops or the cron job is deleted meanwhile (the
/// retry is then dropped; a restarted daemon resumes it, see
/// [`resume_retries`]).
async fn back_off(daemon: &Daemon, job: &CronJobRow, failed: i64, delay: Duration) -> bool {
    let key = job_key(&job.spec);
    let retry_at = daemon.cron.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
    daemon.cron.set_active(&key, Some(failed), Some(retry_at));
    let (tick, _) = tick_and_back_off();
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return true;
        }
        tokio::select! {
            _ = daemon.cron.stop.cancelled() => return false,
            _ = tokio::time::sleep((deadline - now).min(tick)) => {}
        }
        if !still_exists(daemon, job) {
            return false;
        }
    }
}

/// Whether the cron job a run was started for still exists (a new cron job
/// of the same name is another one).
fn still_exists(daemon: &Daemon, job: &CronJobRow) -> bool {
    matches!(
        daemon.runtime.with_store(|s| s.get_cron_job(&job.spec.namespace, &job.spec.name)),
        Ok(Some(now)) if now.created == job.created
    )
}

/// Keeps the newest `history_limit` runs of a cron job.
fn prune_history(daemon: &Daemon, job: &CronJobRow) {
    let keep = job.spec.history_limit as usize;
    remove_runs(
        daemon,
        daemon
            .runtime
            .with_store(|s| s.prune_cron_history(&job.spec.namespace, &job.spec.name, keep)),
    );
}

/// Removes the log files of runs deleted from the state.
fn remove_runs(
    daemon: &Daemon,
    removed: Result<Vec<bodywork_state::RunRow>, bodywork_runtime::RuntimeError>,
) {
    match removed {
        Ok(runs) => daemon.home().remove_run_logs(&runs),
        Err(e) => tracing::error!(target: "cron", "cannot remove old cron job runs: {e}"),
    }
}

fn no_such_job(namespace: &str, name: &str) -> String {
    format!(
        "cron job {name} does not exist in namespace {namespace} \
         (see `bodywork cronjob display --namespace {namespace}`)"
    )
}

fn error(message: impl std::fmt::Display) -> Response {
    Response::Error {
        message: message.to_string(),
    }
}

/// `cronjob create`.
pub(crate) fn create(daemon: &Daemon, spec: CronJobSpec) -> Response {
    let schedule =
        match Schedule::parse(&spec.schedule, spec.timezone.as_deref(), seconds_allowed()) {
            Ok(s) => s,
            Err(e) => return error(e),
        };
    if spec.history_limit == 0 {
        return error("--history-limit must be at least 1");
    }
    let new = NewCronJob {
        namespace: spec.namespace,
        name: spec.name,
        schedule: spec.schedule,
        timezone: spec.timezone,
        repo: spec.repo,
        branch: spec.branch,
        retries: spec.retries,
        history_limit: spec.history_limit,
    };
    let created = daemon.runtime.with_store(|s| {
        if !s.namespace_exists(&new.namespace)? {
            return Ok(None);
        }
        s.create_cron_job(&new).map(Some)
    });
    match created {
        Ok(Some(job)) => {
            let next = schedule
                .next_after(daemon.cron.clock.now())
                .map(|t| format!(", next run at {}", crate::time::display(&t)))
                .unwrap_or_default();
            Response::Lines {
                lines: vec![format!(
                    "cronjob={} created in namespace={} (schedule \"{}\"{next})",
                    job.spec.name, job.spec.namespace, job.spec.schedule
                )],
            }
        }
        Ok(None) => error(format!(
            "namespace {ns} does not exist; create it with `bodywork setup-namespace {ns}`",
            ns = new.namespace
        )),
        Err(e) => error(e),
    }
}

/// `cronjob delete`: the cron job, its history and their logs; a run going
/// is cancelled (and removed when it has stopped).
pub(crate) fn delete(daemon: &Daemon, namespace: &str, name: &str) -> Response {
    let removed = daemon.runtime.with_store(|s| {
        if s.get_cron_job(namespace, name)?.is_none() {
            return Ok(None);
        }
        s.delete_cron_job(namespace, name).map(Some)
    });
    let removed = match removed {
        Ok(Some(runs)) => runs,
        Ok(None) => return error(no_such_job(namespace, name)),
        Err(e) => return error(e),
    };
    let count = removed.len();
    remove_runs(daemon, Ok(removed));
    let key = (namespace.to_string(), name.to_string());
    if let Some(Active { run: Some(run), .. }) = daemon.cron.active(&key)
        && let Ok(runs) = daemon.runs.lock()
        && let Some(active) = runs.get(&run)
    {
        active.cancel.cancel();
    }
    Response::Lines {
        lines: vec![format!(
            "cronjob={name} deleted from namespace={namespace} ({count} run{} of its history removed)",
            if count == 1 { "" } else { "s" }
        )],
    }
}

/// `cronjob display`.
pub(crate) fn list(daemon: &Daemon, namespace: &str, name: Option<&str>) -> Response {
    let jobs = match daemon
        .runtime
        .with_store(|s| s.list_cron_jobs(Some(namespace)))
    {
        Ok(jobs) => jobs,
        Err(e) => return error(e),
    };
    let jobs: Vec<CronJobRow> = jobs
        .into_iter()
        .filter(|j| name.is_none_or(|n| n == j.spec.name))
        .collect();
    if let Some(name) = name
        && jobs.is_empty()
    {
        return error(no_such_job(namespace, name));
    }
    let now = daemon.cron.clock.now();
    let mut summaries = Vec::with_capacity(jobs.len());
    for job in jobs {
        let newest = match daemon
            .runtime
            .with_store(|s| s.list_cron_runs(&job.spec.namespace, &job.spec.name, usize::MAX))
        {
            Ok(entries) => entries.into_iter().find_map(|e| e.run),
            Err(e) => return error(e),
        };
        let going = daemon.cron.active(&job_key(&job.spec));
        let next = Schedule::stored(&job).ok().and_then(|s| {
            let from = job.last_scheduled.map_or(now, |l| l.max(now));
            s.next_after(from)
        });
        summaries.push(summarize_job(job, newest.as_ref(), going, next));
    }
    Response::CronJobs { jobs: summaries }
}

/// What `cronjob display` shows of one cron job.
fn summarize_job(
    job: CronJobRow,
    newest: Option<&bodywork_state::RunRow>,
    going: Option<Active>,
    next: Option<DateTime<Utc>>,
) -> CronJobSummary {
    let status = match going {
        Some(Active {
            retry_at: Some(at), ..
        }) => format!("retrying at {}", crate::time::display(&at)),
        Some(_) => "running".to_string(),
        None => newest.map_or_else(|| "waiting".to_string(), |r| r.status.to_string()),
    };
    CronJobSummary {
        namespace: job.spec.namespace,
        name: job.spec.name,
        schedule: job.spec.schedule,
        timezone: job.spec.timezone.unwrap_or_else(|| "UTC".into()),
        repo: job.spec.repo,
        branch: job.spec.branch,
        retries: job.spec.retries,
        history_limit: job.spec.history_limit,
        created: crate::time::display(&job.created),
        last_run: newest.map(|r| crate::time::display(&r.started)),
        next_run: next.as_ref().map(crate::time::display),
        status,
    }
}

/// `cronjob history`: newest first.
pub(crate) fn history(daemon: &Daemon, namespace: &str, name: &str) -> Response {
    let entries = daemon.runtime.with_store(|s| {
        if s.get_cron_job(namespace, name)?.is_none() {
            return Ok(None);
        }
        s.list_cron_runs(namespace, name, usize::MAX).map(Some)
    });
    match entries {
        Ok(Some(entries)) => Response::CronHistory {
            runs: entries.iter().map(summarize_entry).collect(),
        },
        Ok(None) => error(no_such_job(namespace, name)),
        Err(e) => error(e),
    }
}

/// One history row, shaped like a Kubernetes Job's (`JOB_NAME`, counts of
/// active, succeeded and failed runs).
fn summarize_entry(entry: &CronRunRow) -> CronRunSummary {
    let run = entry.run.as_ref();
    let status = run.map(|r| r.status);
    let count = |wanted: &[RunStatus]| u32::from(status.is_some_and(|s| wanted.contains(&s)));
    let mut notes = Vec::new();
    match entry.kind {
        CronRunKind::Scheduled => {}
        CronRunKind::CatchUp => notes.push("catch-up".to_string()),
        CronRunKind::Manual => notes.push("manual".to_string()),
    }
    if entry.attempt > 1 {
        notes.push(format!("retry {}", entry.attempt - 1));
    }
    if entry.skipped {
        notes.push(match entry.skipped_for {
            Some(id) => format!("skipped: {}-{id} was still running", entry.job),
            None => "skipped: a run was still going".to_string(),
        });
    }
    CronRunSummary {
        job_name: entry.run_id.map(|id| job_run_name(&entry.job, id)),
        cron_job: entry.job.clone(),
        run: entry.run_id,
        scheduled: crate::time::display(&entry.scheduled),
        kind: entry.kind.to_string(),
        attempt: entry.attempt,
        skipped: entry.skipped,
        start_time: run.map(|r| crate::time::display(&r.started)),
        completion_time: run
            .and_then(|r| r.finished.as_ref())
            .map(crate::time::display),
        active: count(&[RunStatus::Running]),
        succeeded: count(&[RunStatus::Succeeded]),
        failed: count(&[RunStatus::Failed, RunStatus::Cancelled]),
        note: notes.join(", "),
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

/// `cronjob trigger`: asks the scheduler task to start a run now.
pub(crate) async fn trigger(daemon: &Daemon, namespace: String, name: String) -> Response {
    let (reply, answer) = oneshot::channel();
    let sent = daemon.cron.commands.send(Command::Trigger {
        namespace: namespace.clone(),
        name: name.clone(),
        reply,
    });
    if sent.is_err() {
        return error("the cron scheduler is not running (is the daemon stopping?)");
    }
    match answer.await {
        Ok(Ok(run)) => Response::Lines {
            lines: vec![format!(
                "cronjob={name} triggered in namespace={namespace}: run {} started \
                 (see `bodywork cronjob logs --namespace {namespace} --name {}`)",
                job_run_name(&name, run),
                job_run_name(&name, run)
            )],
        },
        Ok(Err(message)) => error(message),
        Err(_) => error("the cron scheduler stopped before starting the run"),
    }
}

/// `cronjob logs`: the whole log of one run of a cron job.
pub(crate) async fn stream_run_logs(
    daemon: &Daemon,
    namespace: &str,
    name: &str,
    write: &mut OwnedWriteHalf,
) {
    let entry = match parse_job_run_name(name) {
        Some((job, run)) => daemon
            .runtime
            .with_store(|s| s.cron_run_of(run))
            .ok()
            .flatten()
            .filter(|e| e.namespace == namespace && job.is_none_or(|j| j == e.job)),
        None => None,
    };
    let Some(run) = entry.and_then(|e| e.run_id) else {
        crate::protocol::write_error(
            write,
            format!(
                "no run {name:?} of a cron job in namespace {namespace}; run names are the \
                 JOB_NAME column of `bodywork cronjob history --namespace {namespace} --name CRONJOB`"
            ),
        )
        .await;
        return;
    };
    stream_logs(daemon, namespace, run, false, write).await;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s)
            .single()
            .expect("valid time")
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
            spec: NewCronJob {
                namespace: "ns".into(),
                name: "nightly".into(),
                schedule: schedule.into(),
                timezone: None,
                repo: "/src".into(),
                branch: None,
                retries: 0,
                history_limit: 3,
            },
            created,
            last_scheduled: last,
        }
    }

    fn schedule(expression: &str) -> Schedule {
        Schedule::parse(expression, None, false).expect("valid")
    }

    #[test]
    fn standard_expressions_parse_and_compute_times() {
        let hourly = schedule("0 * * * *");
        assert_eq!(hourly.next_after(t(10, 0, 0)), Some(t(11, 0, 0)));
        assert_eq!(hourly.next_after(t(10, 59, 59)), Some(t(11, 0, 0)));
        assert_eq!(hourly.latest_at_or_before(t(10, 0, 0)), Some(t(10, 0, 0)));
        assert_eq!(hourly.latest_at_or_before(t(10, 30, 0)), Some(t(10, 0, 0)));
        let every_15 = schedule("*/15 9-17 * * MON-FRI");
        // 2026-03-02 is a Monday.
        assert_eq!(every_15.next_after(t(8, 59, 0)), Some(t(9, 0, 0)));
        assert_eq!(
            every_15.next_after(t(17, 45, 0)),
            Some(
                Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0)
                    .single()
                    .expect("time")
            )
        );
        assert!(Schedule::parse("@daily", None, false).is_ok());
    }

    #[test]
    fn invalid_expressions_are_clear_errors() {
        let err = Schedule::parse("* * *", None, false).expect_err("3 fields");
        assert_eq!(
            err.to_string(),
            "invalid cron schedule \"* * *\": expected 5 fields (minute hour day-of-month month \
             day-of-week, e.g. \"0 * * * *\"), found 3"
        );
        let err = Schedule::parse("61 * * * *", None, false).expect_err("minute 61");
        assert!(matches!(err, ScheduleError::Invalid { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("invalid cron schedule \"61 * * * *\": "),
            "{err}"
        );
        assert!(Schedule::parse("not a schedule at all", None, false).is_err());
        assert!(
            Schedule::parse("0 0 30 2 *", None, false).is_err(),
            "30 February never comes"
        );
        let err = Schedule::parse("0 * * * *", Some("Mars/Olympus"), false).expect_err("tz");
        assert_eq!(err, ScheduleError::TimeZone("Mars/Olympus".into()));
    }

    #[test]
    fn seconds_only_with_the_test_seam() {
        assert!(matches!(
            Schedule::parse("*/2 * * * * *", None, false),
            Err(ScheduleError::FieldCount { found: 6, .. })
        ));
        let every_2s = Schedule::parse("*/2 * * * * *", None, true).expect("seconds");
        assert_eq!(every_2s.next_after(t(10, 0, 0)), Some(t(10, 0, 2)));
        // Five fields still mean minutes under the seam.
        let minutely = Schedule::parse("* * * * *", None, true).expect("minutes");
        assert_eq!(minutely.next_after(t(10, 0, 0)), Some(t(10, 1, 0)));
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let london = Schedule::parse("0 9 * * *", Some("Europe/London"), false).expect("tz");
        // Winter: London is UTC+0; summer (from 29 March 2026): UTC+1.
        assert_eq!(london.next_after(t(8, 0, 0)), Some(t(9, 0, 0)));
        let summer = Utc
            .with_ymd_and_hms(2026, 6, 1, 0, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            london.next_after(summer),
            Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).single()
        );
        let tokyo = Schedule::parse("0 9 * * *", Some("Asia/Tokyo"), false).expect("tz");
        assert_eq!(
            tokyo.next_after(t(0, 30, 0)),
            Some(
                Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0)
                    .single()
                    .expect("time")
            )
        );
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

    #[test]
    fn history_rows_read_like_kubernetes_jobs() {
        let started = t(10, 0, 1);
        let run = bodywork_state::RunRow {
            id: 7,
            namespace: "ns".into(),
            project: Some("p".into()),
            repo: "/src".into(),
            branch: None,
            commit: None,
            trigger: "cron:nightly".into(),
            status: RunStatus::Failed,
            error: Some("boom".into()),
            log_path: "/tmp/7.log".into(),
            started,
            finished: Some(t(10, 0, 9)),
        };
        let entry = CronRunRow {
            id: 1,
            namespace: "ns".into(),
            job: "nightly".into(),
            scheduled: t(10, 0, 0),
            kind: CronRunKind::CatchUp,
            attempt: 2,
            run_id: Some(7),
            skipped: false,
            skipped_for: None,
            created: started,
            run: Some(run),
        };
        let row = summarize_entry(&entry);
        assert_eq!(row.job_name.as_deref(), Some("nightly-7"));
        assert_eq!((row.active, row.succeeded, row.failed), (0, 0, 1));
        assert_eq!(row.note, "catch-up, retry 1");
        assert!(row.completion_time.is_some());

        let skip = CronRunRow {
            run_id: None,
            run: None,
            skipped: true,
            skipped_for: Some(7),
            kind: CronRunKind::Scheduled,
            attempt: 1,
            ..entry
        };
        let row = summarize_entry(&skip);
        assert_eq!(row.job_name, None);
        assert_eq!((row.active, row.succeeded, row.failed), (0, 0, 0));
        assert_eq!(row.note, "skipped: nightly-7 was still running");
        assert_eq!(row.start_time, None);
    }
}
