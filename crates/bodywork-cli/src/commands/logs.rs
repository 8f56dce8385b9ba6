//! `bodywork logs --namespace NS NAME [-f]`: the log of a workflow run
//! (NAME is its run number, as `bodywork runs` shows it) or the output of a
//! service's replicas (NAME is the service), on either runtime.

use super::checked_name;
use super::connect::with_control;
use crate::cli::{GlobalArgs, LogsArgs};
use crate::output::TerminalLog;
use crate::{CliResult, Outcome};

pub fn run(global: &GlobalArgs, args: &LogsArgs) -> CliResult {
    let namespace = checked_name("namespace", &args.namespace.namespace)?;
    let (name, follow) = (args.name.clone(), args.follow);
    with_control(global, None, async move |cp| {
        cp.logs(&namespace, &name, follow, &TerminalLog::stdout())
            .await?;
        Ok(Outcome::Success)
    })
}
