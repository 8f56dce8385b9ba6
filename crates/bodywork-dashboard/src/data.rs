//! What each page shows, as typed data, and reading it through
//! [`ControlPlane`]. A section the runtime cannot answer (Kubernetes keeps
//! no workflow runs) is [`Section::Unavailable`] with the runtime's reason;
//! the rest of the page still shows.

use std::collections::VecDeque;
use std::sync::Mutex;

use bodywork_runtime::{
    ControlPlane, CronJobSummary, CronRunSummary, EventSink, LogEvent, LogRenderer, RunSummary,
    RuntimeError, Secret, ServiceStatus, ServiceTraffic, StageAttempt, StageState,
};
use chrono::{DateTime, Utc};

/// Rows of one section of a page, or why the runtime gave none.
#[derive(Debug, Clone, PartialEq)]
pub enum Section<T> {
    Rows(Vec<T>),
    Unavailable(String),
}

impl<T> Section<T> {
    fn from_result(result: Result<Vec<T>, RuntimeError>) -> Section<T> {
        match result {
            Ok(rows) => Section::Rows(rows),
            Err(e) => Section::Unavailable(
                bodywork_runtime::error_chain(&e)
                    .collect::<Vec<_>>()
                    .join(": "),
            ),
        }
    }

    /// How many rows, when the runtime answered.
    pub fn count(&self) -> Option<u64> {
        match self {
            Section::Rows(rows) => Some(rows.len() as u64),
            Section::Unavailable(_) => None,
        }
    }
}

/// One namespace as the front page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRow {
    pub name: String,
    /// Its services, and how many have every replica ready.
    pub services: Section<ServiceStatus>,
}

/// The front page: the runtime and its namespaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Overview {
    /// `local` or `kubernetes`.
    pub runtime: &'static str,
    pub namespaces: Section<NamespaceRow>,
    /// When it was read (ages and durations count to it).
    pub read_at: DateTime<Utc>,
}

/// A secret as the dashboard holds it: its keys, never its values (they
/// are dropped as it is read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretKeys {
    pub name: String,
    pub keys: Vec<String>,
    pub created: Option<DateTime<Utc>>,
}

impl From<Secret> for SecretKeys {
    fn from(secret: Secret) -> SecretKeys {
        SecretKeys {
            name: secret.name,
            keys: secret.data.into_keys().collect(),
            created: secret.created,
        }
    }
}

/// A cron job and its history (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct CronJobView {
    pub job: CronJobSummary,
    pub history: Section<CronRunSummary>,
}

/// One namespace: everything in it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespacePage {
    pub runtime: &'static str,
    pub namespace: String,
    pub services: Section<ServiceStatus>,
    /// The services' recent traffic (those counted).
    pub traffic: Section<ServiceTraffic>,
    /// A page of them, newest first: the newest, or those numbered below
    /// `runs_before`.
    pub runs: Section<RunSummary>,
    /// Where this page of runs starts (`?before=ID`); `None`: the newest.
    pub runs_before: Option<i64>,
    /// Where the next page of older runs starts, when there are older runs.
    pub older_runs: Option<i64>,
    /// How many runs the namespace keeps, all pages together; `None` when
    /// the runtime could not say.
    pub runs_total: Option<u64>,
    pub cronjobs: Section<CronJobView>,
    pub secrets: Section<SecretKeys>,
    pub read_at: DateTime<Utc>,
}

/// Read the front page.
pub async fn overview(cp: &dyn ControlPlane) -> Overview {
    let namespaces = match cp.list_namespaces().await {
        Ok(mut names) => {
            names.sort();
            let mut rows = Vec::with_capacity(names.len());
            for name in names {
                let services = Section::from_result(cp.list_services(&name).await);
                rows.push(NamespaceRow { name, services });
            }
            Section::Rows(rows)
        }
        Err(e) => Section::from_result(Err(e)),
    };
    Overview {
        runtime: cp.name(),
        namespaces,
        read_at: Utc::now(),
    }
}

/// The cached Python environments and their build locks.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvironmentsPage {
    pub runtime: &'static str,
    pub environments: Section<bodywork_runtime::EnvironmentStatus>,
    pub read_at: DateTime<Utc>,
}

/// Read the environments page.
pub async fn environments(cp: &dyn ControlPlane) -> EnvironmentsPage {
    EnvironmentsPage {
        runtime: cp.name(),
        environments: Section::from_result(cp.environments().await),
        read_at: Utc::now(),
    }
}

/// How many runs a namespace page shows.
pub const RUNS_PER_PAGE: u32 = 50;

/// Read one namespace's page, its runs from those numbered below
/// `runs_before` (when given); `None` when there is no such namespace.
pub async fn namespace(
    cp: &dyn ControlPlane,
    namespace: &str,
    runs_before: Option<i64>,
) -> Result<Option<NamespacePage>, RuntimeError> {
    if !cp.namespace_exists(namespace).await? {
        return Ok(None);
    }
    let services = Section::from_result(cp.list_services(namespace).await);
    let traffic = Section::from_result(cp.service_traffic(namespace).await);
    // One more than shown: whether there are older ones.
    let mut runs = Section::from_result(
        cp.list_runs_before(namespace, runs_before, RUNS_PER_PAGE + 1)
            .await,
    );
    let mut older_runs = None;
    if let Section::Rows(rows) = &mut runs
        && rows.len() > RUNS_PER_PAGE as usize
    {
        rows.truncate(RUNS_PER_PAGE as usize);
        older_runs = rows.last().map(|r| r.id);
    }
    // The newest runs, all on this page: counted already.
    let runs_total = match (&runs, runs_before, older_runs) {
        (Section::Rows(_), None, None) => runs.count(),
        (Section::Rows(_), _, _) => cp.count_runs(namespace).await.ok(),
        (Section::Unavailable(_), _, _) => None,
    };
    let secrets = Section::from_result(
        cp.list_secrets(namespace)
            .await
            .map(|secrets| secrets.into_iter().map(SecretKeys::from).collect()),
    );
    let cronjobs = match cp.list_cronjobs(namespace).await {
        Ok(jobs) => {
            let mut views = Vec::with_capacity(jobs.len());
            for job in jobs {
                let history = Section::from_result(cp.cronjob_history(namespace, &job.name).await);
                views.push(CronJobView { job, history });
            }
            Section::Rows(views)
        }
        Err(e) => Section::from_result(Err(e)),
    };
    Ok(Some(NamespacePage {
        runtime: cp.name(),
        namespace: namespace.to_string(),
        services,
        traffic,
        runs,
        runs_before,
        older_runs,
        runs_total,
        cronjobs,
        secrets,
        read_at: Utc::now(),
    }))
}

/// One stage of a run as its page draws it: its last attempt's state and
/// time, from its first start to its last finish.
#[derive(Debug, Clone, PartialEq)]
pub struct StageView {
    pub stage: String,
    pub state: StageState,
    /// How many times it was tried (retries count).
    pub attempts: u32,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// Why its last attempt failed, when the runtime says.
    pub message: Option<String>,
}

/// One workflow run: what `runs` lists of it, and its stages in steps.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    pub runtime: &'static str,
    pub namespace: String,
    pub run: RunSummary,
    /// The steps that started, in order; each holds the stages run side by
    /// side. Derived from the recorded attempts (the run's plan is not
    /// kept), so a step not started yet is not shown.
    pub steps: Section<Vec<StageView>>,
    pub read_at: DateTime<Utc>,
}

/// The stages of a run, grouped into steps from their recorded attempts
/// alone: steps run one after another, so a stage that started before
/// every stage of the step so far had finished belongs to that step, and
/// one that started after they all finished begins the next.
pub fn steps(attempts: Vec<StageAttempt>) -> Vec<Vec<StageView>> {
    let mut stages: Vec<StageView> = Vec::new();
    for a in attempts {
        match stages.iter_mut().find(|s| s.stage == a.stage) {
            Some(s) => {
                s.attempts = s.attempts.max(a.attempt);
                s.state = a.state;
                s.message = a.message;
                s.finished = a.finished;
            }
            None => stages.push(StageView {
                stage: a.stage,
                state: a.state,
                attempts: a.attempt,
                started: a.started,
                finished: a.finished,
                message: a.message,
            }),
        }
    }
    stages.sort_by(|a, b| a.started.cmp(&b.started).then(a.stage.cmp(&b.stage)));
    let mut steps: Vec<Vec<StageView>> = Vec::new();
    for stage in stages {
        let joins = steps.last().is_some_and(|step| {
            step.iter()
                .any(|s| s.finished.is_none_or(|f| stage.started < f))
        });
        match steps.last_mut() {
            Some(step) if joins => step.push(stage),
            _ => steps.push(vec![stage]),
        }
    }
    steps
}

/// Read one run's page (any run, however old); `None` when `namespace`
/// has no run `id`.
pub async fn run(
    cp: &dyn ControlPlane,
    namespace: &str,
    id: i64,
) -> Result<Option<RunPage>, RuntimeError> {
    let Some(run) = cp
        .list_runs_before(namespace, id.checked_add(1), 1)
        .await?
        .into_iter()
        .find(|r| r.id == id)
    else {
        return Ok(None);
    };
    let steps = Section::from_result(cp.run_stages(namespace, id).await.map(steps));
    Ok(Some(RunPage {
        runtime: cp.name(),
        namespace: namespace.to_string(),
        run,
        steps,
        read_at: Utc::now(),
    }))
}

/// Whose log a log page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSubject {
    Run(i64),
    /// A service's replicas.
    Service(String),
}

impl LogSubject {
    /// The name [`ControlPlane::logs`] takes.
    pub fn name(&self) -> String {
        match self {
            LogSubject::Run(id) => id.to_string(),
            LogSubject::Service(name) => name.clone(),
        }
    }
}

/// The most lines a log page shows (the newest); the stream sends the rest.
pub const LOG_PAGE_LINES: usize = 2000;

/// A log so far: its newest lines, and how many it has in all.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    pub runtime: &'static str,
    pub namespace: String,
    pub subject: LogSubject,
    /// The newest lines (at most [`LOG_PAGE_LINES`]).
    pub lines: Section<String>,
    /// How many lines the log had, shown or not (where a live tail goes on).
    pub total: usize,
    pub read_at: DateTime<Utc>,
}

/// Renders a log's events to lines as `bodywork logs` prints them (no
/// colour), handing each to `each`.
pub struct LineSink<F: Fn(String) + Send + Sync> {
    renderer: Mutex<LogRenderer>,
    each: F,
}

impl<F: Fn(String) + Send + Sync> LineSink<F> {
    pub fn new(each: F) -> LineSink<F> {
        LineSink {
            renderer: Mutex::new(LogRenderer::default()),
            each,
        }
    }
}

impl<F: Fn(String) + Send + Sync> EventSink for LineSink<F> {
    fn event(&self, event: LogEvent) {
        let lines = match self.renderer.lock() {
            Ok(mut renderer) => renderer.render(&event, &|l| l.as_str().to_string()),
            Err(poisoned) => poisoned
                .into_inner()
                .render(&event, &|l| l.as_str().to_string()),
        };
        for line in lines {
            (self.each)(line);
        }
    }
}

/// Read a log so far (not following it).
pub async fn log(cp: &dyn ControlPlane, namespace: &str, subject: LogSubject) -> LogPage {
    let kept = std::sync::Arc::new(Mutex::new((VecDeque::new(), 0usize)));
    let sink = {
        let kept = kept.clone();
        std::sync::Arc::new(LineSink::new(move |line| {
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.0.len() == LOG_PAGE_LINES {
                kept.0.pop_front();
            }
            kept.0.push_back(line);
            kept.1 += 1;
        }))
    };
    let log: bodywork_runtime::Log = sink;
    let result = cp.logs(namespace, &subject.name(), false, &log).await;
    let (lines, total) = {
        let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
        (std::mem::take(&mut kept.0), kept.1)
    };
    let lines = match result {
        Ok(()) => Section::Rows(lines.into()),
        Err(e) => Section::from_result(Err(e)),
    };
    LogPage {
        runtime: cp.name(),
        namespace: namespace.to_string(),
        subject,
        lines,
        total,
        read_at: Utc::now(),
    }
}
