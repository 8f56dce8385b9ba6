//! The `bodywork` command line (also installed as `bw`).
//!
//! Thin by design: parse arguments with clap, set up output, and hand each
//! command to its own module under `commands/`. Everything that decides
//! lives in the library crates; everything printed goes through `output`.

pub mod cli;
pub mod commands;
pub mod error;
pub mod output;

pub use error::{CliError, CliResult};

use std::process::ExitCode;

use clap::Parser;

/// How a command ended; each outcome is one exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: the command ran and reported a failure.
    Failure,
    /// Exit 2: a usage problem (also what clap uses for bad arguments).
    Usage,
    /// Exit 3, from `bodywork daemon --worker` to its supervisor only: the
    /// daemon could not start, and starting it again would not help.
    DaemonStartFailed,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failure => ExitCode::from(1),
            Outcome::Usage => ExitCode::from(2),
            Outcome::DaemonStartFailed => {
                ExitCode::from(bodywork_local::supervisor::EXIT_START_FAILED)
            }
        }
    }
}

/// The entry point of `bodywork` (and of `bw`, which runs it).
pub fn main() -> ExitCode {
    // `bodywork __reap ...`: the per-stage reaper (`bodywork_stage::reaper`),
    // never typed by a user; recognised before clap.
    if let Some(code) = bodywork_stage::reaper::main() {
        return code;
    }
    let cli = cli::Cli::parse();
    if !matches!(cli.command, cli::Command::Daemon(_)) {
        restore_sigpipe();
    }
    output::color::init(cli.global.color);
    output::log::init(cli.global.verbose);
    match commands::run(cli) {
        Ok(outcome) => outcome.into(),
        Err(e) => {
            output::report(&e);
            e.outcome().into()
        }
    }
}

/// From now on run every stage (and replica) under the reaper installed
/// with this binary, so its whole process tree ends with it: for the
/// daemon, and for `bodywork stage`, whose attempts retry in the same
/// container.
pub(crate) fn run_stages_under_reaper() {
    match std::env::current_exe() {
        Ok(exe) => bodywork_stage::process::use_reaper(bodywork_stage::process::reaper_for(&exe)),
        Err(e) => tracing::warn!(
            "stages run without their reaper (a double-forked process may outlive its stage): cannot find this program: {e}"
        ),
    }
}

/// Like other Unix tools, stop quietly when the reader of our output goes
/// away (`bodywork logs ... | head`) instead of failing on every write.
/// Not for the daemon: a client hanging up must never kill it.
fn restore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: installing the default disposition runs no handler code and
    // happens before any other thread exists.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}
