//! The workflow controller: one run of a project's DAG.
//!
//! Owns the order of things: fetch the source into the run's checkout,
//! validate, plan, prepare the namespace, check secrets before any stage
//! starts, run the steps in order with the stages of a step in parallel,
//! run the `run_on_failure` stage when something fails, and remove the
//! project's services that the DAG no longer has.
//!
//! Must not: know which runtime it drives. Everything that touches stages,
//! secrets or services goes through [`bodywork_runtime::Runtime`].

pub mod namespace_lines;
mod prepare;

use std::fmt;
use std::path::PathBuf;

use bodywork_plan::{StagePlan, WorkflowPlan};
use bodywork_runtime::{
    AsOf, CancellationToken, Level, Log, Resolution, RunContext, Runtime, RuntimeError, StageRun,
    WorkflowSubmission,
};
use bodywork_source::{Checkout, FetchOptions, Source};
use futures_util::future::join_all;
pub use prepare::{PrepareError, PrepareRequest, Prepared, Preparing, invalid_message, prepare};

/// One run to carry out: what the user asked for, and where this host
/// runs it.
#[derive(Debug, Clone)]
pub struct WorkflowRequest {
    pub run_id: String,
    /// What the user asked for; its `ssh_key` is the key the fetch uses.
    pub submission: WorkflowSubmission,
    /// Where ssh remembers hosts met for the first time (see
    /// `bodywork_source::FetchOptions::known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Empty directory the source is fetched into; stages run from it.
    pub checkout_dir: PathBuf,
}

/// What a finished (successful) run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub plan: WorkflowPlan,
    pub checkout: Checkout,
    /// Services removed because the DAG no longer has them.
    pub removed_services: Vec<String>,
}

/// Why a run did not succeed. Each variant renders as a few readable lines.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The project could not be fetched, loaded or planned.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    #[error("{}", missing_secrets_message(.0))]
    MissingSecrets(Vec<MissingSecret>),
    /// Refused before anything ran (e.g. another run of the project is going on).
    #[error("{0}")]
    Refused(String),
    #[error("{}", failed_stages_message(.0))]
    StagesFailed(Vec<StageFailure>),
    #[error("the workflow was cancelled")]
    Cancelled,
    #[error(transparent)]
    Runtime(RuntimeError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl WorkflowError {
    /// The text given to the `run_on_failure` stage as `EXCEPTION_MESSAGE`.
    pub fn exception_message(&self) -> String {
        self.to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingSecret {
    pub stage: String,
    pub env_var: String,
    pub secret: String,
    /// True when the secret exists but lacks the key.
    pub secret_exists: bool,
}

#[derive(Debug, Clone)]
pub struct StageFailure {
    pub stage: String,
    pub reason: String,
}

fn missing_secrets_message(missing: &[MissingSecret]) -> String {
    let mut out = String::from("secrets are missing, so no stage was started:");
    for m in missing {
        if m.secret_exists {
            out.push_str(&format!(
                "\n  stage {}: {} -> secret {:?} has no key {:?}",
                m.stage, m.env_var, m.secret, m.env_var
            ));
        } else {
            out.push_str(&format!(
                "\n  stage {}: {} -> secret {:?} does not exist",
                m.stage, m.env_var, m.secret
            ));
        }
    }
    out
}

fn failed_stages_message(failures: &[StageFailure]) -> String {
    match failures {
        [one] => format!("stage {} failed: {}", one.stage, one.reason),
        many => {
            let mut out = format!("{} stages failed:", many.len());
            for f in many {
                out.push_str(&format!("\n  {}: {}", f.stage, f.reason));
            }
            out
        }
    }
}

/// Decisions the host of the controller takes part in (the local daemon
/// records the run and refuses a second run of the same project).
pub trait RunHooks: Send + Sync {
    /// Called once the plan is known, before anything is changed. An `Err`
    /// refuses the run with that message.
    fn planned(&self, _plan: &WorkflowPlan, _checkout: &Checkout) -> Result<(), String> {
        Ok(())
    }
}

/// As of when a checkout's requirements are resolved: `requested` if
/// given, else its commit's committer date, else (a directory outside git,
/// uncommitted changes) now.
pub fn resolution(checkout: &Checkout, requested: Option<AsOf>) -> Resolution {
    Resolution::decide(requested, checkout.committed_at, checkout.dirty)
}

/// Hooks that accept everything.
pub struct NoHooks;
impl RunHooks for NoHooks {}

const LOGGER: &str = "workflow";

/// How long a fetch of the project may take: a clone that hangs must not
/// hold a run forever.
pub const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

fn info(log: &Log, msg: impl fmt::Display) {
    log.log(Level::Info, LOGGER, &msg.to_string());
}

/// The last line of a run that succeeded, as Bodywork 3 ends its log (its
/// users' scripts look for it), after ours.
const BODYWORK3_SUCCEEDED: &str = "Deployment successful";

/// The last line of a run that failed, as Bodywork 3 ends its log, after
/// ours (`workflow failed: ...`) and any `run_on_failure` stage.
pub fn log_bodywork3_failure(log: &Log, err: &WorkflowError) {
    log.log(
        Level::Error,
        LOGGER,
        &format!("Deployment failed --> {err}"),
    );
}

/// Run one workflow to the end. Every failure is logged and returned.
pub async fn run_workflow(
    runtime: &dyn Runtime,
    req: &WorkflowRequest,
    hooks: &dyn RunHooks,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<RunReport, WorkflowError> {
    let branch = req
        .submission
        .branch
        .as_deref()
        .unwrap_or("(default branch)");
    info(
        log,
        format!(
            "attempting to run workflow for project={} on branch={branch} with runtime={}",
            bodywork_source::redact_url(&req.submission.repo),
            runtime.name()
        ),
    );
    let (checkout, plan) = match fetch_and_plan(req, hooks, log, cancel).await {
        Ok(ready) => ready,
        Err(err) => {
            // Nothing ran yet, but the log (and a CLI following it) must say why.
            log.log(Level::Error, LOGGER, &format!("workflow failed: {err}"));
            log_bodywork3_failure(log, &err);
            return Err(err);
        }
    };
    let ctx = RunContext {
        run_id: req.run_id.clone(),
        namespace: plan.namespace.clone(),
        project: plan.project.clone(),
        repo: plan.repo.clone(),
        branch: plan.branch.clone(),
        commit: plan.commit.clone(),
        checkout: checkout.dir.clone(),
        docker_image: plan.docker_image.clone(),
        resolution: resolution(&checkout, req.submission.resolve_as_of),
        python: req.submission.python.clone(),
        no_python_downloads: req.submission.no_python_downloads,
        watcher: req.submission.watcher,
    };
    info(
        log,
        format!(
            "resolving requirements {}",
            ctx.resolution.describe(&ctx.commit)
        ),
    );
    // The first step's stages make their environments as they start; the
    // later steps' are made meanwhile, all at once.
    let later: Vec<&StagePlan> = plan.steps.iter().skip(1).flatten().collect();
    runtime.prepare_ahead(&ctx, &later);
    let whole = req.submission.from_stages.is_empty();
    let result = prepare_and_run(runtime, &plan, &ctx, whole, log, cancel).await;
    runtime.end_ahead(&ctx, result.is_err());
    match result {
        Ok(removed_services) => {
            info(
                log,
                format!(
                    "successfully ran workflow for project={} in namespace={}",
                    plan.project, plan.namespace
                ),
            );
            info(log, BODYWORK3_SUCCEEDED);
            Ok(RunReport {
                plan,
                checkout,
                removed_services,
            })
        }
        Err(err) => {
            log.log(Level::Error, LOGGER, &format!("workflow failed: {err}"));
            if !matches!(
                err,
                WorkflowError::Cancelled | WorkflowError::MissingSecrets(_)
            ) && let Some(stage) = &plan.on_failure
            {
                run_on_failure(runtime, &ctx, stage, &err, log, cancel).await;
            }
            log_bodywork3_failure(log, &err);
            Err(err)
        }
    }
}

/// Fetch, load and plan the run, and let the host accept or refuse it. A
/// cancellation stops the fetch (git killed with its helpers) and ends the
/// run as cancelled, whatever the fetch then says; nothing was changed yet.
async fn fetch_and_plan(
    req: &WorkflowRequest,
    hooks: &dyn RunHooks,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<(Checkout, WorkflowPlan), WorkflowError> {
    let request = PrepareRequest {
        repo: req.submission.repo.clone(),
        branch: req.submission.branch.clone(),
        namespace: req.submission.namespace.clone(),
        fallback_namespace: None,
        checkout_dir: req.checkout_dir.clone(),
        fetch: FetchOptions {
            ssh_key: req.submission.ssh_key.clone(),
            timeout: Some(FETCH_TIMEOUT),
            commit: None,
            known_hosts: req.known_hosts.clone(),
            cancel: Some({
                let cancel = cancel.clone();
                bodywork_source::CancelCheck::new(move || cancel.is_cancelled())
            }),
        },
    };
    let prepared = prepare(&request, &mut |event| match event {
        Preparing::Fetching(Source::LocalDir(dir)) => {
            info(log, format!("copying local directory {}", dir.display()))
        }
        Preparing::Fetching(Source::Git(url)) => info(
            log,
            format!(
                "attempting to download branch={} from {}",
                req.submission.branch.as_deref().unwrap_or("(default)"),
                bodywork_source::redact_url(url)
            ),
        ),
        Preparing::Fetched(checkout) => {
            let dirty = if checkout.dirty {
                " (with uncommitted changes)"
            } else {
                ""
            };
            info(
                log,
                format!("project fetched at commit={}{dirty}", checkout.commit),
            )
        }
        Preparing::Warning(problem) => log.log(Level::Warning, LOGGER, &problem.to_string()),
    })
    .await;
    if cancel.is_cancelled() {
        return Err(WorkflowError::Cancelled);
    }
    let prepared = prepared?;
    let mut plan = prepared.plan;
    if req.submission.secrets_group.is_some() {
        plan.secrets_group.clone_from(&req.submission.secrets_group);
    }
    let from = &req.submission.from_stages;
    if !from.is_empty() {
        plan.only_from(from)
            .map_err(|e| WorkflowError::Prepare(PrepareError::Plan(e)))?;
        let stages: Vec<&str> = plan.stages().map(|s| s.stage.as_str()).collect();
        info(
            log,
            format!(
                "running part of the workflow: stage={} and the steps after it, [{}]",
                from.join(", "),
                stages.join(", ")
            ),
        );
    }
    hooks
        .planned(&plan, &prepared.checkout)
        .map_err(WorkflowError::Refused)?;
    Ok((prepared.checkout, plan))
}

/// Everything after planning; returns the services removed at the end
/// (none when only part of the workflow ran: `whole` is false).
async fn prepare_and_run(
    runtime: &dyn Runtime,
    plan: &WorkflowPlan,
    ctx: &RunContext,
    whole: bool,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<Vec<String>, WorkflowError> {
    if !runtime
        .namespace_exists(&plan.namespace)
        .await
        .map_err(WorkflowError::Runtime)?
    {
        info(
            log,
            format!("namespace={} does not exist, creating it", plan.namespace),
        );
        let setup = runtime
            .setup_namespace(&plan.namespace)
            .await
            .map_err(WorkflowError::Runtime)?;
        for line in namespace_lines::setup_lines(&setup) {
            info(log, line);
        }
    } else if runtime
        .adopt_namespace(&plan.namespace)
        .await
        .map_err(WorkflowError::Runtime)?
    {
        info(log, namespace_lines::adopted_line(&plan.namespace));
    }
    // Refused before the group's secrets replace any of the namespace's.
    check_namespace_owner(runtime, plan).await?;
    if let Some(group) = &plan.secrets_group {
        copy_secrets_group(runtime, group, &plan.namespace, log).await?;
    }
    check_secrets(runtime, plan).await?;

    for step in &plan.steps {
        if cancel.is_cancelled() {
            return Err(WorkflowError::Cancelled);
        }
        let names: Vec<&str> = step.iter().map(|s| s.stage.as_str()).collect();
        info(
            log,
            format!("attempting to execute DAG step=[{}]", names.join(", ")),
        );
        let results = join_all(
            step.iter()
                .map(|stage| run_stage(runtime, ctx, stage, log, cancel)),
        )
        .await;
        let mut failures = Vec::new();
        for (stage, result) in step.iter().zip(results) {
            match result {
                Ok(()) => {}
                Err(RuntimeError::Cancelled) => return Err(WorkflowError::Cancelled),
                Err(e) => failures.push(StageFailure {
                    stage: stage.stage.clone(),
                    reason: match e {
                        RuntimeError::StageFailed { reason, .. } => reason,
                        other => other.to_string(),
                    },
                }),
            }
        }
        if cancel.is_cancelled() {
            return Err(WorkflowError::Cancelled);
        }
        if !failures.is_empty() {
            return Err(WorkflowError::StagesFailed(failures));
        }
        info(
            log,
            format!("successfully executed DAG step=[{}]", names.join(", ")),
        );
    }
    if !whole {
        return Ok(Vec::new());
    }
    remove_stale_services(runtime, plan, log).await
}

async fn run_stage(
    runtime: &dyn Runtime,
    ctx: &RunContext,
    stage: &StagePlan,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<(), RuntimeError> {
    let run = StageRun {
        ctx,
        stage,
        log,
        cancel,
    };
    if stage.is_service() {
        info(
            log,
            format!(
                "deploying service stage={} in namespace={}",
                stage.stage, ctx.namespace
            ),
        );
        runtime.deploy_service(run).await?;
        info(log, format!("service stage={} is ready", stage.stage));
    } else {
        info(log, format!("running batch stage={}", stage.stage));
        runtime.run_batch(run, &[]).await?;
        info(
            log,
            format!("batch stage={} completed successfully", stage.stage),
        );
    }
    Ok(())
}

/// A secrets group's secrets copied into the run's namespace, as Bodywork
/// 3 does; a group with none is worth a warning (the secrets check says
/// what is then missing).
async fn copy_secrets_group(
    runtime: &dyn Runtime,
    group: &str,
    namespace: &str,
    log: &Log,
) -> Result<(), WorkflowError> {
    // Bodywork 3's line, then ours saying what was copied.
    info(
        log,
        format!("Replicating k8s secrets from group = {group} into namespace = {namespace}"),
    );
    let copied = bodywork_runtime::groups::copy_into(runtime, group, namespace)
        .await
        .map_err(WorkflowError::Runtime)?;
    if copied.is_empty() {
        log.log(
            Level::Warning,
            LOGGER,
            &format!(
                "secrets group={group} has no secrets; none copied into namespace={namespace}"
            ),
        );
    } else {
        info(
            log,
            format!(
                "copied secrets group={group} into namespace={namespace}: {}",
                copied.join(", ")
            ),
        );
    }
    Ok(())
}

/// Every secret and key the run needs must exist before any stage starts.
async fn check_secrets(runtime: &dyn Runtime, plan: &WorkflowPlan) -> Result<(), WorkflowError> {
    let wanted: Vec<&StagePlan> = plan.stages().chain(plan.on_failure.iter()).collect();
    if wanted.iter().all(|s| s.secret_refs().next().is_none()) {
        return Ok(());
    }
    let secrets = runtime
        .list_secrets(&plan.namespace)
        .await
        .map_err(WorkflowError::Runtime)?;
    let mut missing = Vec::new();
    for stage in wanted {
        for (env_var, secret, key) in stage.secret_refs() {
            let found = secrets.iter().find(|s| s.name == secret);
            if found.is_none_or(|s| !s.data.contains_key(key)) {
                missing.push(MissingSecret {
                    stage: stage.stage.clone(),
                    env_var: env_var.to_string(),
                    secret: secret.to_string(),
                    secret_exists: found.is_some(),
                });
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(WorkflowError::MissingSecrets(missing))
    }
}

/// A namespace already used by a project from another repository is refused.
async fn check_namespace_owner(
    runtime: &dyn Runtime,
    plan: &WorkflowPlan,
) -> Result<(), WorkflowError> {
    let services = runtime
        .list_services(&plan.namespace)
        .await
        .map_err(WorkflowError::Runtime)?;
    // As shown (a runtime keeps the URL without its credentials for display).
    let repo = bodywork_source::redact_url(&plan.repo);
    match services
        .iter()
        .find(|s| bodywork_source::redact_url(&s.repo) != repo)
    {
        Some(other) => Err(WorkflowError::Refused(format!(
            "namespace {} already holds service {} of project {} from {}; deploy {} into another namespace, \
             or delete that service first",
            plan.namespace,
            other.name,
            other.project,
            bodywork_source::redact_url(&other.repo),
            bodywork_source::redact_url(&plan.repo)
        ))),
        None => Ok(()),
    }
}

async fn remove_stale_services(
    runtime: &dyn Runtime,
    plan: &WorkflowPlan,
    log: &Log,
) -> Result<Vec<String>, WorkflowError> {
    let keep = plan.service_names();
    let services = runtime
        .list_services(&plan.namespace)
        .await
        .map_err(WorkflowError::Runtime)?;
    let mut removed = Vec::new();
    for svc in services
        .iter()
        .filter(|s| s.project == plan.project && !keep.contains(&s.name.as_str()))
    {
        info(
            log,
            format!(
                "removing service={} (no longer in the DAG of project={})",
                svc.name, plan.project
            ),
        );
        // Bodywork 3's words for it.
        info(
            log,
            format!(
                "Removing service: {} from previous deployment with git-commit-hash: {}.",
                svc.name, svc.commit
            ),
        );
        runtime
            .delete_service(&plan.namespace, &svc.name)
            .await
            .map_err(WorkflowError::Runtime)?;
        removed.push(svc.name.clone());
    }
    Ok(removed)
}

async fn run_on_failure(
    runtime: &dyn Runtime,
    ctx: &RunContext,
    stage: &StagePlan,
    err: &WorkflowError,
    log: &Log,
    cancel: &CancellationToken,
) {
    info(log, format!("running run_on_failure stage={}", stage.stage));
    let env = [("EXCEPTION_MESSAGE".to_string(), err.exception_message())];
    match runtime
        .run_batch(
            StageRun {
                ctx,
                stage,
                log,
                cancel,
            },
            &env,
        )
        .await
    {
        Ok(()) => info(
            log,
            format!("run_on_failure stage={} completed", stage.stage),
        ),
        Err(e) => log.log(
            Level::Error,
            LOGGER,
            &format!("run_on_failure stage={} failed too: {e}", stage.stage),
        ),
    }
}
