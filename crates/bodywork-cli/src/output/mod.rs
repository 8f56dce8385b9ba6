//! Everything the CLI prints: log lines, tables, JSON and error reports.
//!
//! Owns: Python Bodywork's log line format, colour decisions and the
//! rendering of display commands. Must not: decide anything about projects
//! or runtimes.

pub mod color;
pub mod log;
pub mod namespace;
mod spinner;
pub mod table;
mod terminal;
pub mod time;

pub use terminal::TerminalLog;

use std::fmt::Display;

/// Print an error the user caused: one line, then its causes, each on its
/// own line, then an optional hint. Never a Rust debug dump.
pub fn report_error(err: &(dyn std::error::Error + 'static), hint: Option<&str>) {
    let style = color::Style::stderr();
    eprintln!("{} {}", style.error("error:"), err);
    let mut source = err.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = hint {
        eprintln!("  {} {hint}", style.hint("hint:"));
    }
}

/// Print a warning: what was done all the same, and what may fail later.
pub fn report_warning(message: impl Display) {
    let style = color::Style::stderr();
    eprintln!("{} {message}", style.warning("warning:"));
}

/// Print a one-line error message that is not an `Error` value.
pub fn report_message(message: impl Display) {
    let style = color::Style::stderr();
    eprintln!("{} {message}", style.error("error:"));
}
