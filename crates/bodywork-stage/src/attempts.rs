//! A batch stage's attempts: at most `RETRIES` retries, each attempt
//! bounded by its own deadline (`MAX_COMPLETION_TIME_SECONDS`, 0 = no
//! limit) and killed with its whole process tree when it passes it. Logs
//! `retrying stage=X (attempt 2 of 3)` and `stage=X attempt N of M failed:
//! ...` under the logger `stage`, the same on every runtime.
//!
//! Must not: record attempts itself (the host does, through an
//! [`AttemptHook`]: the daemon keeps them in SQLite) or decide what a
//! failed stage means for the run.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use bodywork_plan::{StagePlan, StagePlanKind};
use bodywork_runtime::{CancellationToken, Level, Log};

use crate::Outcome;
use crate::process::{self, Attach, ProcessId, StageCommand};

/// Logger name of the attempt lines.
const LOGGER: &str = "stage";

/// The limits of a batch stage, from its plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Per-attempt limit (`None`: no limit).
    pub deadline: Option<Duration>,
    /// Attempts after the first failed one.
    pub retries: u32,
}

impl Batch {
    /// The limits of `stage`, or `None` for a service stage.
    pub fn of(stage: &StagePlan) -> Option<Batch> {
        match stage.kind {
            StagePlanKind::Batch {
                max_completion_time_seconds,
                retries,
            } => Some(Batch {
                deadline: (max_completion_time_seconds > 0)
                    .then(|| Duration::from_secs(max_completion_time_seconds)),
                retries,
            }),
            StagePlanKind::Service { .. } => None,
        }
    }

    /// How many attempts at most.
    pub fn attempts(self) -> u32 {
        self.retries.saturating_add(1)
    }
}

/// What the host of a batch stage does around each attempt (the daemon
/// records it; `bodywork stage` does nothing: [`NoHook`]).
pub trait AttemptHook: Send {
    /// Why the host cannot go on (e.g. its store failed).
    type Error;
    /// Attempt number `attempt` (from 1) is about to start.
    fn starting(&mut self, attempt: u32) -> Result<(), Self::Error>;
    /// Its process runs with this identity.
    fn spawned(&mut self, id: ProcessId);
    /// It ended so; `description` is [`Outcome::describe`] with the deadline.
    fn finished(&mut self, outcome: Outcome, description: &str) -> Result<(), Self::Error>;
}

/// Records nothing.
pub struct NoHook;

impl AttemptHook for NoHook {
    type Error = Infallible;
    fn starting(&mut self, _attempt: u32) -> Result<(), Infallible> {
        Ok(())
    }
    fn spawned(&mut self, _id: ProcessId) {}
    fn finished(&mut self, _outcome: Outcome, _description: &str) -> Result<(), Infallible> {
        Ok(())
    }
}

/// Why the attempts could not go on.
#[derive(Debug)]
pub enum BatchError<E> {
    /// The program could not be started at all.
    Start {
        program: PathBuf,
        source: std::io::Error,
    },
    /// The hook failed.
    Hook(E),
}

impl<E: std::fmt::Display> std::fmt::Display for BatchError<E> {
    /// `could not start PROGRAM: WHY`, or the hook's own words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchError::Start { program, source } => {
                write!(f, "could not start {}: {source}", program.display())
            }
            BatchError::Hook(e) => e.fmt(f),
        }
    }
}

/// Run the attempts of batch stage `stage` until one succeeds, the run is
/// cancelled, or none is left. Returns how the last attempt ended
/// ([`Outcome::Cancelled`] when cancelled before one started).
pub async fn run_batch<H: AttemptHook>(
    stage: &str,
    command: &StageCommand,
    batch: Batch,
    attach: &Attach,
    hook: &mut H,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<Outcome, BatchError<H::Error>> {
    let attempts = batch.attempts();
    let mut last = Outcome::Cancelled;
    for attempt in 1..=attempts {
        if cancel.is_cancelled() {
            return Ok(Outcome::Cancelled);
        }
        if attempt > 1 {
            log.log(
                Level::Warning,
                LOGGER,
                &format!("retrying stage={stage} (attempt {attempt} of {attempts})"),
            );
        }
        hook.starting(attempt).map_err(BatchError::Hook)?;
        last = process::run_to_end(command, attach, batch.deadline, cancel, |id| {
            hook.spawned(id)
        })
        .await
        .map_err(|source| BatchError::Start {
            program: command.program.clone(),
            source,
        })?;
        let description = last.describe(batch.deadline);
        hook.finished(last, &description)
            .map_err(BatchError::Hook)?;
        if last.success() || last == Outcome::Cancelled {
            break;
        }
        log.log(
            Level::Warning,
            LOGGER,
            &format!("stage={stage} attempt {attempt} of {attempts} failed: {description}"),
        );
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{sh, stage};
    use std::sync::{Arc, Mutex};

    /// Every message as `LEVEL logger: message`; stage output is ignored.
    #[derive(Default)]
    struct Messages(Mutex<Vec<String>>);
    impl bodywork_runtime::LogSink for Messages {
        fn log(&self, level: Level, logger: &str, message: &str) {
            let line = format!("{} {logger}: {message}", level.as_str());
            self.0.lock().unwrap().push(line);
        }
        fn stage_line(&self, _source: &str, _line: &str) {}
    }

    /// Records what the runner tells it.
    #[derive(Default)]
    struct Record(Vec<String>);
    impl AttemptHook for Record {
        type Error = String;
        fn starting(&mut self, attempt: u32) -> Result<(), String> {
            self.0.push(format!("start {attempt}"));
            Ok(())
        }
        fn spawned(&mut self, id: ProcessId) {
            assert!(id.pid > 0);
        }
        fn finished(&mut self, _outcome: Outcome, description: &str) -> Result<(), String> {
            self.0.push(description.to_string());
            Ok(())
        }
    }

    #[tokio::test]
    async fn failed_attempts_are_retried_and_logged_until_none_is_left() {
        let lines = Arc::new(Messages::default());
        let log: Log = lines.clone();
        let mut hook = Record::default();
        let sink: process::LineSink = Arc::new(|_| {});
        let outcome = run_batch(
            "s",
            &sh("exit 3"),
            Batch {
                deadline: None,
                retries: 2,
            },
            &Attach::lines(sink),
            &mut hook,
            &log,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Exited(3));
        assert_eq!(
            hook.0,
            [
                "start 1",
                "exit code 3",
                "start 2",
                "exit code 3",
                "start 3",
                "exit code 3"
            ]
        );
        assert_eq!(
            *lines.0.lock().unwrap(),
            [
                "WARNING stage: stage=s attempt 1 of 3 failed: exit code 3",
                "WARNING stage: retrying stage=s (attempt 2 of 3)",
                "WARNING stage: stage=s attempt 2 of 3 failed: exit code 3",
                "WARNING stage: retrying stage=s (attempt 3 of 3)",
                "WARNING stage: stage=s attempt 3 of 3 failed: exit code 3",
            ]
        );
    }

    #[tokio::test]
    async fn success_and_cancel_end_the_attempts() {
        let log: Log = Arc::new(Messages::default());
        let attach = Attach::lines(Arc::new(|_| {}));
        let batch = Batch {
            deadline: Some(Duration::from_secs(30)),
            retries: 5,
        };
        let mut hook = Record::default();
        let (ok, fail) = (sh("exit 0"), sh("exit 1"));
        let go = CancellationToken::new();
        let outcome = run_batch("s", &ok, batch, &attach, &mut hook, &log, &go).await;
        assert_eq!(outcome.unwrap(), Outcome::Exited(0));
        assert_eq!(hook.0, ["start 1", "exit code 0"]);
        let cancel = CancellationToken::new();
        cancel.cancel();
        let mut hook = Record::default();
        let outcome = run_batch("s", &fail, batch, &attach, &mut hook, &log, &cancel).await;
        assert_eq!(outcome.unwrap(), Outcome::Cancelled);
        assert!(hook.0.is_empty());
    }

    #[test]
    fn limits_come_from_the_plan_and_zero_means_no_deadline() {
        let mut stage = stage(vec![]);
        stage.kind = StagePlanKind::Batch {
            max_completion_time_seconds: 0,
            retries: 2,
        };
        let batch = Batch::of(&stage).unwrap();
        assert_eq!(batch.deadline, None);
        assert_eq!(batch.attempts(), 3);
        stage.kind = StagePlanKind::Batch {
            max_completion_time_seconds: 7,
            retries: 0,
        };
        assert_eq!(
            Batch::of(&stage).unwrap().deadline,
            Some(Duration::from_secs(7))
        );
    }
}
