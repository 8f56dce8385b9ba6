//! [`KubeRuntime`]: the [`Runtime`] interface on a Kubernetes cluster.
//!
//! Owns: talking to the API server with kube-rs: applying the manifests of
//! `manifests.rs` (server-side apply, so every call is idempotent), waiting
//! by watching (`await_condition` with the conditions of `wait.rs`), pod
//! logs into the run's log, rolling back a Deployment that is not ready in
//! time, deleting finished Jobs, and the cron job and log calls the CLI
//! needs beyond the trait. Must not: decide workflow order (the controller
//! does) or build manifests itself.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bodywork_plan::{StagePlan, StagePlanKind};
use bodywork_runtime::{
    CancellationToken, Level, Log, Result, RunContext, Runtime, RuntimeError, Secret, ServiceStatus,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret as K8sSecret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::KubeConfigOptions;
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, Config, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::errors::{Action, map_error, map_wait_error};
use crate::manifests::{
    self, COMMIT_LABEL, CRONJOB_LABEL, CronJobRequest, INGRESS_ANNOTATION, MANAGED_BY, Manifest,
    NAME_LABEL, PROJECT_LABEL, REPO_ANNOTATION, RESOURCE_ANNOTATION, STAGE_LABEL, Target,
};
use crate::podlogs::{PodLogs, Source, follow_pod};
use crate::wait::{
    is_deployment_rolled_out, is_job_completed, is_job_finished, is_rollout_settled, job_failure,
};

/// The field manager of bodywork's server-side applies.
pub const FIELD_MANAGER: &str = "bodywork";
const LOGGER: &str = "kubernetes";
/// How long Kubernetes may take beyond a Job's own deadline to report it.
const JOB_GRACE: Duration = Duration::from_secs(60);
/// How long log followers may take to print the last lines of a finished pod.
const LOG_DRAIN: Duration = Duration::from_secs(10);
/// How long `delete-namespace` waits for Kubernetes to finish deleting a
/// namespace before it reports it as still terminating.
const NAMESPACE_DELETE_WAIT: Duration = Duration::from_secs(120);

/// The Kubernetes runtime.
pub struct KubeRuntime {
    client: Client,
    cluster: String,
    image_override: Option<String>,
    /// Runs whose image choice was already logged.
    noted: Mutex<HashSet<String>>,
}

impl KubeRuntime {
    /// Connect with the kubeconfig (`context`, else its current context) or,
    /// when there is none, the in-cluster configuration of a pod.
    pub async fn connect(context: Option<&str>) -> Result<KubeRuntime> {
        let config = match context {
            Some(ctx) => Config::from_kubeconfig(&KubeConfigOptions {
                context: Some(ctx.to_string()),
                ..KubeConfigOptions::default()
            })
            .await
            .map_err(|e| {
                RuntimeError::Unavailable(format!("cannot use kubeconfig context {ctx:?}: {e}"))
            })?,
            None => Config::infer().await.map_err(|e| {
                RuntimeError::Unavailable(format!(
                    "no Kubernetes cluster configured (no kubeconfig, not in a pod): {e}"
                ))
            })?,
        };
        KubeRuntime::from_config(config)
    }

    /// A runtime for an explicit configuration.
    pub fn from_config(config: Config) -> Result<KubeRuntime> {
        let cluster = config.cluster_url.to_string();
        let client = client_for(config).map_err(|e| {
            RuntimeError::Unavailable(format!("cannot set up a client for {cluster}: {e}"))
        })?;
        Ok(KubeRuntime::from_client(client, cluster))
    }

    /// A runtime over an existing client (tests give one backed by a test double).
    pub fn from_client(client: Client, cluster: impl Into<String>) -> KubeRuntime {
        KubeRuntime {
            client,
            cluster: cluster.into(),
            image_override: None,
            noted: Mutex::new(HashSet::new()),
        }
    }

    /// Run stages in `image` whatever the project says (`--image`).
    pub fn with_image(mut self, image: Option<String>) -> KubeRuntime {
        self.image_override = image;
        self
    }

    /// The API server's URL, for messages.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    fn ns<K>(&self, namespace: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn err(&self, e: &kube::Error, action: Action<'_>) -> RuntimeError {
        map_error(e, action, &self.cluster)
    }

    /// The image of a run's containers, logging the choice once per run.
    fn image(&self, ctx: &RunContext, log: &Log) -> String {
        let (image, note) =
            manifests::resolve_image(&ctx.docker_image, self.image_override.as_deref());
        if let Some(note) = note
            && let Ok(mut noted) = self.noted.lock()
            && noted.insert(ctx.run_id.clone())
        {
            log.log(Level::Info, LOGGER, &note);
        }
        image
    }

    /// Apply a namespaced object (in its own namespace), naming it in errors.
    async fn apply_namespaced<K>(&self, kind: &'static str, obj: &K) -> Result<()>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Serialize
            + DeserializeOwned
            + Clone
            + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let meta = obj.meta();
        let namespace = meta.namespace.as_deref().unwrap_or("default");
        let name = meta.name.as_deref().unwrap_or_default();
        let action = Action::new("create", kind, name, namespace);
        self.apply(&self.ns::<K>(namespace), obj, action)
            .await
            .map(|_| ())
    }

    async fn apply<K>(&self, api: &Api<K>, obj: &K, action: Action<'_>) -> Result<K>
    where
        K: Resource + Serialize + DeserializeOwned + Clone + Debug,
    {
        let name = obj.meta().name.clone().unwrap_or_default();
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(obj),
        )
        .await
        .map_err(|e| self.err(&e, action))
    }

    /// Apply manifests in order (server-side apply: creates or updates).
    pub async fn apply_manifests(&self, manifests: &[Manifest]) -> Result<()> {
        for m in manifests {
            self.apply_manifest(m).await?;
        }
        Ok(())
    }

    async fn apply_manifest(&self, m: &Manifest) -> Result<()> {
        fn name_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> &str {
            meta.name.as_deref().unwrap_or_default()
        }
        let c = self.client.clone();
        match m {
            Manifest::Namespace(o) => {
                let a = Action::cluster("create", "Namespace", name_of(&o.metadata));
                self.apply(&Api::<Namespace>::all(c), o, a).await?;
            }
            Manifest::ClusterRole(o) => {
                let a = Action::cluster("create", "ClusterRole", name_of(&o.metadata));
                self.apply(&Api::<ClusterRole>::all(c), o, a).await?;
            }
            Manifest::ClusterRoleBinding(o) => {
                let a = Action::cluster("create", "ClusterRoleBinding", name_of(&o.metadata));
                self.apply(&Api::<ClusterRoleBinding>::all(c), o, a).await?;
            }
            Manifest::ServiceAccount(o) => self.apply_namespaced("ServiceAccount", o).await?,
            Manifest::Secret(o) => self.apply_namespaced("Secret", o).await?,
            Manifest::Job(o) => self.apply_namespaced("Job", o).await?,
            Manifest::Deployment(o) => self.apply_namespaced("Deployment", o).await?,
            Manifest::Service(o) => self.apply_namespaced("Service", o).await?,
            Manifest::Ingress(o) => self.apply_namespaced("Ingress", o).await?,
            Manifest::CronJob(o) => self.apply_namespaced("CronJob", o).await?,
        }
        Ok(())
    }

    /// Delete an object; `Ok(false)` when it was not there.
    async fn delete_opt<K>(&self, api: &Api<K>, name: &str, action: Action<'_>) -> Result<bool>
    where
        K: Resource + DeserializeOwned + Clone + Debug,
    {
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(self.err(&e, action)),
        }
    }

    /// Delete a service stage's Ingress, if it has one; true when it had.
    async fn delete_ingress(&self, namespace: &str, name: &str) -> Result<bool> {
        let action = Action::new("delete", "Ingress", name, namespace);
        self.delete_opt(&self.ns::<Ingress>(namespace), name, action)
            .await
    }

    /// Delete a Job left over from an interrupted run and wait until it is
    /// gone: a Job's pod template cannot be changed in place.
    async fn remove_old_job(&self, jobs: &Api<Job>, name: &str, namespace: &str) -> Result<()> {
        let get = Action::new("get", "Job", name, namespace);
        let Some(old) = jobs.get_opt(name).await.map_err(|e| self.err(&e, get))? else {
            return Ok(());
        };
        let del = Action::new("delete", "Job", name, namespace);
        self.delete_opt(jobs, name, del).await?;
        let uid = old.uid().unwrap_or_default();
        let gone = await_condition(jobs.clone(), name, conditions::is_deleted(&uid));
        match tokio::time::timeout(Duration::from_secs(60), gone).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(map_wait_error(&e, del, &self.cluster)),
            Err(_) => Err(RuntimeError::Failed(format!(
                "the previous Job {name} in namespace {namespace} is still being deleted after 60s"
            ))),
        }
    }

    async fn run_job(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        extra_env: &[(String, String)],
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let image = self.image(ctx, log);
        let target = target_of(ctx);
        let job = manifests::job(&target, stage, &image, extra_env);
        let (ns, name) = (ctx.namespace.as_str(), stage.resource_name.as_str());
        let jobs: Api<Job> = self.ns(ns);
        self.remove_old_job(&jobs, name, ns).await?;
        self.apply(&jobs, &job, Action::new("create", "Job", name, ns))
            .await?;
        log.log(
            Level::Info,
            LOGGER,
            &format!("created job={name} in namespace={ns}"),
        );
        let logs = PodLogs::start(
            self.ns(ns),
            format!("job-name={name}"),
            Source::Single(name.to_string()),
            HashSet::new(),
            log.clone(),
        );
        let deadline = match &stage.kind {
            StagePlanKind::Batch {
                max_completion_time_seconds,
                ..
            } => Duration::from_secs(*max_completion_time_seconds),
            StagePlanKind::Service { .. } => Duration::ZERO,
        } + JOB_GRACE;
        let watch = Action::new("watch", "Job", name, ns);
        let finished = tokio::select! {
            r = tokio::time::timeout(deadline, await_condition(jobs.clone(), name, is_job_finished())) => r,
            _ = cancel.cancelled() => {
                logs.finish(Duration::ZERO).await;
                self.delete_opt(&jobs, name, Action::new("delete", "Job", name, ns)).await?;
                return Err(RuntimeError::Cancelled);
            }
        };
        logs.finish(LOG_DRAIN).await;
        let outcome = match finished {
            Ok(Ok(Some(job))) if is_job_completed(&job) => Ok(()),
            Ok(Ok(Some(job))) => Err(job_failure(&job).unwrap_or_else(|| "failed".into())),
            Ok(Ok(None)) => Err("the Job was deleted before it finished".to_string()),
            Ok(Err(e)) => return Err(map_wait_error(&e, watch, &self.cluster)),
            Err(_) => Err(format!(
                "no result within {}s (MAX_COMPLETION_TIME_SECONDS plus {}s)",
                deadline.as_secs(),
                JOB_GRACE.as_secs()
            )),
        };
        self.delete_opt(&jobs, name, Action::new("delete", "Job", name, ns))
            .await?;
        log.log(Level::Info, LOGGER, &format!("deleted job={name}"));
        outcome.map_err(|reason| RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason,
        })
    }

    async fn deploy(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        let StagePlanKind::Service {
            max_startup_time_seconds,
            service_name,
            ingress,
            ..
        } = &stage.kind
        else {
            return Err(RuntimeError::failed(format!(
                "stage {} is not a service",
                stage.stage
            )));
        };
        let image = self.image(ctx, log);
        let target = target_of(ctx);
        let (ns, name) = (ctx.namespace.as_str(), service_name.as_str());
        let deployments: Api<Deployment> = self.ns(ns);
        let pods: Api<Pod> = self.ns(ns);
        let selector = format!("{NAME_LABEL}={name}");
        let get = Action::new("get", "Deployment", name, ns);
        let previous = deployments
            .get_opt(name)
            .await
            .map_err(|e| self.err(&e, get))?;
        let old_pods: HashSet<String> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Pod", "", ns)))?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        let objects = manifests::service_manifests(&target, stage, &image);
        let (Some(manifest), Some(service)) = (
            objects.iter().find_map(|m| match m {
                Manifest::Deployment(d) => Some(d.clone()),
                _ => None,
            }),
            objects.iter().find_map(|m| match m {
                Manifest::Service(s) => Some(s.clone()),
                _ => None,
            }),
        ) else {
            return Err(RuntimeError::failed(format!(
                "stage {} has no Deployment and Service to apply",
                stage.stage
            )));
        };
        // What a rollback puts back.
        let before = Before {
            service: self
                .ns::<Service>(ns)
                .get_opt(name)
                .await
                .map_err(|e| self.err(&e, Action::new("get", "Service", name, ns)))?,
            had_ingress: self
                .ns::<Ingress>(ns)
                .get_opt(name)
                .await
                .map_err(|e| self.err(&e, Action::new("get", "Ingress", name, ns)))?
                .is_some(),
        };
        // A new Ingress may come now (it reaches the old pods until the new
        // ones are ready); one the new version drops goes once it serves.
        self.apply_manifests(&objects).await?;
        let applied = deployments.get(name).await.map_err(|e| self.err(&e, get))?;
        let generation = applied.metadata.generation.unwrap_or(1);
        log.log(
            Level::Info,
            LOGGER,
            &format!(
                "applied deployment={name} in namespace={ns}; waiting up to {max_startup_time_seconds}s for it to be ready"
            ),
        );
        let logs = PodLogs::start(
            pods,
            selector,
            Source::Numbered(stage.resource_name.clone()),
            old_pods,
            log.clone(),
        );
        let limit = Duration::from_secs(*max_startup_time_seconds);
        let settled = await_condition(deployments.clone(), name, is_rollout_settled(generation));
        let outcome = tokio::select! {
            r = tokio::time::timeout(limit, settled) => match r {
                Ok(Ok(Some(d))) if is_deployment_rolled_out(&d, generation) => Ok(()),
                Ok(Ok(Some(_))) => Err(format!("Kubernetes reports no progress within {}s", limit.as_secs())),
                Ok(Ok(None)) => Err("the Deployment was deleted while rolling out".to_string()),
                Ok(Err(e)) => {
                    logs.finish(Duration::ZERO).await;
                    return Err(map_wait_error(&e, Action::new("watch", "Deployment", name, ns), &self.cluster));
                }
                Err(_) => Err(format!("not ready within MAX_STARTUP_TIME_SECONDS={}", limit.as_secs())),
            },
            _ = cancel.cancelled() => Err("cancelled".to_string()),
        };
        logs.finish(Duration::ZERO).await;
        let Err(reason) = outcome else {
            if !*ingress {
                self.delete_ingress(ns, name).await?;
            }
            return Ok(());
        };
        let rollback = self
            .roll_back(
                &deployments,
                (&manifest, &service),
                previous,
                before,
                name,
                log,
            )
            .await;
        if cancel.is_cancelled() {
            return Err(RuntimeError::Cancelled);
        }
        let what = rollback?;
        Err(RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason: format!("service {name} {reason}; {what}"),
        })
    }

    /// Put the previous version back: its pod template, and the labels and
    /// annotations bodywork sets (repository, branch, commit) on the
    /// Deployment and its Service, the Service's port, and the Ingress as it
    /// was (or remove a first deployment that never became ready); says what
    /// it did.
    async fn roll_back(
        &self,
        deployments: &Api<Deployment>,
        (manifest, service): (&Deployment, &Service),
        previous: Option<Deployment>,
        before: Before,
        name: &str,
        log: &Log,
    ) -> Result<String> {
        let ns = manifest.metadata.namespace.as_deref().unwrap_or_default();
        match previous {
            Some(previous) => {
                // What we applied, with the previous version put back.
                let mut restore = manifest.clone();
                restore_managed(&mut restore.metadata, &previous.metadata);
                if let (Some(spec), Some(old)) = (restore.spec.as_mut(), previous.spec) {
                    spec.template = old.template;
                    spec.replicas = old.replicas;
                }
                let action = Action::new("roll back", "Deployment", name, ns);
                self.apply(deployments, &restore, action).await?;
                if let Some(old) = &before.service {
                    let mut restore = service.clone();
                    restore_managed(&mut restore.metadata, &old.metadata);
                    let old_port = old
                        .spec
                        .as_ref()
                        .and_then(|s| s.ports.as_ref())
                        .and_then(|p| p.first())
                        .map(|p| p.port);
                    if let (Some(port), Some(ports)) = (
                        old_port,
                        restore.spec.as_mut().and_then(|s| s.ports.as_mut()),
                    ) && let Some(first) = ports.first_mut()
                    {
                        first.port = port;
                    }
                    let action = Action::new("roll back", "Service", name, ns);
                    self.apply(&self.ns::<Service>(ns), &restore, action)
                        .await?;
                }
                if !before.had_ingress {
                    self.delete_ingress(ns, name).await?;
                }
                log.log(
                    Level::Warning,
                    LOGGER,
                    &format!("rolled back deployment={name} to its previous version"),
                );
                Ok("rolled back to the previous version, which keeps serving".to_string())
            }
            None => {
                match self.delete_service(ns, name).await {
                    Ok(()) | Err(RuntimeError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                log.log(
                    Level::Warning,
                    LOGGER,
                    &format!("removed deployment={name}: its first version never became ready"),
                );
                Ok("removed it (there was no previous version)".to_string())
            }
        }
    }

    /// Create or update a cron job.
    pub async fn create_cronjob(&self, req: &CronJobRequest) -> Result<()> {
        self.apply_manifest(&manifests::cronjob_manifest(req)).await
    }

    /// Delete a cron job (its runs go with it).
    pub async fn delete_cronjob(&self, namespace: &str, name: &str) -> Result<()> {
        let action = Action::new("delete", "CronJob", name, namespace);
        let found = self
            .delete_opt(&self.ns::<CronJob>(namespace), name, action)
            .await?;
        deleted(found, "cron job", name, namespace)
    }

    /// Start one run of a cron job now (`cronjob trigger`): a Job from its
    /// template, as `kubectl create job --from=cronjob/NAME` does. Refused
    /// while a run of it is active (the cron job forbids overlapping runs).
    /// Returns the Job's name.
    pub async fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<String> {
        let get = Action::new("get", "CronJob", name, namespace);
        let cronjob = self
            .ns::<CronJob>(namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.err(&e, get))?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: "cron job",
                name: name.into(),
                namespace: namespace.into(),
            })?;
        let active: Vec<String> = cronjob
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .map(|a| a.iter().filter_map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        if !active.is_empty() {
            return Err(RuntimeError::Conflict(format!(
                "cron job {name} in namespace {namespace} has a run going ({}); wait for it \
                 to finish, then try again",
                active.join(", ")
            )));
        }
        let suffix = unix_seconds().to_string();
        let job = manifests::manual_job(&cronjob, &suffix).ok_or_else(|| {
            RuntimeError::failed(format!(
                "cron job {name} in namespace {namespace} has no spec"
            ))
        })?;
        let job_name = job.name_any();
        let create = Action::new("create", "Job", &job_name, namespace);
        self.ns::<Job>(namespace)
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| self.err(&e, create))?;
        Ok(job_name)
    }

    /// The cron jobs bodywork created in a namespace.
    pub async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobStatus>> {
        let list = self
            .ns::<CronJob>(namespace)
            .list(&managed())
            .await
            .map_err(|e| self.err(&e, Action::new("list", "CronJob", "", namespace)))?;
        Ok(list
            .items
            .iter()
            .map(|c| {
                let spec = c.spec.as_ref();
                let status = c.status.as_ref();
                CronJobStatus {
                    name: c.name_any(),
                    schedule: spec.map(|s| s.schedule.clone()).unwrap_or_default(),
                    timezone: spec.and_then(|s| s.time_zone.clone()),
                    repo: annotation(c, REPO_ANNOTATION),
                    branch: annotation(c, manifests::BRANCH_ANNOTATION),
                    last_run: status.and_then(|s| s.last_schedule_time.as_ref()).map(time),
                    active: status
                        .and_then(|s| s.active.as_ref())
                        .map_or(0, |a| a.len()),
                }
            })
            .collect())
    }

    /// Runs (Jobs) of a cron job, oldest first.
    pub async fn cronjob_history(&self, namespace: &str, name: &str) -> Result<Vec<CronRun>> {
        let list = self
            .ns::<Job>(namespace)
            .list(&ListParams::default().labels(&format!("{CRONJOB_LABEL}={name}")))
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Job", "", namespace)))?;
        let mut runs: Vec<CronRun> = list
            .items
            .iter()
            .map(|j| {
                let status = j.status.as_ref();
                CronRun {
                    name: j.name_any(),
                    started: status.and_then(|s| s.start_time.as_ref()).map(time),
                    finished: status.and_then(|s| s.completion_time.as_ref()).map(time),
                    outcome: if is_job_completed(j) {
                        "succeeded".into()
                    } else if job_failure(j).is_some() {
                        "failed".into()
                    } else {
                        "running".into()
                    },
                }
            })
            .collect();
        runs.sort_by(|a, b| a.started.cmp(&b.started));
        Ok(runs)
    }

    /// Print the logs of the pods of a service (a Deployment) or of a run
    /// (a Job, e.g. a cron job's) into `log`; with `follow`, until they end.
    pub async fn logs(&self, namespace: &str, name: &str, follow: bool, log: &Log) -> Result<()> {
        let deployment = self
            .ns::<Deployment>(namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.err(&e, Action::new("get", "Deployment", name, namespace)))?;
        let (selector, source) = if let Some(d) = &deployment {
            let base = annotation(d, RESOURCE_ANNOTATION).unwrap_or_else(|| name.to_string());
            (format!("{NAME_LABEL}={name}"), Source::Numbered(base))
        } else {
            let job = self
                .ns::<Job>(namespace)
                .get_opt(name)
                .await
                .map_err(|e| self.err(&e, Action::new("get", "Job", name, namespace)))?;
            if job.is_none() {
                return Err(RuntimeError::NotFound {
                    kind: "service or run",
                    name: name.into(),
                    namespace: namespace.into(),
                });
            }
            (format!("job-name={name}"), Source::Single(name.to_string()))
        };
        let pods: Api<Pod> = self.ns(namespace);
        let mut list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Pod", "", namespace)))?
            .items;
        list.sort_by_key(|a| a.creation_timestamp());
        let followers = list.iter().enumerate().map(|(i, p)| {
            let (pods, log) = (pods.clone(), log.clone());
            let source = match &source {
                Source::Single(s) => s.clone(),
                Source::Numbered(s) => format!("{s}/{}", i + 1),
            };
            let pod = p.name_any();
            async move {
                follow_pod(&pods, &pod, &source, &log, follow)
                    .await
                    .map_err(|e| (pod, e))
            }
        });
        for result in futures_util::future::join_all(followers).await {
            if let Err((pod, e)) = result {
                return Err(self.err(&e, Action::new("read logs of", "Pod", &pod, namespace)));
            }
        }
        Ok(())
    }
}

/// kube's default client stack minus its tracing layer, which logs every
/// connection failure at ERROR level on its own: our error is the one line
/// the user sees (the stack is the one kube documents for `Client::new`).
fn client_for(config: Config) -> Result<Client, kube::Error> {
    use hyper_util::client::legacy::connect::HttpConnector;
    use kube::client::ConfigExt;
    use tower::{BoxError, ServiceBuilder};

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(BoxError::from)
        .service(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build(https),
        );
    Ok(Client::new(service, config.default_namespace))
}

/// A cron job as `cronjob display` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronJobStatus {
    /// Name of the cron job.
    pub name: String,
    /// Cron expression.
    pub schedule: String,
    /// Time zone, when not UTC.
    pub timezone: Option<String>,
    /// Repository it deploys.
    pub repo: Option<String>,
    /// Branch it deploys.
    pub branch: Option<String>,
    /// RFC 3339 time of the last scheduled run.
    pub last_run: Option<String>,
    /// Runs going on now.
    pub active: usize,
}

/// One run of a cron job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CronRun {
    /// The run's Job name (what `cronjob logs --name` takes).
    pub name: String,
    /// RFC 3339.
    pub started: Option<String>,
    /// RFC 3339.
    pub finished: Option<String>,
    /// `succeeded`, `failed` or `running`.
    pub outcome: String,
}

/// What a service's rollback restores besides the Deployment.
struct Before {
    /// The Service as it was, if there was one.
    service: Option<Service>,
    /// Whether an Ingress existed (one the failed version added is removed).
    had_ingress: bool,
}

/// Give the labels and annotations bodywork sets on `meta` the values they
/// had on `previous`: those it did not have are dropped (applied without
/// them, they are removed), `bodywork.ml/` ones only it had come back. Other
/// keys are left alone: server-side apply must not take them over.
fn restore_managed(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    previous: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) {
    let empty = BTreeMap::new();
    for (ours, theirs) in [
        (meta.labels.as_mut(), previous.labels.as_ref()),
        (meta.annotations.as_mut(), previous.annotations.as_ref()),
    ] {
        let theirs = theirs.unwrap_or(&empty);
        if let Some(ours) = ours {
            ours.retain(|key, _| theirs.contains_key(key));
            for (key, old) in theirs {
                if ours.contains_key(key) || key.starts_with("bodywork.ml/") {
                    ours.insert(key.clone(), old.clone());
                }
            }
        }
    }
}

/// `Ok` when a delete found something, else the "not found" error naming
/// the `kind` (as users call it) that was asked for.
fn deleted(found: bool, kind: &'static str, name: &str, namespace: &str) -> Result<()> {
    if found {
        Ok(())
    } else {
        Err(RuntimeError::NotFound {
            kind,
            name: name.into(),
            namespace: namespace.into(),
        })
    }
}

fn managed() -> ListParams {
    ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1))
}

fn annotation<K: Resource>(obj: &K, key: &str) -> Option<String> {
    obj.meta().annotations.as_ref()?.get(key).cloned()
}

fn label<K: Resource>(obj: &K, key: &str) -> Option<String> {
    obj.meta().labels.as_ref()?.get(key).cloned()
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn time(t: &Time) -> String {
    t.0.to_string()
}

fn target_of(ctx: &RunContext) -> Target<'_> {
    Target {
        namespace: &ctx.namespace,
        project: &ctx.project,
        repo: &ctx.repo,
        branch: ctx.branch.as_deref(),
        commit: &ctx.commit,
    }
}

/// A Deployment bodywork made, as `service display` shows it.
fn service_status(d: &Deployment, namespace: &str, restarts: u32) -> ServiceStatus {
    let name = d.name_any();
    let spec = d.spec.as_ref();
    let status = d.status.as_ref();
    let port = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|ps| ps.first())
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or_default();
    let count = |v: Option<i32>| u32::try_from(v.unwrap_or(0)).unwrap_or(0);
    let deployed = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing"))
        .and_then(|c| c.last_update_time.as_ref())
        .or(d.metadata.creation_timestamp.as_ref())
        .map(time)
        .unwrap_or_default();
    ServiceStatus {
        namespace: namespace.to_string(),
        url: format!("http://{name}.{namespace}.svc.cluster.local:{port}"),
        project: label(d, PROJECT_LABEL).unwrap_or_default(),
        stage: label(d, STAGE_LABEL).unwrap_or_default(),
        repo: annotation(d, REPO_ANNOTATION).unwrap_or_default(),
        commit: label(d, COMMIT_LABEL).unwrap_or_default(),
        port,
        exposed: annotation(d, INGRESS_ANNOTATION).is_some(),
        replicas: count(spec.and_then(|s| s.replicas)),
        available_replicas: count(status.and_then(|s| s.available_replicas)),
        unavailable_replicas: count(status.and_then(|s| s.unavailable_replicas)),
        restarts,
        deployed,
        name,
    }
}

#[async_trait]
impl Runtime for KubeRuntime {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn setup_namespace(&self, namespace: &str) -> Result<Vec<String>> {
        let existed = self.namespace_exists(namespace).await?;
        self.apply_manifests(&manifests::namespace_manifests(namespace))
            .await?;
        let verb = if existed {
            "found existing"
        } else {
            "creating"
        };
        let binding = manifests::controller_binding_name(namespace);
        Ok(vec![
            format!("{verb} namespace={namespace}"),
            format!(
                "{verb} service-account={} in namespace={namespace}",
                manifests::CONTROLLER_ACCOUNT
            ),
            format!("{verb} cluster-role-binding={binding}"),
            format!(
                "{verb} service-account={} in namespace={namespace}",
                manifests::STAGES_ACCOUNT
            ),
        ])
    }

    async fn namespace_exists(&self, namespace: &str) -> Result<bool> {
        Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await
            .map(|n| n.is_some())
            .map_err(|e| self.err(&e, Action::cluster("get", "Namespace", namespace)))
    }

    async fn delete_namespace(&self, namespace: &str) -> Result<Vec<String>> {
        let namespaces = Api::<Namespace>::all(self.client.clone());
        let get = Action::cluster("get", "Namespace", namespace);
        let existing = namespaces
            .get_opt(namespace)
            .await
            .map_err(|e| self.err(&e, get))?;
        let mut lines = Vec::new();
        if let Some(ns) = &existing {
            let del = Action::cluster("delete", "Namespace", namespace);
            self.delete_opt(&namespaces, namespace, del).await?;
            // Kubernetes deletes what the namespace holds, then the namespace;
            // wait for it as `kubectl delete namespace` does, for a while.
            let uid = ns.uid().unwrap_or_default();
            let gone = await_condition(namespaces.clone(), namespace, conditions::is_deleted(&uid));
            lines.push(
                match tokio::time::timeout(NAMESPACE_DELETE_WAIT, gone).await {
                    Ok(Ok(_)) => format!("deleted namespace={namespace}"),
                    Ok(Err(e)) => return Err(map_wait_error(&e, del, &self.cluster)),
                    Err(_) => format!(
                        "deleting namespace={namespace}: still terminating after {} s; Kubernetes \
                     finishes it in the background",
                        NAMESPACE_DELETE_WAIT.as_secs()
                    ),
                },
            );
        }
        // The binding is cluster-scoped: deleting the namespace leaves it.
        let binding = manifests::controller_binding_name(namespace);
        let del = Action::cluster("delete", "ClusterRoleBinding", &binding);
        let bindings = Api::<ClusterRoleBinding>::all(self.client.clone());
        if self.delete_opt(&bindings, &binding, del).await? {
            lines.push(format!("deleted cluster-role-binding={binding}"));
        }
        if lines.is_empty() {
            return Err(RuntimeError::NotFound {
                kind: "namespace",
                name: namespace.into(),
                namespace: namespace.into(),
            });
        }
        Ok(lines)
    }

    async fn create_secret(
        &self,
        namespace: &str,
        name: &str,
        data: BTreeMap<String, String>,
    ) -> Result<()> {
        self.apply_manifest(&manifests::secret_manifest(namespace, name, &data))
            .await
    }

    async fn delete_secret(&self, namespace: &str, name: &str) -> Result<()> {
        let action = Action::new("delete", "Secret", name, namespace);
        let found = self
            .delete_opt(&self.ns::<K8sSecret>(namespace), name, action)
            .await?;
        deleted(found, "secret", name, namespace)
    }

    async fn list_secrets(&self, namespace: &str) -> Result<Vec<Secret>> {
        // Every Opaque secret: users also create them with kubectl.
        let list = self
            .ns::<K8sSecret>(namespace)
            .list(&ListParams::default().fields("type=Opaque"))
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Secret", "", namespace)))?;
        Ok(list
            .items
            .iter()
            .map(|s| Secret {
                namespace: namespace.to_string(),
                name: s.name_any(),
                data: s
                    .data
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
                    .collect(),
                created: s
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .map(time)
                    .unwrap_or_default(),
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
        self.run_job(ctx, stage, extra_env, log, cancel).await
    }

    async fn deploy_service(
        &self,
        ctx: &RunContext,
        stage: &StagePlan,
        log: &Log,
        cancel: &CancellationToken,
    ) -> Result<()> {
        self.deploy(ctx, stage, log, cancel).await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<ServiceStatus>> {
        let deployments = self
            .ns::<Deployment>(namespace)
            .list(&managed())
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Deployment", "", namespace)))?;
        let pods = self
            .ns::<Pod>(namespace)
            .list(&managed())
            .await
            .map_err(|e| self.err(&e, Action::new("list", "Pod", "", namespace)))?;
        let mut restarts: BTreeMap<String, u32> = BTreeMap::new();
        for p in &pods.items {
            let Some(app) = label(p, NAME_LABEL) else {
                continue;
            };
            let n: i32 = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum());
            *restarts.entry(app).or_default() += u32::try_from(n).unwrap_or(0);
        }
        let mut out: Vec<ServiceStatus> = deployments
            .items
            .iter()
            .map(|d| {
                let r = restarts.get(&d.name_any()).copied().unwrap_or(0);
                service_status(d, namespace, r)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn delete_service(&self, namespace: &str, name: &str) -> Result<()> {
        let del = Action::new("delete", "Deployment", name, namespace);
        let found = self
            .delete_opt(&self.ns::<Deployment>(namespace), name, del)
            .await?;
        let svc = Action::new("delete", "Service", name, namespace);
        let found_svc = self
            .delete_opt(&self.ns::<Service>(namespace), name, svc)
            .await?;
        self.delete_ingress(namespace, name).await?;
        deleted(found || found_svc, "service", name, namespace)
    }
}
