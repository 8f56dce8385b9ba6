//! `bodywork runs --namespace NS`: the history of workflow runs.

use bodywork_runtime::RunSummary;

use super::checked_name;
use super::connect::{printed, with_control};
use crate::CliResult;
use crate::cli::{GlobalArgs, OutputFormat, RunsArgs};
use crate::output::{table, time};

pub fn run(global: &GlobalArgs, args: &RunsArgs) -> CliResult {
    let namespace = checked_name("namespace", &args.namespace.namespace)?;
    let format = global.output;
    with_control(global, None, async move |cp| {
        let runs = cp.list_runs(&namespace).await?;
        printed(print_runs(format, &runs))
    })
}

/// The runs table (or JSON), newest first as given.
pub(super) fn print_runs(format: OutputFormat, runs: &Vec<RunSummary>) -> std::io::Result<()> {
    table::print(format, runs, |runs: &Vec<RunSummary>| {
        table::table(
            &[
                "run", "project", "status", "started", "finished", "commit", "repo", "branch",
                "trigger",
            ],
            runs.iter().map(|r| {
                vec![
                    r.id.to_string(),
                    r.project.clone().unwrap_or_default(),
                    r.status.to_string(),
                    time::local_or(r.started.as_ref(), ""),
                    time::local_or(r.finished.as_ref(), ""),
                    r.commit.as_deref().map(short_commit).unwrap_or_default(),
                    r.repo.clone(),
                    r.branch.clone().unwrap_or_default(),
                    r.trigger.to_string(),
                ]
            }),
        )
    })
}

fn short_commit(c: &str) -> String {
    c.chars().take(12).collect()
}
