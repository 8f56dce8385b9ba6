//! `bodywork env list / prune`: the local runtime's cached Python environments.

use bodywork_local::client::UNEXPECTED;
use bodywork_local::protocol::{EnvSummary, Request, Response};
use bodywork_runtime::RuntimeError;

use super::connect::{printed, with_local};
use crate::Outcome;
use crate::cli::{EnvCommand, GlobalArgs};
use crate::output::table;

pub fn run(global: &GlobalArgs, command: &EnvCommand) -> Outcome {
    let format = global.output;
    let (request, verb) = match command {
        EnvCommand::List => (Request::EnvList, None),
        EnvCommand::Prune => (Request::EnvPrune, Some("removed")),
    };
    with_local(async move |local| {
        let Response::Envs { envs } = local.call(request).await? else {
            return Err(RuntimeError::Failed(UNEXPECTED.into()));
        };
        if let Some(verb) = verb
            && format == crate::cli::OutputFormat::Table
        {
            println!("{verb} {} environment(s)", envs.len());
        }
        let result = table::print(format, &envs, |envs: &Vec<EnvSummary>| {
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
        printed(result)
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
