//! The Python environment of a stage: ask the shared cache for one with the
//! stage's requirements (on a blocking thread), and tell the user what the
//! installer does, under the logger `environment`.
//!
//! Must not: build environments itself (`bodywork-pyenv` does) or decide
//! what a failure means for the run (the caller does).

use std::path::PathBuf;
use std::sync::Arc;

use bodywork_plan::StagePlan;
use bodywork_pyenv::{Env, EnvCache, EnvError, EnvEvent, EnvRequest};
use bodywork_runtime::{Level, Log};

/// Logger name of the installer's progress.
const LOGGER: &str = "environment";

/// Why a stage has no Python environment.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// The blocking task that builds it failed (panicked or was cancelled).
    #[error("the environment task failed: {0}")]
    Task(String),
    /// The installer failed; its own lines are in the error.
    #[error(transparent)]
    Install(EnvError),
}

/// The stage's environment from `cache` (built when missing), with the
/// interpreter named by `BODYWORK_PYTHON` when set. Progress goes to `log`.
pub async fn ensure_python(
    cache: Arc<EnvCache>,
    stage: &StagePlan,
    log: &Log,
) -> Result<Env, PythonError> {
    let request = EnvRequest {
        python: std::env::var_os("BODYWORK_PYTHON").map(PathBuf::from),
        requirements: stage.requirements.clone(),
        exclude_newer: None,
    };
    let log = log.clone();
    tokio::task::spawn_blocking(move || {
        cache.ensure(&request, &mut |event| {
            if let Some(line) = progress_line(event) {
                log.log(Level::Info, LOGGER, &line);
            }
        })
    })
    .await
    .map_err(|e| PythonError::Task(e.to_string()))?
    .map_err(PythonError::Install)
}

/// The line shown for an installer event, if any.
fn progress_line(event: EnvEvent) -> Option<String> {
    match event {
        EnvEvent::Installing { line } => Some(line),
        EnvEvent::WaitingForOtherBuild => {
            Some("waiting for another build of the same environment".into())
        }
        EnvEvent::UsingTool(tool) => Some(format!("installing requirements with {tool}")),
        EnvEvent::Done {
            reused: false,
            elapsed,
        } => Some(format!(
            "environment ready in {:.1}s",
            elapsed.as_secs_f64()
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn installer_progress_is_shown_and_a_reused_environment_is_quiet() {
        assert_eq!(
            progress_line(EnvEvent::Installing {
                line: "Resolved 3 packages".into()
            })
            .as_deref(),
            Some("Resolved 3 packages")
        );
        assert_eq!(
            progress_line(EnvEvent::Done {
                reused: false,
                elapsed: Duration::from_millis(3100)
            })
            .as_deref(),
            Some("environment ready in 3.1s")
        );
        assert_eq!(
            progress_line(EnvEvent::Done {
                reused: true,
                elapsed: Duration::ZERO
            }),
            None
        );
    }
}
