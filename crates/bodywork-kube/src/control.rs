//! The Kubernetes runtime's [`ControlPlane`]: what every command asks of a
//! cluster beyond [`Resources`] (implemented with the controller's side, in
//! `runtime/`), answered with the same records the local runtime gives.
//!
//! Must not: word anything for the user (the CLI does, the same for both
//! runtimes) or validate input (the CLI has, before calling).

use async_trait::async_trait;
use bodywork_runtime::{
    ControlPlane, CronJobSpec, CronJobSummary, CronRunSummary, Log, ObjectKind, Resources, Result,
    RunState, RunSummary, RuntimeError, StageAttempt, WorkflowRun, WorkflowSubmission,
};
use bodywork_workflow::WorkflowError;

use crate::KubeRuntime;
use crate::host;

/// Why the log of a recorded run is not shown on a cluster, and what is.
pub fn run_logs_are_not_kept() -> RuntimeError {
    RuntimeError::unsupported("a workflow run's log is not kept in the cluster")
        .with_hint("its record has each stage's state (`bodywork runs`); `bodywork logs --namespace NS NAME` shows a service's or a detached run's pods")
}

/// Why a part of a workflow (`WorkflowSubmission::from_stages`, what
/// `workflow --watch` runs after a save) is not run on a cluster.
pub fn parts_are_local() -> RuntimeError {
    RuntimeError::unsupported(
        "running part of a workflow (some stages and what follows) is done by the local runtime only",
    )
    .with_hint("run the whole workflow on a cluster, or drop --runtime kubernetes")
}

/// The image cron jobs' workflows run in: `BODYWORK_IMAGE` when set, else
/// bodywork's own image of this version.
pub fn cron_image() -> Option<String> {
    std::env::var("BODYWORK_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
}

impl KubeRuntime {
    /// The image of the workflows started in the cluster (cron jobs,
    /// detached runs): the one given for this command's stages, else
    /// [`cron_image`].
    fn workflow_image(&self) -> Option<String> {
        self.image_override().map(String::from).or_else(cron_image)
    }
}

#[async_trait]
impl ControlPlane for KubeRuntime {
    async fn run_workflow(&self, run: WorkflowRun<'_>) -> Result<RunState> {
        if !run.submission.from_stages.is_empty() {
            return Err(parts_are_local());
        }
        // The controller has logged why a run failed, as an ERROR line.
        Ok(
            match host::run(self, run.submission, run.log, run.cancel).await {
                Ok(_) => RunState::Succeeded,
                Err(WorkflowError::Cancelled) => RunState::Cancelled,
                Err(_) => RunState::Failed,
            },
        )
    }

    async fn list_runs(&self, namespace: &str) -> Result<Vec<RunSummary>> {
        self.recorded_runs(namespace).await
    }

    async fn run_stages(&self, namespace: &str, run: i64) -> Result<Vec<StageAttempt>> {
        self.recorded_stages(namespace, run).await
    }

    async fn start_workflow(
        &self,
        submission: &WorkflowSubmission,
        name: Option<&str>,
        retries: u32,
    ) -> Result<String> {
        if !submission.from_stages.is_empty() {
            return Err(parts_are_local());
        }
        let image = self.workflow_image();
        let stages = self.image_override();
        self.start_detached(submission, name, retries, image.as_deref(), stages)
            .await
    }

    async fn detached_runs(&self) -> Result<Vec<RunSummary>> {
        KubeRuntime::detached_runs(self).await
    }

    async fn delete_detached(&self, name: &str) -> Result<()> {
        KubeRuntime::delete_detached(self, name).await
    }

    async fn detached_logs(&self, name: &str, log: &Log) -> Result<()> {
        let namespace = bodywork_runtime::groups::GROUPS_NAMESPACE;
        KubeRuntime::logs(self, namespace, name, false, log).await
    }

    async fn create_cronjob(&self, spec: &CronJobSpec) -> Result<()> {
        if !self.namespace_exists(&spec.namespace).await? {
            return Err(RuntimeError::NotFound {
                kind: ObjectKind::Namespace,
                name: spec.namespace.clone(),
                namespace: spec.namespace.clone(),
            });
        }
        // Its runs are pods of the controller's account, with its
        // permissions: a namespace made with kubectl (or by anyone but
        // bodywork) has neither, so they are made here.
        self.apply_manifests(&crate::manifests::namespace_manifests(&spec.namespace))
            .await?;
        self.apply_cronjob(spec, self.workflow_image().as_deref())
            .await
    }

    async fn update_cronjob(&self, spec: &CronJobSpec) -> Result<()> {
        KubeRuntime::update_cronjob(self, spec, self.workflow_image().as_deref()).await
    }

    async fn delete_cronjob(&self, namespace: &str, name: &str) -> Result<()> {
        KubeRuntime::delete_cronjob(self, namespace, name).await
    }

    async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobSummary>> {
        KubeRuntime::list_cronjobs(self, namespace).await
    }

    async fn cronjob_history(&self, namespace: &str, name: &str) -> Result<Vec<CronRunSummary>> {
        KubeRuntime::cronjob_history(self, namespace, name).await
    }

    async fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<String> {
        KubeRuntime::trigger_cronjob(self, namespace, name).await
    }

    async fn cronjob_logs(&self, namespace: &str, run: &str, log: &Log) -> Result<()> {
        KubeRuntime::logs(self, namespace, run, false, log).await
    }

    async fn logs(&self, namespace: &str, name: &str, follow: bool, log: &Log) -> Result<()> {
        // A number names a run (no service or Job name is one); its record
        // holds how its stages went, not their output.
        if name.parse::<i64>().is_ok() {
            return Err(run_logs_are_not_kept());
        }
        KubeRuntime::logs(self, namespace, name, follow, log).await
    }

    async fn service_traffic(
        &self,
        _namespace: &str,
    ) -> Result<Vec<bodywork_runtime::ServiceTraffic>> {
        Err(RuntimeError::unsupported(
            "no metrics source on a cluster: bodywork reads no request counts there",
        )
        .with_hint("use the cluster's own monitoring (e.g. the ingress controller's metrics)"))
    }

    async fn environments(&self) -> Result<Vec<bodywork_runtime::EnvironmentStatus>> {
        Err(RuntimeError::unsupported(
            "no environment cache on a cluster: each stage's environment is built in its own pod",
        ))
    }
}
