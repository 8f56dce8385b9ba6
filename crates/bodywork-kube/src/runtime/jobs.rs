//! Batch stages as Kubernetes Jobs: replace a Job left over from an
//! interrupted run (or wait for another run's to end), create the stage's Job, follow its pod's logs, wait for
//! it to finish within its deadline, and delete it.
//!
//! Owns: the life of one stage's Job. Must not: retry a stage (the Job's
//! backoff limit does) or decide what runs (the manifest says).

use std::collections::HashSet;
use std::time::Duration;

use super::watch::{Waited, await_condition, first_failing_pod};
use bodywork_runtime::{Level, ObjectKind, Result, RuntimeError, StageRun};
use k8s_openapi::api::batch::v1::Job;
use kube::Api;

use super::{KubeRuntime, LOGGER, target_of};
use crate::errors::{Action, failing_watch, map_watch_error};
use crate::manifests;
use crate::podlogs::{PodLogs, Source};
use crate::wait::{is_job_completed, is_job_finished, job_failure};

/// How long log followers may take to print the last lines of a finished pod.
const LOG_DRAIN: Duration = Duration::from_secs(10);

/// How long a finished Job of another run may stay before this run deletes
/// it: the other run prints its last lines, then deletes it itself.
const OTHER_RUN_CLEAN_UP: Duration = Duration::from_secs(30);

/// How many times a create answered `409 AlreadyExists` (a Job of the same
/// name made meanwhile by another run) makes room and tries again.
const CREATE_ATTEMPTS: u32 = 5;

impl KubeRuntime {
    /// Make room for this run's Job `name`. A finished Job of that name,
    /// left over from an interrupted run, is deleted. One still going is
    /// another run's (two runs of one project at once in a namespace): this
    /// run waits for it to end (at most `limit`, this stage's own wait) and
    /// for its run to delete it, and deletes it only if it stays. Returns
    /// once no Job of that name is left.
    async fn make_room(
        &self,
        jobs: &Api<Job>,
        name: &str,
        namespace: &str,
        limit: Option<Duration>,
        log: &bodywork_runtime::Log,
    ) -> Result<()> {
        let get = Action::new("get", ObjectKind::Job, name, namespace);
        let Some(old) = jobs.get_opt(name).await.map_err(|e| self.err(&e, get))? else {
            return Ok(());
        };
        let watch = Action::new("watch", ObjectKind::Job, name, namespace);
        let old = if is_job_completed(&old) || job_failure(&old).is_some() {
            old
        } else {
            log.log(
                Level::Info,
                LOGGER,
                &format!(
                    "job={name} of another run is going in namespace={namespace}; waiting for it to end"
                ),
            );
            let uid = old.metadata.uid.clone().unwrap_or_default();
            match await_condition(jobs.clone(), name, is_job_finished(), limit).await {
                Ok(Waited::Met(Some(job))) if job.metadata.uid.as_deref() == Some(uid.as_str()) => {
                    let gone = kube::runtime::wait::conditions::is_deleted(&uid);
                    match await_condition(jobs.clone(), name, gone, Some(OTHER_RUN_CLEAN_UP)).await
                    {
                        Ok(Waited::Met(_)) => return Ok(()),
                        Ok(Waited::TimedOut(_)) => job,
                        Err(e) => return Err(map_watch_error(&e, watch, &self.cluster)),
                    }
                }
                // Gone (or already another run's Job of that name, which the
                // create meets as a conflict, and makes room again).
                Ok(Waited::Met(_)) => return Ok(()),
                Ok(Waited::TimedOut(broken)) => {
                    return Err(RuntimeError::failed(format!(
                        "job {name} of another run in namespace {namespace} is still going after {}s{}",
                        limit.map_or(0, |l| l.as_secs()),
                        failing_watch(broken.as_ref(), watch, &self.cluster)
                    )));
                }
                Err(e) => return Err(map_watch_error(&e, watch, &self.cluster)),
            }
        };
        let del = Action::new("delete", ObjectKind::Job, name, namespace);
        self.delete_and_wait(jobs, &old, del).await
    }

    /// Create this run's Job (never taking over another run's of the same
    /// name, as an apply would), making room first.
    async fn create_job(
        &self,
        jobs: &Api<Job>,
        job: &Job,
        namespace: &str,
        limit: Option<Duration>,
        log: &bodywork_runtime::Log,
    ) -> Result<Job> {
        let name = job.metadata.name.as_deref().unwrap_or_default();
        let create = Action::new("create", ObjectKind::Job, name, namespace);
        let params = kube::api::PostParams {
            field_manager: Some(super::FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            self.make_room(jobs, name, namespace, limit, log).await?;
            match jobs.create(&params, job).await {
                Ok(created) => return Ok(created),
                Err(kube::Error::Api(status))
                    if status.code == 409 && attempt < CREATE_ATTEMPTS =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(self.err(&e, create)),
            }
        }
    }

    pub(super) async fn run_job(
        &self,
        run: StageRun<'_>,
        extra_env: &[(String, String)],
    ) -> Result<()> {
        let (ctx, stage, log, cancel) = run.parts();
        let image = self.image(ctx, log);
        let target = target_of(ctx);
        let mut job = manifests::job(&target, stage, &image, extra_env);
        let (ns, name) = (ctx.namespace.as_str(), stage.resource_name.as_str());
        let jobs: Api<Job> = self.ns(ns);
        let account = self.stages_account(ns).await?;
        manifests::run_stages_as(
            job.spec.as_mut().and_then(|s| s.template.spec.as_mut()),
            account,
        );
        let wait = self.waits.job(stage);
        let created = self.create_job(&jobs, &job, ns, wait, log).await?;
        // This Job's pods, by its uid: never those of an earlier Job of the
        // same name still going away.
        let pods_of_job = match created.metadata.uid.as_deref() {
            Some(uid) => format!("batch.kubernetes.io/controller-uid={uid}"),
            None => format!("job-name={name}"),
        };
        log.log(
            Level::Info,
            LOGGER,
            &format!("created job={name} in namespace={ns}"),
        );
        let logs = PodLogs::start(
            self.ns(ns),
            pods_of_job.clone(),
            Source::Single(name.to_string()),
            HashSet::new(),
            log.clone(),
        );
        // Each attempt is bounded in the pod; this wait only keeps a Job
        // that never gets anywhere (see `manifests::Waits`) from holding
        // the run for ever. MAX_COMPLETION_TIME_SECONDS = 0: no limit.
        let watch = Action::new("watch", ObjectKind::Job, name, ns);
        let finished = await_condition(jobs.clone(), name, is_job_finished(), wait);
        let failing = first_failing_pod(self.ns(ns), pods_of_job, HashSet::new());
        let finished = tokio::select! {
            r = finished => r,
            why = failing => {
                logs.finish(LOG_DRAIN).await;
                self.delete_opt(&jobs, name, Action::new("delete", ObjectKind::Job, name, ns)).await?;
                log.log(Level::Info, LOGGER, &format!("deleted job={name}"));
                return Err(RuntimeError::StageFailed { stage: stage.stage.clone(), reason: why });
            }
            _ = cancel.cancelled() => {
                logs.finish(Duration::ZERO).await;
                self.delete_opt(&jobs, name, Action::new("delete", ObjectKind::Job, name, ns)).await?;
                return Err(RuntimeError::Cancelled);
            }
        };
        logs.finish(LOG_DRAIN).await;
        let outcome = match finished {
            Ok(Waited::Met(Some(job))) if is_job_completed(&job) => Ok(()),
            Ok(Waited::Met(Some(job))) => Err(job_failure(&job).unwrap_or_else(|| "failed".into())),
            Ok(Waited::Met(None)) => Err("the Job was deleted before it finished".to_string()),
            Err(e) => return Err(map_watch_error(&e, watch, &self.cluster)),
            Ok(Waited::TimedOut(broken)) => Err(format!(
                "no result within {}s (every attempt at MAX_COMPLETION_TIME_SECONDS, plus {}s for \
                 the pod to pull, clone and install, plus {}s grace){}",
                wait.map_or(0, |w| w.as_secs()),
                self.waits.prepare.as_secs(),
                self.waits.grace.as_secs(),
                failing_watch(broken.as_ref(), watch, &self.cluster)
            )),
        };
        self.delete_opt(
            &jobs,
            name,
            Action::new("delete", ObjectKind::Job, name, ns),
        )
        .await?;
        log.log(Level::Info, LOGGER, &format!("deleted job={name}"));
        outcome.map_err(|reason| RuntimeError::StageFailed {
            stage: stage.stage.clone(),
            reason,
        })
    }
}
