//! The control plane: everything a command asks of a runtime, written once
//! so every CLI command is written once.
//!
//! Owns: the [`ControlPlane`] trait and the records it takes and returns
//! (workflow submissions, runs, cron jobs and their history). The
//! Kubernetes runtime implements it directly; the local runtime implements
//! it with a client that forwards each call to its daemon.
//!
//! Must not: word anything for the user (the CLI does, the same for both
//! runtimes), validate what the user typed (the CLI does that once, before
//! either runtime is called), or know which runtime answers.

use std::path::PathBuf;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CancellationToken, Log, Resources, Result};

/// A workflow run to start: `bodywork workflow [--namespace NS] REPO [BRANCH]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkflowSubmission {
    /// Git URL, or an absolute local directory.
    pub repo: String,
    pub branch: Option<String>,
    /// `--namespace`, when given.
    pub namespace: Option<String>,
    /// `--ssh KEY_FILE`, absolute.
    pub ssh_key: Option<PathBuf>,
    /// `ssh_key` is a temporary file holding the key the CLI found in
    /// `BODYWORK_GITHUB_SSH_PRIVATE_KEY` (gone once the run ends), not a
    /// file the user named.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ssh_key_from_env: bool,
    /// `--group G`: the secrets group copied into the namespace (instead of
    /// the project's `pipeline.secrets_group`).
    #[serde(default)]
    pub secrets_group: Option<String>,
    /// `--resolve-as-of now|DATE`: the date every stage's requirements are
    /// resolved as of, instead of the commit's (see [`crate::Resolution`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_as_of: Option<crate::AsOf>,
    /// `--python VERSION|PATH`: the Python every stage is built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// `--no-python-downloads` (or `BODYWORK_PYTHON_DOWNLOADS=never`): uv
    /// downloads no Python when none on the machine fits.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_python_downloads: bool,
    /// Run only part of the workflow: these stages and every step after
    /// the first of them (`bodywork_plan::dag_suffix`), as `workflow
    /// --watch` does after a save; empty: the whole workflow. A part of a
    /// workflow removes no service the DAG no longer has. The local
    /// runtime only; Kubernetes refuses it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_stages: Vec<String>,
    /// The `workflow --watch` process this run deploys for, while it runs:
    /// the local runtime keeps a zygote for each service it rolls, which
    /// forks the replicas of their next rolls (see
    /// `bodywork_local::services`), until that process is gone. Ignored
    /// by the Kubernetes runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watcher: Option<Watcher>,
}

/// A process on this machine, named so that a recycled pid is not taken
/// for it: its pid and its start time in clock ticks since boot
/// (`/proc/PID/stat` field 22), when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// A workflow run to follow attached: what to run, where every log event
/// goes as it happens, and what cancels it.
#[derive(Clone, Copy)]
pub struct WorkflowRun<'a> {
    pub submission: &'a WorkflowSubmission,
    pub log: &'a Log,
    pub cancel: &'a CancellationToken,
}

/// Where a workflow run stands, or how it ended: what `bodywork runs`
/// shows, what the local runtime stores (as these words, which every
/// release has stored), and what an attached run ends with (never
/// `Running`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum RunState {
    /// Started and not finished yet.
    Running,
    /// Every stage succeeded.
    Succeeded,
    /// A stage failed, or the run was interrupted.
    Failed,
    /// Stopped on request.
    Cancelled,
}

/// One workflow run, as `bodywork runs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub namespace: String,
    pub project: Option<String>,
    pub repo: String,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub trigger: RunTrigger,
    pub status: RunState,
    pub error: Option<String>,
    /// When it started, if the runtime knows.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub started: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub finished: Option<DateTime<Utc>>,
    /// What the run was started with beyond its repository and branch,
    /// as far as a run again (the dashboard's Redeploy) needs it; none of
    /// them in a record written before they were kept.
    #[serde(default, skip_serializing_if = "RunOptions::is_empty")]
    pub options: RunOptions,
}

/// The deploy key a run fetched its repository with: where it is, never
/// the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SshKey {
    /// `--ssh KEY_FILE` (the local runtime): the file's absolute path.
    File(PathBuf),
    /// The secret of the namespace the key came from (Kubernetes: what a
    /// pod gets it from, and what a run started in the cluster reads
    /// again by itself).
    Secret(String),
    /// `BODYWORK_GITHUB_SSH_PRIVATE_KEY` in the environment of the CLI
    /// that started it (no `--ssh`): not kept anywhere, so a run again
    /// cannot have it.
    Environment,
}

/// The options of a workflow run that a run again passes back (see
/// [`RunOptions::of`] and [`RunOptions::apply`]): never a secret's value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOptions {
    /// `--ssh`: where its deploy key was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_key: Option<SshKey>,
    /// `--group`: the secrets group copied into the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets_group: Option<String>,
    /// `--python`: the version (or interpreter's path) asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// `--resolve-as-of`: the date asked for (not the commit's, which a
    /// run again finds by itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_as_of: Option<crate::AsOf>,
}

impl RunOptions {
    /// What `submission` asked for, its key as a file.
    pub fn of(submission: &WorkflowSubmission) -> RunOptions {
        RunOptions {
            ssh_key: match (&submission.ssh_key, submission.ssh_key_from_env) {
                (Some(_), true) => Some(SshKey::Environment),
                (key, _) => key.clone().map(SshKey::File),
            },
            secrets_group: submission.secrets_group.clone(),
            python: submission.python.clone(),
            resolve_as_of: submission.resolve_as_of,
        }
    }

    /// `submission` with these options: a key file is passed back; a key
    /// from a secret is not (the runtime reads the namespace's secret
    /// again by itself).
    pub fn apply(&self, submission: WorkflowSubmission) -> WorkflowSubmission {
        let ssh_key = match &self.ssh_key {
            Some(SshKey::File(path)) => Some(path.clone()),
            Some(SshKey::Secret(_) | SshKey::Environment) | None => None,
        };
        WorkflowSubmission {
            ssh_key,
            secrets_group: self.secrets_group.clone(),
            python: self.python.clone(),
            resolve_as_of: self.resolve_as_of,
            ..submission
        }
    }

    /// True when the run was given none of them.
    pub fn is_empty(&self) -> bool {
        self == &RunOptions::default()
    }
}

/// Where one attempt of one stage of a workflow run stands, or how it
/// ended (what the local runtime stores for it, as these words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum StageState {
    /// Started and not finished yet.
    Running,
    /// Exited with status 0 (batch), or became ready (service).
    Succeeded,
    /// Exited with an error, or could not start.
    Failed,
    /// Stopped after its time limit.
    TimedOut,
    /// Stopped because its run was cancelled.
    Cancelled,
}

/// One attempt of one stage of a workflow run, as the runtime recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageAttempt {
    pub stage: String,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    pub state: StageState,
    /// Why it failed, when the runtime says.
    #[serde(default)]
    pub message: Option<String>,
    #[serde(with = "crate::time::rfc3339")]
    pub started: DateTime<Utc>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub finished: Option<DateTime<Utc>>,
}

/// A cron job to create: a workflow run on a schedule. The schedule has
/// been validated (`bodywork_config::schedule`) before it gets here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJobSpec {
    pub namespace: String,
    pub name: String,
    /// Standard 5-field cron expression.
    pub schedule: String,
    /// IANA time zone of the schedule; `None` is UTC.
    pub timezone: Option<String>,
    /// Git URL or absolute local directory.
    pub repo: String,
    pub branch: Option<String>,
    /// Retries of a failed run.
    pub retries: u32,
    /// Runs kept in the history (at least 1).
    pub history_limit: u32,
    /// Bodywork 3's `--group G`: the secrets group each run copies into the
    /// namespace (as [`WorkflowSubmission::secrets_group`]).
    #[serde(default)]
    pub secrets_group: Option<String>,
    /// `--resolve-as-of`: what each run's requirements are resolved as of
    /// (as [`WorkflowSubmission::resolve_as_of`]); `None`: each run's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_as_of: Option<crate::AsOf>,
    /// `--python VERSION|PATH`: the Python each run's stages are built with
    /// (as [`WorkflowSubmission::python`]); `None`: the default, or the one
    /// chosen for wheels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
}

/// What `cronjob display` shows of one cron job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJobSummary {
    pub namespace: String,
    pub name: String,
    pub schedule: String,
    /// IANA name; `UTC` when none was given.
    pub timezone: String,
    pub repo: String,
    pub branch: Option<String>,
    pub retries: u32,
    pub history_limit: u32,
    /// The secrets group its runs copy into the namespace (`--group`).
    #[serde(default)]
    pub secrets_group: Option<String>,
    /// `--resolve-as-of`: what its runs resolve their requirements as of;
    /// `None`: each run's commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolve_as_of: Option<crate::AsOf>,
    /// `--python`: the Python its runs' stages are built with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub created: Option<DateTime<Utc>>,
    /// When the newest run started (or was scheduled).
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub last_run: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub next_run: Option<DateTime<Utc>>,
    /// The newest run's state (`running` while a run is going); `None`
    /// before the first run.
    pub status: Option<RunState>,
    /// While a failed run waits to be retried: when it will be.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub retry_at: Option<DateTime<Utc>>,
}

/// Why a cron job's run was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[derive(strum::Display, strum::EnumString, strum::IntoStaticStr, strum::VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum CronRunKind {
    /// Its scheduled time came (while the local daemon was up).
    Scheduled,
    /// The one run that makes up for scheduled times missed while the
    /// local daemon was down.
    CatchUp,
    /// Asked for with `bodywork cronjob trigger`.
    Manual,
}

/// One row of `cronjob history`: a run of the cron job (a Kubernetes Job of
/// a CronJob), or a scheduled time skipped because a run was still going.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronRunSummary {
    /// `NAME-RUN` (the Job's name on Kubernetes), what `cronjob logs --name`
    /// takes; `None` when skipped.
    pub job_name: Option<String>,
    pub cron_job: String,
    /// The local runtime's run number.
    pub run: Option<i64>,
    /// When the run was due.
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub scheduled: Option<DateTime<Utc>>,
    pub kind: CronRunKind,
    /// 1 for the first try, 2 for the first retry, ...
    pub attempt: u32,
    pub skipped: bool,
    /// For a skipped time: the run still going then (`NAME-RUN`), if known.
    #[serde(default)]
    pub skipped_for: Option<String>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, with = "crate::time::rfc3339_opt")]
    pub completion_time: Option<DateTime<Utc>>,
    pub active: u32,
    pub succeeded: u32,
    pub failed: u32,
}

/// What started a workflow run. Written (stored by the local runtime, and
/// in `-o json`) as `cli`, `cron:JOB`, `async` or `async:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum RunTrigger {
    /// `bodywork workflow`, attached.
    Cli,
    /// A run of cron job `JOB`.
    Cron(String),
    /// A detached run ([`ControlPlane::start_workflow`]): every attempt of
    /// it, with the name the user gave it, if any (else it is named by its
    /// first run's number).
    Detached(Option<String>),
    /// A trigger this build does not know, as written.
    Other(String),
}

impl std::fmt::Display for RunTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunTrigger::Cli => f.write_str("cli"),
            RunTrigger::Cron(job) => write!(f, "cron:{job}"),
            RunTrigger::Detached(None) => f.write_str("async"),
            RunTrigger::Detached(Some(name)) => write!(f, "async:{name}"),
            RunTrigger::Other(text) => f.write_str(text),
        }
    }
}

impl From<String> for RunTrigger {
    fn from(text: String) -> RunTrigger {
        match text.split_once(':') {
            _ if text == "cli" => RunTrigger::Cli,
            _ if text == "async" => RunTrigger::Detached(None),
            Some(("cron", job)) => RunTrigger::Cron(job.to_string()),
            Some(("async", name)) => RunTrigger::Detached(Some(name.to_string())),
            _ => RunTrigger::Other(text),
        }
    }
}

impl From<RunTrigger> for String {
    fn from(trigger: RunTrigger) -> String {
        trigger.to_string()
    }
}

/// A detached run's name: the user's (from its trigger), else
/// [`unnamed_detached_name`] of its number.
pub fn detached_name(run: &RunSummary) -> String {
    match &run.trigger {
        RunTrigger::Detached(Some(name)) => name.clone(),
        _ => unnamed_detached_name(run.id),
    }
}

/// How Bodywork 3 names its detached runs' Jobs: `async-workflow-...`.
pub const DETACHED_PREFIX: &str = "async-workflow-";

/// The name of a detached run nobody named: [`DETACHED_PREFIX`] and `n`
/// (the local runtime's run number; Kubernetes uses the time in seconds).
pub fn unnamed_detached_name(n: impl std::fmt::Display) -> String {
    format!("{DETACHED_PREFIX}{n}")
}

/// True for the runs [`ControlPlane::start_workflow`] started.
pub fn is_detached(run: &RunSummary) -> bool {
    matches!(run.trigger, RunTrigger::Detached(_))
}

/// Everything a command asks of a runtime: [`Resources`] (namespaces,
/// secrets, services) and the rest below. Implemented by the Kubernetes
/// runtime and by the local runtime's daemon client; each CLI command is
/// written once against it.
#[async_trait]
pub trait ControlPlane: Resources {
    /// Run a workflow attached: every log event goes to `run.log` as it
    /// happens; `run.cancel` stops the run. `Err` only when the run could not be asked
    /// for at all; a run that failed is `Ok(RunState::Failed)` (the log
    /// says why). The state is never `Running`.
    async fn run_workflow(&self, run: WorkflowRun<'_>) -> Result<RunState>;
    /// Workflow runs of a namespace, newest first.
    async fn list_runs(&self, namespace: &str) -> Result<Vec<RunSummary>>;
    /// A page of the workflow runs of a namespace, newest first: at most
    /// `limit`, only those numbered below `before` when given (the last
    /// of the previous page), so every run can be reached.
    /// A runtime that reads every run at once (`list_runs`) pages them
    /// here; one that can ask for a page (the local store) overrides it.
    async fn list_runs_before(
        &self,
        namespace: &str,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<RunSummary>> {
        let runs = self.list_runs(namespace).await?;
        Ok(runs
            .into_iter()
            .filter(|r| before.is_none_or(|b| r.id < b))
            .take(limit as usize)
            .collect())
    }
    /// How many workflow runs of `namespace` are kept, all pages together.
    /// A runtime that reads every run at once counts `list_runs`; one that
    /// can count them itself (the local store) overrides it.
    async fn count_runs(&self, namespace: &str) -> Result<u64> {
        Ok(self.list_runs(namespace).await?.len() as u64)
    }
    /// The stage attempts of run `run` of `namespace`, in the order they
    /// started (a stage not started yet has none); `NotFound` when there
    /// is no such run.
    async fn run_stages(&self, namespace: &str, run: i64) -> Result<Vec<StageAttempt>>;
    /// Start a workflow run detached (Bodywork 3's `create deployment
    /// --async`, Bodywork 2's `deployment create`) and return at once with
    /// its name; the control plane runs it, and again up to `retries` times
    /// while it fails. `name` is the user's name for it, if any.
    async fn start_workflow(
        &self,
        submission: &WorkflowSubmission,
        name: Option<&str>,
        retries: u32,
    ) -> Result<String>;
    /// Detached runs (every attempt of each), newest first; their
    /// `trigger` is [`RunTrigger::Detached`] with their name, if any.
    async fn detached_runs(&self) -> Result<Vec<RunSummary>>;
    /// The whole log of detached run `name` (as [`detached_name`] gives
    /// it; of its newest attempt).
    async fn detached_logs(&self, name: &str, log: &Log) -> Result<()>;
    /// Forget detached run `name`: every attempt and its log (on
    /// Kubernetes, its Job). `Conflict` while it is running.
    async fn delete_detached(&self, name: &str) -> Result<()>;

    async fn create_cronjob(&self, spec: &CronJobSpec) -> Result<()>;
    /// Change cron job `spec.name` in place: its history, and a run going,
    /// are kept; `NotFound` when there is no cron job of that name. Locally
    /// a new schedule counts from now; on Kubernetes the CronJob controller
    /// decides, and may start the newest time the new schedule missed since
    /// the last run, as it does for any edited CronJob.
    async fn update_cronjob(&self, spec: &CronJobSpec) -> Result<()>;
    async fn delete_cronjob(&self, namespace: &str, name: &str) -> Result<()>;
    async fn list_cronjobs(&self, namespace: &str) -> Result<Vec<CronJobSummary>>;
    /// Runs of one cron job, newest first.
    async fn cronjob_history(&self, namespace: &str, name: &str) -> Result<Vec<CronRunSummary>>;
    /// Start a run now; returns its name (what `cronjob logs` takes).
    async fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<String>;
    /// The whole log of one run of a cron job (`run` from its history).
    async fn cronjob_logs(&self, namespace: &str, run: &str, log: &Log) -> Result<()>;

    /// The log of a workflow run or a service's replicas (`name` is a run
    /// as `runs` lists it, or a service); with `follow`, until the run ends
    /// or the caller stops.
    async fn logs(&self, namespace: &str, name: &str, follow: bool, log: &Log) -> Result<()>;

    /// The recent traffic of each service of `namespace` that has been
    /// counted (one that has had no request since the runtime started may
    /// be missing). `Unsupported` where the runtime has no metrics source.
    async fn service_traffic(&self, namespace: &str) -> Result<Vec<crate::ServiceTraffic>>;

    /// The cached Python environments, oldest first, then those being
    /// first built. `Unsupported` where environments are built in images.
    async fn environments(&self) -> Result<Vec<crate::EnvironmentStatus>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_are_written_as_every_release_stored_them() {
        for (text, trigger) in [
            ("cli", RunTrigger::Cli),
            ("cron:nightly", RunTrigger::Cron("nightly".into())),
            ("async", RunTrigger::Detached(None)),
            ("async:my-run", RunTrigger::Detached(Some("my-run".into()))),
            ("gizmo:x", RunTrigger::Other("gizmo:x".into())),
        ] {
            assert_eq!(RunTrigger::from(text.to_string()), trigger);
            assert_eq!(trigger.to_string(), text);
            let json = serde_json::to_string(&trigger).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<RunTrigger>(&json).unwrap(), trigger);
        }
    }

    #[test]
    fn a_run_without_options_reads_as_before_and_options_round_trip() {
        // What a release before options were kept wrote (a Kubernetes run
        // record, a daemon's answer).
        let old = r#"{"id":7,"namespace":"ns","project":"p","repo":"https://x/r.git",
            "branch":"main","commit":"abc","trigger":"cli","status":"running","error":null,
            "started":"2026-12-06T10:00:00Z","finished":null}"#;
        let run: RunSummary = serde_json::from_str(old).unwrap();
        assert_eq!(run.options, RunOptions::default());
        assert!(run.options.is_empty());
        // Nothing more is written for a run given none.
        assert!(!serde_json::to_string(&run).unwrap().contains("options"));
        let submission = WorkflowSubmission {
            repo: "git@github.com:me/p.git".into(),
            branch: Some("dev".into()),
            namespace: Some("ns".into()),
            ssh_key: Some("/home/me/.ssh/id".into()),
            ssh_key_from_env: false,
            secrets_group: Some("g".into()),
            resolve_as_of: Some(crate::AsOf::Now),
            python: Some("3.11".into()),
            no_python_downloads: true,
            from_stages: vec!["train".into()],
            watcher: None,
        };
        let options = RunOptions::of(&submission);
        let run = RunSummary {
            options: options.clone(),
            ..run
        };
        let json = serde_json::to_string(&run).unwrap();
        assert!(
            json.contains(r#""options":{"ssh_key":{"file":"/home/me/.ssh/id"},"secrets_group":"g","python":"3.11","resolve_as_of":"now"}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<RunSummary>(&json).unwrap(), run);
        // Passed back: the four, and nothing else of the old submission.
        let again = options.apply(WorkflowSubmission {
            repo: submission.repo.clone(),
            ..WorkflowSubmission::default()
        });
        assert_eq!(
            again,
            WorkflowSubmission {
                no_python_downloads: false,
                from_stages: Vec::new(),
                branch: None,
                namespace: None,
                ..submission
            }
        );
        let secret = RunOptions {
            ssh_key: Some(SshKey::Secret("ssh-github-private-key".into())),
            ..RunOptions::default()
        };
        assert_eq!(secret.apply(WorkflowSubmission::default()).ssh_key, None);
        // A key from BODYWORK_GITHUB_SSH_PRIVATE_KEY: its temporary file is
        // not recorded, and not passed back.
        let from_env = RunOptions::of(&WorkflowSubmission {
            ssh_key: Some("/tmp/bodywork-keys/k1".into()),
            ssh_key_from_env: true,
            ..WorkflowSubmission::default()
        });
        assert_eq!(from_env.ssh_key, Some(SshKey::Environment));
        let json = serde_json::to_string(&from_env).unwrap();
        assert_eq!(json, r#"{"ssh_key":"environment"}"#);
        assert_eq!(serde_json::from_str::<RunOptions>(&json).unwrap(), from_env);
        assert_eq!(from_env.apply(WorkflowSubmission::default()).ssh_key, None);
    }
}
