//! `bodywork logs --namespace NS SERVICE [-f]`: the output of a service's
//! current replicas, each under its own header, from the start of each
//! replica log's rotated part (`crate::logfiles`); with `-f`, new lines as
//! they come, across rotations, until the client leaves.

use std::time::Duration;

use bodywork_runtime::{LogEvent, LogRenderer};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::Daemon;
use crate::logfiles::{LogParts, Reading};
use crate::protocol::{Response, read_request, write_error, write_frame};

pub(super) async fn stream(
    daemon: &Daemon,
    namespace: &str,
    name: &str,
    follow: bool,
    read: tokio::io::BufReader<OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
) {
    let Some(files) = daemon.runtime.services().replica_logs(namespace, name) else {
        let missing = bodywork_runtime::RuntimeError::NotFound {
            kind: bodywork_runtime::ObjectKind::Service,
            name: name.to_string(),
            namespace: namespace.to_string(),
        };
        write_error(write, missing).await;
        return;
    };
    let reading = if follow {
        Reading::Follow
    } else {
        Reading::Snapshot
    };
    let mut readers: Vec<(String, LogParts)> = files
        .into_iter()
        .map(|(source, path)| (source, LogParts::open(&path, reading)))
        .collect();
    let mut renderer = LogRenderer::default();
    // The client leaving ends a follow.
    let gone = tokio::spawn(async move {
        let mut read = read;
        let _ = read_request(&mut read).await;
    });
    loop {
        let mut any = false;
        for (source, parts) in &mut readers {
            // Lines were capped by the replica's reaper as it wrote them;
            // `LogParts` caps them again, for logs written before that. A
            // follow takes turns between replicas, however fast one writes.
            let mut turn = 0;
            while let Some(line) = (!follow || turn < 10_000)
                .then(|| parts.next_line())
                .flatten()
            {
                turn += 1;
                any = true;
                let event = LogEvent::Stage {
                    source: source.clone(),
                    line,
                };
                for line in renderer.render_plain(&event) {
                    if write_frame(write, &Response::LogLine { line })
                        .await
                        .is_err()
                    {
                        gone.abort();
                        return;
                    }
                }
            }
        }
        if !follow || gone.is_finished() {
            break;
        }
        if !any {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    gone.abort();
    let _ = write_frame(write, &Response::End).await;
}
