//! Preparing a run: fetch the source into a directory, load the project
//! (checking that its files exist), and plan it with the run's facts. The
//! one way every entry point gets from `REPO BRANCH` to a plan: a workflow
//! run (local or Kubernetes), `workflow --dry-run` and `bodywork stage`.
//!
//! Must not: log or print (the caller words the events it is given), or
//! change anything outside the checkout directory.

use std::path::PathBuf;

use bodywork_config::{LoadOptions, Problem};
use bodywork_plan::{PlanError, RunFacts, WorkflowPlan, plan_workflow};
use bodywork_source::{Checkout, FetchOptions, Source, SourceError};

/// Where the project comes from and what the run knows.
#[derive(Debug, Clone, Default)]
pub struct PrepareRequest {
    /// Git URL or local directory, as given.
    pub repo: String,
    /// Branch to fetch (for a local directory: the branch it must be on).
    pub branch: Option<String>,
    /// `--namespace`: wins over the project's own.
    pub namespace: Option<String>,
    /// The namespace when neither `namespace` nor the project names one
    /// (`bodywork stage`, where any will do); `None` leaves that a plan error.
    pub fallback_namespace: Option<String>,
    /// Empty directory the source is fetched into.
    pub checkout_dir: PathBuf,
    /// Credentials and limits of the fetch.
    pub fetch: FetchOptions,
}

/// What happens while preparing, for the caller to tell the user.
#[derive(Debug, Clone, Copy)]
pub enum Preparing<'a> {
    /// About to fetch this source.
    Fetching(&'a Source),
    /// Fetched.
    Fetched(&'a Checkout),
    /// The project loaded with this warning (also in [`Prepared::warnings`]).
    Warning(&'a Problem),
}

/// A checked-out, valid, planned project.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub checkout: Checkout,
    pub plan: WorkflowPlan,
    /// Problems of the project that are not errors.
    pub warnings: Vec<Problem>,
}

/// Why a project could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The source could not be parsed or fetched.
    // Not `#[from]`: the message says the cause (see the `From` below).
    #[error("could not fetch the project: {0}")]
    Source(SourceError),
    /// The project has errors (its warnings are included too).
    #[error("{}", invalid_message(.0))]
    Invalid(Vec<Problem>),
    /// The project could not be planned (e.g. no or a bad namespace).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The fetch task failed.
    #[error("{0}")]
    Internal(String),
}

/// `the project is not valid:` and its errors, one a line.
pub fn invalid_message(problems: &[Problem]) -> String {
    let mut out = String::from("the project is not valid:");
    for p in problems.iter().filter(|p| p.is_error()) {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

/// Fetch, load and plan. Events go to `on_event` as they happen (warnings
/// before the plan is made, so they are shown even when planning fails).
pub async fn prepare(
    req: &PrepareRequest,
    on_event: &mut (dyn FnMut(Preparing<'_>) + Send),
) -> Result<Prepared, PrepareError> {
    let source = Source::parse(&req.repo)?;
    on_event(Preparing::Fetching(&source));
    let (branch, dest, opts) = (
        req.branch.clone(),
        req.checkout_dir.clone(),
        req.fetch.clone(),
    );
    let checkout = tokio::task::spawn_blocking(move || {
        bodywork_source::fetch(&source, branch.as_deref(), &dest, &opts)
    })
    .await
    .map_err(|e| PrepareError::Internal(format!("source fetch task failed: {e}")))??;
    on_event(Preparing::Fetched(&checkout));
    // Loading and planning read and parse the project's files: on a blocking
    // thread, so that no project, however large or deep, holds one of the
    // async workers that every other request needs.
    let (dir, repo, branch, namespace, fallback, commit) = (
        checkout.dir.clone(),
        req.repo.clone(),
        checkout.branch.clone().or_else(|| req.branch.clone()),
        req.namespace.clone(),
        req.fallback_namespace.clone(),
        checkout.commit.clone(),
    );
    let (problems, planned) = tokio::task::spawn_blocking(move || {
        let loaded = bodywork_config::load_project(
            &dir,
            &LoadOptions {
                file: None,
                check_files: true,
            },
        );
        // A project is only there when no problem is an error.
        let planned = loaded.project.map(|project| {
            let namespace = namespace.or_else(|| {
                project
                    .namespace(None)
                    .is_none()
                    .then_some(fallback)
                    .flatten()
            });
            let facts = RunFacts {
                namespace,
                repo,
                branch,
                commit,
            };
            plan_workflow(&project, &facts)
        });
        (loaded.problems, planned)
    })
    .await
    .map_err(|e| PrepareError::Internal(format!("project loading task failed: {e}")))?;
    for warning in problems.iter().filter(|p| !p.is_error()) {
        on_event(Preparing::Warning(warning));
    }
    let Some(planned) = planned else {
        return Err(PrepareError::Invalid(problems));
    };
    let plan = planned?;
    let warnings = problems;
    Ok(Prepared {
        checkout,
        plan,
        warnings,
    })
}

// Not `#[from]`: the message already says the cause, and a `source()` would
// have it printed twice.
impl From<SourceError> for PrepareError {
    fn from(e: SourceError) -> PrepareError {
        PrepareError::Source(e)
    }
}
