//! The CLI's cron requests, answered from the state and the scheduler:
//! create, delete, list, history, trigger and a run's log.

use bodywork_config::schedule::{Schedule, seconds_allowed};
use bodywork_runtime::{
    CronJobSpec, CronJobSummary, CronRunSummary, ObjectKind, Result, RunState, RuntimeError,
};
use bodywork_state::{CronJobRow, CronRunRow};
use chrono::{DateTime, Utc};
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::oneshot;

use super::answer;
use crate::cron::{Active, Command, job_key, job_run_name, parse_job_run_name, stored_schedule};
use crate::daemon::Daemon;
use crate::daemon::runs::streaming::stream_logs;
use crate::protocol::{Request, Response};

pub(super) async fn handle(daemon: &Daemon, request: Request) -> Response {
    match request {
        Request::CronCreate(spec) => answer(create(daemon, spec).await),
        Request::CronUpdate(spec) => answer(update(daemon, spec).await),
        Request::CronDelete { namespace, name } => answer(delete(daemon, &namespace, &name)),
        Request::CronList { namespace } => answer(list(daemon, &namespace)),
        Request::CronHistory { namespace, name } => answer(history(daemon, &namespace, &name)),
        Request::CronTrigger { namespace, name } => {
            answer(trigger(daemon, &namespace, &name).await)
        }
        other => super::misrouted(&other),
    }
}

fn no_such_job(namespace: &str, name: &str) -> RuntimeError {
    RuntimeError::NotFound {
        kind: ObjectKind::CronJob,
        name: name.to_string(),
        namespace: namespace.to_string(),
    }
}

/// `cronjob create`. The schedule was checked by the CLI; it is checked
/// again here, as the daemon must never store one it cannot compute.
/// The schedule is checked on a blocking thread: finding that an
/// expression never matches searches years ahead.
async fn create(daemon: &Daemon, spec: CronJobSpec) -> Result<()> {
    checked(&spec).await?;
    let new = spec;
    let created = daemon.runtime.with_store(|s| {
        if !s.namespace_exists(&new.namespace)? {
            return Ok(false);
        }
        s.create_cron_job(&new).map(|_| true)
    })?;
    if created {
        Ok(())
    } else {
        Err(RuntimeError::NotFound {
            kind: ObjectKind::Namespace,
            name: new.namespace.clone(),
            namespace: new.namespace,
        })
    }
}

/// What the daemon checks of a cron job before storing it.
async fn checked(spec: &CronJobSpec) -> Result<()> {
    let (schedule, timezone) = (spec.schedule.clone(), spec.timezone.clone());
    tokio::task::spawn_blocking(move || {
        Schedule::parse(&schedule, timezone.as_deref(), seconds_allowed()).map(|_| ())
    })
    .await
    .map_err(RuntimeError::failed)?
    .map_err(RuntimeError::failed)?;
    if spec.history_limit == 0 {
        return Err(RuntimeError::failed("--history-limit must be at least 1"));
    }
    Ok(())
}

/// `update cronjob`: the cron job changed in place. Its history stays
/// (cut to a lower `history_limit` at once), a run going carries on, and a
/// changed schedule counts from now (the scheduler's clock).
async fn update(daemon: &Daemon, spec: CronJobSpec) -> Result<()> {
    checked(&spec).await?;
    let now = daemon.cron.clock.now();
    let updated = daemon
        .runtime
        .with_store(|s| s.update_cron_job(&spec, &now))?
        .ok_or_else(|| no_such_job(&spec.namespace, &spec.name))?;
    crate::daemon::scheduler::prune_history(daemon, &updated);
    Ok(())
}

/// `cronjob delete`: the cron job, its history and their logs; a run going
/// is cancelled (and removed when it has stopped).
fn delete(daemon: &Daemon, namespace: &str, name: &str) -> Result<()> {
    let removed = daemon.runtime.with_store(|s| {
        if s.get_cron_job(namespace, name)?.is_none() {
            return Ok(None);
        }
        s.delete_cron_job(namespace, name).map(Some)
    })?;
    let Some(removed) = removed else {
        return Err(no_such_job(namespace, name));
    };
    crate::daemon::scheduler::remove_runs(daemon, Ok(removed));
    let key = (namespace.to_string(), name.to_string());
    if let Some(Active { run: Some(run), .. }) = daemon.cron.active(&key)
        && let Ok(runs) = daemon.runs.lock()
        && let Some(active) = runs.get(&run)
    {
        active.cancel.cancel();
    }
    Ok(())
}

/// `cronjob display`: every cron job of the namespace.
fn list(daemon: &Daemon, namespace: &str) -> Result<Vec<CronJobSummary>> {
    let jobs = daemon
        .runtime
        .with_store(|s| s.list_cron_jobs(Some(namespace)))?;
    let now = daemon.cron.clock.now();
    let mut summaries = Vec::with_capacity(jobs.len());
    for job in jobs {
        let newest = daemon
            .runtime
            .with_store(|s| s.list_cron_runs(&job.spec.namespace, &job.spec.name, usize::MAX))?
            .into_iter()
            .find_map(|e| e.run);
        let going = daemon.cron.active(&job_key(&job.spec));
        let next = stored_schedule(&job).ok().and_then(|s| {
            let from = job.last_scheduled.map_or(now, |l| l.max(now));
            s.next_after(from)
        });
        summaries.push(summarize_job(job, newest.as_ref(), going, next));
    }
    Ok(summaries)
}

/// What `cronjob display` shows of one cron job.
fn summarize_job(
    job: CronJobRow,
    newest: Option<&bodywork_state::RunRow>,
    going: Option<Active>,
    next: Option<DateTime<Utc>>,
) -> CronJobSummary {
    // The scheduler forgets a run only after its outcome is stored: in that
    // moment the stored outcome, not "running", is the truth.
    let finished =
        |run: Option<i64>| newest.filter(|r| Some(r.id) == run && r.status != RunState::Running);
    let newest_state = newest.map(|r| r.status);
    let (status, retry_at) = match going {
        Some(Active {
            retry_at: Some(at), ..
        }) => (newest_state, Some(at)),
        Some(Active { run, .. }) => (
            Some(finished(run).map_or(RunState::Running, |r| r.status)),
            None,
        ),
        None => (newest_state, None),
    };
    CronJobSummary {
        namespace: job.spec.namespace,
        name: job.spec.name,
        schedule: job.spec.schedule,
        timezone: job.spec.timezone.unwrap_or_else(|| "UTC".into()),
        // Shown, so credentials in the URL are not.
        repo: bodywork_source::redact_url(&job.spec.repo),
        branch: job.spec.branch,
        retries: job.spec.retries,
        history_limit: job.spec.history_limit,
        secrets_group: job.spec.secrets_group,
        resolve_as_of: job.spec.resolve_as_of,
        python: job.spec.python,
        created: Some(job.created),
        last_run: newest.map(|r| r.started),
        next_run: next,
        status,
        retry_at,
    }
}

/// `cronjob history`: newest first.
fn history(daemon: &Daemon, namespace: &str, name: &str) -> Result<Vec<CronRunSummary>> {
    let entries = daemon.runtime.with_store(|s| {
        if s.get_cron_job(namespace, name)?.is_none() {
            return Ok(None);
        }
        s.list_cron_runs(namespace, name, usize::MAX).map(Some)
    })?;
    match entries {
        Some(entries) => Ok(entries.iter().map(summarize_entry).collect()),
        None => Err(no_such_job(namespace, name)),
    }
}

/// One history row, shaped like a Kubernetes Job's (`JOB_NAME`, counts of
/// active, succeeded and failed runs).
fn summarize_entry(entry: &CronRunRow) -> CronRunSummary {
    let run = entry.run.as_ref();
    let status = run.map(|r| r.status);
    let count = |wanted: &[RunState]| u32::from(status.is_some_and(|s| wanted.contains(&s)));
    CronRunSummary {
        job_name: entry.run_id.map(|id| job_run_name(&entry.job, id)),
        cron_job: entry.job.clone(),
        run: entry.run_id,
        scheduled: Some(entry.scheduled),
        kind: entry.kind,
        attempt: entry.attempt,
        skipped: entry.skipped,
        skipped_for: entry
            .skipped_for
            .filter(|_| entry.skipped)
            .map(|id| job_run_name(&entry.job, id)),
        start_time: run.map(|r| r.started),
        completion_time: run.and_then(|r| r.finished),
        active: count(&[RunState::Running]),
        succeeded: count(&[RunState::Succeeded]),
        failed: count(&[RunState::Failed, RunState::Cancelled]),
    }
}

/// `cronjob trigger`: asks the scheduler task to start a run now; the
/// run's name (`NAME-RUN`).
async fn trigger(daemon: &Daemon, namespace: &str, name: &str) -> Result<String> {
    let (reply, answer) = oneshot::channel();
    let sent = daemon.cron.commands.send(Command::Trigger {
        namespace: namespace.to_string(),
        name: name.to_string(),
        reply,
    });
    if sent.is_err() {
        return Err(RuntimeError::unavailable(
            "the cron scheduler is not running (is the daemon stopping?)",
        ));
    }
    match answer.await {
        Ok(Ok(run)) => Ok(job_run_name(name, run)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RuntimeError::unavailable(
            "the cron scheduler stopped before starting the run",
        )),
    }
}

/// `cronjob logs`: the whole log of one run of a cron job.
pub(in crate::daemon) async fn stream_run_logs(
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
        let error = RuntimeError::failed(format!(
            "no run {name:?} of a cron job in namespace {namespace}"
        ))
        .with_hint(format!(
            "run names are the JOB_NAME column of `bodywork cronjob history --namespace \
             {namespace} --name CRONJOB`"
        ));
        crate::protocol::write_error(write, error).await;
        return;
    };
    stream_logs(daemon, namespace, run, false, write).await;
}

#[cfg(test)]
mod tests {
    use bodywork_runtime::CronRunKind;

    use crate::cron::test_time as t;

    use super::*;

    #[test]
    fn history_rows_read_like_kubernetes_jobs() {
        let started = t(10, 0, 1);
        let run = bodywork_state::RunRow {
            error: Some("boom".into()),
            started,
            finished: Some(t(10, 0, 9)),
            ..run_row(7, RunState::Failed)
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
        assert_eq!((row.kind, row.attempt), (CronRunKind::CatchUp, 2));
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
        assert!(row.skipped);
        assert_eq!(row.skipped_for.as_deref(), Some("nightly-7"));
        assert_eq!(row.start_time, None);
    }

    fn cron_job() -> CronJobRow {
        CronJobRow {
            spec: CronJobSpec {
                namespace: "ns".into(),
                name: "nightly".into(),
                schedule: "0 0 1 1 *".into(),
                timezone: None,
                repo: "/src".into(),
                branch: None,
                retries: 0,
                history_limit: 1,
                secrets_group: None,
                resolve_as_of: None,
                python: None,
            },
            created: t(9, 0, 0),
            last_scheduled: None,
        }
    }

    fn run_row(id: i64, status: RunState) -> bodywork_state::RunRow {
        bodywork_state::RunRow {
            id,
            namespace: "ns".into(),
            project: Some("p".into()),
            repo: "/src".into(),
            branch: None,
            commit: None,
            trigger: "cron:nightly".into(),
            status,
            error: None,
            log_path: "/tmp/7.log".into(),
            started: t(10, 0, 1),
            finished: None,
            options: bodywork_runtime::RunOptions::default(),
        }
    }

    #[test]
    fn a_stored_outcome_wins_over_the_schedulers_last_moment_of_a_run() {
        let going = |run| {
            Some(Active {
                run,
                retry_at: None,
            })
        };
        let status = |newest: Option<&bodywork_state::RunRow>, going| {
            let job = summarize_job(cron_job(), newest, going, None);
            (job.status, job.retry_at)
        };
        let done = run_row(7, RunState::Succeeded);
        let (succeeded, running) = (Some(RunState::Succeeded), Some(RunState::Running));
        // The run has finished and is stored; the scheduler has not yet
        // forgotten it.
        assert_eq!(status(Some(&done), going(Some(7))), (succeeded, None));
        // A newer attempt, started and not stored yet, or not numbered yet.
        assert_eq!(status(Some(&done), going(Some(8))), (running, None));
        assert_eq!(status(Some(&done), going(None)), (running, None));
        assert_eq!(
            status(Some(&run_row(7, RunState::Running)), going(Some(7))),
            (running, None)
        );
        assert_eq!(status(Some(&done), None), (succeeded, None));
        assert_eq!(status(None, None), (None, None));
        let retrying = Some(Active {
            run: Some(7),
            retry_at: Some(t(10, 5, 0)),
        });
        assert_eq!(
            status(Some(&run_row(7, RunState::Failed)), retrying),
            (Some(RunState::Failed), Some(t(10, 5, 0))),
            "a pending retry is shown as such"
        );
    }
}
