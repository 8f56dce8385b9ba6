//! Log events of a run and their one rendering (Python Bodywork's log
//! lines), shared by the daemon's log files and the CLI's live stream so
//! both look the same.

use chrono::{DateTime, Local, Utc};
use serde::{Deserialize, Serialize};

use crate::Level;

/// One thing that happened in a run, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LogEvent {
    /// A controller or runtime message.
    Log {
        /// When it happened (to the millisecond on the daemon's socket).
        #[serde(with = "crate::time::rfc3339_millis")]
        time: DateTime<Utc>,
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
            time: Utc::now(),
            level,
            logger: logger.to_string(),
            message: message.to_string(),
        }
    }
}

/// A time as tables and messages show it: `2026-11-24 20:04:12`, local
/// time to the second ([`log_time`] without the milliseconds).
pub fn local_time(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// A time as log lines show it: `2026-11-24 20:04:12,648`, local time
/// with milliseconds.
pub fn log_time(t: &DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S,%3f")
        .to_string()
}

/// Now, as log lines show it ([`log_time`]).
pub fn timestamp_now() -> String {
    log_time(&Utc::now())
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
                vec![format_log_line(
                    &log_time(time),
                    &paint_level(*level),
                    logger,
                    message,
                )]
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
    fn a_log_events_time_crosses_the_socket_to_the_millisecond() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2026, 11, 24, 20, 4, 12).unwrap()
            + chrono::Duration::milliseconds(648);
        let event = LogEvent::Log {
            time: at,
            level: Level::Info,
            logger: "workflow".into(),
            message: "m".into(),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert!(
            text.contains(r#""time":"2026-11-24T20:04:12.648Z""#),
            "{text}"
        );
        let back: LogEvent = serde_json::from_str(&text).unwrap();
        assert_eq!(back, event);
        let line = LogRenderer::default().render_plain(&back).remove(0);
        assert_eq!(line, format!("{} - INFO - workflow - m", log_time(&at)));
        assert!(log_time(&at).ends_with(",648"), "{line}");
    }

    #[test]
    fn headers_mark_each_change_of_source() {
        let mut r = LogRenderer::default();
        let mut out = Vec::new();
        for ev in [
            stage("p--a", "a1"),
            stage("p--a", "a2"),
            stage("p--b", "b1"),
            LogEvent::log(Level::Info, "workflow", "m"),
            stage("p--b", "b2"),
        ] {
            out.extend(r.render_plain(&ev));
        }
        let logged = out.remove(5);
        assert!(logged.ends_with(" - INFO - workflow - m"), "{logged}");
        assert_eq!(
            logged.len(),
            "2026-11-24 20:04:12,648 - INFO - workflow - m".len()
        );
        assert_eq!(
            out,
            [
                "---- pod logs for p--a",
                "a1",
                "a2",
                "---- pod logs for p--b",
                "b1",
                "---- pod logs for p--b",
                "b2"
            ]
        );
    }
}
