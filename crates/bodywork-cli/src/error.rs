//! Why a command did not succeed, as data: what a runtime said, or what the
//! CLI found wrong, with the exit code it ends with. `main` has it
//! rendered once, by [`crate::output::report`].

use std::fmt::Display;

use bodywork_runtime::{Problem, RuntimeError, error_chain};
use bodywork_workflow::{PrepareError, WorkflowError};

use crate::Outcome;

/// A command's error. Commands return `Result<Outcome, CliError>`: `Ok` for
/// what they ended with on their own terms (a failed run has said why in
/// its log), `Err` for an error `main` reports.
#[derive(Debug, Clone, PartialEq)]
pub enum CliError {
    /// What a runtime said went wrong (exit 2 when it does not do what
    /// was asked, else 1).
    Runtime(RuntimeError),
    /// What the CLI itself found wrong, and the exit code it ends with.
    Problem { problem: Problem, outcome: Outcome },
}

impl CliError {
    /// A usage problem (exit 2): arguments that cannot work.
    pub fn usage(message: impl Display) -> Self {
        CliError::Problem {
            problem: Problem::new(message),
            outcome: Outcome::Usage,
        }
    }

    /// A failure (exit 1).
    pub fn failure(message: impl Display) -> Self {
        CliError::Problem {
            problem: Problem::new(message),
            outcome: Outcome::Failure,
        }
    }

    /// `err` as the message, its sources as the causes; ending with `outcome`.
    pub fn error(err: &(dyn std::error::Error + 'static), outcome: Outcome) -> Self {
        let mut chain = error_chain(err);
        let message = chain.next().unwrap_or_default();
        CliError::Problem {
            problem: Problem {
                message,
                causes: chain.collect(),
                hints: Vec::new(),
            },
            outcome,
        }
    }

    /// `message`, caused by `err` (and its sources); ending with `outcome`.
    pub fn caused(
        message: impl Display,
        err: &(dyn std::error::Error + 'static),
        outcome: Outcome,
    ) -> Self {
        CliError::Problem {
            problem: Problem::from_error(message, err),
            outcome,
        }
    }

    /// A project that could not be fetched, loaded or planned here: what
    /// failed, then why (each problem of an invalid project a cause of its
    /// own); ends the command with exit 1.
    pub fn workflow(e: &WorkflowError) -> Self {
        let problem = match e {
            WorkflowError::Prepare(PrepareError::Source(source)) => {
                Problem::from_error("could not fetch the project", source)
            }
            WorkflowError::Prepare(PrepareError::Invalid(problems)) => Problem {
                message: "the project is not valid".to_string(),
                causes: problems
                    .iter()
                    .filter(|p| p.is_error())
                    .map(ToString::to_string)
                    .collect(),
                hints: Vec::new(),
            },
            other => return CliError::error(other, Outcome::Failure),
        };
        CliError::Problem {
            problem,
            outcome: Outcome::Failure,
        }
    }

    /// One more hint, after those it has.
    pub fn with_hint(self, hint: impl Display) -> Self {
        match self {
            CliError::Runtime(e) => CliError::Runtime(e.with_hint(hint)),
            CliError::Problem { problem, outcome } => CliError::Problem {
                problem: problem.with_hint(hint),
                outcome,
            },
        }
    }

    /// The message alone, without causes and hints.
    pub fn message(&self) -> String {
        match self {
            CliError::Runtime(e) => e.message(),
            CliError::Problem { problem, .. } => problem.message.clone(),
        }
    }

    /// The exit code it ends the command with.
    pub fn outcome(&self) -> Outcome {
        match self {
            CliError::Runtime(RuntimeError::Unsupported(_)) => Outcome::Usage,
            CliError::Runtime(_) => Outcome::Failure,
            CliError::Problem { outcome, .. } => *outcome,
        }
    }
}

impl From<RuntimeError> for CliError {
    fn from(e: RuntimeError) -> Self {
        CliError::Runtime(e)
    }
}

/// What a command returns.
pub type CliResult<T = Outcome> = Result<T, CliError>;
