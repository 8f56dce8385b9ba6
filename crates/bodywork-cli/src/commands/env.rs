//! `bodywork env list / show / prune`: the local runtime's cached Python
//! environments, each with the date its requirements were resolved as of
//! and its lock (every package installed, `name==version`).

use bodywork_local::protocol::{EnvSummary, Request};

use super::connect::{printed, with_local};
use crate::cli::{EnvCommand, GlobalArgs, OutputFormat};
use crate::output::{table, time};
use crate::{CliError, CliResult};

pub fn run(global: &GlobalArgs, command: &EnvCommand) -> CliResult {
    let format = global.output;
    let (request, verb, wanted) = match command {
        EnvCommand::List => (Request::EnvList, None, None),
        EnvCommand::Show(args) => (Request::EnvList, None, Some(args.key.clone())),
        EnvCommand::Prune => (Request::EnvPrune, Some("removed"), None),
    };
    with_local(async move |local| {
        let envs: Vec<EnvSummary> = local.ask(request).await?;
        if let Some(wanted) = wanted {
            return match one(envs, &wanted) {
                Ok(env) => printed(table::print(format, &env, fields)),
                Err(why) => Err(CliError::failure(why)),
            };
        }
        if let Some(verb) = verb
            && format == OutputFormat::Table
        {
            println!("{verb} {} environment(s)", envs.len());
        }
        printed(table::print(format, &envs, |envs: &Vec<EnvSummary>| {
            table::table(
                &[
                    "key",
                    "python",
                    "resolved as of",
                    "requirements",
                    "lock",
                    "size",
                    "created",
                    "last used",
                ],
                envs.iter().map(|e| {
                    vec![
                        e.key.clone(),
                        e.python.clone(),
                        e.resolved_as_of.clone(),
                        if e.requirements.is_empty() {
                            "(none)".into()
                        } else {
                            e.requirements.join(" ")
                        },
                        lock_text(e),
                        human_size(e.size_bytes),
                        time::local(&e.created),
                        time::local_or(e.last_used.as_ref(), ""),
                    ]
                }),
            )
        }))
    })
}

/// The environment whose key is `wanted` or starts with it.
fn one(envs: Vec<EnvSummary>, wanted: &str) -> Result<EnvSummary, String> {
    let wanted = wanted.trim();
    if wanted.is_empty() {
        return Err("give an environment's key (see `bodywork env list`)".into());
    }
    let mut matching: Vec<EnvSummary> = envs
        .into_iter()
        .filter(|e| e.key.starts_with(wanted))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(format!("no environment {wanted} (see `bodywork env list`)")),
        n => Err(format!(
            "{n} environments start with {wanted}: {}; give more of the key",
            matching
                .iter()
                .map(|e| e.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The lock on one line, or why there is none.
fn lock_text(env: &EnvSummary) -> String {
    match &env.lock {
        Some(lock) if lock.is_empty() => "(none)".into(),
        Some(lock) => lock.join(" "),
        None => "(not recorded)".into(),
    }
}

/// `env show`: one field a line (FIELD / VALUE), the lock one package a
/// line.
fn fields(env: &EnvSummary) -> comfy_table::Table {
    let mut rows = vec![
        vec!["key".to_string(), env.key.clone()],
        vec!["python".into(), env.python.clone()],
        vec!["resolved_as_of".into(), env.resolved_as_of.clone()],
    ];
    if let Some(note) = &env.note {
        rows.push(vec!["note".into(), note.clone()]);
    }
    rows.extend([
        vec!["installer".into(), env.installer.clone()],
        vec![
            "requirements".into(),
            if env.requirements.is_empty() {
                "(none)".into()
            } else {
                env.requirements.join("\n")
            },
        ],
        vec![
            "lock".into(),
            match &env.lock {
                Some(lock) if !lock.is_empty() => lock.join("\n"),
                _ => lock_text(env),
            },
        ],
        vec!["directory".into(), env.dir.clone()],
        vec!["size".into(), human_size(env.size_bytes)],
        vec!["created".into(), time::local(&env.created)],
        vec![
            "last_used".into(),
            time::local_or(env.last_used.as_ref(), ""),
        ],
    ]);
    table::table(&["field", "value"], rows)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(key: &str) -> EnvSummary {
        EnvSummary {
            key: key.into(),
            python: "3.11.7 (/usr/bin/python3.11)".into(),
            requirements: vec!["flask==2.1.2".into()],
            size_bytes: 3 << 20,
            created: bodywork_runtime::time::parse_rfc3339("2026-01-01T10:00:00Z").unwrap(),
            last_used: None,
            python_version: "3.11.7".into(),
            resolved_as_of: "2022-05-20T12:00:00Z".into(),
            lock: Some(vec!["flask==2.1.2".into(), "werkzeug==2.1.2".into()]),
            note: None,
            installer: "uv".into(),
            dir: format!("/h/envs/{key}"),
        }
    }

    #[test]
    fn an_environment_is_found_by_the_start_of_its_key() {
        let envs = vec![env("0123456789abcdef"), env("0124456789abcdef")];
        assert_eq!(
            one(envs.clone(), "0123").map(|e| e.key),
            Ok("0123456789abcdef".into())
        );
        let ambiguous = one(envs.clone(), "012").unwrap_err();
        assert!(
            ambiguous.starts_with("2 environments start with 012"),
            "{ambiguous}"
        );
        assert_eq!(
            one(envs.clone(), "fff").unwrap_err(),
            "no environment fff (see `bodywork env list`)"
        );
        assert!(one(envs, " ").is_err());
    }

    #[test]
    fn the_view_shows_the_lock_one_package_a_line() {
        let text: Vec<String> = fields(&env("0123456789abcdef"))
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect();
        assert_eq!(
            text[0].split_whitespace().collect::<Vec<_>>(),
            ["FIELD", "VALUE"]
        );
        let lock = text
            .iter()
            .position(|l| l.starts_with(" lock") || l.starts_with("lock"));
        let lock = lock.expect("a lock row");
        assert!(text[lock].ends_with("flask==2.1.2"), "{text:?}");
        assert!(text[lock + 1].trim() == "werkzeug==2.1.2", "{text:?}");
        assert_eq!(
            lock_text(&EnvSummary {
                lock: None,
                ..env("k")
            }),
            "(not recorded)"
        );
    }
}
