//! Requests answered with a single response.

use bodywork_runtime::{Runtime, RuntimeError};

use super::Daemon;
use crate::cron;
use crate::protocol::{DaemonStatus, EnvSummary, PROTOCOL_VERSION, Request, Response};

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error(RuntimeError::failed(e))
}

/// An answer of the runtime: its data, or its error as it is.
fn answer<T>(result: Result<T, RuntimeError>, ok: impl FnOnce(T) -> Response) -> Response {
    match result {
        Ok(value) => ok(value),
        Err(e) => Response::Error(e),
    }
}

/// Test seam (tests only, not a user feature): a daemon started with
/// `BODYWORK_TEST_DAEMON_PROTOCOL=N` says it speaks protocol N, so a test can
/// play an upgrade (the next CLI call meets "another version" and has this
/// daemon hand over).
fn announced_protocol() -> u32 {
    std::env::var("BODYWORK_TEST_DAEMON_PROTOCOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PROTOCOL_VERSION)
}

pub(super) async fn handle(daemon: &Daemon, request: Request) -> Response {
    let rt = &daemon.runtime;
    match request {
        Request::Hello { .. } => Response::Hello {
            protocol: announced_protocol(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            pid: std::process::id(),
        },
        Request::Status => Response::Status(DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            home: daemon.home().root().display().to_string(),
            started: daemon.started.clone(),
            active_runs: daemon.active_run_ids(),
            gateway: match daemon.gateway.lock().as_deref() {
                Ok(Ok(addr)) => format!("http://{addr}"),
                Ok(Err(why)) => format!("not running: {why}"),
                Err(_) => "unknown".into(),
            },
        }),
        Request::Shutdown => {
            daemon.shutdown.cancel();
            Response::Ok
        }
        Request::Handover { exe, env } => {
            let going = daemon.active_run_ids();
            if !going.is_empty() {
                let ids: Vec<String> = going.iter().map(i64::to_string).collect();
                return error(format!(
                    "workflow runs are going ({}); restart the daemon when they have finished",
                    ids.join(", ")
                ));
            }
            let exe = std::path::PathBuf::from(exe);
            if !exe.is_file() {
                return error(format!(
                    "cannot hand over to {}: no such program",
                    exe.display()
                ));
            }
            if let Ok(mut h) = daemon.handover.lock() {
                *h = Some(super::Successor { exe, env });
            }
            daemon.shutdown.cancel();
            Response::Ok
        }
        Request::SetupNamespace { namespace } => {
            answer(rt.setup_namespace(&namespace).await, |lines| {
                Response::Lines { lines }
            })
        }
        Request::DeleteNamespace { namespace } => {
            answer(rt.delete_namespace(&namespace).await, |lines| {
                Response::Lines { lines }
            })
        }
        Request::SecretCreate {
            namespace,
            name,
            data,
        } => answer(rt.create_secret(&namespace, &name, data).await, |()| {
            Response::Ok
        }),
        Request::SecretDelete { namespace, name } => {
            answer(rt.delete_secret(&namespace, &name).await, |()| Response::Ok)
        }
        Request::SecretList { namespace } => answer(rt.list_secrets(&namespace).await, |secrets| {
            Response::Secrets { secrets }
        }),
        Request::ListRuns { namespace, limit } => answer(
            rt.with_store(|s| s.list_runs(namespace.as_deref(), limit as usize)),
            |rows| Response::Runs {
                runs: rows.into_iter().map(super::runs::summary).collect(),
            },
        ),
        Request::ServiceList { namespace } => {
            answer(rt.list_services(&namespace).await, |services| {
                Response::Services { services }
            })
        }
        Request::ServiceDelete { namespace, name } => {
            answer(rt.delete_service(&namespace, &name).await, |()| {
                Response::Ok
            })
        }
        Request::EnvList => match rt.envs().list() {
            Ok(envs) => Response::Envs {
                envs: envs.into_iter().map(env_summary).collect(),
            },
            Err(e) => error(e),
        },
        Request::EnvPrune => {
            // Environments are cheap to rebuild from the uv cache. A batch
            // stage may be about to use any of them, so none is removed while
            // a run goes on; deployed services keep theirs.
            let busy = !daemon.runs.lock().map(|r| r.is_empty()).unwrap_or(false);
            if busy {
                return error(
                    "workflow runs are in progress; prune environments when they have finished",
                );
            }
            let in_use = rt.services().environments_in_use();
            match rt.envs().prune(&|env| in_use.contains(&env.dir)) {
                Ok(removed) => Response::Envs {
                    envs: removed.into_iter().map(env_summary).collect(),
                },
                Err(e) => error(e),
            }
        }
        Request::CronCreate(spec) => answer(cron::create(daemon, spec), |()| Response::Ok),
        Request::CronDelete { namespace, name } => {
            answer(cron::delete(daemon, &namespace, &name), |()| Response::Ok)
        }
        Request::CronList { namespace } => answer(cron::list(daemon, &namespace), |jobs| {
            Response::CronJobs { jobs }
        }),
        Request::CronHistory { namespace, name } => {
            answer(cron::history(daemon, &namespace, &name), |runs| {
                Response::CronHistory { runs }
            })
        }
        Request::CronTrigger { namespace, name } => {
            answer(cron::trigger(daemon, &namespace, &name).await, |name| {
                Response::Started { name }
            })
        }
        Request::Cancel => error("nothing to cancel on this connection"),
        Request::CronLogs { .. } => {
            error("internal: streaming request routed to the wrong handler")
        }
        Request::RunWorkflow(_) | Request::RunLogs { .. } | Request::ServiceLogs { .. } => {
            error("internal: streaming request routed to the wrong handler")
        }
    }
}

fn env_summary(e: bodywork_pyenv::EnvInfo) -> EnvSummary {
    EnvSummary {
        key: e.key,
        python: format!("{} ({})", e.python_version, e.python.display()),
        requirements: e.requirements,
        size_bytes: e.size_bytes,
        created: crate::time::display(&chrono::DateTime::<chrono::Utc>::from(e.created)),
        last_used: Some(crate::time::display(
            &chrono::DateTime::<chrono::Utc>::from(e.last_used),
        )),
    }
}
