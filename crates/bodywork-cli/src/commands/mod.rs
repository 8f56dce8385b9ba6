//! One module per command; `run` dispatches.

mod completions;
mod cronjob;
mod daemon;
mod debug;
mod env;
mod kube;
mod local;
mod logs;
mod runs;
mod secret;
mod service;
mod setup_namespace;
mod stage;
mod validate;
mod workflow;

use crate::Outcome;
use crate::cli::{Cli, Command, RuntimeKind};
use crate::output;

/// Carry out the parsed command line.
pub fn run(cli: Cli) -> Outcome {
    let global = cli.global;
    let kubernetes = global.runtime == RuntimeKind::Kubernetes;
    match cli.command {
        Command::Validate(args) => validate::run(&global, &args),
        Command::Debug(args) => debug::run(&args),
        Command::Completions(args) => completions::run(&args),
        command if kubernetes && !matches!(command, Command::Stage(_)) => {
            kube::run(&global, command)
        }
        Command::SetupNamespace(args) => setup_namespace::run(&args),
        Command::DeleteNamespace(args) => setup_namespace::delete(&args),
        Command::Workflow(args) => workflow::run(&args),
        Command::Secret(cmd) => secret::run(&global, &cmd),
        Command::Logs(args) => logs::run(&args),
        Command::Runs(args) => runs::run(&global, &args),
        Command::Env(cmd) => env::run(&global, &cmd),
        Command::Daemon(args) => daemon::run(&global, &args),
        Command::Stage(args) => stage::run(&args),
        Command::Service(cmd) => service::run(&global, &cmd),
        Command::Cronjob(cmd) => cronjob::run(&global, &cmd),
    }
}

/// A namespace or secret name as the user typed it must already be a valid
/// DNS-1123 name; when it only differs by case or `_`, say which name to use.
fn checked_name(kind: &str, raw: &str) -> Result<String, Outcome> {
    match bodywork_config::names::dns1123(raw) {
        Ok(name) if name == raw => Ok(name),
        Ok(name) => {
            output::report_message(format!(
                "{raw:?} is not a valid {kind} name; did you mean {name:?}?"
            ));
            Err(Outcome::Usage)
        }
        Err(why) => {
            output::report_message(format!("{raw:?} is not a valid {kind} name: {why}"));
            Err(Outcome::Usage)
        }
    }
}
