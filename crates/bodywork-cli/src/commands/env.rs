//! `bodywork env list / prune`: the local runtime's cached Python environments.

use bodywork_local::protocol::{EnvSummary, Request, Response};

use super::local;
use crate::Outcome;
use crate::cli::{EnvCommand, GlobalArgs};
use crate::output::{self, table};

pub fn run(global: &GlobalArgs, command: &EnvCommand) -> Outcome {
    let format = global.output;
    let (request, verb) = match command {
        EnvCommand::List => (Request::EnvList, None),
        EnvCommand::Prune => (Request::EnvPrune, Some("removed")),
    };
    local::call(request, move |answer| {
        let Response::Envs { envs } = answer else {
            return local::unexpected(answer);
        };
        if let Some(verb) = verb
            && format == crate::cli::OutputFormat::Table
        {
            println!("{verb} {} environment(s)", envs.len());
        }
        let printed = table::print(format, &envs, |envs: &Vec<EnvSummary>| {
            table::table(
                &[
                    "key",
                    "python",
                    "requirements",
                    "size",
                    "created",
                    "last used",
                ],
                envs.iter().map(|e| {
                    vec![
                        e.key.clone(),
                        e.python.clone(),
                        if e.requirements.is_empty() {
                            "(none)".into()
                        } else {
                            e.requirements.join(" ")
                        },
                        human_size(e.size_bytes),
                        e.created.clone(),
                        e.last_used.clone().unwrap_or_default(),
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
    })
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}
