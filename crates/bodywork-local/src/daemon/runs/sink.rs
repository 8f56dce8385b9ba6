//! A run's log sink: every event of a run rendered into its log file, kept
//! within its limit, and passed on to the CLI attached to the run.

use std::fs::File;
use std::io::{LineWriter, Write};
use std::sync::{Arc, Mutex};

use bodywork_runtime::{EventSink, LogEvent, LogRenderer};

use crate::daemon::live::LiveStream;
use crate::logfiles::{RUN_LOG_MAX, RUN_LOG_RESERVE};
use crate::protocol::Response;

/// A run's log: every event goes to the run's log file (plain text, Bodywork's
/// log lines, at most [`RUN_LOG_MAX`] bytes) and, while a CLI is attached, to
/// that CLI (bounded: see [`LiveStream`]).
pub(super) struct RunLog {
    file: Mutex<RunLogFile>,
    client: Option<Arc<LiveStream>>,
}

/// A run's log file, kept within its limit: once the stages' output reaches
/// it (less a reserve for the run's own messages), one marker line says so
/// and further stage output is not stored; the run's own messages still
/// are, up to the limit itself.
struct RunLogFile {
    writer: LineWriter<File>,
    renderer: LogRenderer,
    written: u64,
    limit: u64,
    /// What stage output leaves of `limit` for the run's own messages.
    reserve: u64,
    full: bool,
}

impl RunLogFile {
    fn new(file: File, limit: u64, reserve: u64) -> RunLogFile {
        RunLogFile {
            writer: LineWriter::new(file),
            renderer: LogRenderer::default(),
            written: 0,
            limit,
            reserve,
            full: false,
        }
    }

    fn write_line(&mut self, line: &str) {
        if writeln!(self.writer, "{line}").is_ok() {
            self.written += line.len() as u64 + 1;
        }
    }

    fn write(&mut self, event: &LogEvent) {
        let stage = matches!(event, LogEvent::Stage { .. });
        let room = match stage {
            true => self.limit.saturating_sub(self.reserve),
            false => self.limit,
        };
        for line in self.renderer.render_plain(event) {
            if self.written + (line.len() as u64) < room {
                self.write_line(&line);
            } else if stage && !self.full {
                self.full = true;
                self.write_line(&run_log_full_marker(self.limit));
            }
        }
    }
}

/// The line that ends the stages' output in a run log that reached `limit`.
fn run_log_full_marker(limit: u64) -> String {
    format!(
        "[bodywork: this run's log reached its limit of {} MiB; further stage output is not kept]",
        limit >> 20
    )
}

impl RunLog {
    /// The log of a run writing to `file` and, while it is attached, to
    /// `client`.
    pub(super) fn new(file: File, client: Option<Arc<LiveStream>>) -> RunLog {
        RunLog {
            file: Mutex::new(RunLogFile::new(file, RUN_LOG_MAX, RUN_LOG_RESERVE)),
            client,
        }
    }

    fn emit(&self, event: LogEvent) {
        if let Ok(mut file) = self.file.lock() {
            file.write(&event);
        }
        // A stage's output may be skipped for a slow client; the run's own
        // messages have more room.
        match (&self.client, &event) {
            (Some(client), LogEvent::Stage { .. }) => client.offer(&Response::Event(event)),
            (Some(client), _) => client.message(&Response::Event(event)),
            (None, _) => {}
        }
    }
}

/// Every line of the run, as an event: a log line or a stage's line made
/// now, or one kept elsewhere (an environment built ahead) with its own time.
impl EventSink for RunLog {
    fn event(&self, event: LogEvent) {
        self.emit(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_runtime::Level;

    #[test]
    fn an_event_kept_elsewhere_is_written_with_its_own_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let log = RunLog::new(File::create(&path).unwrap(), None);
        let said = chrono::DateTime::parse_from_rfc3339("2020-01-02T03:04:05Z")
            .unwrap()
            .to_utc();
        log.event(LogEvent::Log {
            time: said,
            level: Level::Info,
            logger: "environment".into(),
            message: "Resolved 3 packages".into(),
        });
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("2020-01-02 03:04:05"), "{text}");
        assert!(text.contains("Resolved 3 packages"), "{text}");
    }

    #[test]
    fn a_run_log_keeps_within_its_limit_with_a_marker_and_the_runs_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = RunLogFile::new(File::create(&path).unwrap(), 2000, 500);
        log.write(&LogEvent::log(Level::Info, "workflow", "starting"));
        for n in 0..100 {
            log.write(&LogEvent::Stage {
                source: "p--s".into(),
                line: format!("{n:03} {}", "o".repeat(95)),
            });
        }
        log.write(&LogEvent::log(Level::Info, "workflow", "run succeeded"));
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 2000, "{} bytes", text.len());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("starting"), "{lines:?}");
        assert_eq!(lines[1], "---- pod logs for p--s");
        assert!(lines[2].starts_with("000 o"), "{lines:?}");
        let marker = run_log_full_marker(2000);
        assert_eq!(lines.iter().filter(|l| **l == marker).count(), 1);
        let at = lines.iter().position(|l| *l == marker).unwrap();
        // Up to 1500 bytes (the limit less the reserve): the first message
        // (52 bytes), the header (23) and 14 lines of 100.
        assert_eq!(at, 2 + 14);
        assert!(lines[at + 1].ends_with("run succeeded"), "{lines:?}");
        assert_eq!(lines.len(), at + 2);
    }
}
