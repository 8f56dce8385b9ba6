//! The scheduler task: every tick, start (or skip) the cron jobs that are
//! due as ordinary workflow runs, retry failed runs after their back-off,
//! keep each history within its limit, and pick up pending retries after a
//! restart. Every decision is recorded in the state before it is acted on.
//!
//! The scheduler reaches the daemon only through [`Host`] (the state, its
//! [`CronHandle`], starting and driving a run), and reads the time only
//! through the handle's clock and tokio's timers, so its tests drive it with
//! a fake host on tokio's paused clock.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bodywork_state::{CronJobRow, RunRow, Store, StoreError};
use chrono::{DateTime, Utc};

use super::Daemon;
use super::runs::{PreparedRun, execute_run, prepare_run};
use crate::cron::{
    Command, CronCommands, CronHandle, Due, due, job_key, retry_delay, stored_schedule,
    tick_and_back_off,
};
use bodywork_runtime::{
    CronRunKind, ObjectKind, RunState, RunTrigger, RuntimeError, WorkflowSubmission,
};

/// What the scheduler needs from the daemon: the state, the scheduler's
/// shared handle, and starting and driving one workflow run.
pub(crate) trait Host: Send + Sync + 'static {
    /// A run recorded in the state and ready to go.
    type Run: Send + 'static;

    /// Calls `f` with the state.
    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, RuntimeError>;

    /// The scheduler's shared handle (its clock, its jobs with a run going).
    fn cron(&self) -> &CronHandle;

    /// Records a run of `submission` started by `trigger`.
    fn prepare(
        &self,
        submission: &WorkflowSubmission,
        trigger: &RunTrigger,
    ) -> Result<Self::Run, String>;

    /// A prepared run's id.
    fn run_id(run: &Self::Run) -> i64;

    /// Cancels a prepared run before it goes.
    fn cancel(run: &Self::Run);

    /// Drives a prepared run to its end and records how it ended.
    fn execute(
        &self,
        run: Self::Run,
        submission: WorkflowSubmission,
    ) -> impl Future<Output = RunState> + Send;

    /// Removes the logs of runs deleted from the state.
    fn remove_run_logs(&self, runs: &[RunRow]);
}

impl Host for Daemon {
    type Run = PreparedRun;

    fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, RuntimeError> {
        self.runtime.with_store(f)
    }

    fn cron(&self) -> &CronHandle {
        &self.cron
    }

    fn prepare(
        &self,
        submission: &WorkflowSubmission,
        trigger: &RunTrigger,
    ) -> Result<PreparedRun, String> {
        prepare_run(self, submission, trigger)
    }

    fn run_id(run: &PreparedRun) -> i64 {
        run.id
    }

    fn cancel(run: &PreparedRun) {
        run.cancel.cancel();
    }

    async fn execute(&self, run: PreparedRun, submission: WorkflowSubmission) -> RunState {
        execute_run(self, run, submission, None).await.0
    }

    fn remove_run_logs(&self, runs: &[RunRow]) {
        self.home().remove_run_logs(runs);
    }
}

/// The scheduler task: looks for due cron jobs every tick and starts their
/// runs, until the daemon stops it ([`CronHandle::stop`]).
pub(crate) async fn run_scheduler<H: Host>(daemon: Arc<H>, commands: CronCommands) {
    let CronCommands(mut commands) = commands;
    let (tick, _) = tick_and_back_off();
    // Pending retries first: a due time that finds one waiting is skipped.
    resume_retries(&daemon);
    let mut after_start = true;
    loop {
        look_for_due_jobs(&daemon, after_start);
        after_start = false;
        tokio::select! {
            _ = daemon.cron().stop.cancelled() => break,
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
fn look_for_due_jobs<H: Host>(daemon: &Arc<H>, after_start: bool) {
    let jobs = match daemon.with_store(|s| s.list_cron_jobs(None)) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(target: "cron", "cannot read the cron jobs: {e}");
            return;
        }
    };
    let now = daemon.cron().clock.now();
    for job in jobs {
        let schedule = match stored_schedule(&job) {
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
        if let Err(e) = daemon.with_store(|s| {
            s.set_cron_last_scheduled(&job.spec.namespace, &job.spec.name, &due.scheduled)
        }) {
            tracing::error!(target: "cron", "cannot record the schedule of cron job {}: {e}", job.spec.name);
            continue;
        }
        let key = job_key(&job.spec);
        if let Some(going) = daemon.cron().active(&key) {
            // While a retry is pending no run is going: say only that one is.
            let still_going = going.run.filter(|_| going.retry_at.is_none());
            skip(daemon.as_ref(), &job, due, still_going);
            continue;
        }
        if let Err(e) = start(daemon, job, due.scheduled, due.kind) {
            tracing::error!(target: "cron", "{e}");
        }
    }
}

/// Records a due time skipped because a run of the same cron job is going.
fn skip<H: Host>(daemon: &H, job: &CronJobRow, due: Due, still_going: Option<i64>) {
    let going = still_going.map_or_else(|| "a run".to_string(), |id| format!("run {id}"));
    tracing::warn!(target: "cron",
        "cron job {} in {}: skipping the run due at {} because {going} is still going",
        job.spec.name, job.spec.namespace, due.scheduled);
    let recorded = daemon.with_store(|s| {
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
fn trigger_now<H: Host>(daemon: &Arc<H>, namespace: &str, name: &str) -> Result<i64, RuntimeError> {
    if daemon.cron().stop.is_cancelled() {
        return Err(RuntimeError::unavailable("the daemon is stopping"));
    }
    let job = daemon
        .with_store(|s| s.get_cron_job(namespace, name))?
        .ok_or_else(|| RuntimeError::NotFound {
            kind: ObjectKind::CronJob,
            name: name.to_string(),
            namespace: namespace.to_string(),
        })?;
    let key = job_key(&job.spec);
    if let Some(going) = daemon.cron().active(&key) {
        let run = going
            .run
            .map_or_else(String::new, |id| format!(" ({name}-{id})"));
        return Err(RuntimeError::conflict(match going.retry_at {
            Some(at) => format!(
                "cron job {name} in namespace {namespace} has a failed run{run} to retry at {}",
                bodywork_runtime::local_time(&at)
            ),
            None => format!("cron job {name} in namespace {namespace} has a run going{run}"),
        })
        .with_hint(bodywork_runtime::TRY_AGAIN));
    }
    let now = daemon.cron().clock.now();
    start(daemon, job, now, CronRunKind::Manual).map_err(RuntimeError::failed)
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
            ssh_key_from_env: false,
            secrets_group: job.spec.secrets_group.clone(),
            resolve_as_of: job.spec.resolve_as_of,
            python: job.spec.python.clone(),
            no_python_downloads: false,
            watcher: None,
            from_stages: Vec::new(),
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
fn start<H: Host>(
    daemon: &Arc<H>,
    job: CronJobRow,
    scheduled: DateTime<Utc>,
    kind: CronRunKind,
) -> Result<i64, String> {
    let key = job_key(&job.spec);
    daemon.cron().set_active(&key, None, None);
    let due = DueRun::new(job, scheduled, kind);
    let first = match begin_attempt(daemon.as_ref(), &due, 1) {
        Ok(run) => run,
        Err(e) => {
            daemon.cron().clear_active(&key);
            return Err(e);
        }
    };
    let id = H::run_id(&first);
    let daemon = daemon.clone();
    tokio::spawn(async move {
        drive(daemon.as_ref(), &due, first, 1).await;
        daemon.cron().clear_active(&key);
    });
    Ok(id)
}

/// How long after it was due a retry the daemon was down for is still made
/// up (older ones are dropped: the next scheduled run comes instead).
const RESUME_LIMIT: Duration = Duration::from_secs(3600);

/// After a restart: start waiting again for the retries a previous daemon
/// was waiting to start (a cron job whose newest run failed with retries
/// left). A retry overdue by more than [`RESUME_LIMIT`] is dropped.
fn resume_retries<H: Host>(daemon: &Arc<H>) {
    let jobs = match daemon.with_store(|s| s.list_cron_jobs(None)) {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::error!(target: "cron", "cannot read the cron jobs: {e}");
            return;
        }
    };
    let (_, base) = tick_and_back_off();
    let now = daemon.cron().clock.now();
    for job in jobs {
        let newest = daemon
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
        if run.status != RunState::Failed || entry.attempt > job.spec.retries {
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
        daemon.cron().set_active(&key, Some(failed), Some(due_at));
        let due = DueRun::new(job, entry.scheduled, entry.kind);
        let attempt = entry.attempt + 1;
        tokio::spawn(async move {
            if let Some(next) = retry_after(daemon.as_ref(), &due, attempt, failed, remaining).await
            {
                drive(daemon.as_ref(), &due, next, attempt).await;
            }
            daemon.cron().clear_active(&key);
        });
    }
}

/// Records one attempt's workflow run, linked to its cron job.
fn begin_attempt<H: Host>(daemon: &H, due: &DueRun, attempt: u32) -> Result<H::Run, String> {
    let job = &due.job;
    let trigger = RunTrigger::Cron(job.spec.name.clone());
    let prepared = daemon
        .prepare(&due.submission, &trigger)
        .map_err(|e| format!("cannot start a run of cron job {}: {e}", job.spec.name))?;
    let key = job_key(&job.spec);
    let id = H::run_id(&prepared);
    daemon.cron().set_active(&key, Some(id), None);
    let linked = daemon.with_store(|s| {
        s.insert_cron_run(
            &job.spec.namespace,
            &job.spec.name,
            &due.scheduled,
            due.kind,
            attempt,
            id,
        )
    });
    if let Err(e) = linked {
        // The cron job was deleted meanwhile: this run has no one to keep it.
        tracing::warn!(target: "cron", "run {id} of cron job {}: {e}", job.spec.name);
        H::cancel(&prepared);
    }
    tracing::info!(target: "cron", "cron job {} in {}: started run {id} ({}, attempt {attempt})",
        job.spec.name, job.spec.namespace, due.kind);
    Ok(prepared)
}

/// Runs the attempts of one due time from `first` (attempt number
/// `attempt`): after each failure and its back-off, a retry, up to the cron
/// job's `retries`.
async fn drive<H: Host>(daemon: &H, due: &DueRun, first: H::Run, mut attempt: u32) {
    let job = &due.job;
    let mut prepared = first;
    loop {
        let id = H::run_id(&prepared);
        let status = daemon.execute(prepared, due.submission.clone()).await;
        if !still_exists(daemon, job) {
            // Deleted while it ran: its history goes with it.
            let removed = daemon.with_store(|s| s.delete_run(id));
            remove_runs(daemon, removed.map(|run| run.into_iter().collect()));
            return;
        }
        prune_history(daemon, job);
        if status != RunState::Failed
            || attempt > job.spec.retries
            || daemon.cron().stop.is_cancelled()
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
async fn retry_after<H: Host>(
    daemon: &H,
    due: &DueRun,
    attempt: u32,
    failed: i64,
    delay: Duration,
) -> Option<H::Run> {
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

/// Waits `delay` before a retry of the cron job whose run `failed` failed,
/// or less if the scheduler's clock reaches the retry's time first (a test
/// moving the clock on). False when the scheduler stops or the cron job is deleted meanwhile (the
/// retry is then dropped; a restarted daemon resumes it, see
/// [`resume_retries`]).
async fn back_off<H: Host>(daemon: &H, job: &CronJobRow, failed: i64, delay: Duration) -> bool {
    let key = job_key(&job.spec);
    let retry_at =
        daemon.cron().clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
    daemon.cron().set_active(&key, Some(failed), Some(retry_at));
    let (tick, _) = tick_and_back_off();
    let deadline = tokio::time::Instant::now() + delay;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline || daemon.cron().clock.now() >= retry_at {
            return true;
        }
        tokio::select! {
            _ = daemon.cron().stop.cancelled() => return false,
            _ = tokio::time::sleep((deadline - now).min(tick)) => {}
        }
        if !still_exists(daemon, job) {
            return false;
        }
    }
}

/// Whether the cron job a run was started for still exists (a new cron job
/// of the same name is another one).
fn still_exists<H: Host>(daemon: &H, job: &CronJobRow) -> bool {
    matches!(
        daemon.with_store(|s| s.get_cron_job(&job.spec.namespace, &job.spec.name)),
        Ok(Some(now)) if now.created == job.created
    )
}

/// Keeps the newest `history_limit` runs of a cron job.
pub(super) fn prune_history<H: Host>(daemon: &H, job: &CronJobRow) {
    let keep = job.spec.history_limit as usize;
    remove_runs(
        daemon,
        daemon.with_store(|s| s.prune_cron_history(&job.spec.namespace, &job.spec.name, keep)),
    );
}

/// Removes the log files of runs deleted from the state.
pub(super) fn remove_runs<H: Host>(
    daemon: &H,
    removed: Result<Vec<bodywork_state::RunRow>, bodywork_runtime::RuntimeError>,
) {
    match removed {
        Ok(runs) => daemon.remove_run_logs(&runs),
        Err(e) => tracing::error!(target: "cron", "cannot remove old cron job runs: {e}"),
    }
}

#[cfg(test)]
mod tests;
