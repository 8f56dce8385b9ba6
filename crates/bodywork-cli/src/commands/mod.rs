//! One module per command, each written once against
//! [`bodywork_runtime::ControlPlane`]: the same code drives the local
//! runtime and Kubernetes, so both are worded alike. `run` dispatches.

mod bodywork3;
mod completions;
mod connect;
mod cronjob;
mod daemon;
mod dashboard;
mod debug;
mod dry_run;
mod env;
mod logs;
mod namespace;
mod runs;
mod secret;
mod service;
mod stage;
mod validate;
mod watch;
mod workflow;

use crate::cli::{Cli, Command, RuntimeKind};
use crate::{CliError, CliResult, Outcome};

/// Carry out the parsed command line.
pub fn run(cli: Cli) -> CliResult {
    let global = cli.global;
    match cli.command {
        Command::Validate(args) => validate::run(&global, &args),
        Command::Debug(args) => Ok(debug::run(&args)),
        Command::Completions(args) => Ok(completions::run(&args)),
        Command::Stage(args) => stage::run(&args),
        Command::Env(_) | Command::Daemon(_) if global.runtime == RuntimeKind::Kubernetes => {
            Err(CliError::usage("this command belongs to the local runtime")
                .with_hint("drop --runtime kubernetes"))
        }
        Command::Env(cmd) => env::run(&global, &cmd),
        Command::Daemon(args) => daemon::run(&global, &args),
        Command::SetupNamespace(args) => namespace::setup(&global, &args),
        Command::DeleteNamespace(args) => namespace::delete(&global, &args),
        Command::Workflow(args) => workflow::run(&global, &workflow::Deploy::from(&args)),
        Command::Secret(cmd) => secret::run(&global, &cmd),
        Command::Service(cmd) => service::run(&global, &cmd),
        Command::Cronjob(cmd) => cronjob::run(&global, &cmd),
        Command::Logs(args) => logs::run(&global, &args),
        Command::Runs(args) => runs::run(&global, &args),
        Command::Dashboard(args) => dashboard::run(&global, &args),
        Command::Create(cmd) => bodywork3::create(&global, &cmd),
        Command::Get(cmd) => bodywork3::get(&global, &cmd),
        Command::Update(cmd) => bodywork3::update(&global, &cmd),
        Command::Delete(cmd) => bodywork3::delete(&global, &cmd),
        Command::Deployment(args) => bodywork3::legacy_deployment(&global, &args),
        Command::ConfigureCluster => namespace::setup(
            &global,
            &crate::cli::SetupNamespaceArgs {
                namespace: bodywork_runtime::groups::GROUPS_NAMESPACE.to_string(),
                dry_run: false,
            },
        ),
        Command::Version => {
            println!("{}", env!("CARGO_PKG_VERSION"));
            Ok(Outcome::Success)
        }
    }
}

/// A namespace or secret name as the user typed it must already be a valid
/// DNS-1123 name; when it only differs by case or `_`, say which name to use.
fn checked_name(kind: &str, raw: &str) -> Result<String, CliError> {
    match bodywork_config::names::dns1123(raw) {
        Ok(name) if name == raw => Ok(name),
        Ok(name) => Err(
            CliError::usage(format!("{raw:?} is not a valid {kind} name"))
                .with_hint(format!("did you mean {name:?}?")),
        ),
        Err(why) => Err(CliError::usage(format!(
            "{raw:?} is not a valid {kind} name: {why}"
        ))),
    }
}

/// A name the user may leave out, checked when given.
fn checked_optional(kind: &str, raw: Option<&str>) -> Result<Option<String>, CliError> {
    raw.map(|r| checked_name(kind, r)).transpose()
}

/// A namespace and an object name, both checked.
fn checked_names(namespace: &str, kind: &str, name: &str) -> Result<(String, String), CliError> {
    Ok((
        checked_name("namespace", namespace)?,
        checked_name(kind, name)?,
    ))
}

/// A project's location as the runtime gets it: a Git URL as given, a
/// local directory made absolute (the daemon has another working
/// directory). An invalid one ends the command with `fail`.
fn project_location(raw: &str, fail: Outcome) -> Result<String, CliError> {
    match bodywork_source::Source::parse(raw) {
        Ok(bodywork_source::Source::LocalDir(dir)) => Ok(dir.display().to_string()),
        Ok(bodywork_source::Source::Git(url)) => Ok(url),
        Err(e) => Err(CliError::error(&e, fail)),
    }
}

/// Bodywork 3's answer to an object that is not there: `missing()` said on
/// stdout, and exit 0 (its CLI warns and carries on), so `None`; other
/// errors pass as they are.
fn bodywork3_missing<T>(
    result: Result<T, bodywork_runtime::RuntimeError>,
    missing: impl FnOnce() -> String,
) -> Result<Option<T>, bodywork_runtime::RuntimeError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(bodywork_runtime::RuntimeError::NotFound { .. }) => {
            println!("{}", missing());
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// `items`, or only the one named `name` when a name is given: then one
/// that does not exist is `NotFound` (the same error on both runtimes).
fn only_named<T>(
    items: Vec<T>,
    name: Option<&str>,
    name_of: impl Fn(&T) -> &str,
    kind: bodywork_runtime::ObjectKind,
    namespace: &str,
) -> Result<Vec<T>, bodywork_runtime::RuntimeError> {
    let Some(name) = name else {
        return Ok(items);
    };
    let named: Vec<T> = items.into_iter().filter(|i| name_of(i) == name).collect();
    if named.is_empty() {
        return Err(bodywork_runtime::RuntimeError::NotFound {
            kind,
            name: name.to_string(),
            namespace: namespace.to_string(),
        });
    }
    Ok(named)
}
