//! `bodywork logs --namespace NS SERVICE [-f]`: the output of a service's
//! current replicas, each under its own header; with `-f`, new lines as
//! they come until the client leaves.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use bodywork_runtime::{LogEvent, LogRenderer};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::Daemon;
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
            kind: "service",
            name: name.to_string(),
            namespace: namespace.to_string(),
        };
        write_error(write, missing).await;
        return;
    };
    let mut readers: Vec<(String, Option<BufReader<std::fs::File>>, String)> = files
        .into_iter()
        .map(|(source, path)| {
            (
                source,
                std::fs::File::open(path).ok().map(BufReader::new),
                String::new(),
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
        for (source, reader, partial) in &mut readers {
            let Some(reader) = reader else { continue };
            loop {
                match reader.read_line(partial) {
                    Ok(n) if n > 0 && partial.ends_with('\n') => {
                        any = true;
                        let event = LogEvent::Stage {
                            source: source.clone(),
                            line: partial.trim_end_matches('\n').to_string(),
                        };
                        partial.clear();
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
                    _ => break,
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
