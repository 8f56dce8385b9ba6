//! `bodywork runs --namespace NS`: the history of workflow runs.

use bodywork_local::protocol::{Request, Response, RunSummary};

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::{GlobalArgs, RunsArgs};
use crate::output::{self, table};

pub fn run(global: &GlobalArgs, args: &RunsArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let format = global.output;
    local::call(
        Request::ListRuns {
            namespace: Some(namespace),
            limit: 100,
        },
        move |answer| {
            let Response::Runs { runs } = answer else {
                return local::unexpected(answer);
            };
            let printed = table::print(format, &runs, |runs: &Vec<RunSummary>| {
                table::table(
                    &[
                        "run", "project", "status", "started", "finished", "commit", "repo",
                        "branch", "trigger",
                    ],
                    runs.iter().map(|r| {
                        vec![
                            r.id.to_string(),
                            r.project.clone().unwrap_or_default(),
                            r.status.clone(),
                            r.started.clone(),
                            r.finished.clone().unwrap_or_default(),
                            r.commit.as_deref().map(short_commit).unwrap_or_default(),
                            r.repo.clone(),
                            r.branch.clone().unwrap_or_default(),
                            r.trigger.clone(),
                        ]
                    }),
                )
            });
            match printed {
                Ok(()) => Outcome::Success,
                Err(e) => {
                    output::report_error(&e, None);
                    Outcome::Failure
                }
            }
        },
    )
}

fn short_commit(c: &str) -> String {
    c.chars().take(12).collect()
}
