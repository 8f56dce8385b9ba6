//! `bodywork stage REPO BRANCH STAGE` (or Bodywork 3's `REPO STAGE
//! --branch B`): run one stage here, in the
//! foreground, without the daemon (what containers run). Bodywork's own
//! messages go to stderr as Bodywork's log lines; the stage's output goes
//! straight to the terminal. Ctrl-C or SIGTERM stops the stage's whole
//! process tree. The exit code is the stage's own.
//!
//! Must not: fetch, plan or supervise anything itself (`bodywork_stage::direct` does).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bodywork_runtime::{CancellationToken, Level, Log, LogSink, format_log_line, timestamp_now};
use bodywork_stage::Outcome as StageOutcome;
use bodywork_stage::direct::{self, DirectError, DirectStage};

use super::connect::{block_on, home};
use crate::cli::StageArgs;
use crate::output::color::Style;
use crate::{CliError, CliResult, Outcome};

/// Bodywork's own messages, on stderr.
struct StderrLog {
    style: Style,
}

impl LogSink for StderrLog {
    fn log(&self, level: Level, logger: &str, message: &str) {
        let name = level.as_str();
        let painted = match level {
            Level::Error => self.style.error(name),
            Level::Warning => self.style.warning(name),
            Level::Debug => self.style.dim(name),
            Level::Info => name.to_string(),
        };
        eprintln!(
            "{}",
            format_log_line(&timestamp_now(), &painted, logger, message)
        );
    }

    fn stage_line(&self, _source: &str, line: &str) {
        eprintln!("{line}");
    }
}

/// Run the stage; the exit code is the stage's own (1 when it could not run).
pub fn run(args: &StageArgs) -> CliResult {
    let home = home()?;
    let (branch, stage) = args.branch_and_stage();
    let what = DirectStage {
        repo: args.repo.clone(),
        branch: branch.map(str::to_string),
        stage: stage.to_string(),
        commit: args.commit.clone(),
        resolve_as_of: args.resolve.resolve_as_of,
        python: args.python.python.clone(),
        no_python_downloads: args.python.no_python_downloads(),
    };
    crate::run_stages_under_reaper();
    let log: Log = Arc::new(StderrLog {
        style: Style::stderr(),
    });
    let mut code = 1;
    let outcome = block_on(async {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        let drain = Duration::from_secs(args.drain_seconds);
        let signals = tokio::spawn(async move {
            stopped().await;
            if !drain.is_zero() {
                eprintln!(
                    "stopping the stage in {}s: it serves meanwhile, while the cluster stops sending it requests",
                    drain.as_secs()
                );
                tokio::select! {
                    _ = tokio::time::sleep(drain) => {}
                    _ = stopped() => {}
                }
            }
            eprintln!("stopping the stage");
            stop.cancel();
        });
        let result = match home.create() {
            Ok(()) => direct::run_stage(&home.stage_places(), &what, &log, &cancel).await,
            Err(e) => Err(DirectError::Io(format!(
                "cannot prepare {}: {e}",
                home.root().display()
            ))),
        };
        signals.abort();
        match result {
            Ok(StageOutcome::Exited(0)) => Ok(Outcome::Success),
            Ok(other) => {
                code = other.exit_code();
                Ok(Outcome::Failure)
            }
            Err(e) => Err(CliError::error(&e, Outcome::Failure)),
        }
    })?;
    if outcome == Outcome::Failure && code != 1 {
        let _ = std::io::stdout().flush();
        std::process::exit(code);
    }
    Ok(outcome)
}

/// Resolves on the first Ctrl-C or SIGTERM (`docker stop`, a pod deletion).
pub(super) async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
