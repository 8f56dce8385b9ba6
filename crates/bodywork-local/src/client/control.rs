//! The local runtime's control plane as the CLI sees it: each call of
//! [`ControlPlane`] becomes one request to the daemon (started if need be),
//! whose answer comes back as the interface's data or `RuntimeError`.
//!
//! Must not: decide or word anything; the daemon does the work, the CLI
//! does the wording.

use async_trait::async_trait;
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceSetup};
use bodywork_runtime::{
    ControlPlane, CronJobSpec, CronJobSummary, CronRunSummary, Log, LogEvent, ObjectKind,
    Resources, Result, RunState, RunSummary, RuntimeError, Secret, SecretData, ServiceStatus,
    ServiceTraffic, StageAttempt, WorkflowRun, WorkflowSubmission,
};

use super::{Connection, connect, unexpected};
use crate::home::Home;
use crate::protocol::{Request, Response};

/// How many runs `list_runs` asks for.
const RUNS_SHOWN: u32 = 100;

/// The local runtime, reached through its daemon.
#[derive(Debug, Clone)]
pub struct LocalControl {
    home: Home,
    /// Start the daemon (or hand over to a newer one) when it does not
    /// answer; false inside the daemon itself, which only connects.
    starts_daemon: bool,
}

impl LocalControl {
    pub fn new(home: Home) -> LocalControl {
        LocalControl {
            home,
            starts_daemon: true,
        }
    }

    /// The daemon's own client (its dashboard's): it connects to the
    /// daemon's socket and never starts a daemon or hands over.
    pub fn in_daemon(home: Home) -> LocalControl {
        LocalControl {
            home,
            starts_daemon: false,
        }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// A connection to the daemon that carries `request`.
    async fn send(&self, request: &Request) -> Result<Connection> {
        if self.starts_daemon {
            return connect(&self.home, request)
                .await
                .map_err(RuntimeError::from);
        }
        let mut conn = super::try_connect(&self.home)
            .await
            .map_err(|e| RuntimeError::from(super::ClientError::Io(e)))?;
        conn.send(request).await.map_err(RuntimeError::from)?;
        Ok(conn)
    }

    /// One request, one answer; the daemon's error as it is.
    pub async fn call(&self, request: Request) -> Result<Response> {
        let mut conn = self.send(&request).await?;
        conn.answer().await.map_err(RuntimeError::from)
    }

    /// One request, and its answer read back as the type its
    /// `ControlPlane` call returns.
    pub async fn ask<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T> {
        match self.call(request).await? {
            Response::Answer { value } => serde_json::from_value(value).map_err(|_| unexpected()),
            _ => Err(unexpected()),
        }
    }

    /// A stored log, line by line into `log`, until the daemon ends it.
    async fn stream(&self, request: Request, log: &Log) -> Result<()> {
        let mut conn = self.send(&request).await?;
        loop {
            match conn.next().await.map_err(RuntimeError::from)? {
                Response::LogLine { line } => log.event(LogEvent::Text { line }),
                Response::End => return Ok(()),
                Response::Error(e) => return Err(e),
                _ => return Err(unexpected()),
            }
        }
    }
}

/// `17` or `run-17`: a workflow run's number, as `bodywork runs` shows it.
pub fn parse_run(name: &str) -> Option<i64> {
    name.strip_prefix("run-")
        .unwrap_or(name)
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

#[async_trait]
impl Resources for LocalControl {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn setup_namespace(&self, namespace: &str) -> Result<NamespaceSetup> {
        let request = Request::SetupNamespace {
            namespace: namespace.into(),
        };
        self.ask(request).await
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        self.ask(Request::NamespaceExists {
            namespace: namespace.into(),
        })
        .await
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        self.ask(Request::NamespaceList).await
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<NamespaceDeletion> {
        let request = Request::DeleteNamespace {
            namespace: namespace.into(),
        };
        self.ask(request).await
    }

    async fn create_secret(&self, namespace: &str, name: &str, data: SecretData) -> Result<()> {
        self.ask(Request::SecretCreate {
            namespace: namespace.into(),
            name: name.into(),
            data,
        })
        .await
    }

    async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()> {
        self.ask(Request::SecretDelete {
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        self.ask(Request::SecretList {
            namespace: namespace.into(),
        })
        .await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        self.ask(Request::ServiceList {
            namespace: namespace.into(),
        })
        .await
    }

    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.ask(Request::ServiceDelete {
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }
}

#[async_trait]
impl ControlPlane for LocalControl {
    async fn run_workflow(&self, run: WorkflowRun<'_>) -> Result<RunState> {
        let mut conn = self
            .send(&Request::RunWorkflow(run.submission.clone()))
            .await?;
        let mut outcome = RunState::Failed;
        let mut cancel_sent = false;
        loop {
            let frame = tokio::select! {
                frame = conn.next() => frame.map_err(RuntimeError::from)?,
                _ = run.cancel.cancelled(), if !cancel_sent => {
                    cancel_sent = true;
                    // The daemon stops every stage process and records the
                    // run as cancelled; its last frames still come.
                    conn.send(&Request::Cancel).await.map_err(RuntimeError::from)?;
                    continue;
                }
            };
            match frame {
                Response::RunStarted { run: id } => {
                    tracing::debug!(target: "workflow", "run {id} started");
                }
                Response::Event(event) => run.log.event(event),
                Response::RunFinished { outcome: o, .. } => outcome = o,
                Response::End => return Ok(outcome),
                Response::Error(e) => return Err(e),
                _ => return Err(unexpected()),
            }
        }
    }

    async fn list_runs(&self, namespace: &str) -> Result<Vec<RunSummary>> {
        self.list_runs_before(namespace, None, RUNS_SHOWN).await
    }

    async fn list_runs_before(
        &self,
        namespace: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunSummary>> {
        self.ask(Request::ListRuns {
            namespace: Some(namespace.into()),
            limit,
            before,
        })
        .await
    }

    async fn count_runs(&self, namespace: &str) -> Result<u64> {
        self.ask(Request::CountRuns {
            namespace: namespace.into(),
        })
        .await
    }

    async fn service_traffic(&self, namespace: &str) -> Result<Vec<ServiceTraffic>> {
        self.ask(Request::ServiceTraffic {
            namespace: namespace.into(),
        })
        .await
    }

    async fn environments(&self) -> Result<Vec<bodywork_runtime::EnvironmentStatus>> {
        self.ask(Request::EnvStatus).await
    }

    async fn run_stages(&self, namespace: &str, run: i64) -> Result<Vec<StageAttempt>> {
        self.ask(Request::RunStages {
            namespace: namespace.into(),
            run,
        })
        .await
    }

    async fn start_workflow(
        &self,
        submission: &WorkflowSubmission,
        name: Option<&str>,
        retries: u32,
    ) -> Result<String> {
        self.ask(Request::RunDetached {
            submission: submission.clone(),
            name: name.map(String::from),
            retries,
        })
        .await
    }

    async fn detached_runs(&self) -> Result<Vec<RunSummary>> {
        let runs: Vec<RunSummary> = self
            .ask(Request::ListRuns {
                namespace: None,
                limit: RUNS_SHOWN,
                before: None,
            })
            .await?;
        Ok(runs
            .into_iter()
            .filter(bodywork_runtime::is_detached)
            .collect())
    }

    async fn detached_logs(&self, name: &str, log: &Log) -> Result<()> {
        let runs = self.detached_runs().await?;
        let run = runs
            .iter()
            .find(|r| bodywork_runtime::detached_name(r) == name)
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::Run,
                name: name.to_string(),
                namespace: String::new(),
            })?;
        self.logs(&run.namespace, &run.id.to_string(), false, log)
            .await
    }

    async fn delete_detached(&self, name: &str) -> Result<()> {
        self.ask(Request::DeleteDetached { name: name.into() })
            .await
    }

    async fn create_cronjob(&self, spec: &CronJobSpec) -> Result<()> {
        self.ask(Request::CronCreate(spec.clone())).await
    }

    async fn update_cronjob(&self, spec: &CronJobSpec) -> Result<()> {
        self.ask(Request::CronUpdate(spec.clone())).await
    }

    async fn delete_cronjob(&self, namespace: &str, name: &str) -> Result<()> {
        self.ask(Request::CronDelete {
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }

    async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobSummary>> {
        self.ask(Request::CronList {
            namespace: namespace.into(),
        })
        .await
    }

    async fn cronjob_history(&self, namespace: &str, name: &str) -> Result<Vec<CronRunSummary>> {
        self.ask(Request::CronHistory {
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }

    async fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<String> {
        self.ask(Request::CronTrigger {
            namespace: namespace.into(),
            name: name.into(),
        })
        .await
    }

    async fn cronjob_logs(&self, namespace: &str, run: &str, log: &Log) -> Result<()> {
        let request = Request::CronLogs {
            namespace: namespace.into(),
            name: run.into(),
        };
        self.stream(request, log).await
    }

    async fn logs(&self, namespace: &str, name: &str, follow: bool, log: &Log) -> Result<()> {
        let namespace = namespace.to_string();
        let request = match parse_run(name) {
            Some(run) => Request::RunLogs {
                namespace,
                run,
                follow,
            },
            None => Request::ServiceLogs {
                namespace,
                name: name.into(),
                follow,
            },
        };
        self.stream(request, log).await
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_names() {
        assert_eq!(super::parse_run("17"), Some(17));
        assert_eq!(super::parse_run("run-3"), Some(3));
        assert_eq!(super::parse_run("scoring-service"), None);
        assert_eq!(super::parse_run("0"), None);
    }
}
