//! `bodywork daemon [--stop | --restart | --status]`: run the local control
//! plane in the foreground, stop it, restart it without stopping services,
//! or say whether it runs.

use bodywork_local::protocol::{Request, Response};

use super::local;
use crate::Outcome;
use crate::cli::{DaemonArgs, GlobalArgs};
use crate::output::{self, table};

pub fn run(global: &GlobalArgs, args: &DaemonArgs) -> Outcome {
    let home = match local::home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    if args.stop || args.restart {
        return local::block_on(async move {
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
                Err(e) => return local::fail(&e),
            }
            Outcome::Success
        });
    }
    if args.status {
        let format = global.output;
        return local::block_on(async move {
            if !bodywork_local::client::is_running(&home).await {
                println!("no daemon is running for {}", home.root().display());
                return Outcome::Failure;
            }
            let conn = match local::connect(&home).await {
                Ok(c) => c,
                Err(o) => return o,
            };
            match conn.call(&Request::Status).await {
                Ok(Response::Status(status)) => {
                    let printed = table::print(format, &status, |s| {
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
                                s.started.clone(),
                                s.active_runs.len().to_string(),
                                s.gateway.clone(),
                                s.home.clone(),
                            ]],
                        )
                    });
                    if let Err(e) = printed {
                        output::report_error(&e, None);
                        return Outcome::Failure;
                    }
                    Outcome::Success
                }
                Ok(other) => local::unexpected(other),
                Err(e) => local::fail(&e),
            }
        });
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
    match runtime.block_on(bodywork_local::daemon::run(home)) {
        Ok(()) => Outcome::Success,
        Err(e) => {
            output::report_error(&e, None);
            Outcome::Failure
        }
    }
}
