//! Workflow runs inside the daemon: record the run before acting, drive the
//! workflow controller with the local runtime, write its log file and
//! stream it to the CLI that asked, and cancel it if that CLI goes away.

use std::fs::File;
use std::io::{LineWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bodywork_plan::WorkflowPlan;
use bodywork_runtime::{
    Level, Log, LogEvent, LogRenderer, LogSink, RunOutcome, RunState, RunSummary, RuntimeError,
};
use bodywork_source::{GIT_SSH_KEY_SECRET, GIT_SSH_KEY_VAR, KeyFile, SSH_KEY_SECRET, SSH_KEY_VAR};
use bodywork_stage::lines::{CappedLines, MAX_CUT_LINE};
use bodywork_state::{NewRun, RunRow, RunStatus};
use bodywork_workflow::{RunHooks, WorkflowError, WorkflowRequest, run_workflow as controller};
use tokio::io::BufReader;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use super::live::{CLIENT_QUEUE_MAX, LiveStream};
use super::{ActiveRun, Daemon};
use crate::logfiles::{RUN_LOG_MAX, RUN_LOG_RESERVE};
use crate::protocol::{
    Request, Response, WorkflowSubmission, read_request, write_error, write_frame,
};

/// A run's log: every event goes to the run's log file (plain text, Bodywork's
/// log lines, at most [`RUN_LOG_MAX`] bytes) and, while a CLI is attached, to
/// that CLI (bounded: see [`LiveStream`]).
pub(crate) struct RunLog {
    file: Mutex<RunLogFile>,
    client: Option<Arc<LiveStream>>,
}

/// A run's log file, kept within its limit: once the stages' output reaches
/// it (less a reserve for the run's own messages), one marker line says so
/// and further stage output is not stored; the run's own messages still
/// are, up to the limit itself.
struct RunLogFile {
    writer: LineWriter<File>,
    renderer: LogRenderer,
    written: u64,
    limit: u64,
    /// What stage output leaves of `limit` for the run's own messages.
    reserve: u64,
    full: bool,
}

impl RunLogFile {
    fn new(file: File, limit: u64, reserve: u64) -> RunLogFile {
        RunLogFile {
            writer: LineWriter::new(file),
            renderer: LogRenderer::default(),
            written: 0,
            limit,
            reserve,
            full: false,
        }
    }

    fn write_line(&mut self, line: &str) {
        if writeln!(self.writer, "{line}").is_ok() {
            self.written += line.len() as u64 + 1;
        }
    }

    fn write(&mut self, event: &LogEvent) {
        let stage = matches!(event, LogEvent::Stage { .. });
        let room = match stage {
            true => self.limit.saturating_sub(self.reserve),
            false => self.limit,
        };
        for line in self.renderer.render_plain(event) {
            if self.written + (line.len() as u64) < room {
                self.write_line(&line);
            } else if stage && !self.full {
                self.full = true;
                self.write_line(&run_log_full_marker(self.limit));
            }
        }
    }
}

/// The line that ends the stages' output in a run log that reached `limit`.
pub(crate) fn run_log_full_marker(limit: u64) -> String {
    format!(
        "[bodywork: this run's log reached its limit of {} MiB; further stage output is not kept]",
        limit >> 20
    )
}

impl RunLog {
    fn emit(&self, event: LogEvent) {
        if let Ok(mut file) = self.file.lock() {
            file.write(&event);
        }
        // A stage's output may be skipped for a slow client; the run's own
        // messages have more room.
        match (&self.client, &event) {
            (Some(client), LogEvent::Stage { .. }) => client.offer(&Response::Event(event)),
            (Some(client), _) => client.message(&Response::Event(event)),
            (None, _) => {}
        }
    }
}

impl LogSink for RunLog {
    fn log(&self, level: Level, logger: &str, message: &str) {
        self.emit(LogEvent::log(level, logger, message));
    }

    fn stage_line(&self, source: &str, line: &str) {
        self.emit(LogEvent::Stage {
            source: source.to_string(),
            line: line.to_string(),
        });
    }
}

/// How a finished run ended, as the interface says it. A run still marked
/// running when it returns cannot happen; it reads as failed.
fn outcome(status: RunStatus) -> RunOutcome {
    match status {
        RunStatus::Succeeded => RunOutcome::Succeeded,
        RunStatus::Cancelled => RunOutcome::Cancelled,
        RunStatus::Failed | RunStatus::Running => RunOutcome::Failed,
    }
}

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
        trigger: r.trigger,
        status: match r.status {
            RunStatus::Running => RunState::Running,
            RunStatus::Succeeded => RunState::Succeeded,
            RunStatus::Failed => RunState::Failed,
            RunStatus::Cancelled => RunState::Cancelled,
        },
        error: r.error,
        started: crate::time::display(&r.started),
        finished: r.finished.as_ref().map(crate::time::display),
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
        _checkout: &bodywork_workflow::Checkout,
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
/// register it as active. `trigger` says who started it (`cli`, `cron:NAME`).
pub(crate) fn prepare_run(
    daemon: &Daemon,
    submission: &WorkflowSubmission,
    trigger: &str,
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
                .with_store(|s| s.finish_run(id, RunStatus::Failed, Some(&message)));
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
) -> (RunStatus, Option<String>) {
    let PreparedRun { id, cancel, file } = run;
    let log: Log = Arc::new(RunLog {
        file: Mutex::new(RunLogFile::new(file, RUN_LOG_MAX, RUN_LOG_RESERVE)),
        client,
    });
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
    let request = WorkflowRequest {
        run_id: id.to_string(),
        repo: submission.repo,
        branch: submission.branch,
        namespace: submission.namespace,
        ssh_key: submission
            .ssh_key
            .or_else(|| namespace_key.as_ref().map(|k| k.path().to_path_buf())),
        secrets_group: submission.secrets_group,
        known_hosts: Some(daemon.home().known_hosts()),
        checkout_dir: daemon.home().checkout(id),
        resolve_as_of: submission.resolve_as_of,
        python: submission.python,
        no_python_downloads: submission.no_python_downloads,
    };
    let hooks = Hooks { daemon, run: id };
    let result = controller(&daemon.runtime, &request, &hooks, &log, &cancel).await;
    let (status, error) = match &result {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(WorkflowError::Cancelled) => {
            log.log(
                Level::Warning,
                "workflow",
                "run cancelled; every stage process was stopped",
            );
            (RunStatus::Cancelled, Some("cancelled".to_string()))
        }
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
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
        let _ = std::fs::remove_dir_all(&request.checkout_dir);
    }
    if let Ok(mut runs) = daemon.runs.lock() {
        runs.remove(&id);
    }
    (status, error)
}

/// A workflow run asked for by a CLI: stream its log to that CLI, and
/// cancel it when the CLI says so or goes away (Ctrl-C).
pub(super) async fn run_for_client(
    daemon: Arc<Daemon>,
    submission: WorkflowSubmission,
    mut read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
) {
    let prepared = match prepare_run(&daemon, &submission, "cli") {
        Ok(p) => p,
        Err(message) => {
            write_error(&mut write, RuntimeError::Failed(message)).await;
            return;
        }
    };
    let id = prepared.id;
    // Everything for the client goes through one bounded stream, so frames
    // keep their order and a slow client holds nothing up.
    let hint = {
        let (daemon, given) = (daemon.clone(), submission.namespace.clone());
        Box::new(move || {
            // The project may name the namespace: known once it is planned.
            let planned = daemon.runs.lock().ok().and_then(|runs| {
                let (namespace, _) = runs.get(&id)?.key.clone()?;
                Some(namespace)
            });
            let namespace = planned.or(given.clone()).unwrap_or("NAMESPACE".into());
            format!("`bodywork logs --namespace {namespace} {id}`")
        })
    };
    let live = Arc::new(LiveStream::new(CLIENT_QUEUE_MAX, hint));
    live.send(&Response::RunStarted { run: id });
    let writer = {
        let live = live.clone();
        tokio::spawn(async move { live.write_to(&mut write).await })
    };
    let watcher = {
        let cancel = prepared.cancel.clone();
        tokio::spawn(async move {
            match read_request(&mut read).await {
                Ok(Some(Request::Cancel)) | Ok(None) | Err(_) => cancel.cancel(),
                Ok(Some(_)) => {}
            }
        })
    };
    let (status, _) = execute_run(&daemon, prepared, submission, Some(live.clone())).await;
    live.send(&Response::RunFinished {
        run: id,
        outcome: outcome(status),
    });
    live.send(&Response::End);
    watcher.abort();
    let _ = writer.await;
}

/// A detached run: recorded and started now, driven (and retried after a
/// back-off while it fails, up to `retries` times) in the background, with
/// nobody attached. Answers with the name `get deployment --async --logs`
/// takes: the user's, else the first run's number.
pub(super) fn start_detached(
    daemon: Arc<Daemon>,
    submission: WorkflowSubmission,
    name: Option<String>,
    retries: u32,
) -> Response {
    let trigger = bodywork_runtime::detached_trigger(name.as_deref());
    let first = match prepare_run(&daemon, &submission, &trigger) {
        Ok(p) => p,
        Err(message) => return Response::Error(RuntimeError::Failed(message)),
    };
    let started = name.unwrap_or_else(|| bodywork_runtime::unnamed_detached_name(first.id));
    tokio::spawn(async move {
        let mut run = first;
        for retry in 1..=retries + 1 {
            let (status, _) = execute_run(&daemon, run, submission.clone(), None).await;
            if status != RunStatus::Failed || retry > retries || daemon.shutdown.is_cancelled() {
                return;
            }
            let (_, base) = crate::cron::tick_and_back_off();
            tokio::select! {
                _ = tokio::time::sleep(crate::cron::retry_delay(retry, base)) => {}
                _ = daemon.shutdown.cancelled() => return,
            }
            run = match prepare_run(&daemon, &submission, &trigger) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(target: "daemon", "cannot retry a detached run: {e}");
                    return;
                }
            };
        }
    });
    Response::Started { name: started }
}

/// Forget detached run `name`: every attempt, and their logs; refused
/// while one is running.
pub(crate) fn delete_detached(daemon: &Daemon, name: &str) -> Result<(), RuntimeError> {
    let rows = daemon
        .runtime
        .with_store(|s| s.list_runs(None, usize::MAX))?;
    let runs: Vec<RunRow> = rows
        .into_iter()
        .filter(|r| {
            let shown = summary(r.clone());
            bodywork_runtime::is_detached(&shown) && bodywork_runtime::detached_name(&shown) == name
        })
        .collect();
    if runs.is_empty() {
        return Err(RuntimeError::NotFound {
            kind: "run",
            name: name.to_string(),
            namespace: String::new(),
        });
    }
    if let Some(r) = runs.iter().find(|r| r.status == RunStatus::Running) {
        return Err(RuntimeError::Conflict(format!(
            "deployment job {name} is running (run {}); wait for it to finish, then try again",
            r.id
        )));
    }
    let mut removed = Vec::new();
    for r in &runs {
        removed.extend(daemon.runtime.with_store(|s| s.delete_run(r.id))?);
    }
    daemon.home().remove_run_logs(&removed);
    Ok(())
}

/// Send a run's log; with `follow`, keep sending new lines until the run ends.
pub(crate) async fn stream_logs(
    daemon: &Daemon,
    namespace: &str,
    run: i64,
    follow: bool,
    write: &mut OwnedWriteHalf,
) {
    let row = match daemon.runtime.with_store(|s| s.get_run(run)) {
        Ok(Some(row)) if row.namespace == namespace => row,
        Ok(_) => {
            let message = format!(
                "no workflow run {run} in namespace {namespace} (see `bodywork runs --namespace {namespace}`)"
            );
            write_error(write, RuntimeError::Failed(message)).await;
            return;
        }
        Err(e) => {
            write_error(write, e).await;
            return;
        }
    };
    let path = daemon.home().run_log(row.id);
    let mut reader = match File::open(&path) {
        Ok(f) => std::io::BufReader::new(f),
        Err(e) => {
            let message = format!(
                "the log of run {run} is not available ({}: {e})",
                path.display()
            );
            write_error(write, RuntimeError::Failed(message)).await;
            return;
        }
    };
    // Lines are capped as they are read, whatever the file holds (a line
    // the daemon cut is stored with its marker, and passes as it is).
    let mut lines = CappedLines::new(MAX_CUT_LINE);
    loop {
        match lines.next_sync(&mut reader) {
            Ok(Some(line)) => {
                if write_frame(write, &Response::LogLine { line })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Ok(None) => {
                let active = daemon
                    .runs
                    .lock()
                    .map(|r| r.contains_key(&run))
                    .unwrap_or(false);
                if !follow || !active {
                    if let Some(line) = lines.take_partial() {
                        let _ = write_frame(write, &Response::LogLine { line }).await;
                    }
                    break;
                }
                // The end so far (perhaps a partial last line): wait for more.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => break,
        }
    }
    let _ = write_frame(write, &Response::End).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_log_keeps_within_its_limit_with_a_marker_and_the_runs_own_messages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("1.log");
        let mut log = RunLogFile::new(File::create(&path).unwrap(), 2000, 500);
        log.write(&LogEvent::log(Level::Info, "workflow", "starting"));
        for n in 0..100 {
            log.write(&LogEvent::Stage {
                source: "p--s".into(),
                line: format!("{n:03} {}", "o".repeat(95)),
            });
        }
        log.write(&LogEvent::log(Level::Info, "workflow", "run succeeded"));
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 2000, "{} bytes", text.len());
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("starting"), "{lines:?}");
        assert_eq!(lines[1], "---- pod logs for p--s");
        assert!(lines[2].starts_with("000 o"), "{lines:?}");
        let marker = run_log_full_marker(2000);
        assert_eq!(lines.iter().filter(|l| **l == marker).count(), 1);
        let at = lines.iter().position(|l| *l == marker).unwrap();
        // Up to 1500 bytes (the limit less the reserve): the first message
        // (52 bytes), the header (23) and 14 lines of 100.
        assert_eq!(at, 2 + 14);
        assert!(lines[at + 1].ends_with("run succeeded"), "{lines:?}");
        assert_eq!(lines.len(), at + 2);
    }
}
