//! The one stage runner: how ONE stage of a plan becomes processes, for
//! both the local runtime's daemon (`LocalRuntime::run_batch`, services)
//! and `bodywork stage` (what every Kubernetes pod runs).
//!
//! Owns: the stage's command line (`python -u SCRIPT ARGS` or the headless
//! notebook runner), its process environment, its Python environment,
//! running a batch stage's attempts (each bounded by its own deadline, at
//! most `RETRIES` retries, with the retry and failure log lines), the
//! description of how a process ended ([`Outcome`]), and process handling
//! itself: spawning in a process group of its own, streaming output, and
//! killing the whole tree (double forks included, through the per-stage
//! [`reaper`]). The only crate that sends signals. [`direct`] is `bodywork
//! stage` itself: prepare one stage (through `bodywork-workflow`) and run it
//! in the foreground.
//!
//! Must not: record anything (a host records attempts through an
//! [`AttemptHook`]), look up secrets (the caller hands over their values or
//! they are already in the environment), fetch or plan projects itself
//! (`bodywork-workflow` does), or decide workflow order.

mod attempts;
pub mod bounded_log;
mod command;
pub mod direct;
pub mod env;
pub mod files;
#[cfg(test)]
mod fixtures;
mod notebook;
mod outcome;
pub mod process;
mod python;
pub mod reaper;

pub use attempts::{AttemptHook, Batch, BatchError, NoHook, run_batch};
pub use command::{CommandError, command};
pub use outcome::Outcome;
pub use process::{Attach, LineSink, Output, ProcessId, StageCommand, run_to_end};
pub use python::{PYTHON_ENV, PythonError, ensure_python, python_downloads_off_by_env};
