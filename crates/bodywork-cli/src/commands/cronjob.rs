//! `bodywork cronjob create/delete/display/history/logs/trigger`:
//! scheduled workflows, on either runtime.
//!
//! Owns the checks a user gets before anything reaches a runtime (names,
//! the cron expression, the repository) and the printing of cron jobs and
//! their history. Must not schedule anything itself: the local daemon's
//! scheduler or the cluster's CronJob controller does.

use bodywork_config::schedule::{Schedule, seconds_allowed};
use bodywork_runtime::{CronJobSpec, CronJobSummary, CronRunKind, CronRunSummary, ObjectKind};

use super::connect::{printed, with_control};
use super::{checked_name, checked_names, checked_optional, dry_run, only_named, project_location};
use crate::cli::{CronjobCommand, CronjobCreateArgs, CronjobNameArgs, GlobalArgs, OutputFormat};
use crate::output::{TerminalLog, table, time};
use crate::{CliError, CliResult, Outcome};

/// Carry out one `cronjob` subcommand.
pub fn run(global: &GlobalArgs, command: &CronjobCommand) -> CliResult {
    match command {
        CronjobCommand::Create(args) => {
            create(global, asked(args), args.dry_run, false, None, created)
        }
        CronjobCommand::Delete(args) => with_names(args, |namespace, name| {
            with_control(global, None, async move |cp| {
                cp.delete_cronjob(&namespace, &name).await?;
                println!("cronjob={name} deleted from namespace={namespace}");
                Ok(Outcome::Success)
            })
        }),
        CronjobCommand::Trigger(args) => with_names(args, |namespace, name| {
            with_control(global, None, async move |cp| {
                let run = cp.trigger_cronjob(&namespace, &name).await?;
                println!(
                    "cronjob={name} triggered in namespace={namespace}: run {run} started \
                     (see `bodywork cronjob logs --namespace {namespace} --name {run}`)"
                );
                Ok(Outcome::Success)
            })
        }),
        CronjobCommand::Display(args) => {
            display(global, &args.namespace.namespace, args.name.clone())
        }
        CronjobCommand::History(args) => history(global, &args.namespace.namespace, &args.name),
        CronjobCommand::Logs(args) => logs(global, &args.namespace.namespace, &args.name),
    }
}

/// Checks the namespace and cron job name, then hands them to `f`.
fn with_names(args: &CronjobNameArgs, f: impl FnOnce(String, String) -> CliResult) -> CliResult {
    let (namespace, name) = checked_names(&args.namespace.namespace, "cron job", &args.name)?;
    f(namespace, name)
}

/// The cron job `cronjob create` asks for, before any check.
fn asked(args: &CronjobCreateArgs) -> CronJobSpec {
    CronJobSpec {
        namespace: args.namespace.namespace.clone(),
        name: args.name.clone(),
        schedule: args.schedule.clone(),
        timezone: args.timezone.clone(),
        repo: args.git_repo_url.clone(),
        branch: args.git_repo_branch.clone(),
        retries: args.retries,
        history_limit: args.history_limit,
        secrets_group: args.group.clone(),
        resolve_as_of: args.resolve.resolve_as_of,
        python: args.python.python.clone(),
    }
}

/// A schedule is checked in the CLI, once for both runtimes, so a typo is
/// a usage error before anything starts.
pub(super) fn checked_schedule(
    schedule: &str,
    timezone: Option<&str>,
) -> Result<Schedule, CliError> {
    Schedule::parse(schedule, timezone, seconds_allowed())
        .map_err(|e| CliError::error(&e, Outcome::Usage))
}

/// The seed's line for a cron job created: where, and when it runs next.
fn created(spec: &CronJobSpec, schedule: &Schedule, _update: bool) -> String {
    let next = schedule
        .next_after(chrono::Utc::now())
        .map(|t| format!(", next run at {}", time::local(&t)))
        .unwrap_or_default();
    format!(
        "cronjob={} created in namespace={} (schedule \"{}\"{next})",
        spec.name, spec.namespace, spec.schedule
    )
}

/// Create the cron job `asked` (as either dialect's verb built it, not yet
/// checked); with `update`, Bodywork 3's `update cronjob`: the cron job of
/// that name changed in place, its history kept. `image`: the image its
/// runs run in on Kubernetes (default: `BODYWORK_IMAGE`, else bodywork's
/// own); `done` words what was done.
pub(super) fn create(
    global: &GlobalArgs,
    asked: CronJobSpec,
    dry_run: bool,
    update: bool,
    image: Option<String>,
    done: fn(&CronJobSpec, &Schedule, bool) -> String,
) -> CliResult {
    let (namespace, name) = checked_names(&asked.namespace, "cron job", &asked.name)?;
    let schedule = checked_schedule(&asked.schedule, asked.timezone.as_deref())?;
    let repo = project_location(&asked.repo, Outcome::Usage)?;
    let secrets_group = checked_optional("secrets group", asked.secrets_group.as_deref())?;
    let spec = CronJobSpec {
        namespace,
        name,
        repo,
        secrets_group,
        ..asked
    };
    if dry_run {
        return dry_run::cronjob(global, &spec);
    }
    with_control(global, image, async move |cp| {
        if update {
            cp.update_cronjob(&spec).await?;
        } else {
            cp.create_cronjob(&spec).await?;
        }
        println!("{}", done(&spec, &schedule, update));
        Ok(Outcome::Success)
    })
}

/// The cron jobs of `namespace` (or only `name`), as a table or JSON.
pub(super) fn display(global: &GlobalArgs, namespace: &str, name: Option<String>) -> CliResult {
    let namespace = checked_name("namespace", namespace)?;
    let format = global.output;
    with_control(global, None, async move |cp| {
        let jobs = cp.list_cronjobs(&namespace).await?;
        let jobs = only_named(
            jobs,
            name.as_deref(),
            |j| &j.name,
            ObjectKind::CronJob,
            &namespace,
        )?;
        printed(print_cronjobs(format, &jobs))
    })
}

/// The cron jobs table (or JSON).
pub(super) fn print_cronjobs(
    format: OutputFormat,
    jobs: &Vec<CronJobSummary>,
) -> std::io::Result<()> {
    table::print(format, jobs, |jobs: &Vec<CronJobSummary>| {
        table::table(
            &[
                "name", "schedule", "timezone", "repo", "branch", "last run", "next run", "status",
            ],
            jobs.iter().map(|j| {
                vec![
                    j.name.clone(),
                    j.schedule.clone(),
                    j.timezone.clone(),
                    j.repo.clone(),
                    j.branch.clone().unwrap_or_default(),
                    time::local_or(j.last_run.as_ref(), "-"),
                    time::local_or(j.next_run.as_ref(), "-"),
                    status_cell(j),
                ]
            }),
        )
    })
}

/// The runs of cron job `name`, newest first.
pub(super) fn history(global: &GlobalArgs, namespace: &str, name: &str) -> CliResult {
    let format = global.output;
    let (namespace, name) = checked_names(namespace, "cron job", name)?;
    with_control(global, None, async move |cp| {
        let runs = cp.cronjob_history(&namespace, &name).await?;
        printed(table::print(format, &runs, |runs: &Vec<CronRunSummary>| {
            table::table(
                &[
                    "job_name",
                    "start_time",
                    "completion_time",
                    "active",
                    "succeeded",
                    "failed",
                    "note",
                ],
                runs.iter().map(history_row),
            )
        }))
    })
}

/// The whole log of one run, line by line on stdout (errors on stderr), so
/// `> log.txt` captures exactly the log.
pub(super) fn logs(global: &GlobalArgs, namespace: &str, run: &str) -> CliResult {
    let namespace = checked_name("namespace", namespace)?;
    let run = run.to_string();
    with_control(global, None, async move |cp| {
        cp.cronjob_logs(&namespace, &run, &TerminalLog::stdout())
            .await?;
        Ok(Outcome::Success)
    })
}

/// A cron job's status as its table shows it: `retrying at TIME` while a
/// failed run waits for its retry, else the newest run's state, else
/// `waiting`.
fn status_cell(j: &CronJobSummary) -> String {
    match (j.retry_at, j.status) {
        (Some(at), _) => format!("retrying at {}", time::local(&at)),
        (None, Some(state)) => state.to_string(),
        (None, None) => "waiting".into(),
    }
}

/// One history row in the seed's columns (a skipped time shows when it was
/// due, and why nothing started, in the note).
fn history_row(r: &CronRunSummary) -> Vec<String> {
    let dash = || "-".to_string();
    vec![
        r.job_name.clone().unwrap_or_else(dash),
        match (&r.start_time, &r.scheduled) {
            (Some(t), _) => time::local(t),
            (None, Some(due)) if r.skipped => format!("({})", time::local(due)),
            (None, _) => dash(),
        },
        time::local_or(r.completion_time.as_ref(), "-"),
        r.active.to_string(),
        r.succeeded.to_string(),
        r.failed.to_string(),
        note(r),
    ]
}

/// Catch-up, manual, retry, skipped: the history's NOTE, in words.
fn note(r: &CronRunSummary) -> String {
    let mut notes = Vec::new();
    match r.kind {
        CronRunKind::Scheduled => {}
        CronRunKind::CatchUp => notes.push("catch-up".to_string()),
        CronRunKind::Manual => notes.push("manual".to_string()),
    }
    if r.attempt > 1 {
        notes.push(format!("retry {}", r.attempt - 1));
    }
    if r.skipped {
        notes.push(match &r.skipped_for {
            Some(run) => format!("skipped: {run} was still running"),
            None => "skipped: a run was still going".to_string(),
        });
    }
    notes.join(", ")
}

#[cfg(test)]
mod tests {
    use bodywork_runtime::RunState;

    use super::*;

    fn at(second: u32) -> chrono::DateTime<chrono::Utc> {
        use chrono::TimeZone;
        chrono::Utc
            .with_ymd_and_hms(2026, 3, 2, 10, 0, second)
            .unwrap()
    }

    fn summary() -> CronRunSummary {
        CronRunSummary {
            job_name: Some("nightly-7".into()),
            cron_job: "nightly".into(),
            run: Some(7),
            scheduled: Some(at(0)),
            kind: CronRunKind::Scheduled,
            attempt: 1,
            skipped: false,
            skipped_for: None,
            start_time: Some(at(1)),
            completion_time: None,
            active: 1,
            succeeded: 0,
            failed: 0,
        }
    }

    #[test]
    fn a_cron_jobs_status_reads_as_it_did() {
        let job = |status, retry_at| CronJobSummary {
            namespace: "ns".into(),
            name: "nightly".into(),
            schedule: "0 0 * * *".into(),
            timezone: "UTC".into(),
            repo: "/src".into(),
            branch: None,
            retries: 1,
            history_limit: 1,
            secrets_group: None,
            resolve_as_of: None,
            python: None,
            created: None,
            last_run: None,
            next_run: None,
            status,
            retry_at,
        };
        assert_eq!(status_cell(&job(None, None)), "waiting");
        assert_eq!(status_cell(&job(Some(RunState::Running), None)), "running");
        assert_eq!(
            status_cell(&job(Some(RunState::Failed), Some(at(5)))),
            format!("retrying at {}", time::local(&at(5)))
        );
    }

    #[test]
    fn history_rows_follow_the_seed_columns() {
        let row = history_row(&summary());
        let started = time::local(&at(1));
        assert_eq!(row, ["nightly-7", &started, "-", "1", "0", "0", ""]);
        let skipped = CronRunSummary {
            job_name: None,
            run: None,
            skipped: true,
            start_time: None,
            active: 0,
            skipped_for: Some("nightly-6".into()),
            ..summary()
        };
        let row = history_row(&skipped);
        assert_eq!(row[0], "-");
        assert_eq!(row[1], format!("({})", time::local(&at(0))));
        assert_eq!(row[6], "skipped: nightly-6 was still running");
        let unknown = CronRunSummary {
            skipped_for: None,
            ..skipped
        };
        assert_eq!(note(&unknown), "skipped: a run was still going");
        let retried_catch_up = CronRunSummary {
            kind: CronRunKind::CatchUp,
            attempt: 2,
            ..summary()
        };
        assert_eq!(note(&retried_catch_up), "catch-up, retry 1");
        let manual = CronRunSummary {
            kind: CronRunKind::Manual,
            ..summary()
        };
        assert_eq!(note(&manual), "manual");
    }
}
