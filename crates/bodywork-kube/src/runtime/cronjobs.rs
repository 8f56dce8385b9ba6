//! Cron jobs on the cluster: create, delete, trigger a run now, list them
//! and the history of their runs, as `cronjob` commands show them.
//!
//! Owns: [`CronJobStatus`] and [`CronRun`] and the calls beyond the
//! `Runtime` trait that the CLI's `cronjob` commands make. Must not: build
//! the CronJob manifest (`manifests` does).

use bodywork_runtime::{Result, RuntimeError};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::ResourceExt;
use kube::api::{ListParams, PostParams};
use serde::Serialize;

use super::{KubeRuntime, annotation, deleted, managed, time};
use crate::errors::Action;
use crate::manifests::{self, CRONJOB_LABEL, CronJobRequest, REPO_ANNOTATION};
use crate::wait::{is_job_completed, job_failure};

impl KubeRuntime {
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
/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
