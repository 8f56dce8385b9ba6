//! `LocalRuntime`: the [`Runtime`] interface on this machine. Namespaces and
//! secrets live in the SQLite store; batch stages run as supervised Python
//! processes in cached environments.
//!
//! Owns: what only the daemon adds to a stage (secret values from the
//! store, the bind shim and service-name variables, attempts recorded in
//! SQLite, output into the run log). Must not: build command lines, run
//! attempts or describe exits itself (`bodywork-stage` does, for
//! `bodywork stage` too).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bodywork_plan::StagePlan;
use bodywork_pyenv::{BuildFor, BuildStop, EnvCache};
use bodywork_runtime::namespace::{NamespaceDeletion, NamespaceGone, NamespaceSetup};
use bodywork_runtime::{
    Log, ObjectKind, Resources, Result, RunContext, RunStage, Runtime, RuntimeError, Secret,
    SecretData, ServiceStatus, StageRun,
};
use bodywork_stage::{
    Attach, AttemptHook, Batch, BatchError, Outcome, ProcessId, PythonError, StageCommand, env,
};
use bodywork_state::{AttemptStatus, Store, StoreError};

use crate::ahead::AheadBuilds;
use crate::home::Home;
use crate::services::{self, Rollout, ServiceManager, ServiceSpec};
use crate::store::SharedStore;

/// The local runtime, shared by every connection of the daemon.
#[derive(Clone)]
pub struct LocalRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    home: Home,
    store: SharedStore,
    envs: Arc<EnvCache>,
    /// Environments being made ahead of their stages.
    ahead: AheadBuilds,
    /// The stages of runs that took each environment (by its directory),
    /// kept while their runs go on: what [`LocalRuntime::run_users`] says.
    run_users: Mutex<HashMap<PathBuf, BTreeSet<RunStage>>>,
    services: ServiceManager,
}

impl LocalRuntime {
    pub fn new(home: Home, store: Store) -> LocalRuntime {
        let envs = EnvCache::new(home.root());
        let store = SharedStore::new(store);
        let services = ServiceManager::new(home.clone(), store.clone());
        LocalRuntime {
            inner: Arc::new(Inner {
                home,
                store,
                envs: Arc::new(envs),
                ahead: AheadBuilds::default(),
                run_users: Mutex::default(),
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

    /// The stages of the runs in `going` that took each environment (by
    /// its directory); those of other runs, ended, are forgotten.
    pub fn run_users(&self, going: &[i64]) -> HashMap<PathBuf, Vec<RunStage>> {
        let mut users = self
            .inner
            .run_users
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        users.retain(|_, stages| {
            stages.retain(|s| going.contains(&s.run));
            !stages.is_empty()
        });
        users
            .iter()
            .map(|(dir, stages)| (dir.clone(), stages.iter().cloned().collect()))
            .collect()
    }

    /// Run `f` with the store. Calls are short; never held across an await.
    pub fn with_store<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, bodywork_state::StoreError>,
    ) -> Result<T> {
        self.inner.store.with(f).map_err(RuntimeError::from)
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
        let planned = env::resolve(stage, &secrets).map_err(|why| RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason: why,
        })?;
        // Made ahead (its lines kept until now), or made here.
        let env = match self.inner.ahead.take(&ctx.run_id, &stage.stage) {
            Some(ahead) => ahead.take(log).await,
            None => {
                bodywork_stage::ensure_python(
                    self.inner.envs.clone(),
                    stage,
                    ctx.resolution,
                    ctx.python.as_deref(),
                    ctx.no_python_downloads,
                    &ctx.commit,
                    Some(built_for(ctx, stage)),
                    None,
                    log,
                )
                .await
            }
        }
        .map_err(|e| match e {
            PythonError::Task(why) => RuntimeError::failed(why),
            PythonError::Install(e) => RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: format!("could not install its requirements: {e}"),
            },
        })?;
        if let Ok(run) = Self::run_id(ctx) {
            self.inner
                .run_users
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(env.dir.clone())
                .or_default()
                .insert(RunStage {
                    namespace: ctx.namespace.clone(),
                    run,
                    stage: stage.stage.clone(),
                });
        }
        services::shim::install(&env.site_packages).map_err(|e| {
            RuntimeError::failed(format!(
                "cannot install the bodywork shim into {}",
                env.site_packages.display()
            ))
            .with_cause(e)
        })?;
        let vars = self.stage_vars(&ctx.namespace, &env.dir, planned, extra_env);
        bodywork_stage::command(
            stage,
            &ctx.checkout,
            &env.python,
            &self.inner.home.tools(),
            vars,
        )
        .map_err(RuntimeError::failed)
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
        env::build(
            env::passed_through(|k| std::env::var(k).ok()),
            venv,
            planned,
            &extra,
        )
    }

    /// Bring back every recorded service after a daemon start (adopting
    /// replicas that still run).
    pub async fn restore_services(&self) {
        let secrets_by_ns = |ns: &str| self.with_store(|s| s.list_secrets(ns));
        let command_for =
            |row: &bodywork_state::DeploymentRow, spec: &ServiceSpec| -> Result<StageCommand> {
                let secrets: Vec<Secret> = secrets_by_ns(&row.namespace)?
                    .into_iter()
                    .map(|r| Secret {
                        namespace: r.namespace,
                        name: r.name,
                        data: r.data,
                        created: Some(r.created),
                    })
                    .collect();
                let planned = env::resolve(&spec.plan, &secrets).map_err(RuntimeError::failed)?;
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
impl Resources for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn setup_namespace(&self, namespace: &str) -> Result<NamespaceSetup> {
        let created = self.with_store(|s| s.create_namespace(namespace))?;
        Ok(NamespaceSetup {
            namespace: namespace.to_string(),
            existed: !created,
            adopted: false,
        })
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        self.with_store(|s| s.namespace_exists(namespace))
    }

    async fn list_namespaces(&self) -> Result<Vec<String>> {
        let rows = self.with_store(|s| s.list_namespaces())?;
        Ok(rows.into_iter().map(|r| r.name).collect())
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<NamespaceDeletion> {
        let not_found = || RuntimeError::NotFound {
            kind: ObjectKind::Namespace,
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
        let mut services = Vec::new();
        for svc in self.inner.services.list(namespace) {
            match self.inner.services.delete(namespace, &svc.name).await {
                Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            services.push(svc.name);
        }
        // What a crash left recorded but unsupervised goes too (replicas of
        // an interrupted first deploy are stopped), so nothing is refused.
        services.extend(self.inner.services.remove_unsupervised(namespace)?);
        let deleted = self
            .inner
            .store
            .with(|s| s.delete_namespace(namespace))
            .map_err(|e| match e {
                StoreError::NamespaceInUse { .. } => {
                    RuntimeError::conflict(format!("cannot delete namespace {namespace}"))
                        .with_cause(e)
                        .with_hint("try again when it has finished")
                }
                e => e.into(),
            })?
            .ok_or_else(not_found)?;
        self.inner.home.remove_run_logs(&deleted.runs);
        crate::logfiles::remove_log_dir(&self.inner.home.namespace_logs(namespace));
        Ok(NamespaceDeletion {
            namespace: namespace.to_string(),
            outcome: NamespaceGone::Deleted {
                services,
                secrets: deleted.secrets,
                cron_jobs: deleted.cron_jobs,
                // Workflow runs are recorded on this runtime only.
                runs: Some(deleted.runs.len()),
            },
            // It stands in for the seed's binding, which goes with it.
            binding_deleted: true,
        })
    }

    async fn create_secret(&self, namespace: &str, name: &str, data: SecretData) -> Result<()> {
        if !self.namespace_exists(namespace).await? {
            return Err(RuntimeError::NotFound {
                kind: ObjectKind::Namespace,
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
                kind: ObjectKind::Secret,
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
                created: Some(r.created),
            })
            .collect())
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        Ok(self.inner.services.list(namespace))
    }

    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        self.inner.services.delete(namespace, name).await
    }
}

#[async_trait]
impl Runtime for LocalRuntime {
    async fn run_batch(&self, run: StageRun<'_>, extra_env: &[(String, String)]) -> Result<()> {
        let (ctx, stage, log, cancel) = run.parts();
        let Some(batch) = Batch::of(stage) else {
            return Err(RuntimeError::failed(format!(
                "stage {} is not a batch stage",
                stage.stage
            )));
        };
        let mut attempts = RecordAttempts {
            runtime: self.clone(),
            run_id: Self::run_id(ctx)?,
            stage: stage.stage.clone(),
            current: None,
        };
        let command = self.prepare(ctx, stage, extra_env, log).await?;
        let source = stage.resource_name.clone();
        let sink = log.clone();
        let attach = Attach::lines(Arc::new(move |line| sink.stage_line(&source, &line)));
        let last = bodywork_stage::run_batch(
            &stage.stage,
            &command,
            batch,
            &attach,
            &mut attempts,
            log,
            cancel,
        )
        .await
        .map_err(|e| match e {
            BatchError::Hook(e) => e,
            start => RuntimeError::StageFailed {
                stage: stage.stage.clone(),
                reason: start.to_string(),
            },
        })?;
        match last {
            Outcome::Exited(0) => Ok(()),
            Outcome::Cancelled => Err(RuntimeError::Cancelled),
            failed => {
                let tries = match batch.attempts() {
                    1 => String::new(),
                    n => format!(" after {n} attempts"),
                };
                Err(RuntimeError::StageFailed {
                    stage: stage.stage.clone(),
                    reason: format!("{}{tries}", failed.describe(batch.deadline)),
                })
            }
        }
    }

    fn prepare_ahead(&self, ctx: &RunContext, stages: &[&StagePlan]) {
        for stage in stages {
            let (cache, stage, ctx) = (self.inner.envs.clone(), (*stage).clone(), ctx.clone());
            let (run, name) = (ctx.run_id.clone(), stage.stage.clone());
            // What it says and any failure are the stage's to report, when
            // it takes the environment (`prepare`).
            let stop = BuildStop::default();
            let building = stop.clone();
            self.inner
                .ahead
                .start(&run, &name, stop, |log: Log| async move {
                    bodywork_stage::ensure_python(
                        cache,
                        &stage,
                        ctx.resolution,
                        ctx.python.as_deref(),
                        ctx.no_python_downloads,
                        &ctx.commit,
                        Some(built_for(&ctx, &stage)),
                        Some(building),
                        &log,
                    )
                    .await
                });
        }
    }

    fn end_ahead(&self, ctx: &RunContext, failed: bool) {
        let stops = self.inner.ahead.end(&ctx.run_id);
        if failed {
            for stop in stops {
                if self.inner.envs.stop_unless_awaited(&stop) {
                    tracing::info!(run = ctx.run_id, "stopped an environment built ahead");
                }
            }
        }
    }

    async fn deploy_service(&self, run: StageRun<'_>) -> Result<()> {
        let (ctx, stage, log, cancel) = run.parts();
        // One attempt of the run's stage, from preparing to ready (no
        // process id: the replicas are the service's), so a run's stages
        // (`ControlPlane::run_stages`) show its services too.
        let attempt = Self::run_id(ctx)
            .and_then(|run| self.with_store(|s| s.insert_attempt(run, &stage.stage, 1)))
            .ok();
        let result = async {
            let command = self.prepare(ctx, stage, &[], log).await?;
            let rollout = Rollout {
                ctx,
                stage,
                command,
            };
            self.inner.services.deploy(rollout, log, cancel).await
        }
        .await;
        if let Some(attempt) = attempt {
            let (status, message) = match &result {
                Ok(()) => (AttemptStatus::Succeeded, None),
                Err(RuntimeError::Cancelled) => (AttemptStatus::Cancelled, None),
                Err(e) => (AttemptStatus::Failed, Some(e.to_string())),
            };
            let _ =
                self.with_store(|s| s.finish_attempt(attempt, status, None, message.as_deref()));
        }
        result
    }
}

/// What an environment's build lock says it is built for.
fn built_for(ctx: &RunContext, stage: &StagePlan) -> BuildFor {
    BuildFor {
        namespace: ctx.namespace.clone(),
        run: ctx.run_id.clone(),
        stage: stage.stage.clone(),
    }
}

/// Why a namespace with a workflow run going cannot be deleted.
fn run_going(namespace: &str, run: i64) -> RuntimeError {
    RuntimeError::conflict(format!("cannot delete namespace {namespace}"))
        .with_cause(format!("workflow run {run} is going in it"))
        .with_hint("wait for it to finish (or cancel it), then try again")
}

/// Each attempt of a batch stage as a row of the run in SQLite (with its
/// process, so a restarted daemon can stop what it left behind).
struct RecordAttempts {
    runtime: LocalRuntime,
    run_id: i64,
    stage: String,
    /// The row of the attempt going on.
    current: Option<i64>,
}

impl AttemptHook for RecordAttempts {
    type Error = RuntimeError;

    fn starting(&mut self, attempt: u32) -> Result<()> {
        let id = self
            .runtime
            .with_store(|s| s.insert_attempt(self.run_id, &self.stage, attempt))?;
        self.current = Some(id);
        Ok(())
    }

    fn spawned(&mut self, id: ProcessId) {
        if let Some(attempt) = self.current {
            let _ = self
                .runtime
                .with_store(|s| s.set_attempt_pid(attempt, id.pid, id.start_time));
        }
    }

    fn finished(&mut self, outcome: Outcome, description: &str) -> Result<()> {
        let Some(attempt) = self.current.take() else {
            return Ok(());
        };
        let (status, code) = match outcome {
            Outcome::Exited(0) => (AttemptStatus::Succeeded, Some(0)),
            Outcome::Exited(c) => (AttemptStatus::Failed, Some(c)),
            Outcome::Signalled(_) => (AttemptStatus::Failed, None),
            Outcome::TimedOut => (AttemptStatus::TimedOut, None),
            Outcome::Cancelled => (AttemptStatus::Cancelled, None),
        };
        self.runtime
            .with_store(|s| s.finish_attempt(attempt, status, code, Some(description)))
    }
}
