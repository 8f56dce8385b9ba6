//! A control plane held in memory, for the tests and the benchmark: it
//! answers what it holds and refuses every change but the dashboard's two
//! (a detached run started is listed as running; a service deleted is no
//! longer listed). Included by path (it is no part of the library).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceSetup};
use bodywork_runtime::{
    ControlPlane, CronJobSpec, CronJobSummary, CronRunKind, CronRunSummary, Log, Resources, Result,
    RunOptions, RunState, RunSummary, RunTrigger, RuntimeError, Secret, SecretData, ServiceStatus,
    ServiceTraffic, StageAttempt, StageState, TrafficSample, WorkflowRun, WorkflowSubmission,
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
    /// Runs are `Unsupported`, as on a runtime that records none.
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
    /// Detached runs started, in order.
    pub started: std::sync::Mutex<Vec<WorkflowSubmission>>,
    /// Services deleted: (namespace, name).
    pub deleted: std::sync::Mutex<Vec<(String, String)>>,
    /// Services' traffic, by namespace (`Unsupported` with `no_runs`, as
    /// on Kubernetes).
    pub traffic: Vec<(String, ServiceTraffic)>,
    /// The cached environments (`Unsupported` with `no_runs`).
    pub environments: Vec<bodywork_runtime::EnvironmentStatus>,
}

impl FakeControl {
    fn is_deleted(&self, s: &ServiceStatus) -> bool {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|(ns, name)| *ns == s.namespace && *name == s.name)
    }
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
        failed_requests_since: Some(at),
    }
}

/// A service's traffic: `per_period` requests in each 10 s period, ending
/// at `end`, the last minute's figures from the newest six.
pub fn traffic(name: &str, per_period: &[u64], end: DateTime<Utc>) -> ServiceTraffic {
    let n = per_period.len() as i64;
    let sample = |start: DateTime<Utc>, seconds: f64, requests: u64| TrafficSample {
        start,
        seconds,
        requests,
        errors: requests / 10,
        p50_ms: (requests > 0).then_some(12.5),
        p99_ms: (requests > 0).then_some(240.0),
    };
    let samples = per_period
        .iter()
        .enumerate()
        .map(|(i, r)| sample(end - TimeDelta::seconds(10 * (n - i as i64)), 10.0, *r))
        .collect();
    let minute: u64 = per_period.iter().rev().take(6).sum();
    ServiceTraffic {
        service: name.into(),
        period_seconds: 10,
        samples,
        last_minute: sample(end - TimeDelta::seconds(60), 60.0, minute),
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
        options: RunOptions::default(),
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
            .filter(|s| s.namespace == namespace && !self.is_deleted(s))
            .cloned()
            .collect())
    }
    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.deleted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((namespace.into(), name.into()));
        Ok(())
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
        let started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let next = self.runs.iter().map(|r| r.id).max().unwrap_or(0);
        let mut runs: Vec<RunSummary> = started
            .iter()
            .enumerate()
            .rev()
            .filter(|(_, s)| s.namespace.as_deref() == Some(namespace))
            .map(|(n, s)| RunSummary {
                id: next + 1 + n as i64,
                namespace: namespace.into(),
                project: None,
                repo: s.repo.clone(),
                branch: s.branch.clone(),
                commit: None,
                trigger: RunTrigger::Detached(None),
                status: RunState::Running,
                error: None,
                started: Some(Utc::now()),
                finished: None,
                options: RunOptions::of(s),
            })
            .collect();
        runs.extend(
            self.runs
                .iter()
                .filter(|r| r.namespace == namespace)
                .cloned(),
        );
        Ok(runs)
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
        submission: &WorkflowSubmission,
        _: Option<&str>,
        _: u32,
    ) -> Result<String> {
        let mut started = self.started.lock().unwrap_or_else(|p| p.into_inner());
        started.push(submission.clone());
        Ok(bodywork_runtime::unnamed_detached_name(started.len()))
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
    async fn service_traffic(&self, namespace: &str) -> Result<Vec<ServiceTraffic>> {
        if self.no_runs {
            return Err(RuntimeError::unsupported("no metrics source on a cluster"));
        }
        Ok(self
            .traffic
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .map(|(_, t)| t.clone())
            .collect())
    }
    async fn environments(&self) -> Result<Vec<bodywork_runtime::EnvironmentStatus>> {
        if self.no_runs {
            return Err(RuntimeError::unsupported(
                "no environment cache on a cluster",
            ));
        }
        Ok(self.environments.clone())
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
