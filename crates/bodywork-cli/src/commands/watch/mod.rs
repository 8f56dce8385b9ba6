//! `workflow --watch DIR` (and Bodywork 3's `create deployment DIR
//! --watch`): deploy as `workflow` does, then watch the project's files
//! until Ctrl-C. A burst of saves is one change: the project is loaded
//! again (an invalid one is reported, and nothing changed), and the part of
//! the workflow the change touches runs again (`bodywork_plan::watch`): a
//! service rolls out with the runtime's rolling update, a batch stage runs
//! with the steps after it. A save while a run is going cancels it and
//! starts again. Ctrl-C leaves the last good version serving.
//!
//! The local runtime only: a cluster runs the commit it fetches, not the
//! files here.

mod debounce;
mod files;

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bodywork_config::{LoadOptions, Project, load_project};
use bodywork_plan::watch::{Rerun, rerun};
use bodywork_plan::{RunFacts, WorkflowPlan, plan_workflow};
use bodywork_runtime::{
    CancellationToken, ControlPlane, Level, Log, LogEvent, LogSink, RunState, RunTrigger,
    ServiceStatus, Watcher, WorkflowRun, WorkflowSubmission,
};
use bodywork_source::Source;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::connect::with_control;
use crate::cli::{GlobalArgs, RuntimeKind};
use crate::output::TerminalLog;
use crate::output::color::Style;
use crate::output::watch::{self as words, Change, Ended, Failed, Replicas};
use crate::{CliError, CliResult, Outcome};
use debounce::{Burst, Debounce};
use files::{Filter, Saved, Watch};

/// How many of a new replica's last lines a failed start shows.
const LAST_LINES: usize = 8;

/// `--watch` with what it cannot work with, refused before anything runs.
pub fn usable(global: &GlobalArgs, repo: &str, dry_run: bool) -> Result<(), CliError> {
    if dry_run {
        return Err(CliError::usage(
            "--watch deploys and keeps deploying; --dry-run deploys nothing",
        )
        .with_hint("drop one of them"));
    }
    if global.runtime == RuntimeKind::Kubernetes {
        return Err(CliError::usage(
            "--watch belongs to the local runtime: a cluster runs the commit it fetches, not the files on this machine",
        )
        .with_hint("drop --runtime kubernetes to watch here, or commit, push and run the workflow again"));
    }
    if let Ok(Source::Git(url)) = Source::parse(repo) {
        return Err(CliError::usage(format!(
            "--watch needs a local directory; {} is a Git URL",
            bodywork_source::redact_url(&url)
        ))
        .with_hint("clone it, and watch the clone's directory"));
    }
    Ok(())
}

/// `--watch` with `--async`.
pub fn not_detached() -> CliError {
    CliError::usage("--watch follows the deploy here; --async hands it to the control plane")
        .with_hint("drop one of them")
}

/// Deploy `submission` (a local directory), then every change of it.
pub fn run(global: &GlobalArgs, submission: WorkflowSubmission) -> CliResult {
    // The services' zygotes, which fork the replicas of their next rolls,
    // live as long as this process does.
    let pid = std::process::id();
    let submission = WorkflowSubmission {
        watcher: Some(Watcher {
            pid,
            start_time: bodywork_stage::process::start_time(pid),
        }),
        ..submission
    };
    let root = PathBuf::from(&submission.repo);
    let root = root.canonicalize().unwrap_or(root);
    with_control(global, None, async move |cp| {
        let watch = files::watch(&root).map_err(|e| {
            CliError::caused(
                format!("cannot watch {}", root.display()),
                &e,
                Outcome::Failure,
            )
        })?;
        let sigint = signal(SignalKind::interrupt())
            .map_err(|e| CliError::caused("cannot catch Ctrl-C", &e, Outcome::Failure))?;
        let recorder = Arc::new(Recorder::new(TerminalLog::with_spinner()));
        let mut session = Session {
            cp,
            filter: Filter::new(&root),
            root,
            submission,
            log: recorder.clone(),
            recorder,
            watch,
            sigint,
            debounce: Debounce::default(),
            deployed: None,
            unsaved: BTreeMap::new(),
            bursts: 0,
        };
        session.run().await
    })
}

/// One run to carry out: what it runs and for which saves.
struct Job {
    /// The project as it will be deployed.
    project: Project,
    /// Empty for the whole workflow.
    from: Vec<String>,
    /// The saves it deploys; none for the first deploy.
    saved: Vec<PathBuf>,
    /// When the first of them was seen (or the deploy started).
    since: Instant,
    /// The bursts it deploys: every one up to this number.
    upto: u64,
}

/// How a run ended for the session.
enum Next {
    /// It ended on its own; watch again.
    Watch,
    /// A save cancelled it: this run next.
    Again(Box<Job>),
    /// Ctrl-C: leave.
    Leave,
}

struct Session<'a> {
    cp: &'a dyn ControlPlane,
    root: PathBuf,
    submission: WorkflowSubmission,
    log: Log,
    recorder: Arc<Recorder>,
    filter: Filter,
    watch: Watch,
    sigint: Signal,
    debounce: Debounce,
    /// The project as the last run that succeeded deployed it.
    deployed: Option<Project>,
    /// Saves no run has deployed yet (kept while runs fail), with the
    /// number of the burst that saved each last.
    unsaved: BTreeMap<PathBuf, u64>,
    /// Bursts of saves so far.
    bursts: u64,
}

impl Session<'_> {
    async fn run(&mut self) -> CliResult {
        // A project that is not valid is not deployed; its next save is.
        let loaded = load_project(&self.root, &LoadOptions::default());
        let mut next = match loaded.project {
            Some(project) => Some(Job {
                project,
                from: Vec::new(),
                saved: Vec::new(),
                since: Instant::now(),
                upto: 0,
            }),
            None => {
                let style = Style::stderr();
                eprintln!("{}", words::not_deployed(&[], &loaded.problems, style));
                None
            }
        };
        let mut first = true;
        if next.is_none() {
            eprintln!("{}", words::watching(&self.root));
            first = false;
        }
        loop {
            if let Some(job) = next.take() {
                match self.carry_out(job).await {
                    Next::Leave => break,
                    Next::Again(job) => next = Some(*job),
                    Next::Watch => {}
                }
                if first && next.is_none() {
                    eprintln!("{}", words::watching(&self.root));
                    first = false;
                }
                continue;
            }
            let due = self.debounce.due();
            tokio::select! {
                saved = self.watch.saved.recv() => match saved {
                    Some(saved) => self.saved(saved),
                    None => break,
                },
                _ = sleep_until(due) => {
                    if let Some(burst) = self.burst() {
                        next = self.plan(burst);
                    }
                }
                _ = self.sigint.recv() => break,
            }
        }
        eprintln!("{}", words::STOPPED);
        Ok(Outcome::Success)
    }

    /// A path notify reported, counted when it matters.
    fn saved(&mut self, saved: Saved) {
        if let Some(rel) = self.filter.relevant(&saved.path) {
            if Filter::is_rules(&rel) {
                self.filter = Filter::new(&self.root);
            }
            self.debounce.saved(rel, saved.created, Instant::now());
        }
    }

    /// The burst of saves that has just ended, if any.
    fn burst(&mut self) -> Option<Burst> {
        let root = &self.root;
        self.debounce
            .take(Instant::now(), |rel| root.join(rel).exists())
    }

    /// What a burst of saves runs, if anything: the project loaded again
    /// (when it is not valid, every problem said, and nothing), and the
    /// part of the workflow the saves since the last good run touch.
    fn plan(&mut self, burst: Burst) -> Option<Job> {
        self.bursts += 1;
        let upto = self.bursts;
        self.unsaved
            .extend(burst.paths.iter().map(|p| (p.clone(), upto)));
        let saved: Vec<PathBuf> = burst.paths.into_iter().collect();
        let loaded = load_project(&self.root, &LoadOptions::default());
        let Some(project) = loaded.project else {
            eprintln!(
                "{}",
                words::not_deployed(&saved, &loaded.problems, Style::stderr())
            );
            return None;
        };
        let from = match rerun(
            self.deployed.as_ref(),
            &project,
            self.unsaved.keys().map(PathBuf::as_path),
        ) {
            Rerun::Nothing => {
                self.unsaved.clear();
                self.deployed = Some(project);
                eprintln!("{}", words::nothing_to_run(&saved));
                return None;
            }
            Rerun::Everything => Vec::new(),
            Rerun::From(stages) => stages,
        };
        Some(Job {
            project,
            from,
            saved,
            since: burst.first,
            upto,
        })
    }

    /// Run `job`, following saves and Ctrl-C while it goes.
    async fn carry_out(&mut self, job: Job) -> Next {
        let plan = self.plan_of(&job.project, &job.from);
        if !job.saved.is_empty() {
            let ran: Vec<String> = plan
                .as_ref()
                .map(|p| p.stages().map(|s| s.stage.clone()).collect())
                .unwrap_or_default();
            let following: Vec<String> =
                ran.into_iter().filter(|s| !job.from.contains(s)).collect();
            eprintln!("{}", words::rerunning(&job.from, &following));
        }
        self.recorder.clear();
        let submission = WorkflowSubmission {
            from_stages: job.from.clone(),
            ..self.submission.clone()
        };
        // The services' failed requests so far: the change's are the rest.
        let failed_before = self.failed_requests(plan.as_ref()).await;
        let cancel = CancellationToken::new();
        let (mut again, mut leaving) = (None, false);
        let (cp, log) = (self.cp, self.log.clone());
        let outcome = {
            let run = cp.run_workflow(WorkflowRun {
                submission: &submission,
                log: &log,
                cancel: &cancel,
            });
            let mut run = std::pin::pin!(run);
            loop {
                let due = self.debounce.due();
                tokio::select! {
                    outcome = &mut run => break outcome,
                    Some(saved) = self.watch.saved.recv() => self.saved(saved),
                    _ = sleep_until(due) => {
                        if let Some(burst) = self.burst()
                            && let Some(job) = self.plan(burst)
                        {
                            if !cancel.is_cancelled() {
                                eprintln!("{}", words::SUPERSEDED);
                                cancel.cancel();
                            }
                            again = Some(job);
                        }
                    }
                    _ = self.sigint.recv() => {
                        if leaving {
                            eprintln!("{}", crate::output::LEAVING_RUN);
                            return Next::Leave;
                        }
                        eprintln!("{}", crate::output::CANCELLING_RUN);
                        leaving = true;
                        cancel.cancel();
                    }
                }
            }
        };
        if leaving {
            return Next::Leave;
        }
        if let Some(next) = again {
            return Next::Again(Box::new(next));
        }
        let ended = match outcome {
            Ok(RunState::Succeeded) => {
                self.deployed = Some(job.project.clone());
                // Saves of a later burst (one that did not load) are not
                // deployed yet.
                self.unsaved.retain(|_, burst| *burst > job.upto);
                Ended::Done {
                    services: self.replicas(plan.as_ref(), &failed_before).await,
                    batch: plan
                        .iter()
                        .flat_map(|p| p.stages())
                        .filter(|s| !s.is_service())
                        .map(|s| s.stage.clone())
                        .collect(),
                }
            }
            Ok(RunState::Cancelled) => Ended::Cancelled,
            Ok(RunState::Failed | RunState::Running) => Ended::Failed {
                why: self.why_failed(plan.as_ref()).await,
                last_lines: self.last_lines(plan.as_ref()),
            },
            Err(e) => Ended::Failed {
                why: Some(e.to_string()),
                last_lines: Vec::new(),
            },
        };
        let change = Change {
            saved: job.saved,
            elapsed: job.since.elapsed(),
            ended,
        };
        eprintln!("{}", words::status(&change, Style::stderr()));
        Next::Watch
    }

    /// The plan of `project` as this session runs it (names, namespace,
    /// the stages run), with no commit yet: to word what ran.
    fn plan_of(&self, project: &Project, from: &[String]) -> Option<WorkflowPlan> {
        let facts = RunFacts {
            namespace: self.submission.namespace.clone(),
            repo: self.submission.repo.clone(),
            branch: self.submission.branch.clone(),
            commit: String::new(),
        };
        let mut plan = plan_workflow(project, &facts).ok()?;
        plan.only_from(from).ok()?;
        Some(plan)
    }

    /// The services of `plan`, as they are now.
    async fn services(&self, plan: Option<&WorkflowPlan>) -> Vec<ServiceStatus> {
        let Some(plan) = plan else {
            return Vec::new();
        };
        let services: Vec<&str> = plan.service_names();
        if services.is_empty() {
            return Vec::new();
        }
        let listed = self
            .cp
            .list_services(&plan.namespace)
            .await
            .unwrap_or_default();
        listed
            .into_iter()
            .filter(|s| services.contains(&s.name.as_str()))
            .collect()
    }

    /// The failed requests each service of `plan` has counted so far, and
    /// since when.
    async fn failed_requests(&self, plan: Option<&WorkflowPlan>) -> BTreeMap<String, Count> {
        self.services(plan)
            .await
            .into_iter()
            .filter_map(|s| {
                let count = s.failed_requests?;
                Some((s.name, (count, s.failed_requests_since)))
            })
            .collect()
    }

    /// The services a run rolled out, as they are now, with the requests
    /// that failed since `before` (a new service's since it began).
    async fn replicas(
        &self,
        plan: Option<&WorkflowPlan>,
        before: &BTreeMap<String, Count>,
    ) -> Vec<Replicas> {
        self.services(plan)
            .await
            .into_iter()
            .map(|s| Replicas {
                failed: failed_during(before.get(&s.name), &s),
                service: s.name,
                available: s.available_replicas,
                wanted: s.replicas,
            })
            .collect()
    }

    /// Why the newest run of this command failed, as the runtime recorded it.
    async fn why_failed(&self, plan: Option<&WorkflowPlan>) -> Option<String> {
        let plan = plan?;
        let runs = self.cp.list_runs(&plan.namespace).await.ok()?;
        runs.into_iter()
            .filter(|r| r.trigger == RunTrigger::Cli)
            .max_by_key(|r| r.id)
            .and_then(|r| r.error)
    }

    /// The last lines the run's service replicas printed.
    fn last_lines(&self, plan: Option<&WorkflowPlan>) -> Vec<(String, Vec<String>)> {
        let Some(plan) = plan else {
            return Vec::new();
        };
        let services: Vec<String> = plan
            .stages()
            .filter(|s| s.is_service())
            .map(|s| format!("{}/", s.resource_name))
            .collect();
        self.recorder
            .last_lines()
            .into_iter()
            .filter(|(source, _)| services.iter().any(|s| source.starts_with(s)))
            .collect()
    }
}

/// Sleep until `due`, or forever.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The run's log as it goes to the terminal, keeping the last lines each
/// stage source printed (for a failed start's status).
struct Recorder {
    terminal: Log,
    last: Mutex<BTreeMap<String, VecDeque<String>>>,
}

impl Recorder {
    fn new(terminal: Log) -> Recorder {
        Recorder {
            terminal,
            last: Mutex::new(BTreeMap::new()),
        }
    }

    fn clear(&self) {
        if let Ok(mut last) = self.last.lock() {
            last.clear();
        }
    }

    fn keep(&self, source: &str, line: &str) {
        if let Ok(mut last) = self.last.lock() {
            let lines = last.entry(source.to_string()).or_default();
            if lines.len() == LAST_LINES {
                lines.pop_front();
            }
            lines.push_back(line.to_string());
        }
    }

    fn last_lines(&self) -> Vec<(String, Vec<String>)> {
        self.last
            .lock()
            .map(|last| {
                last.iter()
                    .map(|(s, l)| (s.clone(), l.iter().cloned().collect()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl LogSink for Recorder {
    fn log(&self, level: Level, logger: &str, message: &str) {
        self.terminal.log(level, logger, message);
    }

    fn stage_line(&self, source: &str, line: &str) {
        self.keep(source, line);
        self.terminal.stage_line(source, line);
    }

    fn event(&self, event: LogEvent) {
        if let LogEvent::Stage { source, line } = &event {
            self.keep(source, line);
        }
        self.terminal.event(event);
    }
}

/// A service's failed requests as counted, and since when.
type Count = (u64, Option<chrono::DateTime<chrono::Utc>>);

/// The requests to `now`'s service that failed since `before` was counted
/// (a new service's: since it began). Counts that began at different
/// times (the daemon restarted in between, forgetting its counts and
/// refusing requests while down) cannot be subtracted: unknown.
fn failed_during(before: Option<&Count>, now: &ServiceStatus) -> Failed {
    let Some(count) = now.failed_requests else {
        return Failed::NotCounted;
    };
    match before {
        None => Failed::Counted(count),
        Some((was, since)) if *since == now.failed_requests_since && *was <= count => {
            Failed::Counted(count - was)
        }
        Some(_) => Failed::Unknown,
    }
}

#[cfg(test)]
mod failed_tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn service(count: Option<u64>, since: i64) -> ServiceStatus {
        ServiceStatus {
            namespace: "ns".into(),
            name: "svc".into(),
            project: "p".into(),
            stage: "svc".into(),
            repo: String::new(),
            commit: String::new(),
            url: String::new(),
            port: 5000,
            exposed: false,
            replicas: 1,
            available_replicas: 1,
            unavailable_replicas: 0,
            restarts: 0,
            deployed: None,
            failed_requests: count,
            failed_requests_since: Utc.timestamp_opt(since, 0).single(),
        }
    }

    #[test]
    fn failures_are_counted_only_against_a_count_of_the_same_start() {
        let start = Utc.timestamp_opt(100, 0).single();
        assert_eq!(
            failed_during(Some(&(3, start)), &service(Some(5), 100)),
            Failed::Counted(2)
        );
        assert_eq!(
            failed_during(None, &service(Some(5), 100)),
            Failed::Counted(5)
        );
        // The daemon restarted during the change: its count began again.
        assert_eq!(
            failed_during(Some(&(3, start)), &service(Some(0), 200)),
            Failed::Unknown
        );
        assert_eq!(
            failed_during(Some(&(3, start)), &service(Some(1), 100)),
            Failed::Unknown
        );
        assert_eq!(
            failed_during(Some(&(3, start)), &service(None, 100)),
            Failed::NotCounted
        );
    }
}
