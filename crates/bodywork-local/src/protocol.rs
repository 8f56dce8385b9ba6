//! The messages between the CLI and the daemon, and their framing: one JSON
//! document per line over the daemon's Unix socket.
//!
//! A connection carries one request. The daemon answers with one or more
//! response frames; streaming requests (a workflow run, `logs -f`) end with
//! a final frame. During a workflow the client may send `Cancel`.

use std::collections::BTreeMap;

pub use bodywork_runtime::{
    CronJobSpec, CronJobSummary, CronRunSummary, RunOutcome, RunSummary, WorkflowSubmission,
};
use bodywork_runtime::{LogEvent, RuntimeError, Secret, ServiceStatus};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

/// Bumped when a message changes incompatibly; the client and daemon refuse
/// to talk across versions (the CLI then restarts the daemon: by a handover
/// when the daemon knows how, else by stopping it). 2: `DeleteNamespace`,
/// `Handover`. 3: errors as `RuntimeError`, a run's end as `RunOutcome`,
/// answers as data (the CLI words them). 4: `NamespaceList`, a workflow's
/// secrets group, `RunDetached`.
pub const PROTOCOL_VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol: u32,
    },
    Status,
    Shutdown,
    /// Hand over to a new daemon started from `exe`, which adopts the
    /// service replicas and the listening sockets (`daemon --restart`,
    /// upgrades). Refused while workflow runs are going.
    Handover {
        exe: String,
        /// The client's environment, which the new daemon gets (as a daemon
        /// the client starts does): `BODYWORK_GATEWAY_ADDR`, `PATH`, ...
        env: Vec<(String, String)>,
    },
    SetupNamespace {
        namespace: String,
    },
    NamespaceExists {
        namespace: String,
    },
    NamespaceList,
    /// `delete-namespace`: the namespace and everything in it.
    DeleteNamespace {
        namespace: String,
    },
    SecretCreate {
        namespace: String,
        name: String,
        data: BTreeMap<String, String>,
    },
    SecretDelete {
        namespace: String,
        name: String,
    },
    SecretList {
        namespace: String,
    },
    RunWorkflow(WorkflowSubmission),
    /// A workflow run the daemon drives on its own (and retries); answered
    /// at once with `Started`.
    RunDetached {
        submission: WorkflowSubmission,
        name: Option<String>,
        retries: u32,
    },
    /// Forget a detached run: every attempt and its log.
    DeleteDetached {
        name: String,
    },
    /// Sent on a workflow connection to cancel that run.
    Cancel,
    ListRuns {
        namespace: Option<String>,
        limit: u32,
    },
    RunLogs {
        namespace: String,
        run: i64,
        follow: bool,
    },
    ServiceList {
        namespace: String,
    },
    /// Logs of a service's current replicas; with `follow`, until the client leaves.
    ServiceLogs {
        namespace: String,
        name: String,
        follow: bool,
    },
    ServiceDelete {
        namespace: String,
        name: String,
    },
    EnvList,
    EnvPrune,
    /// `cronjob create`.
    CronCreate(CronJobSpec),
    /// `cronjob delete`: the cron job and its history.
    CronDelete {
        namespace: String,
        name: String,
    },
    /// `cronjob display`: every cron job of the namespace.
    CronList {
        namespace: String,
    },
    /// `cronjob history`: the runs of one cron job, newest first.
    CronHistory {
        namespace: String,
        name: String,
    },
    /// `cronjob logs`: the whole log of one run (`NAME-RUN`); streamed as
    /// `LogLine` frames, then `End`.
    CronLogs {
        namespace: String,
        name: String,
    },
    /// `cronjob trigger`: start a run now.
    CronTrigger {
        namespace: String,
        name: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Hello {
        protocol: u32,
        version: String,
        pid: u32,
    },
    Ok,
    /// Lines to print as they are (e.g. setup-namespace's `creating ...`).
    Lines {
        lines: Vec<String>,
    },
    Exists {
        exists: bool,
    },
    Namespaces {
        namespaces: Vec<String>,
    },
    /// The name of what was started (`cronjob trigger`).
    Started {
        name: String,
    },
    Error(RuntimeError),
    Status(DaemonStatus),
    Secrets {
        secrets: Vec<Secret>,
    },
    RunStarted {
        run: i64,
    },
    Event(LogEvent),
    /// A line of a stored log (logs of a finished run).
    LogLine {
        line: String,
    },
    RunFinished {
        run: i64,
        outcome: RunOutcome,
    },
    Runs {
        runs: Vec<RunSummary>,
    },
    Services {
        services: Vec<ServiceStatus>,
    },
    Envs {
        envs: Vec<EnvSummary>,
    },
    CronJobs {
        jobs: Vec<CronJobSummary>,
    },
    CronHistory {
        runs: Vec<CronRunSummary>,
    },
    /// The last frame of a stream.
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub home: String,
    pub started: String,
    pub active_runs: Vec<i64>,
    /// Where the gateway listens, or why it does not.
    pub gateway: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvSummary {
    pub key: String,
    pub python: String,
    pub requirements: Vec<String>,
    pub size_bytes: u64,
    pub created: String,
    pub last_used: Option<String>,
}

/// Write one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> std::io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await?;
    w.flush().await
}

/// Write an `Error` frame; used where a request cannot go on. A client that
/// has gone away is not an error worth reporting.
pub async fn write_error<W>(w: &mut W, error: RuntimeError)
where
    W: AsyncWriteExt + Unpin,
{
    let _ = write_frame(w, &Response::Error(error)).await;
}

/// Read one frame; `Ok(None)` at end of stream.
pub async fn read_frame<R, T>(r: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncBufReadExt + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    serde_json::from_str(&line).map(Some).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad message: {e}"))
    })
}
