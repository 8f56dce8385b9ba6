//! `bodywork logs --namespace NS SERVICE [-f]`: the output of a service's
//! current replicas, each under its own header; with `-f`, new lines as
//! they come until the client leaves.

use std::io::{BufReader, Seek, SeekFrom};
use std::time::Duration;

use bodywork_runtime::{LogEvent, LogRenderer};
use bodywork_stage::lines::CappedLines;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::Daemon;
use crate::protocol::{Response, read_request, write_error, write_frame};

/// Whether the file under `reader` is now shorter than where it reads: a
/// rotation truncated it (see `crate::logfiles`).
fn was_rotated(reader: &mut BufReader<std::fs::File>) -> bool {
    let len = reader.get_ref().metadata().map(|m| m.len());
    matches!((len, reader.stream_position()), (Ok(len), Ok(at)) if len < at)
}

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
            kind: "service",
            name: name.to_string(),
            namespace: namespace.to_string(),
        };
        write_error(write, missing).await;
        return;
    };
    let mut readers: Vec<(String, Option<BufReader<std::fs::File>>, CappedLines)> = files
        .into_iter()
        .map(|(source, path)| {
            (
                source,
                std::fs::File::open(path).ok().map(BufReader::new),
                CappedLines::default(),
            )
        })
        .collect();
    let mut renderer = LogRenderer::default();
    // The client leaving ends a follow.
    let gone = tokio::spawn(async move {
        let mut read = read;
        let _ = read_request(&mut read).await;
    });
    loop {
        let mut any = false;
        for (source, reader, lines) in &mut readers {
            let Some(reader) = reader else { continue };
            // Lines are capped as they are read: a replica writes its log
            // itself, with lines of any length.
            while let Ok(Some(line)) = lines.next_sync(reader) {
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
            if follow && was_rotated(reader) {
                // Truncated by a rotation: its new content starts at 0.
                let _ = reader.seek(SeekFrom::Start(0));
                *lines = CappedLines::default();
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
