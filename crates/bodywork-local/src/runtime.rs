//! `LocalRuntime`: the [`Runtime`] interface on this machine. Namespaces and
//! secrets live in the SQLite store; batch stages run as supervised Python
//! processes in cached environments.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bodywork_plan::{StagePlan, StagePlanKind};
use bodywork_pyenv::{EnvCache, EnvEvent, EnvRequest};
use bodywork_runtime::{
    CancellationToken, Level, Log, Result, RunContext, Runtime, RuntimeError, Secret, ServiceStatus,
};
use bodywork_state::{AttemptStatus, Store, StoreError};

use crate::home::Home;
use crate::process::{self, Exit, StageCommand};
use crate::services::{self, Rollout, ServiceManager, ServiceSpec};
use crate::store::SharedStore;
use crate::{notebook, stage_env};

/// The local runtime, shared by every connection of the daemon.
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    home: Home,
    store: SharedStore,
    envs: EnvCache,
    services: ServiceManager,
}

impl LocalRuntime {
    pub fn new(home: Home, store: Store) -> LocalRuntime {
        let mut envs = EnvCache::new(home.root());
        // Share uv's package cache with other tools (or other homes) when asked.
        if let Some(dir) = ["BODYWORK_UV_CACHE_DIR", "UV_CACHE_DIR"]
            .iter()
            .find_map(|k| std::env::var_os(k).filter(|v| !v.is_empty()))
        {
            envs = envs.with_uv_cache_dir(Path::new(&dir));
        }
        let store = SharedStore::new(store);
        let services = ServiceManager::new(home.clone(), store.clone());
        LocalRuntime {
            inner: Arc::new(Inner {
                home,
                store,
                envs,
                services,
            }),
        }
    }

    pub fn services(&self) -> &ServiceManager {
        &self.inner.services
    }

    pub fn home(&self) -> &Home {
        &self.inner.home
    }

    pub fn envs(&self) -> &EnvCache {
        &self.inner.envs
    }

    /// Run `f` with the store. Calls are short; never held across an await.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, bodywork_state::StoreError>,
    ) -> Result<T> {
        self.inner.store.with(f).map_err(RuntimeError::failed)
    }

    /// Get the Python environment for a stage, logging the installer's progress.
    async fn environment(&self, stage: &StagePlan, log: &Log) -> Result<bodywork_pyenv::Env> {
        let runtime = self.clone();
        let log = log.clone();
        let request = EnvRequest {
            python: std::env::var_os("BODYWORK_PYTHON").map(PathBuf::from),
            requirements: stage.requirements.clone(),
        };
        let stage_name = stage.stage.clone();
        tokio::task::spawn_blocking(move || {
            let mut on_event = |ev: EnvEvent| match ev {
                EnvEvent::Installing { line } => log.log(Level::Info, "environment", &line),
                EnvEvent::WaitingForOtherBuild => log.log(
                    Level::Info,
                    "environment",
                    "waiting for another build of the same environment",
                ),
                EnvEvent::UsingTool(tool) => log.log(
                    Level::Info,
                    "environment",
                    &format!("installing requirements with {tool}"),
                ),
                EnvEvent::Done {
                    reused: false,
                    elapsed,
                } => log.log(
                    Level::Info,
                    "environment",
                    &format!("environment ready in {:.1}s", elapsed.as_secs_f64()),
                ),
                _ => {}
            };
            runtime.inner.envs.ensure(&request, &mut on_event)
        })
        .await
        .map_err(|e| RuntimeError::failed(format!("environment task failed: {e}")))?
        .map_err(|e| RuntimeError::StageFailed {
            stage: stage_name,
            reason: format!("could not install its requirements: {e}"),
        })
    }

    /// The command line of a stage: `python SCRIPT ARGS...`, or the
    /// notebook runner for `.ipynb`.
    fn command(
        &self,
        checkout: &Path,
        stage: &StagePlan,
        python: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<StageCommand> {
        let cwd = checkout.join(&stage.working_dir);
        let script = stage
            .executable
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| {
                RuntimeError::failed(format!("stage {} has no executable file name", stage.stage))
            })?;
        let mut args = Vec::new();
        if stage.notebook {
            let runner = notebook::install(&self.inner.home.tools()).map_err(|e| {
                RuntimeError::failed(format!("could not write the notebook runner: {e}"))
            })?;
            args.push(runner.into_os_string());
        } else {
            args.push("-u".into());
        }
        args.push(script.into_os_string());
        args.extend(stage.args.iter().map(Into::into));
        Ok(StageCommand {
            program: python,
            args,
            cwd,
            env,
        })
    }

    /// Everything a stage process needs, decided: secrets resolved, its
    /// Python environment ready (with the shim), its environment variables
    /// and command line.
    async fn prepare(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        extra_env: &[(String, String)],
        log: &Log,
    ) -> Result<StageCommand> {
        let secrets = self.list_secrets(&ctx.namespace).await?;
        let planned =
            stage_env::resolve(stage, &secrets).map_err(|why| RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: why,
            })?;
        let env = self.environment(stage, log).await?;
        services::shim::install(&env.site_packages).map_err(|e| {
            RuntimeError::failed(format!(
                "cannot install the bodywork shim into {}: {e}",
                env.site_packages.display()
            ))
        })?;
        let vars = self.stage_vars(&ctx.namespace, &env.dir, planned, extra_env);
        self.command(&ctx.checkout, stage, env.python.clone(), vars)
    }

    /// A stage's environment variables, with what the shim needs to resolve
    /// service names in its namespace.
    fn stage_vars(
        &self,
        namespace: &str,
        venv: &Path,
        planned: Vec<(String, String)>,
        extra_env: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut extra = vec![
            (
                "BODYWORK_HOSTS_FILE".to_string(),
                self.inner.services.hosts_file().display().to_string(),
            ),
            ("BODYWORK_NAMESPACE".to_string(), namespace.to_string()),
        ];
        extra.extend(extra_env.iter().cloned());
        stage_env::build(|k| std::env::var(k).ok(), venv, planned, &extra)
    }

    /// Bring back every recorded service after a daemon start (adopting
    /// replicas that still run).
    pub async fn restore_services(&self) {
        let secrets_by_ns = |ns: &str| self.with_store(|s| s.list_secrets(ns));
        let command_for = |row: &bodywork_state::DeploymentRow,
                           spec: &ServiceSpec|
         -> Result<StageCommand> {
            let secrets: Vec<Secret> = secrets_by_ns(&row.namespace)?
                .into_iter()
                .map(|r| Secret {
                    namespace: r.namespace,
                    name: r.name,
                    data: r.data,
                    created: String::new(),
                })
                .collect();
            let planned = stage_env::resolve(&spec.plan, &secrets).map_err(RuntimeError::failed)?;
            let venv = spec
                .program
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or_default();
            let vars = self.stage_vars(&row.namespace, &venv, planned, &[]);
            Ok(StageCommand {
                program: spec.program.clone(),
                args: spec.args.iter().map(Into::into).collect(),
                cwd: spec.cwd.clone(),
                env: vars,
            })
        };
        self.inner.services.restore(&command_for).await;
    }

    fn run_id(ctx: &RunContext) -> Result<i64> {
        ctx.run_id
            .parse()
            .map_err(|_| RuntimeError::failed(format!("bad run id {:?}", ctx.run_id)))
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn setup_namespace(&self, namespace: &str) -> Result<Vec<String>> {
        let created = self.with_store(|s| s.create_namespace(namespace))?;
        let verb = if created {
            "creating"
        } else {
            "found existing"
        };
        Ok(vec![
            format!("{verb} namespace={namespace}"),
            format!("{verb} service-account=bodywork-workflow-controller in namespace={namespace}"),
            format!("{verb} cluster-role-binding=bodywork-workflow-controller--{namespace}"),
            format!(
                "{verb} service-account=bodywork-jobs-and-deployments in namespace={namespace}"
            ),
        ])
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        self.with_store(|s| s.namespace_exists(namespace))
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<Vec<String>> {
        let not_found = || RuntimeError::NotFound {
            kind: "namespace",
            name: namespace.to_string(),
            namespace: namespace.to_string(),
        };
        if !self.with_store(|s| s.namespace_exists(namespace))? {
            return Err(not_found());
        }
        // A run going keeps everything: refuse before stopping any service.
        // (The store checks again when it deletes, in one transaction.)
        let going = self
            .with_store(|s| s.active_runs())?
            .into_iter()
            .find(|r| r.namespace == namespace);
        if let Some(run) = going {
            return Err(run_going(namespace, run.id));
        }
        let mut lines = Vec::new();
        for svc in self.inner.services.list(namespace) {
            match self.inner.services.delete(namespace, &svc.name).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            lines.push(format!(
                "deleted service={} in namespace={namespace}",
                svc.name
            ));
        }
        let deleted = self
            .inner
            .store
            .with(|s| s.delete_namespace(namespace))
            .map_err(|e| match e {
                StoreError::NamespaceInUse { .. } => RuntimeError::Conflict(format!(
                    "cannot delete namespace {namespace}: {e}; try again when it has finished"
                )),
                e => RuntimeError::failed(e),
            })?
            .ok_or_else(not_found)?;
        self.inner.home.remove_run_logs(&deleted.runs);
        lines.push(format!(
            "deleted {} secret(s), {} cron job(s) and {} workflow run(s) with their logs in namespace={namespace}",
            deleted.secrets,
            deleted.cron_jobs,
            deleted.runs.len()
        ));
        lines.push(format!("deleted namespace={namespace}"));
        Ok(lines)
    }

    async fn create_secret(
        &self,
        namespace: &str,
        name: &str,
        data: BTreeMap<String, String>,
    ) -> Result<()> {
        if !self.namespace_exists(namespace).await? {
            return Err(RuntimeError::NotFound {
                kind: "namespace",
                name: namespace.to_string(),
                namespace: namespace.to_string(),
            });
        }
        self.with_store(|s| s.put_secret(namespace, name, &data))
            .map(|_| ())
    }

    async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()> {
        if self.with_store(|s| s.delete_secret(namespace, name))? {
            Ok(())
        } else {
            Err(RuntimeError::NotFound {
                kind: "secret",
                name: name.to_string(),
                namespace: namespace.to_string(),
            })
        }
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        let rows = self.with_store(|s| s.list_secrets(namespace))?;
        Ok(rows
            .into_iter()
            .map(|r| Secret {
                namespace: r.namespace,
                name: r.name,
                data: r.data,
                created: crate::time::display(&r.created),
            })
            .collect())
    }

    async fn run_batch(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        extra_env: &[(String, String)],
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let StagePlanKind::Batch {
            max_completion_time_seconds,
            retries,
        } = stage.kind
        else {
            return Err(RuntimeError::failed(format!(
                "stage {} is not a batch stage",
                stage.stage
            )));
        };
        let run_id = Self::run_id(ctx)?;
        let command = self.prepare(ctx, stage, extra_env, log).await?;
        let deadline = (max_completion_time_seconds > 0)
            .then(|| Duration::from_secs(max_completion_time_seconds));
        let attempts = retries + 1;
        let mut last = Exit::Code(-1);
        for attempt in 1..=attempts {
            if cancel.is_cancelled() {
                return Err(RuntimeError::Cancelled);
            }
            if attempt > 1 {
                log.log(
                    Level::Warning,
                    "stage",
                    &format!(
                        "retrying stage={} (attempt {attempt} of {attempts})",
                        stage.stage
                    ),
                );
            }
            let attempt_id =
                self.with_store(|s| s.insert_attempt(run_id, &stage.stage, attempt))?;
            let source = stage.resource_name.clone();
            let sink = log.clone();
            let on_line: Arc<dyn Fn(String) + Send + Sync> =
                Arc::new(move |line| sink.stage_line(&source, &line));
            let store_for_pid = self.clone();
            let exit = process::run_to_end(&command, deadline, cancel, on_line, |id| {
                let _ = store_for_pid
                    .with_store(|s| s.set_attempt_pid(attempt_id, id.pid, id.start_time));
            })
            .await
            .map_err(|e| RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: format!("could not start {}: {e}", command.program.display()),
            })?;
            let (status, code) = match exit {
                Exit::Code(0) => (AttemptStatus::Succeeded, Some(0)),
                Exit::Code(c) => (AttemptStatus::Failed, Some(c)),
                Exit::Signal(_) => (AttemptStatus::Failed, None),
                Exit::TimedOut => (AttemptStatus::TimedOut, None),
                Exit::Cancelled => (AttemptStatus::Cancelled, None),
            };
            let message = exit.describe(deadline);
            self.with_store(|s| s.finish_attempt(attempt_id, status, code, Some(&message)))?;
            match exit {
                Exit::Code(0) => return Ok(()),
                Exit::Cancelled => return Err(RuntimeError::Cancelled),
                other => {
                    log.log(
                        Level::Warning,
                        "stage",
                        &format!(
                            "stage={} attempt {attempt} of {attempts} failed: {message}",
                            stage.stage
                        ),
                    );
                    last = other;
                }
            }
        }
        let tries = if attempts == 1 {
            String::new()
        } else {
            format!(" after {attempts} attempts")
        };
        Err(RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason: format!("{}{tries}", last.describe(deadline)),
        })
    }

    async fn deploy_service(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let command = self.prepare(ctx, stage, &[], log).await?;
        let rollout = Rollout {
            ctx,
            stage,
            command,
        };
        self.inner.services.deploy(rollout, log, cancel).await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        Ok(self.inner.services.list(namespace))
    }

    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.inner.services.delete(namespace, name).await
    }
}

/// Why a namespace with a workflow run going cannot be deleted.
fn run_going(namespace: &str, run: i64) -> RuntimeError {
    RuntimeError::Conflict(format!(
        "cannot delete namespace {namespace}: workflow run {run} is going in it; \
         wait for it to finish (or cancel it), then try again"
    ))
}
