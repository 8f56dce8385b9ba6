//! `bodywork daemon [--stop | --restart | --status]`: run the local control
//! plane in the foreground (under its supervisor, which starts it again if
//! it dies), stop it, restart it without stopping services, or say whether
//! it runs.

use bodywork_local::protocol::{DaemonStatus, Request};
use bodywork_runtime::RuntimeError;

use super::connect::{block_on, home, printed, with_local};
use crate::cli::{DaemonArgs, GlobalArgs};
use crate::output::{table, time};
use crate::{CliError, CliResult, Outcome};

pub fn run(global: &GlobalArgs, args: &DaemonArgs) -> CliResult {
    let home = home()?;
    if args.stop || args.restart {
        return block_on(async move {
            let (done, result) = if args.stop {
                ("daemon stopped", bodywork_local::client::stop(&home).await)
            } else {
                (
                    "daemon restarted; its services kept running",
                    bodywork_local::client::restart(&home).await,
                )
            };
            match result.map_err(RuntimeError::from)? {
                true => println!("{done}"),
                false if args.stop => {
                    println!("no daemon is running for {}", home.root().display());
                }
                false => println!(
                    "no daemon was running for {}; started one",
                    home.root().display()
                ),
            }
            Ok(Outcome::Success)
        });
    }
    if args.status {
        let format = global.output;
        let running = block_on(async { Ok(bodywork_local::client::is_running(&home).await) })?;
        if !running {
            println!("no daemon is running for {}", home.root().display());
            return Ok(Outcome::Failure);
        }
        return with_local(async move |local| {
            let status: DaemonStatus = local.ask(Request::Status).await?;
            printed(table::print(format, &status, |s| {
                table::table(
                    &[
                        "pid",
                        "version",
                        "started",
                        "active runs",
                        "gateway",
                        "home",
                    ],
                    [vec![
                        s.pid.to_string(),
                        s.version.clone(),
                        time::local(&s.started),
                        s.active_runs.len().to_string(),
                        s.gateway.clone(),
                        s.home.clone(),
                    ]],
                )
            }))
        });
    }
    if !args.worker {
        return supervise(&home);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Err(CliError::caused(
                "cannot start the async runtime",
                &e,
                Outcome::Failure,
            ));
        }
    };
    crate::run_stages_under_reaper();
    // All of the daemon's stages run on this one runtime.
    bodywork_stage::process::keep_a_reaper_ready();
    match runtime.block_on(bodywork_local::daemon::run(home)) {
        Ok(()) => Ok(Outcome::Success),
        Err(e) => Err(CliError::error(&e, Outcome::DaemonStartFailed)),
    }
}

/// `bodywork daemon`: the supervisor, which runs `bodywork daemon --worker`
/// and starts it again if it dies (`bodywork_local::supervisor`).
fn supervise(home: &bodywork_local::Home) -> CliResult {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Err(CliError::caused(
                "cannot find this program to run the daemon",
                &e,
                Outcome::Failure,
            ));
        }
    };
    match bodywork_local::supervisor::supervise(&exe, home) {
        bodywork_local::supervisor::Ended::Stopped => Ok(Outcome::Success),
        bodywork_local::supervisor::Ended::Failed => Ok(Outcome::Failure),
    }
}
