//! Everything the CLI prints: log lines, tables, JSON and error reports.
//!
//! Owns: Python Bodywork's log line format, colour decisions and the
//! rendering of display commands. Must not: decide anything about projects
//! or runtimes.

pub mod color;
mod error;
pub mod log;
pub mod namespace;
mod spinner;
pub mod table;
mod terminal;
pub mod time;
pub mod watch;

pub use error::{render_error, report};
pub use terminal::TerminalLog;

use std::fmt::Display;

/// A first Ctrl-C while a run is attached (`workflow`, `--watch`).
pub const CANCELLING_RUN: &str = "cancelling the run (Ctrl-C again to leave at once)";

/// A second Ctrl-C: the command leaves before the run has stopped.
pub const LEAVING_RUN: &str = "leaving now; what the run started may still be stopping";

/// Print a warning: what was done all the same, and what may fail later.
pub fn report_warning(message: impl Display) {
    let style = color::Style::stderr();
    eprintln!("{} {message}", style.warning("warning:"));
}
