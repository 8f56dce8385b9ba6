//! `bodywork stage REPO BRANCH STAGE`: run ONE stage of a project here, in
//! the foreground and without the daemon — what a container of the
//! Kubernetes runtime runs. Fetch, load and plan the project into a scratch
//! checkout (`bodywork_workflow::prepare`, as every run does), ensure the
//! stage's Python environment in the [`Places`] it is given (a bodywork
//! home's), then run the stage with the terminal's stdout/stderr through the
//! stage runner of this crate: a batch stage honours its per-attempt timeout
//! (killing the whole process tree) and retries; a service stage runs until
//! it exits or is stopped.
//!
//! The stage gets the current process environment (inside a container the
//! secrets already arrive as environment variables) plus the planned
//! variables (`GIT_COMMIT_HASH`, `PYTHONUNBUFFERED`, `PORT`) and the
//! Python environment (`VIRTUAL_ENV`, `PATH`).
//!
//! Must not: talk to the daemon, read or record state in SQLite, or look up
//! secrets (there are none to look up here: they are in the environment).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bodywork_plan::{StagePlan, WorkflowPlan};
use bodywork_pyenv::EnvCache;
use bodywork_runtime::{AsOf, CancellationToken, Level, Log};
use bodywork_source::{CancelCheck, FetchOptions, KeyFile, Source};
use bodywork_workflow::{PrepareError, PrepareRequest, Preparing};

use crate::{Attach, Batch, NoHook, Outcome, PythonError, env};

/// Logger name of the messages this module writes.
const LOGGER: &str = "stage";

/// Namespace used to plan a project that names none (the stage command has
/// no `--namespace`; the namespace changes nothing about how a stage runs).
const FALLBACK_NAMESPACE: &str = "default";

/// How long a stage may take to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where a direct run keeps its files: directories that exist (a bodywork
/// home's, created by its owner).
#[derive(Debug, Clone)]
pub struct Places {
    /// Python environments are built and cached under this root.
    pub root: PathBuf,
    /// The scratch checkout is made here and removed at the end.
    pub checkouts: PathBuf,
    /// The SSH key of a private repository is written here for the fetch.
    pub tmp: PathBuf,
    /// SSH's known hosts file for fetches.
    pub known_hosts: PathBuf,
    /// uv and the other tools stages run with.
    pub tools: PathBuf,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DirectStage {
    /// Git URL or local directory of the project.
    pub repo: String,
    /// Branch to fetch (for a local directory: the branch it must be on).
    pub branch: Option<String>,
    /// Name of the stage, as written in the project.
    pub stage: String,
    /// The exact commit to run (what a pod of a deployed version runs,
    /// whatever the branch holds by then); `None`: the branch's tip.
    pub commit: Option<String>,
    /// `--resolve-as-of`: what the requirements are resolved as of,
    /// instead of the commit's committer date.
    pub resolve_as_of: Option<AsOf>,
    /// `--python`: the Python to build the stage's environment with (a
    /// version such as `3.10`, or an interpreter's path).
    pub python: Option<String>,
    /// `--no-python-downloads`: uv downloads no Python when none on the
    /// machine fits.
    pub no_python_downloads: bool,
}

/// Why the stage could not be run.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// `REPO`/`BRANCH` could not be fetched, or the project is not valid,
    /// or it could not be planned.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
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

/// Fetch, plan and run one stage in the foreground. Messages of bodywork
/// itself go to `log`; the stage's own output goes straight to this
/// process's stdout/stderr.
pub async fn run_stage(
    places: &Places,
    what: &DirectStage,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<Outcome, DirectError> {
    // The scratch checkout of this stage, removed when dropped.
    let scratch = {
        use std::os::unix::fs::PermissionsExt;
        let checkouts = &places.checkouts;
        tempfile::Builder::new()
            .prefix("stage-")
            .permissions(std::fs::Permissions::from_mode(0o777))
            .tempdir_in(checkouts)
            .map_err(|e| {
                DirectError::Io(format!(
                    "cannot create a directory in {}: {e}",
                    checkouts.display()
                ))
            })?
    };
    // In a pod: the namespace's deploy key, for a private repository.
    let key = match bodywork_source::key_from_env() {
        Some(key) if Source::parse(&what.repo).is_ok_and(|s| s.uses_ssh()) => Some(
            KeyFile::write(&places.tmp, &key)
                .map_err(|e| DirectError::Io(format!("cannot write the SSH key: {e}")))?,
        ),
        _ => None,
    };
    let request = PrepareRequest {
        repo: what.repo.clone(),
        branch: what.branch.clone(),
        namespace: None,
        fallback_namespace: Some(FALLBACK_NAMESPACE.to_string()),
        checkout_dir: scratch.path().to_path_buf(),
        fetch: FetchOptions {
            commit: what.commit.clone(),
            ssh_key: key.as_ref().map(|k| k.path().to_path_buf()),
            known_hosts: Some(places.known_hosts.clone()),
            // Ctrl-C or SIGTERM stops a fetch too, git's helpers with it.
            cancel: Some({
                let cancel = cancel.clone();
                CancelCheck::new(move || cancel.is_cancelled())
            }),
            ..FetchOptions::default()
        },
    };
    let prepared = bodywork_workflow::prepare(&request, &mut |event| match event {
        Preparing::Fetching(source) => log.log(Level::Info, LOGGER, &format!("fetching {source}")),
        Preparing::Warning(problem) => log.log(Level::Warning, LOGGER, &problem.to_string()),
        Preparing::Fetched(_) => {}
    })
    .await?;
    let stage = find_stage(&prepared.plan, &what.stage)?;
    let checkout = &prepared.checkout;
    log.log(
        Level::Info,
        LOGGER,
        &format!(
            "running stage={} of commit={}",
            stage.resource_name, checkout.commit
        ),
    );
    let cache = Arc::new(EnvCache::new(&places.root));
    let resolution = bodywork_workflow::resolution(checkout, what.resolve_as_of);
    let python = crate::ensure_python(
        cache,
        stage,
        resolution,
        what.python.as_deref(),
        what.no_python_downloads,
        &checkout.commit,
        None,
        None,
        log,
    )
    .await
    .map_err(|e| match e {
        PythonError::Install(source) => DirectError::Environment {
            stage: stage.stage.clone(),
            source,
        },
        task => DirectError::Io(task.to_string()),
    })?;
    // The stage's environment: this process's own (secrets included),
    // the Python environment, then the planned literal variables.
    let inherited = env::inherited();
    let (literals, unset) = env::literals_and_unset_secrets(stage, &inherited);
    for line in unset {
        log.log(Level::Warning, LOGGER, &line);
    }
    let vars = env::build(inherited, &python.dir, literals, &[]);
    let command = crate::command(stage, &checkout.dir, &python.python, &places.tools, vars)
        .map_err(|e| DirectError::Io(e.to_string()))?;
    let attach = Attach::terminal(STOP_GRACE);
    let batch = Batch::of(stage);
    let outcome = match batch {
        None => crate::run_to_end(&command, &attach, None, cancel, |_| {})
            .await
            .map_err(|e| {
                DirectError::Io(format!(
                    "could not start {}: {e}",
                    command.program.display()
                ))
            })?,
        Some(batch) => crate::run_batch(
            &stage.stage,
            &command,
            batch,
            &attach,
            &mut NoHook,
            log,
            cancel,
        )
        .await
        .map_err(|e| DirectError::Io(e.to_string()))?,
    };
    match outcome {
        Outcome::Exited(0) => log.log(
            Level::Info,
            LOGGER,
            &format!("stage={} succeeded", stage.stage),
        ),
        Outcome::Cancelled => log.log(
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
                other.describe(batch.and_then(|b| b.deadline))
            ),
        ),
    }
    Ok(outcome)
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
