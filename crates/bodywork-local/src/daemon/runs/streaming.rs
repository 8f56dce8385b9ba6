//! Streaming a run's log: a stored run's log file sent to a CLI line by
//! line, and, when following a run still going, the lines it adds.

use std::fs::File;
use std::time::Duration;

use bodywork_lines::{CappedLines, MAX_CUT_LINE};
use bodywork_runtime::RuntimeError;
use tokio::net::unix::OwnedWriteHalf;

use crate::daemon::Daemon;
use crate::protocol::{Response, write_error, write_frame};

/// Send a run's log; with `follow`, keep sending new lines until the run ends.
pub(crate) async fn stream_logs(
    daemon: &Daemon,
    namespace: &str,
    run: i64,
    follow: bool,
    write: &mut OwnedWriteHalf,
) {
    let row = match daemon.runtime.with_store(|s| s.get_run(run)) {
        Ok(Some(row)) if row.namespace == namespace => row,
        Ok(_) => {
            let message = format!(
                "no workflow run {run} in namespace {namespace} (see `bodywork runs --namespace {namespace}`)"
            );
            write_error(write, RuntimeError::failed(message)).await;
            return;
        }
        Err(e) => {
            write_error(write, e).await;
            return;
        }
    };
    let path = daemon.home().run_log(row.id);
    let mut reader = match File::open(&path) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            let message = format!(
                "the log of run {run} is not available ({}: {e})",
                path.display()
            );
            write_error(write, RuntimeError::failed(message)).await;
            return;
        }
    };
    // Lines are capped as they are read, whatever the file holds (a line
    // the daemon cut is stored with its marker, and passes as it is).
    let mut lines = CappedLines::new(MAX_CUT_LINE);
    loop {
        match lines.next_sync(&mut reader) {
            Ok(Some(line)) => {
                if write_frame(write, &Response::LogLine { line })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                let active = daemon
                    .runs
                    .lock()
                    .map(|r| r.contains_key(&run))
                    .unwrap_or(false);
                if !follow || !active {
                    if let Some(line) = lines.take_partial() {
                        let _ = write_frame(write, &Response::LogLine { line }).await;
                    }
                    break;
                }
                // The end so far (perhaps a partial last line): wait for more.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => break,
        }
    }
    let _ = write_frame(write, &Response::End).await;
}
