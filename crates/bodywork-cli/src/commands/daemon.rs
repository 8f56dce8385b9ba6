//! `bodywork daemon [--stop | --restart | --status]`: run the local control
//! plane in the foreground (under its supervisor, which starts it again if
//! it dies), stop it, restart it without stopping services, or say whether
//! it runs.

use bodywork_local::client::{ClientError, UNEXPECTED};
use bodywork_local::protocol::{Request, Response};
use bodywork_runtime::RuntimeError;

use super::connect::{block_on, home, printed, with_local};
use crate::Outcome;
use crate::cli::{DaemonArgs, GlobalArgs};
use crate::output::{self, table, time};

pub fn run(global: &GlobalArgs, args: &DaemonArgs) -> Outcome {
    let home = match home() {
        Ok(h) => h,
        Err(o) => return o,
    };
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
            match result {
                Ok(true) => println!("{done}"),
                Ok(false) if args.stop => {
                    println!("no daemon is running for {}", home.root().display());
                }
                Ok(false) => println!(
                    "no daemon was running for {}; started one",
                    home.root().display()
                ),
                Err(e) => return fail(&e),
            }
            Outcome::Success
        });
    }
    if args.status {
        let format = global.output;
        let running = block_on(async {
            if bodywork_local::client::is_running(&home).await {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        });
        if running != Outcome::Success {
            println!("no daemon is running for {}", home.root().display());
            return Outcome::Failure;
        }
        return with_local(async move |local| {
            let Response::Status(status) = local.call(Request::Status).await? else {
                return Err(RuntimeError::Failed(UNEXPECTED.into()));
            };
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
            output::report_message(format!("cannot start the async runtime: {e}"));
            return Outcome::Failure;
        }
    };
    crate::run_stages_under_reaper();
    match runtime.block_on(bodywork_local::daemon::run(home)) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            output::report_error(&e, None);
            Outcome::DaemonStartFailed
        }
    }
}

/// `bodywork daemon`: the supervisor, which runs `bodywork daemon --worker`
/// and starts it again if it dies (`bodywork_local::supervisor`).
fn supervise(home: &bodywork_local::Home) -> Outcome {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            output::report_message(format!("cannot find this program to run the daemon: {e}"));
            return Outcome::Failure;
        }
    };
    match bodywork_local::supervisor::supervise(&exe, home) {
        bodywork_local::supervisor::Ended::Stopped => Outcome::Success,
        bodywork_local::supervisor::Ended::Failed => Outcome::Failure,
    }
}

fn fail(e: &ClientError) -> Outcome {
    output::report_error(e, None);
    Outcome::Failure
}
