//! The runtime interface: what the workflow controller asks of wherever
//! stages run, with no knowledge of which runtime answers.
//!
//! Owns: the [`Runtime`] trait, the records it returns (secrets, services),
//! the log sink stages and runtimes write to, and the error vocabulary.
//! Must not: implement any runtime, or decide workflow order (that is the
//! controller's job in `bodywork-workflow`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

mod control;
mod environments;
mod error;
pub mod groups;
mod logs;
pub mod namespace;
mod resolve;
pub mod time;
mod traffic;

pub use control::{
    ControlPlane, CronJobSpec, CronJobSummary, CronRunKind, CronRunSummary, DETACHED_PREFIX,
    RunOptions, RunState, RunSummary, RunTrigger, SshKey, StageAttempt, StageState, Watcher,
    WorkflowRun, WorkflowSubmission, detached_name, is_detached, unnamed_detached_name,
};
pub use environments::{BuildLockStatus, EnvironmentStatus, RunStage};
pub use error::{ObjectKind, Problem, RuntimeError, TRY_AGAIN, error_chain};
pub use logs::{LogEvent, LogRenderer, format_log_line, local_time, stage_header, timestamp_now};
pub use resolve::{AsOf, AsOfSource, RESOLVE_AS_OF_ENV, Resolution};
pub use traffic::{ServiceTraffic, TrafficSample};

use async_trait::async_trait;
use bodywork_plan::StagePlan;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use tokio_util::sync::CancellationToken;

/// Where log lines of a run go: the controller's own messages and every
/// line a stage prints. Implementations fan out to a log file, a CLI
/// connection, a terminal.
pub trait LogSink: Send + Sync {
    /// A controller / runtime message (`logger` is e.g. `workflow`, `stage`).
    fn log(&self, level: Level, logger: &str, message: &str);
    /// A line of a stage's own output; `source` is the resource name
    /// (`PROJECT--STAGE`), or `PROJECT--STAGE/N` for replica N of a service.
    fn stage_line(&self, source: &str, line: &str);
    /// An event that happened elsewhere (in the daemon), keeping its own
    /// time. Sinks that render events themselves override this.
    fn event(&self, event: LogEvent) {
        match event {
            LogEvent::Log {
                level,
                logger,
                message,
                ..
            } => self.log(level, &logger, &message),
            LogEvent::Stage { source, line } => self.stage_line(&source, &line),
            LogEvent::Text { line } => self.log(Level::Info, "log", &line),
        }
    }
}

/// A sink that renders whole events (a terminal, a web page): its
/// `log` and `stage_line` are those events, made here once.
pub trait EventSink: Send + Sync {
    fn event(&self, event: LogEvent);
}

impl<T: EventSink> LogSink for T {
    fn log(&self, level: Level, logger: &str, message: &str) {
        EventSink::event(self, LogEvent::log(level, logger, message));
    }

    fn stage_line(&self, source: &str, line: &str) {
        EventSink::event(
            self,
            LogEvent::Stage {
                source: source.to_string(),
                line: line.to_string(),
            },
        );
    }

    fn event(&self, event: LogEvent) {
        EventSink::event(self, event);
    }
}

pub type Log = Arc<dyn LogSink>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// What a runtime knows about the run a stage belongs to.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub run_id: String,
    pub namespace: String,
    /// Project name, DNS-1123.
    pub project: String,
    pub repo: String,
    pub branch: Option<String>,
    pub commit: String,
    /// The checked-out project on this machine (the local runtime runs from
    /// it; the Kubernetes runtime's containers fetch `repo` themselves).
    pub checkout: PathBuf,
    pub docker_image: String,
    /// As of when the stages' requirements are resolved, and why.
    pub resolution: Resolution,
    /// `--python VERSION`: the Python every stage's environment is built
    /// with, instead of the default one (or the one chosen for wheels).
    pub python: Option<String>,
    /// `--no-python-downloads`: uv downloads no Python for a stage when
    /// none on the machine fits.
    pub no_python_downloads: bool,
    /// The `workflow --watch` process the run deploys for
    /// ([`WorkflowSubmission::watcher`]).
    pub watcher: Option<Watcher>,
}

/// What a secret holds: keys (environment variable names) to values.
pub type SecretData = BTreeMap<String, String>;

/// A secret: named, in a namespace, a map of keys to values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub namespace: String,
    pub name: String,
    pub data: SecretData,
    /// When it was created, if the runtime knows.
    #[serde(default, with = "time::rfc3339_opt")]
    pub created: Option<DateTime<Utc>>,
}

/// The state of one deployed service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub namespace: String,
    pub name: String,
    pub project: String,
    pub stage: String,
    pub repo: String,
    pub commit: String,
    /// How clients reach it (local: the gateway URL; Kubernetes: cluster DNS).
    pub url: String,
    pub port: u16,
    pub exposed: bool,
    pub replicas: u32,
    pub available_replicas: u32,
    pub unavailable_replicas: u32,
    pub restarts: u32,
    /// When it was last deployed, if the runtime knows.
    #[serde(default, with = "time::rfc3339_opt")]
    pub deployed: Option<DateTime<Utc>>,
    /// Requests to it that failed for their clients since the runtime
    /// started counting (answered with a 5xx, or a connection no replica
    /// took); `None` where the runtime does not count them.
    #[serde(default)]
    pub failed_requests: Option<u64>,
    /// Since when `failed_requests` counts (the local gateway's start): a
    /// count from before another start cannot be subtracted from it. To the
    /// microsecond: two daemons started within one second are two starts.
    #[serde(default, with = "time::rfc3339_micros_opt")]
    pub failed_requests_since: Option<DateTime<Utc>>,
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// What both a command and the workflow controller ask of a runtime:
/// namespaces, secrets and services. [`ControlPlane`] (the commands) and
/// [`Runtime`] (the controller) both build on it, so each runtime implements
/// these once.
///
/// Implementations: the local runtime (`bodywork-local`, in its daemon and,
/// forwarding to it, in its client) and the Kubernetes runtime
/// (`bodywork-kube`). Every method is idempotent where the verb allows.
#[async_trait]
pub trait Resources: Send + Sync {
    /// `local` or `kubernetes`.
    fn name(&self) -> &'static str;

    /// Create or prepare a namespace with the seed's objects (see
    /// [`namespace`]).
    async fn setup_namespace(&self, namespace: &str) -> Result<namespace::NamespaceSetup>;
    async fn namespace_exists(&self, namespace: &str) -> Result<bool>;
    /// The namespaces bodywork set up, by name (what Bodywork 3's `get
    /// deployments` looks through).
    async fn list_namespaces(&self) -> Result<Vec<String>>;
    /// Delete a namespace with everything in it (services, secrets, cron
    /// jobs, and on the local runtime the workflow runs and their logs);
    /// returns what was deleted. `NotFound` when it does not exist;
    /// `Conflict`, with nothing deleted, while a workflow run is going in
    /// it (local runtime).
    async fn delete_namespace(&self, namespace: &str) -> Result<namespace::NamespaceDeletion>;

    async fn create_secret(&self, namespace: &str, name: &str, data: SecretData) -> Result<()>;
    async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()>;
    /// Secrets with their values (callers mask them for display).
    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>>;

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>>;
    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()>;

    /// Keep one secret of a secrets group in [`groups::GROUPS_NAMESPACE`]
    /// (created or replaced; the namespace exists). By default as the
    /// secret `GROUP.NAME`; the Kubernetes runtime keeps it as Bodywork 3
    /// does ([`groups`] says how).
    async fn put_group_secret(&self, group: &str, name: &str, data: SecretData) -> Result<()> {
        self.create_secret(
            groups::GROUPS_NAMESPACE,
            &groups::stored_name(group, name),
            data,
        )
        .await
    }
    /// Every secret of every group, in no order (none when
    /// [`groups::GROUPS_NAMESPACE`] does not exist).
    async fn list_group_secrets(&self) -> Result<Vec<groups::GroupSecret>> {
        if !self.namespace_exists(groups::GROUPS_NAMESPACE).await? {
            return Ok(Vec::new());
        }
        Ok(self
            .list_secrets(groups::GROUPS_NAMESPACE)
            .await?
            .into_iter()
            .filter_map(|s| {
                let (g, n) = groups::parse_stored(&s.name)?;
                Some(groups::GroupSecret {
                    group: g.to_string(),
                    name: n.to_string(),
                    data: s.data.clone(),
                    created: s.created,
                })
            })
            .collect())
    }
    /// Delete one secret of a group; `NotFound` when it is not there.
    async fn delete_group_secret(&self, group: &str, name: &str) -> Result<()> {
        self.delete_secret(groups::GROUPS_NAMESPACE, &groups::stored_name(group, name))
            .await
    }
    /// A namespace that exists but that bodywork did not set up, made ready
    /// for runs (what its stages need added, nothing of its own changed);
    /// returns whether it was adopted (false when there was nothing to do).
    async fn adopt_namespace(&self, _namespace: &str) -> Result<bool> {
        Ok(false)
    }
}

/// One stage of a run, as the controller hands it to a runtime: the run it
/// belongs to, the stage's plan, where its log goes, and what cancels it.
#[derive(Clone, Copy)]
pub struct StageRun<'a> {
    pub ctx: &'a RunContext,
    pub stage: &'a StagePlan,
    pub log: &'a Log,
    pub cancel: &'a CancellationToken,
}

impl<'a> StageRun<'a> {
    /// Its four parts, for a function that uses them all.
    pub fn parts(
        self,
    ) -> (
        &'a RunContext,
        &'a StagePlan,
        &'a Log,
        &'a CancellationToken,
    ) {
        (self.ctx, self.stage, self.log, self.cancel)
    }
}

/// What the workflow controller asks of wherever stages run, beyond
/// [`Resources`]: run a batch stage, deploy a service.
#[async_trait]
pub trait Runtime: Resources {
    /// Run a batch stage to completion: at most `retries` retries, each
    /// attempt stopped after its deadline. `extra_env` is added to the
    /// stage's planned environment (e.g. `EXCEPTION_MESSAGE`).
    async fn run_batch(&self, run: StageRun<'_>, extra_env: &[(String, String)]) -> Result<()>;

    /// Deploy (or roll out a new version of) a service stage and wait until
    /// it is ready; roll back and fail when it is not ready in time.
    async fn deploy_service(&self, run: StageRun<'_>) -> Result<()>;

    /// Start making what `stages` will need (their Python environments) in
    /// the background now, so that a stage of a later step finds it ready,
    /// or in the making, when its turn comes. Never fails: each stage's
    /// own preparation reports any problem. By default nothing (a runtime
    /// whose stages bring their own environments).
    fn prepare_ahead(&self, _ctx: &RunContext, _stages: &[&StagePlan]) {}

    /// The run of `ctx` ended (`failed`: cancelled or failed): what
    /// [`Runtime::prepare_ahead`] started for it is its no more; when it
    /// failed, stop what is still being made, unless another run waits for
    /// the same. By default nothing.
    fn end_ahead(&self, _ctx: &RunContext, _failed: bool) {}
}
