//! Workflow runs recorded in the cluster as they go (the records are
//! [`manifests::run_record`]s), and read back for `bodywork runs` and the
//! dashboard. Recording never fails a run: a run whose account may not
//! write records (one set up by Python Bodywork) is simply not recorded.

use std::collections::HashMap;

use bodywork_runtime::{
    ObjectKind, Result, RunContext, RunOptions, RunState, RunSummary, RunTrigger, RuntimeError,
    SshKey, StageAttempt, StageState, WorkflowSubmission,
};
use chrono::{DateTime, Utc};
use k8s_openapi::api::authorization::v1::{SelfSubjectRulesReview, SelfSubjectRulesReviewSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use super::KubeRuntime;
use crate::errors::Action;
use crate::manifests::{self, RUN_LABEL, TRIGGER_ENV};

/// The number of a run the workflow controller named `run_id`
/// (`kube-MILLIS`, see [`crate::host::run`]), `None` for any other.
pub fn run_number(run_id: &str) -> Option<i64> {
    run_id.strip_prefix("kube-")?.parse().ok()
}

/// The runs this process records, by run id, and which namespaces it may
/// record in. Writes are made one at a time, so that the last one written
/// is the latest state.
#[derive(Default)]
pub(crate) struct RunBook {
    state: tokio::sync::Mutex<Book>,
}

#[derive(Default)]
struct Book {
    runs: HashMap<String, (RunSummary, Vec<StageAttempt>)>,
    /// What each run of this process was started with, by run id, until
    /// its record is made.
    options: HashMap<String, RunOptions>,
    allowed: HashMap<String, bool>,
}

/// How a stage attempt ended, from what the runtime answered.
fn stage_state(result: &Result<()>) -> (StageState, Option<String>) {
    match result {
        Ok(()) => (StageState::Succeeded, None),
        Err(RuntimeError::Cancelled) => (StageState::Cancelled, None),
        Err(RuntimeError::StageFailed { reason, .. }) => (StageState::Failed, Some(reason.clone())),
        Err(e) => (StageState::Failed, Some(e.to_string())),
    }
}

/// What a run on the cluster was started with, as its record keeps it: a
/// key from a pod's variable is the secret the pod got it from, never the
/// key (a key file given to the CLI is kept as its path).
pub fn recorded_options(submission: &WorkflowSubmission) -> RunOptions {
    let mut options = RunOptions::of(submission);
    if options.ssh_key.is_some()
        && let Some(secret) = bodywork_source::key_secret_from_env()
    {
        options.ssh_key = Some(SshKey::Secret(secret.to_string()));
    }
    options
}

fn new_run(id: i64, ctx: &RunContext, started: DateTime<Utc>, options: RunOptions) -> RunSummary {
    let trigger = std::env::var(TRIGGER_ENV)
        .map(RunTrigger::from)
        .unwrap_or(RunTrigger::Cli);
    RunSummary {
        id,
        namespace: ctx.namespace.clone(),
        project: Some(ctx.project.clone()),
        // Readable by whoever may read the namespace's ConfigMaps: the
        // credentials a URL may carry stay out, as in every listing.
        repo: bodywork_source::redact_url(&ctx.repo),
        branch: ctx.branch.clone(),
        commit: Some(ctx.commit.clone()),
        trigger,
        status: RunState::Running,
        error: None,
        started: DateTime::from_timestamp_millis(id).or(Some(started)),
        finished: None,
        options,
    }
}

impl KubeRuntime {
    /// Keep what run `run_id` was started with, for its record.
    pub(crate) async fn record_options(&self, run_id: &str, options: RunOptions) {
        let mut book = self.runs.state.lock().await;
        book.options.insert(run_id.to_string(), options);
    }

    /// Record that `stage` of the run of `ctx` started (`outcome` `None`)
    /// or ended. The run's record is made with its first stage, when its
    /// namespace and project are known.
    pub(crate) async fn record_stage(
        &self,
        ctx: &RunContext,
        stage: &str,
        outcome: Option<&Result<()>>,
    ) {
        let Some(id) = run_number(&ctx.run_id) else {
            return;
        };
        let mut book = self.runs.state.lock().await;
        if !self.may_record(&mut book, &ctx.namespace).await {
            return;
        }
        let now = Utc::now();
        let first = !book.runs.contains_key(&ctx.run_id);
        let options = if first {
            book.options.remove(&ctx.run_id).unwrap_or_default()
        } else {
            RunOptions::default()
        };
        let (run, stages) = book
            .runs
            .entry(ctx.run_id.clone())
            .or_insert_with(|| (new_run(id, ctx, now, options), Vec::new()));
        match outcome {
            None => {
                let attempt = stages.iter().filter(|a| a.stage == stage).count() as u32 + 1;
                stages.push(StageAttempt {
                    stage: stage.to_string(),
                    attempt,
                    state: StageState::Running,
                    message: None,
                    started: now,
                    finished: None,
                });
            }
            Some(result) => {
                if let Some(a) = stages
                    .iter_mut()
                    .rev()
                    .find(|a| a.stage == stage && a.finished.is_none())
                {
                    (a.state, a.message) = stage_state(result);
                    a.finished = Some(now);
                }
            }
        }
        let record = manifests::run_record(run, stages, Utc::now());
        if first {
            self.prune_records(&ctx.namespace).await;
        }
        self.write_record(&record).await;
    }

    /// Record how the run `run_id` ended, if it was recorded.
    pub(crate) async fn record_end(&self, run_id: &str, status: RunState, error: Option<String>) {
        let mut book = self.runs.state.lock().await;
        book.options.remove(run_id);
        let Some((run, stages)) = book.runs.get_mut(run_id) else {
            return;
        };
        run.status = status;
        run.error = error;
        run.finished = Some(Utc::now());
        let record = manifests::run_record(run, stages, Utc::now());
        self.write_record(&record).await;
    }

    /// Write run `run_id`'s record again as it stands, if it has one, so
    /// that a reader can tell it is still going (see
    /// [`manifests::RECORD_LOST_AFTER`]). Skipped while a record is being
    /// written: that write says as much.
    pub(crate) async fn heartbeat(&self, run_id: &str) {
        let Ok(book) = self.runs.state.try_lock() else {
            return;
        };
        let Some((run, stages)) = book.runs.get(run_id) else {
            return;
        };
        let record = manifests::run_record(run, stages, Utc::now());
        self.write_record(&record).await;
    }

    /// Whether this process's account may write run records in
    /// `namespace` (asked once per namespace, with a SelfSubjectRulesReview,
    /// which every account may make, so no request is ever refused).
    async fn may_record(&self, book: &mut Book, namespace: &str) -> bool {
        if let Some(allowed) = book.allowed.get(namespace) {
            return *allowed;
        }
        let review = SelfSubjectRulesReview {
            spec: SelfSubjectRulesReviewSpec {
                namespace: Some(namespace.to_string()),
            },
            ..SelfSubjectRulesReview::default()
        };
        let allowed = match Api::<SelfSubjectRulesReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await
        {
            Ok(answer) => answer
                .status
                .is_some_and(|s| manifests::rules_allow_records(&s.resource_rules)),
            Err(e) => {
                tracing::debug!("cannot tell whether runs can be recorded in {namespace}: {e}");
                false
            }
        };
        if !allowed {
            tracing::debug!("runs are not recorded in namespace {namespace}: no rights to");
        }
        book.allowed.insert(namespace.to_string(), allowed);
        allowed
    }

    async fn write_record(&self, record: &ConfigMap) {
        let name = record.metadata.name.as_deref().unwrap_or_default();
        let namespace = record.metadata.namespace.as_deref().unwrap_or_default();
        let api = self.ns::<ConfigMap>(namespace);
        let action = Action::new("record", ObjectKind::Run, name, namespace);
        if let Err(e) = self.apply(&api, record, action).await {
            tracing::debug!("run record {name} in {namespace} not written: {e}");
        }
    }

    /// Delete the oldest records of `namespace`, keeping room for a new
    /// one within [`manifests::KEPT_RUN_RECORDS`].
    async fn prune_records(&self, namespace: &str) {
        let api = self.ns::<ConfigMap>(namespace);
        let Ok(list) = api.list(&ListParams::default().labels(RUN_LABEL)).await else {
            return;
        };
        let mut ids: Vec<(i64, String)> = list
            .items
            .into_iter()
            .filter_map(|cm| {
                let id = cm.metadata.labels.as_ref()?.get(RUN_LABEL)?.parse().ok()?;
                Some((id, cm.metadata.name?))
            })
            .collect();
        ids.sort_unstable_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (_, name) in ids
            .iter()
            .skip(manifests::KEPT_RUN_RECORDS.saturating_sub(1))
        {
            if let Err(e) = api.delete(name, &DeleteParams::default()).await {
                tracing::debug!("old run record {name} in {namespace} not deleted: {e}");
            }
        }
    }

    /// The runs recorded in `namespace`, newest first.
    pub(crate) async fn recorded_runs(&self, namespace: &str) -> Result<Vec<RunSummary>> {
        let api = self.ns::<ConfigMap>(namespace);
        let action = Action::new("list", ObjectKind::Run, "", namespace);
        let list = api
            .list(&ListParams::default().labels(RUN_LABEL))
            .await
            .map_err(|e| self.err(&e, action))?;
        let now = Utc::now();
        let mut runs: Vec<RunSummary> = list
            .items
            .iter()
            .filter_map(|record| manifests::read_run_record(record, now))
            .map(|(run, _)| run)
            .filter(|run| run.namespace == namespace)
            .collect();
        runs.sort_unstable_by_key(|run| std::cmp::Reverse(run.id));
        Ok(runs)
    }

    /// The stage attempts recorded for run `id` of `namespace`.
    pub(crate) async fn recorded_stages(
        &self,
        namespace: &str,
        id: i64,
    ) -> Result<Vec<StageAttempt>> {
        let name = manifests::run_record_name(id);
        let api = self.ns::<ConfigMap>(namespace);
        let action = Action::new("get", ObjectKind::Run, &name, namespace);
        let not_found = || RuntimeError::NotFound {
            kind: ObjectKind::Run,
            name: id.to_string(),
            namespace: namespace.to_string(),
        };
        let record = api
            .get_opt(&name)
            .await
            .map_err(|e| self.err(&e, action))?
            .ok_or_else(not_found)?;
        manifests::read_run_record(&record, Utc::now())
            .map(|(_, stages)| stages)
            .ok_or_else(not_found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_runs_of_the_workflow_controller_have_numbers() {
        assert_eq!(run_number("kube-1765000000123"), Some(1_765_000_000_123));
        assert_eq!(run_number("local-12"), None);
        assert_eq!(run_number("kube-x"), None);
    }

    #[test]
    fn a_stage_ends_as_the_runtime_answered() {
        assert_eq!(stage_state(&Ok(())), (StageState::Succeeded, None));
        assert_eq!(
            stage_state(&Err(RuntimeError::Cancelled)),
            (StageState::Cancelled, None)
        );
        let failed = RuntimeError::StageFailed {
            stage: "train".into(),
            reason: "exit code 1".into(),
        };
        assert_eq!(
            stage_state(&Err(failed)),
            (StageState::Failed, Some("exit code 1".into()))
        );
    }
}
