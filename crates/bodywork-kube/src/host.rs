//! Running a workflow from this machine against a cluster, and `--dry-run`.
//!
//! Owns: the checkout directory of a run started from the CLI, refusing
//! sources the cluster cannot fetch, and rendering a project's manifests
//! without a cluster (fetch + load + plan locally, then `manifests.rs`).
//! Must not: decide workflow order (`bodywork-workflow` does) or talk to
//! the cluster itself (`KubeRuntime` does).

use bodywork_plan::WorkflowPlan;
use bodywork_runtime::{AsOf, CancellationToken, Level, Log, RunState, WorkflowSubmission};
use bodywork_source::{Checkout, FetchOptions, Source};
use bodywork_workflow::{
    FETCH_TIMEOUT, PrepareRequest, Prepared, RunHooks, RunReport, WorkflowError, WorkflowRequest,
    prepare, run_workflow,
};

use crate::KubeRuntime;
use crate::manifests::{self, Manifest};

/// What `workflow --dry-run` prints.
#[derive(Debug, Clone)]
pub struct DryRun {
    /// Remarks for the user (image mapping, local sources), one line each.
    pub notes: Vec<String>,
    /// The manifests, as applied, in order.
    pub manifests: Vec<Manifest>,
}

/// The manifests of a plan and the note on the image used;
/// `resolve_as_of` and `python` are `--resolve-as-of` and `--python`, which
/// every stage's pod is given.
pub fn plan_manifests(
    plan: &WorkflowPlan,
    image: Option<&str>,
    resolve_as_of: Option<AsOf>,
    python: manifests::PythonFlags<'_>,
) -> (Vec<Manifest>, Option<String>) {
    let (image, note) = manifests::resolve_image(&plan.docker_image, image);
    (
        manifests::workflow_manifests(plan, &image, resolve_as_of, python),
        note,
    )
}

fn local_source(repo: &str) -> Option<String> {
    match Source::parse(repo) {
        Ok(Source::LocalDir(dir)) => Some(dir.display().to_string()),
        Ok(Source::Git(url)) if url.starts_with("file://") => Some(url),
        _ => None,
    }
}

/// Fetch, load and plan the project here, into a directory gone when this
/// returns: what a run would do (its namespace, its stages), nothing done.
pub async fn plan(opts: &WorkflowSubmission) -> Result<Prepared, WorkflowError> {
    let tmp = tempfile::tempdir().map_err(|e| {
        WorkflowError::Internal(format!("cannot create a temporary directory: {e}"))
    })?;
    let request = PrepareRequest {
        repo: opts.repo.clone(),
        branch: opts.branch.clone(),
        namespace: opts.namespace.clone(),
        fallback_namespace: None,
        checkout_dir: tmp.path().join("checkout"),
        fetch: FetchOptions {
            ssh_key: opts.ssh_key.clone(),
            timeout: Some(FETCH_TIMEOUT),
            commit: None,
            known_hosts: None,
            cancel: None,
        },
    };
    Ok(prepare(&request, &mut |_| {}).await?)
}

/// Fetch, load and plan the project here, and render what a run would
/// apply with `image` (`--image`).
pub async fn dry_run(
    opts: &WorkflowSubmission,
    image: Option<&str>,
) -> Result<DryRun, WorkflowError> {
    let prepared = plan(opts).await?;
    let plan = prepared.plan;
    refuse_bad_names(&plan).map_err(WorkflowError::Refused)?;
    let mut notes: Vec<String> = prepared
        .warnings
        .iter()
        .map(|p| format!("warning: {p}"))
        .collect();
    if let Some(dir) = local_source(&opts.repo) {
        notes.push(format!(
            "{dir} is on this machine: containers in the cluster cannot fetch it; push it and give its Git URL to deploy"
        ));
    }
    // The group copy is no manifest of the project's: said, as a run does it.
    if let Some(group) = opts.secrets_group.as_ref().or(plan.secrets_group.as_ref()) {
        notes.push(format!(
            "before any stage starts, the secrets of group={group} (in namespace={}) would be \
             copied into namespace={}; --dry-run does not read them",
            bodywork_runtime::groups::GROUPS_NAMESPACE,
            plan.namespace
        ));
    }
    let python = manifests::PythonFlags {
        python: opts.python.as_deref(),
        no_downloads: opts.no_python_downloads,
    };
    let (manifests, note) = plan_manifests(&plan, image, opts.resolve_as_of, python);
    notes.extend(note);
    Ok(DryRun { notes, manifests })
}

/// Names the API server would refuse, as one message: a validation error
/// before anything is applied.
fn refuse_bad_names(plan: &WorkflowPlan) -> Result<(), String> {
    let problems = manifests::name_problems(plan);
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!(
        "Kubernetes would refuse the names of this project:\n  {}",
        problems.join("\n  ")
    ))
}

/// The run refuses, once the plan is known and before anything is changed,
/// a project whose names the API server would refuse.
struct KubeNames;

impl RunHooks for KubeNames {
    fn planned(&self, plan: &WorkflowPlan, _checkout: &Checkout) -> Result<(), String> {
        refuse_bad_names(plan)
    }
}

/// Run a workflow on the cluster: the controller runs here, stages run in
/// the cluster's containers, which fetch `repo` themselves. Every failure
/// is logged to `log` before it is returned.
pub async fn run(
    runtime: &KubeRuntime,
    opts: &WorkflowSubmission,
    log: &Log,
    cancel: &CancellationToken,
) -> Result<RunReport, WorkflowError> {
    if let Some(dir) = local_source(&opts.repo) {
        let err = WorkflowError::Refused(format!(
            "{dir} is on this machine, but stages on Kubernetes fetch the project themselves; \
             push it and give its Git URL (or use --dry-run to see the manifests)"
        ));
        // Logged like every other failure of a run, which the controller logs itself.
        log.log(Level::Error, "workflow", &format!("workflow failed: {err}"));
        bodywork_workflow::log_bodywork3_failure(log, &err);
        return Err(err);
    }
    let tmp = tempfile::tempdir().map_err(|e| {
        WorkflowError::Internal(format!("cannot create a temporary directory: {e}"))
    })?;
    // Its number (see `runtime::runs::run_number`) is when it started.
    let run_id = format!("kube-{}", chrono::Utc::now().timestamp_millis());
    let request = WorkflowRequest {
        run_id,
        submission: opts.clone(),
        known_hosts: None,
        checkout_dir: tmp.path().join("checkout"),
    };
    runtime
        .record_options(
            &request.run_id,
            crate::runtime::runs::recorded_options(opts),
        )
        .await;
    // The run's record is written again now and then while it goes on (a
    // stage may run for hours without a change to record): a record that
    // stops being written has lost this process.
    let work = run_workflow(runtime, &request, &KubeNames, log, cancel);
    let mut work = std::pin::pin!(work);
    let mut beat = tokio::time::interval(manifests::RECORD_HEARTBEAT);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat.tick().await;
    let report = loop {
        tokio::select! {
            report = &mut work => break report,
            _ = beat.tick() => runtime.heartbeat(&request.run_id).await,
        }
    };
    let (status, error) = match &report {
        Ok(_) => (RunState::Succeeded, None),
        Err(WorkflowError::Cancelled) => (RunState::Cancelled, None),
        Err(e) => (RunState::Failed, Some(e.to_string())),
    };
    runtime.record_end(&request.run_id, status, error).await;
    report
}
