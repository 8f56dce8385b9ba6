//! The daemon's one-answer requests, one file per family of requests (as
//! pueue's message handlers are): `control` (hello, status, stop, handover),
//! `resources` (namespaces, secrets, services), `runs`, `envs` and `cron`.
//! Streaming requests are served beside them: a workflow run and its log in
//! `daemon::runs`, a service's log in `daemon::service_logs`, a cron run's
//! log in `requests::cron`.
//!
//! Must not: word outcomes for the user (answers are data or a
//! `RuntimeError`; the CLI words them, the same for both runtimes).

mod control;
mod cron;
mod envs;
mod resources;

pub(super) use control::announced_protocol;
pub(super) use cron::stream_run_logs;

use bodywork_runtime::RuntimeError;

use super::Daemon;
use super::runs::detached::delete_detached;
use crate::protocol::{Request, Response};

fn error(e: impl std::fmt::Display) -> Response {
    Response::Error(RuntimeError::failed(e))
}

/// An answer of the runtime: its data, or its error as it is.
fn answer<T: serde::Serialize>(result: Result<T, RuntimeError>) -> Response {
    match result {
        Ok(value) => Response::answer(&value),
        Err(e) => Response::Error(e),
    }
}

/// A request that reached a handler of another family (a bug, not a user's
/// doing): said, never a panic.
fn misrouted(request: &Request) -> Response {
    let name = serde_json::to_value(request)
        .ok()
        .and_then(|v| {
            v.get("request")
                .and_then(|r| r.as_str())
                .map(str::to_string)
        })
        .unwrap_or_default();
    error(format!(
        "internal: request {name} routed to the wrong handler"
    ))
}

pub(super) async fn handle(daemon: &Daemon, request: Request) -> Response {
    match request {
        r @ (Request::Hello { .. }
        | Request::Status
        | Request::Shutdown
        | Request::Handover { .. }) => control::handle(daemon, r),
        r @ (Request::SetupNamespace { .. }
        | Request::NamespaceExists { .. }
        | Request::NamespaceList
        | Request::DeleteNamespace { .. }
        | Request::SecretCreate { .. }
        | Request::SecretDelete { .. }
        | Request::SecretList { .. }
        | Request::ServiceList { .. }
        | Request::ServiceDelete { .. }) => resources::handle(daemon, r).await,
        Request::ListRuns {
            namespace,
            limit,
            before,
        } => answer(
            daemon
                .runtime
                .with_store(|s| s.list_runs_before(namespace.as_deref(), before, limit as usize))
                .map(|rows| {
                    rows.into_iter()
                        .map(super::runs::summary)
                        .collect::<Vec<_>>()
                }),
        ),
        Request::CountRuns { namespace } => answer(
            daemon
                .runtime
                .with_store(|s| s.count_runs(Some(&namespace))),
        ),
        Request::RunStages { namespace, run } => answer(run_stages(daemon, &namespace, run)),
        Request::ServiceTraffic { namespace } => {
            Response::answer(&daemon.traffic.read(&namespace, chrono::Utc::now()))
        }
        Request::DeleteDetached { name } => answer(delete_detached(daemon, &name)),
        r @ (Request::EnvList | Request::EnvStatus | Request::EnvPrune) => envs::handle(daemon, r),
        r @ (Request::CronCreate(_)
        | Request::CronUpdate(_)
        | Request::CronDelete { .. }
        | Request::CronList { .. }
        | Request::CronHistory { .. }
        | Request::CronTrigger { .. }) => cron::handle(daemon, r).await,
        Request::Cancel => error("nothing to cancel on this connection"),
        other @ (Request::RunWorkflow(_)
        | Request::RunDetached { .. }
        | Request::RunLogs { .. }
        | Request::ServiceLogs { .. }
        | Request::CronLogs { .. }) => misrouted(&other),
    }
}

/// The stage attempts of run `run`, when it is a run of `namespace`.
fn run_stages(
    daemon: &Daemon,
    namespace: &str,
    run: i64,
) -> Result<Vec<bodywork_runtime::StageAttempt>, RuntimeError> {
    use bodywork_runtime::StageState;
    use bodywork_state::AttemptStatus;
    let found = daemon.runtime.with_store(|s| s.get_run(run))?;
    if found.is_none_or(|r| r.namespace != namespace) {
        return Err(RuntimeError::NotFound {
            kind: bodywork_runtime::ObjectKind::Run,
            name: run.to_string(),
            namespace: namespace.to_string(),
        });
    }
    let attempts = daemon.runtime.with_store(|s| s.list_attempts(run))?;
    Ok(attempts
        .into_iter()
        .map(|a| bodywork_runtime::StageAttempt {
            stage: a.stage,
            attempt: a.attempt,
            state: match a.status {
                AttemptStatus::Running => StageState::Running,
                AttemptStatus::Succeeded => StageState::Succeeded,
                AttemptStatus::Failed => StageState::Failed,
                AttemptStatus::TimedOut => StageState::TimedOut,
                AttemptStatus::Cancelled => StageState::Cancelled,
            },
            message: a.message,
            started: a.started,
            finished: a.finished,
        })
        .collect())
}
