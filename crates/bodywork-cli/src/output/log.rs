//! Log lines in Python Bodywork's format:
//! `2026-11-24 20:04:12,648 - INFO - workflow - message`.
//!
//! The logger name is the last segment of the event's target (the module
//! that logged), or the target itself when it is a plain word, so
//! `tracing::info!(target: "workflow", ...)` prints `workflow`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::color::Style;

/// Python logging's level names for tracing levels.
pub fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "DEBUG",
    }
}

/// The timestamp part of a log line, local time with milliseconds after a comma.
pub fn timestamp(now: chrono::DateTime<chrono::Local>) -> String {
    now.format("%Y-%m-%d %H:%M:%S,%3f").to_string()
}

/// Render one complete log line (without colour) — shared with the daemon's
/// log files so every log line has the same shape.
pub fn line(
    now: chrono::DateTime<chrono::Local>,
    level: &str,
    logger: &str,
    message: &str,
) -> String {
    format!("{} - {level} - {logger} - {message}", timestamp(now))
}

fn logger_name(target: &str) -> &str {
    target.rsplit("::").next().unwrap_or(target)
}

struct Format {
    style: Style,
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let name = level_name(meta.level());
        let level = match *meta.level() {
            Level::ERROR => self.style.error(name),
            Level::WARN => self.style.warning(name),
            Level::INFO => name.to_string(),
            _ => self.style.dim(name),
        };
        write!(
            writer,
            "{} - {level} - {} - ",
            timestamp(chrono::Local::now()),
            logger_name(meta.target())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Install the global logger: to stderr, INFO (DEBUG with `verbose`).
pub fn init(verbose: bool) {
    let level = if verbose { Level::DEBUG } else { Level::INFO };
    let style = Style::stderr();
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        // Structured fields are painted too: not when piped or NO_COLOR.
        .with_ansi(style.on)
        .event_format(Format { style })
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn line_has_spec_shape() {
        let t = chrono::Local
            .with_ymd_and_hms(2026, 11, 24, 20, 4, 12)
            .single()
            .map(|t| t + chrono::Duration::milliseconds(648));
        let Some(t) = t else { return };
        assert_eq!(
            line(t, "INFO", "workflow", "attempting to run workflow"),
            "2026-11-24 20:04:12,648 - INFO - workflow - attempting to run workflow"
        );
    }

    #[test]
    fn logger_is_last_module_segment() {
        assert_eq!(logger_name("bodywork_cli::commands::workflow"), "workflow");
        assert_eq!(logger_name("daemon"), "daemon");
    }
}
