//! Requests answered with a single response.

use bodywork_runtime::{Runtime, RuntimeError};

use super::Daemon;
use crate::cron;
use crate::protocol::{DaemonStatus, EnvSummary, PROTOCOL_VERSION, Request, Response, RunSummary};

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

fn hint_namespace(e: RuntimeError) -> Response {
    match e {
        RuntimeError::NotFound {
            kind: "namespace",
            name,
            ..
        } => error(format!(
            "namespace {name} does not exist; create it with `bodywork setup-namespace {name}`"
        )),
        other => error(other),
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
        Request::SetupNamespace { namespace } => match rt.setup_namespace(&namespace).await {
            Ok(lines) => Response::Lines { lines },
            Err(e) => error(e),
        },
        Request::DeleteNamespace { namespace } => match rt.delete_namespace(&namespace).await {
            Ok(lines) => Response::Lines { lines },
            Err(e) => error(e),
        },
        Request::SecretCreate {
            namespace,
            name,
            data,
        } => match rt.create_secret(&namespace, &name, data).await {
            Ok(()) => Response::Lines {
                lines: vec![format!("secret={name} created in namespace={namespace}")],
            },
            Err(e) => hint_namespace(e),
        },
        Request::SecretDelete { namespace, name } => {
            match rt.delete_secret(&namespace, &name).await {
                Ok(()) => Response::Lines {
                    lines: vec![format!("secret={name} deleted from namespace={namespace}")],
                },
                Err(e) => error(e),
            }
        }
        Request::SecretList { namespace } => match rt.list_secrets(&namespace).await {
            Ok(secrets) => Response::Secrets { secrets },
            Err(e) => error(e),
        },
        Request::ListRuns { namespace, limit } => {
            match rt.with_store(|s| s.list_runs(namespace.as_deref(), limit as usize)) {
                Ok(rows) => Response::Runs {
                    runs: rows
                        .into_iter()
                        .map(|r| RunSummary {
                            id: r.id,
                            namespace: r.namespace,
                            project: r.project,
                            repo: r.repo,
                            branch: r.branch,
                            commit: r.commit,
                            trigger: r.trigger,
                            status: r.status.to_string(),
                            error: r.error,
                            started: crate::time::display(&r.started),
                            finished: r.finished.as_ref().map(crate::time::display),
                        })
                        .collect(),
                },
                Err(e) => error(e),
            }
        }
        Request::ServiceList { namespace } => match rt.list_services(&namespace).await {
            Ok(services) => Response::Services { services },
            Err(e) => error(e),
        },
        Request::ServiceDelete { namespace, name } => {
            match rt.delete_service(&namespace, &name).await {
                Ok(()) => Response::Lines {
                    lines: vec![format!("service={name} deleted from namespace={namespace}")],
                },
                Err(e) => error(e),
            }
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
        Request::CronCreate(spec) => cron::create(daemon, spec),
        Request::CronDelete { namespace, name } => cron::delete(daemon, &namespace, &name),
        Request::CronList { namespace, name } => cron::list(daemon, &namespace, name.as_deref()),
        Request::CronHistory { namespace, name } => cron::history(daemon, &namespace, &name),
        Request::CronTrigger { namespace, name } => cron::trigger(daemon, namespace, name).await,
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
