//! `bodywork cronjob create/delete/display/history/logs/trigger`: scheduled
//! workflows on the local runtime's daemon.
//!
//! Owns the checks a user gets before anything reaches the daemon (names,
//! the cron expression, the repository) and the printing of cron jobs and
//! their history. Must not schedule anything itself: the daemon's scheduler
//! (`bodywork_local::cron`) does.

use bodywork_local::cron::{Schedule, seconds_allowed};
use bodywork_local::protocol::{CronJobSpec, CronJobSummary, CronRunSummary, Request, Response};
use bodywork_source::Source;

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::{
    CronjobCommand, CronjobCreateArgs, CronjobDisplayArgs, CronjobNameArgs, GlobalArgs,
    OutputFormat,
};
use crate::output::{self, table};

/// Carry out one `cronjob` subcommand.
pub fn run(global: &GlobalArgs, command: &CronjobCommand) -> Outcome {
    match command {
        CronjobCommand::Create(args) => create(args),
        CronjobCommand::Delete(args) => with_names(args, |namespace, name| {
            local::call(Request::CronDelete { namespace, name }, local::print_lines)
        }),
        CronjobCommand::Trigger(args) => with_names(args, |namespace, name| {
            local::call(Request::CronTrigger { namespace, name }, local::print_lines)
        }),
        CronjobCommand::Display(args) => display(global.output, args),
        CronjobCommand::History(args) => history(global.output, args),
        CronjobCommand::Logs(args) => logs(args),
    }
}

/// Checks the namespace and cron job name, then hands them to `f`.
pub(super) fn with_names(
    args: &CronjobNameArgs,
    f: impl FnOnce(String, String) -> Outcome,
) -> Outcome {
    match (
        checked_name("namespace", &args.namespace.namespace),
        checked_name("cron job", &args.name),
    ) {
        (Ok(namespace), Ok(name)) => f(namespace, name),
        (Err(o), _) | (_, Err(o)) => o,
    }
}

fn create(args: &CronjobCreateArgs) -> Outcome {
    if args.dry_run {
        output::report_message(
            "--dry-run prints Kubernetes manifests; use it with --runtime kubernetes",
        );
        return Outcome::Usage;
    }
    let (namespace, name) = match (
        checked_name("namespace", &args.namespace.namespace),
        checked_name("cron job", &args.name),
    ) {
        (Ok(ns), Ok(n)) => (ns, n),
        (Err(o), _) | (_, Err(o)) => return o,
    };
    // Checked here too, so a typo is a usage error before any daemon starts.
    if let Err(e) = Schedule::parse(&args.schedule, args.timezone.as_deref(), seconds_allowed()) {
        output::report_error(&e, None);
        return Outcome::Usage;
    }
    // The daemon has another working directory: send local paths absolute.
    let repo = match Source::parse(&args.git_repo_url) {
        Ok(Source::LocalDir(dir)) => dir.display().to_string(),
        Ok(Source::Git(url)) => url,
        Err(e) => {
            output::report_error(&e, None);
            return Outcome::Usage;
        }
    };
    let spec = CronJobSpec {
        namespace,
        name,
        schedule: args.schedule.clone(),
        timezone: args.timezone.clone(),
        repo,
        branch: args.git_repo_branch.clone(),
        retries: args.retries,
        history_limit: args.history_limit,
    };
    local::call(Request::CronCreate(spec), local::print_lines)
}

/// Prints a table or JSON document; a failure to write is a failure.
fn printed(result: std::io::Result<()>) -> Outcome {
    match result {
        Ok(()) => Outcome::Success,
        Err(e) => {
            output::report_error(&e, None);
            Outcome::Failure
        }
    }
}

fn display(format: OutputFormat, args: &CronjobDisplayArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let request = Request::CronList {
        namespace,
        name: args.name.clone(),
    };
    local::call(request, move |answer| {
        let Response::CronJobs { jobs } = answer else {
            return local::unexpected(answer);
        };
        printed(table::print(format, &jobs, |jobs: &Vec<CronJobSummary>| {
            table::table(
                &[
                    "name", "schedule", "timezone", "repo", "branch", "last run", "next run",
                    "status",
                ],
                jobs.iter().map(|j| {
                    vec![
                        j.name.clone(),
                        j.schedule.clone(),
                        j.timezone.clone(),
                        j.repo.clone(),
                        j.branch.clone().unwrap_or_default(),
                        j.last_run.clone().unwrap_or_else(|| "-".into()),
                        j.next_run.clone().unwrap_or_else(|| "-".into()),
                        j.status.clone(),
                    ]
                }),
            )
        }))
    })
}

fn history(format: OutputFormat, args: &CronjobNameArgs) -> Outcome {
    with_names(args, |namespace, name| {
        local::call(Request::CronHistory { namespace, name }, move |answer| {
            let Response::CronHistory { runs } = answer else {
                return local::unexpected(answer);
            };
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
    })
}

/// One history row in the seed's columns (a skipped time shows when it was
/// due, and why nothing started, in the note).
fn history_row(r: &CronRunSummary) -> Vec<String> {
    let dash = || "-".to_string();
    vec![
        r.job_name.clone().unwrap_or_else(dash),
        r.start_time.clone().unwrap_or_else(|| {
            if r.skipped {
                format!("({})", r.scheduled)
            } else {
                dash()
            }
        }),
        r.completion_time.clone().unwrap_or_else(dash),
        r.active.to_string(),
        r.succeeded.to_string(),
        r.failed.to_string(),
        r.note.clone(),
    ]
}

/// The whole log of one run, line by line on stdout (errors on stderr), so
/// `> log.txt` captures exactly the log.
fn logs(args: &CronjobNameArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let home = match local::home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    let name = args.name.clone();
    local::block_on(async move {
        let mut conn = match local::connect(&home).await {
            Ok(c) => c,
            Err(o) => return o,
        };
        if let Err(e) = conn.send(&Request::CronLogs { namespace, name }).await {
            return local::fail(&e);
        }
        local::print_log_lines(&mut conn).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> CronRunSummary {
        CronRunSummary {
            job_name: Some("nightly-7".into()),
            cron_job: "nightly".into(),
            run: Some(7),
            scheduled: "2026-03-02 10:00:00".into(),
            kind: "scheduled".into(),
            attempt: 1,
            skipped: false,
            start_time: Some("2026-03-02 10:00:01".into()),
            completion_time: None,
            active: 1,
            succeeded: 0,
            failed: 0,
            note: String::new(),
        }
    }

    #[test]
    fn history_rows_follow_the_seed_columns() {
        let row = history_row(&summary());
        assert_eq!(
            row,
            ["nightly-7", "2026-03-02 10:00:01", "-", "1", "0", "0", ""]
        );
        let skipped = CronRunSummary {
            job_name: None,
            run: None,
            skipped: true,
            start_time: None,
            active: 0,
            note: "skipped: nightly-6 was still running".into(),
            ..summary()
        };
        let row = history_row(&skipped);
        assert_eq!(row[0], "-");
        assert_eq!(row[1], "(2026-03-02 10:00:00)");
        assert_eq!(row[6], "skipped: nightly-6 was still running");
    }
}
