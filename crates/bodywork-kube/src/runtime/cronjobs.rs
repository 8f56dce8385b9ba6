//! Cron jobs on the cluster: create, delete, trigger a run now, list them
//! and the history of their runs, as `cronjob` commands show them; and
//! detached runs, Jobs of the same shape.
//!
//! Owns: the calls the CLI's `cronjob` commands make, answered with the
//! records the local runtime gives (`CronJobSummary`, `CronRunSummary`). Must not: build
//! the CronJob manifest (`manifests` does).

use bodywork_config::schedule::{Schedule, seconds_allowed};
use bodywork_runtime::groups::GROUPS_NAMESPACE;
use bodywork_runtime::{
    CronJobSpec, CronJobSummary, CronRunKind, CronRunSummary, ObjectKind, Resources, Result,
    RunState, RunSummary, RunTrigger, RuntimeError, TRY_AGAIN, WorkflowSubmission,
};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};

use super::{KubeRuntime, annotation, deleted, managed, time};
use crate::errors::Action;
use crate::manifests::{self, CRONJOB_LABEL, REPO_ANNOTATION};
use crate::wait::{is_job_completed, job_failure};

impl KubeRuntime {
    /// Create or update a cron job whose workflows run in `image`
    /// (bodywork's own by default).
    pub async fn apply_cronjob(&self, spec: &CronJobSpec, image: Option<&str>) -> Result<()> {
        if let Some(why) = manifests::run_name_problem("cron job", &spec.name) {
            return Err(RuntimeError::failed(why));
        }
        // Its runs may copy a secrets group (`--group`, or the project's):
        // their controller reads the groups where they are kept.
        if !self.namespace_exists(GROUPS_NAMESPACE).await? {
            self.setup_namespace(GROUPS_NAMESPACE).await?;
        }
        self.apply_manifests(&manifests::groups_reader_manifests(&spec.namespace))
            .await?;
        self.apply_manifest(&manifests::cronjob_manifest(spec, image))
            .await
    }

    /// Change a cron job in place (`NotFound` when there is none): its
    /// CronJob is applied again, so the Jobs it owns, its history, stay and
    /// a Job running carries on.
    pub async fn update_cronjob(&self, spec: &CronJobSpec, image: Option<&str>) -> Result<()> {
        self.get_cronjob(&spec.namespace, &spec.name).await?;
        self.apply_cronjob(spec, image).await
    }

    /// A cron job, or `NotFound`.
    async fn get_cronjob(&self, namespace: &str, name: &str) -> Result<CronJob> {
        let get = Action::new("get", ObjectKind::CronJob, name, namespace);
        self.ns::<CronJob>(namespace)
            .get_opt(name)
            .await
            .map_err(|e| self.err(&e, get))?
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::CronJob,
                name: name.into(),
                namespace: namespace.into(),
            })
    }

    /// Delete a cron job (its runs go with it).
    pub async fn delete_cronjob(&self, namespace: &str, name: &str) -> Result<()> {
        let action = Action::new("delete", ObjectKind::CronJob, name, namespace);
        let found = self
            .delete_opt(&self.ns::<CronJob>(namespace), name, action)
            .await?;
        deleted(found, ObjectKind::CronJob, name, namespace)
    }

    /// Start one run of a cron job now (`cronjob trigger`): a Job from its
    /// template, as `kubectl create job --from=cronjob/NAME` does. Refused
    /// while a run of it is active (the cron job forbids overlapping runs).
    /// Returns the Job's name.
    pub async fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<String> {
        let cronjob = self.get_cronjob(namespace, name).await?;
        let active: Vec<String> = cronjob
            .status
            .as_ref()
            .and_then(|s| s.active.as_ref())
            .map(|a| a.iter().filter_map(|r| r.name.clone()).collect())
            .unwrap_or_default();
        if !active.is_empty() {
            return Err(RuntimeError::conflict(format!(
                "cron job {name} in namespace {namespace} has a run going ({})",
                active.join(", ")
            ))
            .with_hint(TRY_AGAIN));
        }
        let suffix = unix_seconds().to_string();
        let job = manifests::manual_job(&cronjob, &suffix).ok_or_else(|| {
            RuntimeError::failed(format!(
                "cron job {name} in namespace {namespace} has no spec"
            ))
        })?;
        let job_name = job.name_any();
        let create = Action::new("create", ObjectKind::Job, &job_name, namespace);
        self.ns::<Job>(namespace)
            .create(&PostParams::default(), &job)
            .await
            .map_err(|e| self.err(&e, create))?;
        Ok(job_name)
    }

    /// The cron jobs bodywork created in a namespace, as `cronjob display`
    /// shows them (the same record as the local runtime's).
    pub async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobSummary>> {
        let list = self
            .ns::<CronJob>(namespace)
            .list(&managed())
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::CronJob, "", namespace)))?;
        let mut jobs = Vec::with_capacity(list.items.len());
        for c in &list.items {
            let name = c.name_any();
            // The newest run's outcome, as the local runtime shows it.
            let newest = self.cronjob_history(namespace, &name).await?;
            jobs.push(summary(namespace, c, newest.first()));
        }
        Ok(jobs)
    }

    /// Runs (Jobs) of a cron job, newest first, in the columns of a
    /// Kubernetes Job (`JOB_NAME`, active / succeeded / failed).
    pub async fn cronjob_history(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Vec<CronRunSummary>> {
        let list = self
            .ns::<Job>(namespace)
            .list(&ListParams::default().labels(&format!("{CRONJOB_LABEL}={name}")))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Job, "", namespace)))?;
        let mut jobs: Vec<&Job> = list.items.iter().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.creation_timestamp()));
        Ok(jobs.into_iter().map(|j| history_row(name, j)).collect())
    }
}

/// A CronJob as `cronjob display` shows it; `newest` is its newest run.
fn summary(namespace: &str, c: &CronJob, newest: Option<&CronRunSummary>) -> CronJobSummary {
    let spec = c.spec.as_ref();
    let status = c.status.as_ref();
    let schedule = spec.map(|s| s.schedule.clone()).unwrap_or_default();
    let timezone = spec.and_then(|s| s.time_zone.clone());
    let next_run = Schedule::parse(&schedule, timezone.as_deref(), seconds_allowed())
        .ok()
        .and_then(|s| s.next_after(chrono::Utc::now()));
    let active = status.and_then(|s| s.active.as_ref()).map_or(0, Vec::len);
    let job_spec = spec.and_then(|s| s.job_template.spec.as_ref());
    let outcome = newest.map(|r| {
        if r.succeeded > 0 {
            RunState::Succeeded
        } else if r.failed > 0 {
            RunState::Failed
        } else {
            RunState::Running
        }
    });
    CronJobSummary {
        namespace: namespace.to_string(),
        name: c.name_any(),
        schedule,
        timezone: timezone.unwrap_or_else(|| "UTC".into()),
        repo: annotation(c, REPO_ANNOTATION).unwrap_or_default(),
        branch: annotation(c, manifests::BRANCH_ANNOTATION).filter(|b| b != "HEAD"),
        retries: job_spec
            .and_then(|s| s.backoff_limit)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        history_limit: spec
            .and_then(|s| s.successful_jobs_history_limit)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0),
        secrets_group: manifests::cronjob_group(c),
        resolve_as_of: manifests::cronjob_resolve_as_of(c),
        python: manifests::cronjob_python(c),
        created: c.metadata.creation_timestamp.as_ref().and_then(time),
        last_run: status
            .and_then(|s| s.last_schedule_time.as_ref())
            .and_then(time),
        next_run,
        status: if active > 0 {
            Some(RunState::Running)
        } else {
            outcome
        },
        retry_at: None,
    }
}

/// One run (a Job) of cron job `cron_job`, as `cronjob history` shows it.
fn history_row(cron_job: &str, j: &Job) -> CronRunSummary {
    let status = j.status.as_ref();
    let manual = j
        .annotations()
        .get("cronjob.kubernetes.io/instantiate")
        .is_some_and(|v| v == "manual");
    let (succeeded, failed) = (is_job_completed(j), job_failure(j).is_some());
    let created = j.creation_timestamp().as_ref().and_then(time);
    let start_time = status.and_then(|s| s.start_time.as_ref()).and_then(time);
    CronRunSummary {
        job_name: Some(j.name_any()),
        cron_job: cron_job.to_string(),
        run: None,
        scheduled: created.or(start_time),
        kind: if manual {
            CronRunKind::Manual
        } else {
            CronRunKind::Scheduled
        },
        attempt: 1,
        skipped: false,
        skipped_for: None,
        start_time,
        completion_time: status
            .and_then(|s| s.completion_time.as_ref())
            .and_then(time),
        active: u32::from(!succeeded && !failed),
        succeeded: u32::from(succeeded),
        failed: u32::from(failed),
    }
}

impl KubeRuntime {
    /// A detached run: a Job in Bodywork's own namespace (set up the first
    /// time) running the workflow in the cluster; returns its name.
    pub async fn start_detached(
        &self,
        submission: &WorkflowSubmission,
        name: Option<&str>,
        retries: u32,
        image: Option<&str>,
        stage_image: Option<&str>,
    ) -> Result<String> {
        let namespace = GROUPS_NAMESPACE;
        if !self.namespace_exists(namespace).await? {
            self.setup_namespace(namespace).await?;
        }
        // A cluster set up by an earlier version has no such permissions.
        self.apply_manifests(&manifests::detached_controller_manifests())
            .await?;
        if let Some(why) = name.and_then(|n| manifests::run_name_problem("deployment job", n)) {
            return Err(RuntimeError::failed(why));
        }
        // Bodywork's own form, `async-workflow-SECONDS`; a second run started
        // in the same second gets `-2`, `-3`, ... rather than a conflict.
        let given = name.map(String::from);
        let base = bodywork_runtime::unnamed_detached_name(unix_seconds());
        let jobs = self.ns::<Job>(namespace);
        for n in 1..=20u32 {
            let name = match (&given, n) {
                (Some(given), _) => given.clone(),
                (None, 1) => base.clone(),
                (None, n) => format!("{base}-{n}"),
            };
            let job = manifests::detached_job(&name, submission, retries, image, stage_image);
            let create = Action::new("create", ObjectKind::Job, &name, namespace);
            match jobs.create(&PostParams::default(), &job).await {
                Ok(_) => return Ok(name),
                Err(kube::Error::Api(status)) if status.code == 409 && given.is_none() => {}
                Err(e) => return Err(self.err(&e, create)),
            }
        }
        Err(
            RuntimeError::conflict(format!("20 detached runs named {base}[-N] exist already"))
                .with_hint("try again"),
        )
    }

    /// Delete a detached run's Job (and its pods); refused while it runs.
    pub async fn delete_detached(&self, name: &str) -> Result<()> {
        let namespace = GROUPS_NAMESPACE;
        let run = self
            .detached_runs()
            .await?
            .into_iter()
            .find(|r| bodywork_runtime::detached_name(r) == name)
            .ok_or_else(|| RuntimeError::NotFound {
                kind: ObjectKind::Run,
                name: name.to_string(),
                namespace: namespace.to_string(),
            })?;
        if run.status == RunState::Running {
            return Err(
                RuntimeError::conflict(format!("deployment job {name} is running"))
                    .with_hint(TRY_AGAIN),
            );
        }
        let action = Action::new("delete", ObjectKind::Job, name, namespace);
        let found = self
            .delete_opt(&self.ns::<Job>(namespace), name, action)
            .await?;
        deleted(found, ObjectKind::Run, name, namespace)
    }

    /// The detached runs' Jobs, newest first, as runs.
    pub async fn detached_runs(&self) -> Result<Vec<RunSummary>> {
        let namespace = GROUPS_NAMESPACE;
        if !self.namespace_exists(namespace).await? {
            return Ok(Vec::new());
        }
        let list = self
            .ns::<Job>(namespace)
            .list(&ListParams::default().labels(manifests::DETACHED_LABEL))
            .await
            .map_err(|e| self.err(&e, Action::new("list", ObjectKind::Job, "", namespace)))?;
        let mut jobs: Vec<&Job> = list.items.iter().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.creation_timestamp()));
        Ok(jobs
            .into_iter()
            .map(|j| detached_row(namespace, j))
            .collect())
    }
}

/// A detached run's Job as a run.
fn detached_row(namespace: &str, j: &Job) -> RunSummary {
    let annotation = |key: &str| j.annotations().get(key).cloned();
    let status = j.status.as_ref();
    let state = if is_job_completed(j) {
        RunState::Succeeded
    } else if job_failure(j).is_some() {
        RunState::Failed
    } else {
        RunState::Running
    };
    RunSummary {
        id: 0,
        namespace: namespace.to_string(),
        project: None,
        repo: annotation(manifests::REPO_ANNOTATION).unwrap_or_default(),
        branch: annotation(manifests::BRANCH_ANNOTATION),
        commit: None,
        trigger: RunTrigger::Detached(Some(j.name_any())),
        status: state,
        error: job_failure(j),
        started: status
            .and_then(|s| s.start_time.as_ref())
            .or(j.creation_timestamp().as_ref())
            .and_then(time),
        finished: status
            .and_then(|s| s.completion_time.as_ref())
            .and_then(time),
        options: bodywork_runtime::RunOptions::default(),
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
