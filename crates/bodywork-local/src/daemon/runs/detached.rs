//! Detached runs: started with nobody attached (`create deployment
//! --async`), retried in the background while they fail, and forgotten by
//! name.

use std::sync::Arc;

use bodywork_runtime::{ObjectKind, RunState, RunTrigger, RuntimeError, WorkflowSubmission};
use bodywork_state::RunRow;

use super::{execute_run, prepare_run, summary};
use crate::daemon::Daemon;
use crate::protocol::Response;

/// A detached run: recorded and started now, driven (and retried after a
/// back-off while it fails, up to `retries` times) in the background, with
/// nobody attached. Answers with the name `get deployment --async --logs`
/// takes: the user's, else the first run's number.
pub(in crate::daemon) fn start_detached(
    daemon: Arc<Daemon>,
    submission: WorkflowSubmission,
    name: Option<String>,
    retries: u32,
) -> Response {
    let trigger = RunTrigger::Detached(name.clone());
    let first = match prepare_run(&daemon, &submission, &trigger) {
        Ok(p) => p,
        Err(message) => return Response::Error(RuntimeError::failed(message)),
    };
    let started = name.unwrap_or_else(|| bodywork_runtime::unnamed_detached_name(first.id));
    tokio::spawn(async move {
        let mut run = first;
        for retry in 1..=retries + 1 {
            let (status, _) = execute_run(&daemon, run, submission.clone(), None).await;
            if status != RunState::Failed || retry > retries || daemon.shutdown.is_cancelled() {
                return;
            }
            let (_, base) = crate::cron::tick_and_back_off();
            tokio::select! {
                _ = tokio::time::sleep(crate::cron::retry_delay(retry, base)) => {}
                _ = daemon.shutdown.cancelled() => return,
            }
            run = match prepare_run(&daemon, &submission, &trigger) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(target: "daemon", "cannot retry a detached run: {e}");
                    return;
                }
            };
        }
    });
    Response::answer(&started)
}

/// Forget detached run `name`: every attempt, and their logs; refused
/// while one is running.
pub(crate) fn delete_detached(daemon: &Daemon, name: &str) -> Result<(), RuntimeError> {
    let rows = daemon
        .runtime
        .with_store(|s| s.list_runs(None, usize::MAX))?;
    let runs: Vec<RunRow> = rows
        .into_iter()
        .filter(|r| {
            let shown = summary(r.clone());
            bodywork_runtime::is_detached(&shown) && bodywork_runtime::detached_name(&shown) == name
        })
        .collect();
    if runs.is_empty() {
        return Err(RuntimeError::NotFound {
            kind: ObjectKind::Run,
            name: name.to_string(),
            namespace: String::new(),
        });
    }
    if let Some(r) = runs.iter().find(|r| r.status == RunState::Running) {
        return Err(RuntimeError::conflict(format!(
            "deployment job {name} is running (run {})",
            r.id
        ))
        .with_hint(bodywork_runtime::TRY_AGAIN));
    }
    let mut removed = Vec::new();
    for r in &runs {
        removed.extend(daemon.runtime.with_store(|s| s.delete_run(r.id))?);
    }
    daemon.home().remove_run_logs(&removed);
    Ok(())
}
