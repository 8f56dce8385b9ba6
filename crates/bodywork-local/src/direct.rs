//! `bodywork stage REPO BRANCH STAGE`: run ONE stage of a project here, in
//! the foreground and without the daemon — what a container of the
//! Kubernetes runtime runs. Fetch the project into a scratch checkout,
//! load and plan it (`bodywork_workflow::prepare`, as every run does), ensure the stage's Python environment in
//! `$BODYWORK_HOME`, then run the stage with the terminal's stdout/stderr.
//! A batch stage honours its timeout (killing the whole process tree) and
//! retries; a service stage runs until it exits or is stopped.
//!
//! The stage gets the current process environment (inside a container the
//! secrets already arrive as environment variables) plus the planned
//! variables (`GIT_COMMIT_HASH`, `PYTHONUNBUFFERED`, `PORT`) and the
//! Python environment (`VIRTUAL_ENV`, `PATH`).
//!
//! Must not: talk to the daemon, read or record state in SQLite, or look up
//! secrets (there are none to look up here: they are in the environment).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bodywork_plan::{EnvValue, StagePlan, StagePlanKind, WorkflowPlan};
use bodywork_pyenv::{EnvCache, EnvEvent, EnvRequest};
use bodywork_runtime::{CancellationToken, Level, Log};
use bodywork_source::FetchOptions;
use bodywork_workflow::{PrepareError, PrepareRequest, Preparing};
use nix::sys::signal::Signal;

use crate::home::Home;
use crate::{notebook, process};

/// Logger name of the messages this module writes.
const LOGGER: &str = "stage";

/// Namespace used to plan a project that names none (the stage command has
/// no `--namespace`; the namespace changes nothing about how a stage runs).
const FALLBACK_NAMESPACE: &str = "default";

/// How long a stage may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct DirectStage {
    /// Git URL or local directory of the project.
    pub repo: String,
    /// Branch to fetch (for a local directory: the branch it must be on).
    pub branch: Option<String>,
    /// Name of the stage, as written in the project.
    pub stage: String,
}

/// How the stage ended when it ran at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectOutcome {
    /// The (last) attempt exited with this code; 0 is success.
    Exited(i32),
    /// Killed by this signal.
    Signalled(i32),
    /// The last attempt did not finish within `MAX_COMPLETION_TIME_SECONDS`.
    TimedOut,
    /// Stopped because `cancel` fired (Ctrl-C, SIGTERM).
    Cancelled,
}

impl DirectOutcome {
    /// The exit code for the `bodywork stage` process: the stage's own code,
    /// `128 + signal` as a shell reports it, 1 for a timeout, 130 when cancelled.
    pub fn exit_code(self) -> i32 {
        match self {
            DirectOutcome::Exited(c) => c,
            DirectOutcome::Signalled(s) => 128 + s,
            DirectOutcome::TimedOut => 1,
            DirectOutcome::Cancelled => 130,
        }
    }
}

/// Why the stage could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// `REPO`/`BRANCH` could not be fetched.
    #[error("could not fetch the project")]
    Source(#[from] bodywork_source::SourceError),
    /// The project has validation errors.
    #[error("{}", bodywork_workflow::invalid_message(.0))]
    Invalid(Vec<bodywork_config::Problem>),
    /// The project could not be planned (e.g. a bad namespace).
    #[error(transparent)]
    Plan(#[from] bodywork_plan::PlanError),
    /// No stage of that name in the DAG nor as `run_on_failure`.
    #[error("project {project} has no stage {stage:?} (its stages: {known})")]
    UnknownStage {
        project: String,
        stage: String,
        known: String,
    },
    /// The Python environment could not be built (the installer's lines follow as the cause).
    #[error("stage {stage} could not install its requirements")]
    Environment {
        stage: String,
        #[source]
        source: bodywork_pyenv::EnvError,
    },
    /// A local failure: files, processes, tasks.
    #[error("{0}")]
    Io(String),
}

impl From<PrepareError> for DirectError {
    fn from(e: PrepareError) -> DirectError {
        match e {
            PrepareError::Source(e) => DirectError::Source(e),
            PrepareError::Invalid(problems) => DirectError::Invalid(problems),
            PrepareError::Plan(e) => DirectError::Plan(e),
            PrepareError::Internal(why) => DirectError::Io(why),
        }
    }
}

/// Fetch, plan and run one stage in the foreground. Messages of bodywork
/// itself go to `log`; the stage's own output goes straight to this
/// process's stdout/stderr.
pub async fn run_stage(
    home: &Home,
    what: &DirectStage,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<DirectOutcome, DirectError> {
    home.create()
        .map_err(|e| DirectError::Io(format!("cannot prepare {}: {e}", home.root().display())))?;
    let scratch = Scratch::new(home);
    let request = PrepareRequest {
        repo: what.repo.clone(),
        branch: what.branch.clone(),
        namespace: None,
        fallback_namespace: Some(FALLBACK_NAMESPACE.to_string()),
        checkout_dir: scratch.dir.clone(),
        fetch: FetchOptions::default(),
    };
    let prepared = bodywork_workflow::prepare(&request, &mut |event| match event {
        Preparing::Fetching(source) => log.log(Level::Info, LOGGER, &format!("fetching {source}")),
        Preparing::Warning(problem) => log.log(Level::Warning, LOGGER, &problem.to_string()),
        Preparing::Fetched(_) => {}
    })
    .await?;
    let stage = find_stage(&prepared.plan, &what.stage)?.clone();
    let checkout = &prepared.checkout;
    log.log(
        Level::Info,
        LOGGER,
        &format!(
            "running stage={} of commit={}",
            stage.resource_name, checkout.commit
        ),
    );
    let env = environment(home, &stage, log).await?;
    let vars = stage_vars(|k| std::env::var_os(k), &env.dir, &stage, log);
    let (program, args) = command_line(home, &stage, &env.python)?;
    let cwd = checkout.dir.join(&stage.working_dir);
    let run = |deadline| run_attempt(&program, &args, &cwd, &vars, deadline, cancel);
    let outcome = match stage.kind {
        StagePlanKind::Service { .. } => run(None).await?,
        StagePlanKind::Batch {
            max_completion_time_seconds,
            retries,
        } => {
            let deadline = (max_completion_time_seconds > 0)
                .then(|| Duration::from_secs(max_completion_time_seconds));
            let attempts = retries + 1;
            let mut last = DirectOutcome::Exited(1);
            for attempt in 1..=attempts {
                if attempt > 1 {
                    log.log(
                        Level::Warning,
                        LOGGER,
                        &format!(
                            "retrying stage={} (attempt {attempt} of {attempts})",
                            stage.stage
                        ),
                    );
                }
                last = run(deadline).await?;
                match last {
                    DirectOutcome::Exited(0) | DirectOutcome::Cancelled => break,
                    other => log.log(
                        Level::Warning,
                        LOGGER,
                        &format!(
                            "stage={} attempt {attempt} of {attempts} failed: {}",
                            stage.stage,
                            describe(other, deadline)
                        ),
                    ),
                }
            }
            last
        }
    };
    match outcome {
        DirectOutcome::Exited(0) => log.log(
            Level::Info,
            LOGGER,
            &format!("stage={} succeeded", stage.stage),
        ),
        DirectOutcome::Cancelled => log.log(
            Level::Warning,
            LOGGER,
            &format!("stage={} was stopped", stage.stage),
        ),
        other => log.log(
            Level::Error,
            LOGGER,
            &format!(
                "stage={} failed: {}",
                stage.stage,
                describe(other, stage_deadline(&stage))
            ),
        ),
    }
    Ok(outcome)
}

fn stage_deadline(stage: &StagePlan) -> Option<Duration> {
    match stage.kind {
        StagePlanKind::Batch {
            max_completion_time_seconds,
            ..
        } if max_completion_time_seconds > 0 => {
            Some(Duration::from_secs(max_completion_time_seconds))
        }
        _ => None,
    }
}

fn describe(outcome: DirectOutcome, deadline: Option<Duration>) -> String {
    match outcome {
        DirectOutcome::Exited(c) => format!("exit code {c}"),
        DirectOutcome::Signalled(s) => format!(
            "killed by signal {}",
            Signal::try_from(s)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| s.to_string())
        ),
        DirectOutcome::TimedOut => match deadline {
            Some(d) => format!("did not complete within {} seconds", d.as_secs()),
            None => "timed out".into(),
        },
        DirectOutcome::Cancelled => "cancelled".into(),
    }
}

/// The one stage asked for: a DAG stage or the `run_on_failure` stage.
fn find_stage<'p>(plan: &'p WorkflowPlan, name: &str) -> Result<&'p StagePlan, DirectError> {
    let mut all = plan.stages().chain(plan.on_failure.iter());
    all.find(|s| s.stage == name)
        .ok_or_else(|| DirectError::UnknownStage {
            project: plan.project.clone(),
            stage: name.to_string(),
            known: plan
                .stages()
                .chain(plan.on_failure.iter())
                .map(|s| s.stage.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

async fn environment(
    home: &Home,
    stage: &StagePlan,
    log: &Log,
) -> Result<bodywork_pyenv::Env, DirectError> {
    let cache = EnvCache::new(home.root());
    let request = EnvRequest {
        python: std::env::var_os("BODYWORK_PYTHON").map(PathBuf::from),
        requirements: stage.requirements.clone(),
    };
    let log = log.clone();
    let name = stage.stage.clone();
    tokio::task::spawn_blocking(move || {
        let mut on_event = |ev: EnvEvent| match ev {
            EnvEvent::Installing { line } => log.log(Level::Info, "environment", &line),
            EnvEvent::UsingTool(tool) => log.log(
                Level::Info,
                "environment",
                &format!("installing requirements with {tool}"),
            ),
            EnvEvent::WaitingForOtherBuild => log.log(
                Level::Info,
                "environment",
                "waiting for another build of the same environment",
            ),
            _ => {}
        };
        cache.ensure(&request, &mut on_event)
    })
    .await
    .map_err(|e| DirectError::Io(format!("the environment task failed: {e}")))?
    .map_err(|source| DirectError::Environment {
        stage: name,
        source,
    })
}

/// The stage's environment: this process's own, the Python environment,
/// then the planned literal variables. Planned secret variables must
/// already be set (a container gets them from the orchestrator); a missing
/// one is reported by name, never by value, and the stage still runs.
fn stage_vars(
    current: impl Fn(&str) -> Option<OsString>,
    venv: &Path,
    stage: &StagePlan,
    log: &Log,
) -> Vec<(OsString, OsString)> {
    let mut vars: Vec<(OsString, OsString)> = Vec::new();
    let mut path = OsString::from(venv.join("bin"));
    if let Some(system) = current("PATH").filter(|p| !p.is_empty()) {
        path.push(":");
        path.push(system);
    }
    vars.push(("PATH".into(), path));
    vars.push(("VIRTUAL_ENV".into(), venv.into()));
    for var in &stage.env {
        match &var.value {
            EnvValue::Literal(v) => vars.push((var.name.clone().into(), v.into())),
            EnvValue::Secret { secret, key } => {
                if current(&var.name).is_none() {
                    log.log(
                        Level::Warning,
                        LOGGER,
                        &format!(
                            "{} is not set (it comes from key {key:?} of secret {secret:?})",
                            var.name
                        ),
                    );
                }
            }
        }
    }
    vars
}

/// `python -u SCRIPT ARGS...`, or the notebook runner for `.ipynb`.
fn command_line(
    home: &Home,
    stage: &StagePlan,
    python: &Path,
) -> Result<(PathBuf, Vec<OsString>), DirectError> {
    let script = stage.executable.file_name().ok_or_else(|| {
        DirectError::Io(format!("stage {} has no executable file name", stage.stage))
    })?;
    let mut args: Vec<OsString> = Vec::new();
    if stage.notebook {
        let runner = notebook::install(&home.tools())
            .map_err(|e| DirectError::Io(format!("cannot write the notebook runner: {e}")))?;
        args.push(runner.into_os_string());
    } else {
        args.push("-u".into());
    }
    args.push(script.to_os_string());
    args.extend(stage.args.iter().map(OsString::from));
    Ok((python.to_path_buf(), args))
}

/// One attempt with the terminal's stdout/stderr, in a process group of its
/// own so a timeout reaches grandchildren too. On `cancel` the group gets
/// SIGTERM, then SIGKILL after a grace period. The group is always killed
/// before returning, so nothing outlives the attempt.
async fn run_attempt(
    program: &Path,
    args: &[OsString],
    cwd: &Path,
    vars: &[(OsString, OsString)],
    deadline: Option<Duration>,
    cancel: &CancellationToken,
) -> Result<DirectOutcome, DirectError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .current_dir(cwd)
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DirectError::Io(format!("cannot start {}: {e}", program.display())))?;
    let pid = child.id().unwrap_or(0);
    let wait = async {
        match deadline {
            Some(d) => tokio::time::timeout(d, child.wait()).await.ok(),
            None => Some(child.wait().await),
        }
    };
    let outcome = tokio::select! {
        status = wait => match status {
            Some(Ok(status)) => {
                use std::os::unix::process::ExitStatusExt;
                match (status.code(), status.signal()) {
                    (Some(c), _) => DirectOutcome::Exited(c),
                    (None, Some(s)) => DirectOutcome::Signalled(s),
                    (None, None) => DirectOutcome::Exited(1),
                }
            }
            Some(Err(e)) => return Err(DirectError::Io(format!("cannot wait for the stage: {e}"))),
            None => DirectOutcome::TimedOut,
        },
        _ = cancel.cancelled() => {
            process::kill_group(pid, Signal::SIGTERM);
            let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            DirectOutcome::Cancelled
        }
    };
    process::kill_group(pid, Signal::SIGKILL);
    let _ = child.wait().await;
    Ok(outcome)
}

/// The scratch checkout of one `bodywork stage`, removed when dropped.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(home: &Home) -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = home
            .root()
            .join("checkouts")
            .join(format!("stage-{}-{nanos}", std::process::id()));
        Scratch { dir }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bodywork_plan::EnvVar;
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl bodywork_runtime::LogSink for Lines {
        fn log(&self, _level: Level, _logger: &str, message: &str) {
            self.0.lock().unwrap().push(message.to_string());
        }
        fn stage_line(&self, _source: &str, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
    }

    fn stage(env: Vec<EnvVar>) -> StagePlan {
        StagePlan {
            stage: "s".into(),
            resource_name: "p--s".into(),
            executable: "s/main.py".into(),
            working_dir: "s".into(),
            notebook: false,
            args: vec!["--x".into()],
            requirements: vec![],
            cpu_request: None,
            memory_request_mb: None,
            env,
            kind: StagePlanKind::Batch {
                max_completion_time_seconds: 0,
                retries: 0,
            },
        }
    }

    #[test]
    fn stage_vars_add_venv_and_literals_and_report_unset_secrets_by_name() {
        let lines = Arc::new(Lines::default());
        let log: Log = lines.clone();
        let plan = stage(vec![
            EnvVar {
                name: "GIT_COMMIT_HASH".into(),
                value: EnvValue::Literal("abc".into()),
            },
            EnvVar {
                name: "TOKEN".into(),
                value: EnvValue::Secret {
                    secret: "creds".into(),
                    key: "TOKEN".into(),
                },
            },
        ]);
        let current = |k: &str| (k == "PATH").then(|| OsString::from("/usr/bin"));
        let vars = stage_vars(current, Path::new("/envs/k"), &plan, &log);
        assert_eq!(
            vars,
            [
                ("PATH".into(), "/envs/k/bin:/usr/bin".into()),
                ("VIRTUAL_ENV".into(), "/envs/k".into()),
                ("GIT_COMMIT_HASH".into(), "abc".into()),
            ]
        );
        let logged = lines.0.lock().unwrap().clone();
        assert_eq!(
            logged,
            ["TOKEN is not set (it comes from key \"TOKEN\" of secret \"creds\")"]
        );
        // A secret already in the environment is inherited, not reported.
        let lines2 = Arc::new(Lines::default());
        let log2: Log = lines2.clone();
        let current = |k: &str| (k == "TOKEN").then(|| OsString::from("v"));
        let vars = stage_vars(current, Path::new("/e"), &plan, &log2);
        assert_eq!(vars[0], ("PATH".into(), "/e/bin".into()));
        assert!(lines2.0.lock().unwrap().is_empty());
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(DirectOutcome::Exited(0).exit_code(), 0);
        assert_eq!(DirectOutcome::Exited(7).exit_code(), 7);
        assert_eq!(DirectOutcome::Signalled(9).exit_code(), 137);
        assert_eq!(DirectOutcome::TimedOut.exit_code(), 1);
        assert_eq!(DirectOutcome::Cancelled.exit_code(), 130);
        assert_eq!(
            describe(DirectOutcome::TimedOut, Some(Duration::from_secs(3))),
            "did not complete within 3 seconds"
        );
        assert_eq!(
            describe(DirectOutcome::Signalled(9), None),
            "killed by signal SIGKILL"
        );
    }

    #[tokio::test]
    async fn an_attempt_past_its_deadline_is_killed_with_its_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let outcome = run_attempt(
            Path::new("/bin/sh"),
            &["-c".into(), script.into()],
            dir.path(),
            &[],
            Some(Duration::from_millis(1000)),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(outcome, DirectOutcome::TimedOut);
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        });
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_an_attempt_and_exit_codes_pass_through() {
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let dir = std::env::temp_dir();
        let started = std::time::Instant::now();
        let outcome = run_attempt(
            Path::new("/bin/sh"),
            &["-c".into(), "sleep 30".into()],
            &dir,
            &[],
            None,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(outcome, DirectOutcome::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
        let outcome = run_attempt(
            Path::new("/bin/sh"),
            &["-c".into(), "exit 5".into()],
            &dir,
            &[],
            None,
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(outcome, DirectOutcome::Exited(5));
    }
}
