//! Attached runs: a workflow run asked for by a CLI, its log streamed to
//! that CLI as it happens, cancelled when the CLI says so or goes away.

use std::sync::Arc;

use bodywork_runtime::{RunTrigger, RuntimeError, WorkflowSubmission};
use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::{execute_run, prepare_run};
use crate::daemon::Daemon;
use crate::daemon::live::{CLIENT_QUEUE_MAX, LiveStream};
use crate::protocol::{Request, Response, read_request, write_error};

/// A workflow run asked for by a CLI: stream its log to that CLI, and
/// cancel it when the CLI says so or goes away (Ctrl-C).
pub(in crate::daemon) async fn run_for_client(
    daemon: Arc<Daemon>,
    submission: WorkflowSubmission,
    mut read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
) {
    let prepared = match prepare_run(&daemon, &submission, &RunTrigger::Cli) {
        Ok(p) => p,
        Err(message) => {
            write_error(&mut write, RuntimeError::failed(message)).await;
            return;
        }
    };
    let id = prepared.id;
    // Everything for the client goes through one bounded stream, so frames
    // keep their order and a slow client holds nothing up.
    let hint = {
        let (daemon, given) = (daemon.clone(), submission.namespace.clone());
        Box::new(move || {
            // The project may name the namespace: known once it is planned.
            let planned = daemon.runs.lock().ok().and_then(|runs| {
                let (namespace, _) = runs.get(&id)?.key.clone()?;
                Some(namespace)
            });
            let namespace = planned.or(given.clone()).unwrap_or("NAMESPACE".into());
            format!("`bodywork logs --namespace {namespace} {id}`")
        })
    };
    let live = Arc::new(LiveStream::new(CLIENT_QUEUE_MAX, hint));
    live.send(&Response::RunStarted { run: id });
    let writer = {
        let live = live.clone();
        tokio::spawn(async move { live.write_to(&mut write).await })
    };
    let watcher = {
        let cancel = prepared.cancel.clone();
        tokio::spawn(async move {
            match read_request(&mut read).await {
                Ok(Some(Request::Cancel)) | Ok(None) | Err(_) => cancel.cancel(),
                Ok(Some(_)) => {}
            }
        })
    };
    let (status, _) = execute_run(&daemon, prepared, submission, Some(live.clone())).await;
    live.send(&Response::RunFinished {
        run: id,
        outcome: status,
    });
    live.send(&Response::End);
    watcher.abort();
    let _ = writer.await;
}
