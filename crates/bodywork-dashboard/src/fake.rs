//! A control plane held in memory, for the tests and the benchmark: it
//! answers what it holds and refuses every change. Included by path (it
//! is no part of the library).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceSetup};
use bodywork_runtime::{
    ControlPlane, CronJobSpec, CronJobSummary, CronRunKind, CronRunSummary, Log, Resources, Result,
    RunState, RunSummary, RunTrigger, RuntimeError, Secret, SecretData, ServiceStatus,
    StageAttempt, StageState, WorkflowRun, WorkflowSubmission,
};
use chrono::{DateTime, TimeDelta, Utc};

#[derive(Default)]
pub struct FakeControl {
    pub namespaces: Vec<String>,
    pub services: Vec<ServiceStatus>,
    pub runs: Vec<RunSummary>,
    pub cronjobs: Vec<CronJobSummary>,
    pub history: Vec<CronRunSummary>,
    pub secrets: Vec<Secret>,
    /// Runs are `Unsupported`, as on Kubernetes.
    pub no_runs: bool,
    /// Stage attempts, by run.
    pub stages: Vec<(i64, StageAttempt)>,
    /// What every log holds (a stage's output); following it ends there,
    /// unless `follow_forever`.
    pub log_lines: Vec<String>,
    /// A follow never ends (until dropped).
    pub follow_forever: bool,
    /// Follows going on now.
    pub following: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a follow going on while it lives.
struct Following(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Following {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

pub fn attempt(
    stage: &str,
    attempt: u32,
    state: StageState,
    started: DateTime<Utc>,
    secs: Option<i64>,
) -> StageAttempt {
    StageAttempt {
        stage: stage.into(),
        attempt,
        state,
        message: (state == StageState::Failed).then(|| "exit code 1".into()),
        started,
        finished: secs.map(|s| started + TimeDelta::seconds(s)),
    }
}

fn refused<T>() -> Result<T> {
    Err(RuntimeError::unsupported(
        "the fake control plane changes nothing",
    ))
}

pub fn at(text: &str) -> DateTime<Utc> {
    bodywork_runtime::time::parse_rfc3339(text).expect("a valid time")
}

pub fn service(
    ns: &str,
    name: &str,
    ready: u32,
    replicas: u32,
    at: DateTime<Utc>,
) -> ServiceStatus {
    ServiceStatus {
        namespace: ns.into(),
        name: name.into(),
        project: "demo".into(),
        stage: name.into(),
        repo: "/projects/demo".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        url: format!("http://localhost:8001/{ns}/{name}/"),
        port: 5000,
        exposed: true,
        replicas,
        available_replicas: ready,
        unavailable_replicas: replicas - ready,
        restarts: 1,
        deployed: Some(at),
        failed_requests: Some(0),
    }
}

pub fn run(ns: &str, id: i64, status: RunState, started: DateTime<Utc>, secs: i64) -> RunSummary {
    RunSummary {
        id,
        namespace: ns.into(),
        project: Some("demo".into()),
        repo: "/projects/demo".into(),
        branch: None,
        commit: Some("fedcba9876543210".into()),
        trigger: RunTrigger::Cli,
        status,
        error: (status == RunState::Failed).then(|| "stage train failed: exit code 1".into()),
        started: Some(started),
        finished: (status != RunState::Running).then(|| started + TimeDelta::seconds(secs)),
    }
}

pub fn cronjob(ns: &str, name: &str, next: DateTime<Utc>) -> CronJobSummary {
    CronJobSummary {
        namespace: ns.into(),
        name: name.into(),
        schedule: "*/5 * * * *".into(),
        timezone: "UTC".into(),
        repo: "/projects/demo".into(),
        branch: Some("main".into()),
        retries: 0,
        history_limit: 3,
        secrets_group: None,
        resolve_as_of: None,
        python: None,
        created: Some(next - TimeDelta::hours(1)),
        last_run: Some(next - TimeDelta::minutes(5)),
        next_run: Some(next),
        status: Some(RunState::Succeeded),
        retry_at: None,
    }
}

pub fn cron_run(job: &str, n: i64, due: DateTime<Utc>, skipped: bool) -> CronRunSummary {
    CronRunSummary {
        job_name: (!skipped).then(|| format!("{job}-{n}")),
        cron_job: job.into(),
        run: (!skipped).then_some(n),
        scheduled: Some(due),
        kind: CronRunKind::Scheduled,
        attempt: 1,
        skipped,
        skipped_for: skipped.then(|| format!("{job}-{}", n - 1)),
        start_time: (!skipped).then_some(due),
        completion_time: (!skipped).then(|| due + TimeDelta::seconds(7)),
        active: 0,
        succeeded: u32::from(!skipped),
        failed: 0,
    }
}

pub fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        namespace: ns.into(),
        name: name.into(),
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        created: Some(at("2026-12-01T09:00:00Z")),
    }
}

#[async_trait]
impl Resources for FakeControl {
    fn name(&self) -> &'static str {
        "local"
    }
    async fn setup_namespace(&self, _: &str) -> Result<NamespaceSetup> {
        refused()
    }
    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        Ok(self.namespaces.iter().any(|n| n == namespace))
    }
    async fn list_namespaces(&self) -> Result<Vec<String>> {
        Ok(self.namespaces.clone())
    }
    async fn delete_namespace(&self, _: &str) -> Result<NamespaceDeletion> {
        refused()
    }
    async fn create_secret(&self, _: &str, _: &str, _: SecretData) -> Result<()> {
        refused()
    }
    async fn delete_secret(&self, _: &str, _: &str) -> Result<()> {
        refused()
    }
    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        Ok(self
            .secrets
            .iter()
            .filter(|s| s.namespace == namespace)
            .cloned()
            .collect())
    }
    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        Ok(self
            .services
            .iter()
            .filter(|s| s.namespace == namespace)
            .cloned()
            .collect())
    }
    async fn delete_service(&self, _: &str, _: &str) -> Result<()> {
        refused()
    }
}

#[async_trait]
impl ControlPlane for FakeControl {
    async fn run_workflow(&self, _: WorkflowRun<'_>) -> Result<RunState> {
        refused()
    }
    async fn list_runs(&self, namespace: &str) -> Result<Vec<RunSummary>> {
        if self.no_runs {
            return Err(RuntimeError::unsupported(
                "this runtime keeps no workflow runs",
            ));
        }
        Ok(self
            .runs
            .iter()
            .filter(|r| r.namespace == namespace)
            .cloned()
            .collect())
    }
    async fn run_stages(&self, _: &str, run: i64) -> Result<Vec<StageAttempt>> {
        if self.no_runs {
            return Err(RuntimeError::unsupported(
                "this runtime keeps no workflow runs",
            ));
        }
        Ok(self
            .stages
            .iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, a)| a.clone())
            .collect())
    }
    async fn start_workflow(
        &self,
        _: &WorkflowSubmission,
        _: Option<&str>,
        _: u32,
    ) -> Result<String> {
        refused()
    }
    async fn detached_runs(&self) -> Result<Vec<RunSummary>> {
        Ok(Vec::new())
    }
    async fn detached_logs(&self, _: &str, _: &Log) -> Result<()> {
        refused()
    }
    async fn delete_detached(&self, _: &str) -> Result<()> {
        refused()
    }
    async fn create_cronjob(&self, _: &CronJobSpec) -> Result<()> {
        refused()
    }
    async fn update_cronjob(&self, _: &CronJobSpec) -> Result<()> {
        refused()
    }
    async fn delete_cronjob(&self, _: &str, _: &str) -> Result<()> {
        refused()
    }
    async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobSummary>> {
        Ok(self
            .cronjobs
            .iter()
            .filter(|c| c.namespace == namespace)
            .cloned()
            .collect())
    }
    async fn cronjob_history(&self, _: &str, name: &str) -> Result<Vec<CronRunSummary>> {
        Ok(self
            .history
            .iter()
            .filter(|h| h.cron_job == name)
            .cloned()
            .collect())
    }
    async fn trigger_cronjob(&self, _: &str, _: &str) -> Result<String> {
        refused()
    }
    async fn cronjob_logs(&self, _: &str, _: &str, _: &Log) -> Result<()> {
        refused()
    }
    async fn logs(&self, _: &str, name: &str, follow: bool, log: &Log) -> Result<()> {
        for line in &self.log_lines {
            log.stage_line(&format!("demo--{name}"), line);
        }
        if follow && self.follow_forever {
            self.following
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _going = Following(self.following.clone());
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}
