//! Workflow runs inside the daemon: record the run before acting, drive the
//! workflow controller with the local runtime, and record how it ended.
//!
//! Owns what every run shares: preparing and executing a run, the hooks
//! that refuse a clashing run, the namespace's deploy key, and a stored run
//! as `bodywork runs` lists it. How a run's log is written is in [`sink`];
//! runs a CLI is attached to in [`attached`]; detached runs in
//! [`detached`]; sending a stored run's log in [`streaming`].

use std::fs::File;
use std::sync::Arc;

use bodywork_plan::WorkflowPlan;
use bodywork_runtime::{Level, Log, RunState, RunSummary, RunTrigger};
use bodywork_source::{GIT_SSH_KEY_SECRET, GIT_SSH_KEY_VAR, KeyFile, SSH_KEY_SECRET, SSH_KEY_VAR};
use bodywork_state::{NewRun, RunRow};
use bodywork_workflow::{RunHooks, WorkflowError, WorkflowRequest, run_workflow as controller};

use super::live::LiveStream;
use super::{ActiveRun, Daemon};
use bodywork_runtime::WorkflowSubmission;
use sink::RunLog;

pub(super) mod attached;
pub(super) mod detached;
mod sink;
pub(super) mod streaming;

/// The deploy key kept in `namespace`'s `ssh-github-private-key` secret
/// (else in Bodywork 3's `ssh-git-private-key`), written to a private file
/// for this run (removed with it).
fn namespace_ssh_key(daemon: &Daemon, namespace: &str, log: &Log) -> Option<KeyFile> {
    let (secret, key) = [
        (SSH_KEY_SECRET, SSH_KEY_VAR),
        (GIT_SSH_KEY_SECRET, GIT_SSH_KEY_VAR),
    ]
    .into_iter()
    .find_map(|(secret, var)| {
        let found = daemon
            .runtime
            .with_store(|s| s.get_secret(namespace, secret))
            .ok()??;
        Some((secret, found.data.get(var)?.clone()))
    })?;
    match KeyFile::write(&daemon.home().root().join("tmp"), &key) {
        Ok(file) => {
            log.log(
                Level::Info,
                "workflow",
                &format!("fetching with the SSH key of secret={secret} in namespace={namespace}"),
            );
            Some(file)
        }
        Err(e) => {
            log.log(
                Level::Warning,
                "workflow",
                &format!("cannot use the SSH key of secret={secret}: {e}"),
            );
            None
        }
    }
}

/// A stored run as `bodywork runs` lists it.
pub(crate) fn summary(r: RunRow) -> RunSummary {
    RunSummary {
        id: r.id,
        namespace: r.namespace,
        project: r.project,
        // Shown, so credentials in the URL are not.
        repo: bodywork_source::redact_url(&r.repo),
        branch: r.branch,
        commit: r.commit,
        trigger: RunTrigger::from(r.trigger),
        status: r.status,
        error: r.error,
        started: Some(r.started),
        finished: r.finished,
        options: r.options,
    }
}

/// Refuses a second run of the same project in the same namespace, and
/// records the project and commit of the run as soon as they are known.
struct Hooks<'a> {
    daemon: &'a Daemon,
    run: i64,
}

impl RunHooks for Hooks<'_> {
    fn planned(
        &self,
        plan: &WorkflowPlan,
        _checkout: &bodywork_source::Checkout,
    ) -> Result<(), String> {
        // Limits of this runtime, before anything is changed.
        for stage in plan.stages() {
            crate::services::check_replicas(stage).map_err(|e| e.to_string())?;
        }
        let key = (plan.namespace.clone(), plan.project.clone());
        {
            let mut runs = self
                .daemon
                .runs
                .lock()
                .map_err(|_| "internal: run table unusable".to_string())?;
            if let Some((other, _)) = runs
                .iter()
                .find(|(id, r)| **id != self.run && r.key.as_ref() == Some(&key))
            {
                return Err(format!(
                    "a workflow of project {} is already running in namespace {} (run {other}); \
                     wait for it to finish, or cancel it (Ctrl-C where it was started), then try again",
                    plan.project, plan.namespace
                ));
            }
            // One namespace holds one repository's services: a run from
            // another repository deploying services there now claims it
            // (checked and claimed under one lock, so two first deploys
            // cannot both pass; batch-only runs claim nothing).
            let repo =
                (!plan.service_names().is_empty()).then(|| bodywork_source::redact_url(&plan.repo));
            if let Some(repo) = &repo
                && let Some((other, r)) = runs.iter().find(|(id, r)| {
                    **id != self.run
                        && r.key.as_ref().is_some_and(|(ns, _)| *ns == plan.namespace)
                        && r.repo.as_ref().is_some_and(|other| other != repo)
                })
            {
                return Err(format!(
                    "namespace {} is being deployed by run {other} of project {} from {}; one \
                     namespace holds one repository's services: deploy {} into another \
                     namespace, or wait for that run",
                    plan.namespace,
                    r.key.as_ref().map_or("", |(_, p)| p.as_str()),
                    r.repo.as_deref().unwrap_or_default(),
                    plan.project
                ));
            }
            if let Some(me) = runs.get_mut(&self.run) {
                me.key = Some(key);
                me.repo = repo;
            }
        }
        self.daemon
            .runtime
            .with_store(|s| {
                s.set_run_project(self.run, &plan.namespace, &plan.project, Some(&plan.commit))
            })
            .map_err(|e| e.to_string())
    }
}

/// A run that is recorded in the state and has its log file: ready to go.
pub(crate) struct PreparedRun {
    pub id: i64,
    pub cancel: bodywork_runtime::CancellationToken,
    file: File,
}

/// Record a run before anything is done for it ("write before acting") and
/// register it as active; `trigger` says what started it.
pub(crate) fn prepare_run(
    daemon: &Daemon,
    submission: &WorkflowSubmission,
    trigger: &RunTrigger,
) -> Result<PreparedRun, String> {
    let home = daemon.home();
    let new_run = NewRun {
        namespace: submission.namespace.clone().unwrap_or_default(),
        project: None,
        // Kept as shown, credentials and tokens redacted: a run's row is
        // history, never fetched from (a retry or a cron job's next run
        // fetches with its own submission).
        repo: bodywork_source::redact_url(&submission.repo),
        branch: submission.branch.clone(),
        commit: None,
        trigger: trigger.to_string(),
        // Replaced below once the run has its number.
        log_path: home.root().join("logs").join("runs").join("pending.log"),
        options: bodywork_runtime::RunOptions::of(submission),
    };
    let id = daemon
        .runtime
        .with_store(|s| s.insert_run(&new_run))
        .map_err(|e| e.to_string())?;
    let log_path = home.run_log(id);
    let _ = daemon
        .runtime
        .with_store(|s| s.set_run_log_path(id, &log_path));
    let file = match File::create(&log_path) {
        Ok(f) => f,
        Err(e) => {
            let message = format!("cannot create the run log {}: {e}", log_path.display());
            let _ = daemon
                .runtime
                .with_store(|s| s.finish_run(id, RunState::Failed, Some(&message)));
            return Err(message);
        }
    };
    let cancel = daemon.shutdown.child_token();
    if let Ok(mut runs) = daemon.runs.lock() {
        runs.insert(
            id,
            ActiveRun {
                cancel: cancel.clone(),
                key: None,
                repo: None,
            },
        );
    }
    Ok(PreparedRun { id, cancel, file })
}

/// Drive a prepared run to its end with the workflow controller, record how
/// it ended, and forget it as active. Log events also go to `client`.
pub(crate) async fn execute_run(
    daemon: &Daemon,
    run: PreparedRun,
    submission: WorkflowSubmission,
    client: Option<Arc<LiveStream>>,
) -> (RunState, Option<String>) {
    let PreparedRun { id, cancel, file } = run;
    let log: Log = Arc::new(RunLog::new(file, client));
    // No `--ssh` key for an ssh URL: the namespace's deploy key, as on
    // Kubernetes (the secret `ssh-github-private-key`), held for the run.
    let namespace_key = match (&submission.ssh_key, &submission.namespace) {
        (None, Some(ns))
            if bodywork_source::Source::parse(&submission.repo).is_ok_and(|s| s.uses_ssh()) =>
        {
            namespace_ssh_key(daemon, ns, &log)
        }
        _ => None,
    };
    let ssh_key = submission
        .ssh_key
        .or_else(|| namespace_key.as_ref().map(|k| k.path().to_path_buf()));
    let request = WorkflowRequest {
        run_id: id.to_string(),
        submission: WorkflowSubmission {
            ssh_key,
            ..submission
        },
        known_hosts: Some(daemon.home().known_hosts()),
        checkout_dir: daemon.home().checkout(id),
    };
    let hooks = Hooks { daemon, run: id };
    let result = controller(&daemon.runtime, &request, &hooks, &log, &cancel).await;
    let (status, error) = match &result {
        Ok(_) => (RunState::Succeeded, None),
        Err(WorkflowError::Cancelled) => {
            log.log(
                Level::Warning,
                "workflow",
                "run cancelled; every stage process was stopped",
            );
            (RunState::Cancelled, Some("cancelled".to_string()))
        }
        Err(e) => (RunState::Failed, Some(e.to_string())),
    };
    if let Err(e) = daemon
        .runtime
        .with_store(|s| s.finish_run(id, status, error.as_deref()))
    {
        tracing::error!(target: "daemon", "cannot record the end of run {id}: {e}");
    }
    // Batch-only runs leave nothing behind; a run that deployed services
    // keeps its checkout, which the services run from.
    let deployed_services = result
        .as_ref()
        .is_ok_and(|r| !r.plan.service_names().is_empty());
    if !deployed_services {
        // Off this task: the run's last frames go to its CLI without
        // waiting for a whole tree to be deleted.
        let dir = request.checkout_dir;
        drop(tokio::task::spawn_blocking(move || {
            std::fs::remove_dir_all(dir)
        }));
    }
    if let Ok(mut runs) = daemon.runs.lock() {
        runs.remove(&id);
    }
    (status, error)
}
