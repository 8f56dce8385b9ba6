//! Log events of a run and their one rendering (Python Bodywork's log
//! lines), shared by the daemon's log files and the CLI's live stream so
//! both look the same.

use serde::{Deserialize, Serialize};

use crate::Level;

/// One thing that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEvent {
    /// A controller or runtime message.
    Log {
        /// `2026-11-24 20:04:12,648`, local time.
        time: String,
        level: Level,
        logger: String,
        message: String,
    },
    /// A line a stage printed; `source` is `PROJECT--STAGE` (or `.../N` for a replica).
    Stage { source: String, line: String },
    /// A line of a stored log, already rendered.
    Text { line: String },
}

impl LogEvent {
    pub fn log(level: Level, logger: &str, message: &str) -> LogEvent {
        LogEvent::Log {
            time: timestamp_now(),
            level,
            logger: logger.to_string(),
            message: message.to_string(),
        }
    }
}

/// The timestamp format of log lines, local time with milliseconds.
pub fn timestamp_now() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S,%3f")
        .to_string()
}

/// `2026-11-24 20:04:12,648 - INFO - workflow - message`.
pub fn format_log_line(time: &str, level: &str, logger: &str, message: &str) -> String {
    format!("{time} - {level} - {logger} - {message}")
}

/// The header printed before a stage's output, as Bodywork always has.
pub fn stage_header(source: &str) -> String {
    format!("---- pod logs for {source}")
}

/// Turns events into lines: a stage's output comes under its header, and
/// the header is repeated whenever another source printed in between, so
/// the output of parallel stages stays attributable.
#[derive(Debug, Default)]
pub struct LogRenderer {
    last_source: Option<String>,
}

impl LogRenderer {
    /// Render one event; `paint_level` may colour the level name.
    pub fn render(
        &mut self,
        event: &LogEvent,
        paint_level: &dyn Fn(Level) -> String,
    ) -> Vec<String> {
        match event {
            LogEvent::Log {
                time,
                level,
                logger,
                message,
            } => {
                self.last_source = None;
                vec![format_log_line(time, &paint_level(*level), logger, message)]
            }
            LogEvent::Text { line } => {
                self.last_source = None;
                vec![line.clone()]
            }
            LogEvent::Stage { source, line } => {
                let mut out = Vec::with_capacity(2);
                if self.last_source.as_deref() != Some(source) {
                    out.push(stage_header(source));
                    self.last_source = Some(source.clone());
                }
                out.push(line.clone());
                out
            }
        }
    }

    /// Render without colour (log files).
    pub fn render_plain(&mut self, event: &LogEvent) -> Vec<String> {
        self.render(event, &|l| l.as_str().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(source: &str, line: &str) -> LogEvent {
        LogEvent::Stage {
            source: source.into(),
            line: line.into(),
        }
    }

    #[test]
    fn headers_mark_each_change_of_source() {
        let mut r = LogRenderer::default();
        let mut out = Vec::new();
        for ev in [
            stage("p--a", "a1"),
            stage("p--a", "a2"),
            stage("p--b", "b1"),
            LogEvent::Log {
                time: "T".into(),
                level: Level::Info,
                logger: "workflow".into(),
                message: "m".into(),
            },
            stage("p--b", "b2"),
        ] {
            out.extend(r.render_plain(&ev));
        }
        assert_eq!(
            out,
            [
                "---- pod logs for p--a",
                "a1",
                "a2",
                "---- pod logs for p--b",
                "b1",
                "T - INFO - workflow - m",
                "---- pod logs for p--b",
                "b2"
            ]
        );
    }
}
