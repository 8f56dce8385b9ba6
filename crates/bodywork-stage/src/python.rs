//! The Python environment of a stage: ask the shared cache for one with the
//! stage's requirements (on a blocking thread), and tell the user what the
//! installer does, under the logger `environment`.
//!
//! Must not: build environments itself (`bodywork-pyenv` does) or decide
//! what a failure means for the run (the caller does).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bodywork_plan::StagePlan;
use bodywork_pyenv::{BuildFor, BuildStop, Env, EnvCache, EnvError, EnvEvent, EnvRequest};
use bodywork_runtime::{Level, Log, Resolution};

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
/// Python `python` names (`--python`: a version such as `3.10`, or a path),
/// else `BODYWORK_PYTHON` (the same), else the default one or the one
/// chosen because a package has no wheel for it (one uv downloads when
/// none on the machine fits, unless `no_python_downloads` or
/// `BODYWORK_PYTHON_DOWNLOADS=never` says not to); its requirements
/// resolved as `resolution` says (`commit` is what it names). Progress goes
/// to `log`, and so do the stage's first lines about its environment,
/// whether built or reused: the date resolved as of, then the environment
/// and its lock (every package installed, `name==version`).
#[allow(clippy::too_many_arguments)] // each is one of the stage's or its run's
pub async fn ensure_python(
    cache: Arc<EnvCache>,
    stage: &StagePlan,
    resolution: Resolution,
    python: Option<&str>,
    no_python_downloads: bool,
    commit: &str,
    built_for: Option<BuildFor>,
    stop: Option<BuildStop>,
    log: &Log,
) -> Result<Env, PythonError> {
    let asked = python
        .map(str::to_owned)
        .or_else(|| std::env::var(PYTHON_ENV).ok())
        .filter(|p| !p.trim().is_empty());
    let (python, python_version) = match asked {
        Some(version) if bodywork_pyenv::is_python_version(&version) => (None, Some(version)),
        Some(path) => (Some(PathBuf::from(path)), None),
        None => (None, None),
    };
    let request = EnvRequest {
        python,
        requirements: stage.requirements.clone(),
        exclude_newer: resolution.as_of.exclude_newer(),
        python_version,
        python_downloads: !no_python_downloads && downloads_allowed_by_env(log),
    };
    log.log(
        Level::Info,
        LOGGER,
        &format!(
            "stage={} resolves its requirements {}",
            stage.stage,
            resolution.describe(commit)
        ),
    );
    let task_log = log.clone();
    let name = stage.stage.clone();
    let started = std::time::Instant::now();
    let env = tokio::task::spawn_blocking(move || {
        cache.ensure_for(&request, built_for.as_ref(), stop.as_ref(), &mut |event| {
            if let Some(line) = progress_line(&name, event) {
                task_log.log(Level::Info, LOGGER, &line);
            }
        })
    })
    .await
    .map_err(|e| PythonError::Task(e.to_string()))?
    .map_err(PythonError::Install)?;
    for (level, line) in lock_lines(&stage.stage, &env, started.elapsed()) {
        log.log(level, LOGGER, &line);
    }
    Ok(env)
}

/// What the stage's log says of its environment once it is ready: where it
/// is, the Python, the date, and its lock (and, at warning level, why a
/// date asked for was not applied).
fn lock_lines(stage: &str, env: &Env, elapsed: Duration) -> Vec<(Level, String)> {
    let how = if env.reused {
        format!(
            "in {:.1} ms (reused {})",
            elapsed.as_secs_f64() * 1000.0,
            env.key
        )
    } else {
        format!("in {:.2}s (built {})", elapsed.as_secs_f64(), env.key)
    };
    let as_of = env.lock.exclude_newer.as_deref().unwrap_or("now");
    let mut lines = vec![(
        Level::Info,
        format!(
            "environment ready for stage={stage} {how}: Python {}, resolved as of {as_of}",
            env.lock.python_version
        ),
    )];
    if let Some(note) = &env.lock.note {
        lines.push((
            Level::Warning,
            format!("environment of stage={stage}: {note}"),
        ));
    }
    lines.push((
        Level::Info,
        match &env.lock.packages {
            Some(packages) => format!("environment lock for stage={stage}: {}", packages.join(" ")),
            None => format!(
                "environment lock for stage={stage}: not recorded (built by an older bodywork; \
                 `bodywork env prune` removes it)"
            ),
        },
    ));
    lines
}

/// The variable that names the Python of every stage's environment (a
/// version, `3.10`, or an interpreter's path) when `--python` is not given.
pub const PYTHON_ENV: &str = "BODYWORK_PYTHON";

/// Whether `BODYWORK_PYTHON_DOWNLOADS` turns uv's download of a Python off:
/// `never`, or a value that is not `automatic`.
pub fn python_downloads_off_by_env() -> bool {
    std::env::var(bodywork_pyenv::PYTHON_DOWNLOADS_ENV)
        .is_ok_and(|v| bodywork_pyenv::python_downloads_allowed(&v) != Some(true))
}

/// Whether `BODYWORK_PYTHON_DOWNLOADS` allows uv's download of a Python
/// (unset: yes); a value that is neither `never` nor `automatic` is said
/// and allows none.
fn downloads_allowed_by_env(log: &Log) -> bool {
    let Ok(value) = std::env::var(bodywork_pyenv::PYTHON_DOWNLOADS_ENV) else {
        return true;
    };
    bodywork_pyenv::python_downloads_allowed(&value).unwrap_or_else(|| {
        log.log(
            Level::Warning,
            LOGGER,
            &format!(
                "{} is `{value}`, not `never` or `automatic`: uv downloads no Python",
                bodywork_pyenv::PYTHON_DOWNLOADS_ENV
            ),
        );
        false
    })
}

/// The line shown for an installer event of stage `stage`, if any.
fn progress_line(stage: &str, event: EnvEvent) -> Option<String> {
    match event {
        EnvEvent::PythonChosen(line) => Some(format!("stage {stage}: {line}")),
        EnvEvent::Installing { line } => Some(line),
        EnvEvent::WaitingForOtherBuild => {
            Some("waiting for another build of the same environment".into())
        }
        EnvEvent::UsingTool(tool) => Some(format!("installing requirements with {tool}")),
        // Said once the environment is ready, with its lock (`lock_lines`).
        EnvEvent::Done { .. } | EnvEvent::Resolving => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn installer_progress_is_shown_and_readiness_is_left_to_the_lock_lines() {
        assert_eq!(
            progress_line(
                "s",
                EnvEvent::Installing {
                    line: "Resolved 3 packages".into()
                }
            )
            .as_deref(),
            Some("Resolved 3 packages")
        );
        assert_eq!(
            progress_line(
                "scoring_service",
                EnvEvent::PythonChosen(
                    "numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10.13".into()
                )
            )
            .as_deref(),
            Some(
                "stage scoring_service: numpy==1.22.3 has no wheel for Python 3.11; using Python 3.10.13"
            )
        );
        for done in [true, false] {
            assert_eq!(
                progress_line(
                    "s",
                    EnvEvent::Done {
                        reused: done,
                        elapsed: Duration::ZERO
                    }
                ),
                None
            );
        }
    }

    fn env(reused: bool, lock: bodywork_pyenv::Lock) -> Env {
        Env {
            key: "0123456789abcdef".into(),
            dir: PathBuf::from("/h/envs/0123456789abcdef"),
            python: PathBuf::from("/h/envs/0123456789abcdef/bin/python"),
            site_packages: PathBuf::from("/h/envs/0123456789abcdef/lib/python3.11/site-packages"),
            reused,
            lock,
            created: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_lock_is_shown_whether_built_or_reused() {
        let lock = bodywork_pyenv::Lock {
            python_version: "3.11.7".into(),
            exclude_newer: Some("2022-05-20T12:00:00Z".into()),
            packages: Some(vec!["flask==2.1.2".into(), "werkzeug==2.1.2".into()]),
            note: None,
        };
        let lines = lock_lines(
            "serve",
            &env(true, lock.clone()),
            Duration::from_micros(2_500),
        );
        assert_eq!(
            lines,
            [
                (
                    Level::Info,
                    "environment ready for stage=serve in 2.5 ms (reused 0123456789abcdef): \
                     Python 3.11.7, resolved as of 2022-05-20T12:00:00Z"
                        .to_string()
                ),
                (
                    Level::Info,
                    "environment lock for stage=serve: flask==2.1.2 werkzeug==2.1.2".to_string()
                ),
            ]
        );
        let built = lock_lines(
            "serve",
            &env(
                false,
                bodywork_pyenv::Lock {
                    exclude_newer: None,
                    packages: None,
                    note: Some("resolved as of now".into()),
                    ..lock
                },
            ),
            Duration::from_millis(3100),
        );
        assert_eq!(
            built[0].1,
            "environment ready for stage=serve in 3.10s (built 0123456789abcdef): \
             Python 3.11.7, resolved as of now"
        );
        assert_eq!(
            built[1],
            (
                Level::Warning,
                "environment of stage=serve: resolved as of now".to_string()
            )
        );
        assert!(built[2].1.contains("not recorded"), "{built:?}");
    }
}
