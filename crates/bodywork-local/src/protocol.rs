//! The messages between the CLI and the daemon, and their framing: one JSON
//! document per line over the daemon's Unix socket.
//!
//! A connection carries one request, after the client's protocol check (a
//! `Hello`, answered on the same connection) when it makes one; the CLI's
//! `Hello` carries the request itself (`then`), so a daemon of the same
//! protocol starts on it without waiting for a second message. The daemon
//! answers with one or more response frames; streaming requests (a workflow
//! run, `logs -f`) end with a final frame. During a workflow the client may
//! send `Cancel`.

use std::collections::BTreeMap;

use bodywork_runtime::{CronJobSpec, LogEvent, RunState, RuntimeError, WorkflowSubmission};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// Bumped when a message changes incompatibly; the client and daemon refuse
/// to talk across versions (the CLI then restarts the daemon: by a handover
/// when the daemon knows how, else by stopping it). 2: `DeleteNamespace`,
/// `Handover`. 3: errors as `RuntimeError`, a run's end as `RunState`,
/// answers as data (the CLI words them). 4: `NamespaceList`, a workflow's
/// secrets group, `RunDetached`. 5: `CronUpdate`. 6: `--resolve-as-of` in a
/// workflow and a cron job, environments with their lock. 7: `--python` in
/// a workflow and a cron job. 9: errors with their causes and hints, kinds
/// as `ObjectKind`. 10: records carry times as RFC 3339 in UTC, not words
/// (a log event's to the millisecond), a cron job's status as a run state,
/// and namespaces set up or deleted as what was done (`NamespaceSetUp`,
/// `NamespaceDeleted`), not lines. 11: every control-plane answer is one
/// `Answer` holding the call's own type. 12: `ServiceTraffic`, `EnvStatus`,
/// `ListRuns` before a run. 13: `CountRuns`; a run's options
/// (`RunSummary::options`); a workflow submission's `watcher` (standby
/// interpreters under `--watch`). 14: a `Hello` is followed by the
/// connection's request on the same connection. 15: a `Hello` may carry
/// that request (`then`), run at once when the protocols match (one round
/// trip fewer before a stage starts); a daemon of another protocol answers
/// the `Hello` alone, as one that does not know the field ignores it.
pub const PROTOCOL_VERSION: u32 = 15;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Hello {
        protocol: u32,
        /// The connection's request, for a daemon of the same protocol to
        /// run once it has answered (one of another protocol must not).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        then: Option<Box<Request>>,
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
        /// Only runs numbered below it: the next page of older runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
    },
    RunLogs {
        namespace: String,
        run: i64,
        follow: bool,
    },
    /// How many runs a namespace keeps (answered with `u64`).
    CountRuns {
        namespace: String,
    },
    /// The stage attempts of a run (answered with `Vec<StageAttempt>`).
    RunStages {
        namespace: String,
        run: i64,
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
    /// The recent traffic of a namespace's services (answered with
    /// `Vec<ServiceTraffic>`).
    ServiceTraffic {
        namespace: String,
    },
    EnvList,
    /// The environments with what uses them and their build locks
    /// (answered with `Vec<EnvironmentStatus>`).
    EnvStatus,
    EnvPrune,
    /// `cronjob create`.
    CronCreate(CronJobSpec),
    /// `update cronjob`: the cron job changed in place, its history kept.
    CronUpdate(CronJobSpec),
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
    /// Done: what `Shutdown` and `Handover` answer. Kept as it is across
    /// protocol versions, since a new CLI hands over from an old daemon.
    Ok,
    /// The answer to a request of the control plane: what its
    /// `ControlPlane` call returns (`()`, a record, a list), as JSON. The
    /// request says which type it is; the client reads it back as that type.
    Answer {
        value: serde_json::Value,
    },
    Error(RuntimeError),
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
        outcome: RunState,
    },
    /// The last frame of a stream.
    End,
}

impl Response {
    /// `value`, what a control-plane request returns, as its answer.
    pub fn answer<T: Serialize>(value: &T) -> Response {
        match serde_json::to_value(value) {
            Ok(value) => Response::Answer { value },
            Err(e) => Response::Error(RuntimeError::from_error("cannot encode the answer", &e)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonStatus {
    pub pid: u32,
    pub version: String,
    pub home: String,
    #[serde(with = "bodywork_runtime::time::rfc3339")]
    pub started: chrono::DateTime<chrono::Utc>,
    pub active_runs: Vec<i64>,
    /// Where the gateway listens, or why it does not.
    pub gateway: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvSummary {
    pub key: String,
    /// `X.Y.Z (real path of the base interpreter)`.
    pub python: String,
    pub requirements: Vec<String>,
    pub size_bytes: u64,
    #[serde(with = "bodywork_runtime::time::rfc3339")]
    pub created: chrono::DateTime<chrono::Utc>,
    #[serde(default, with = "bodywork_runtime::time::rfc3339_opt")]
    pub last_used: Option<chrono::DateTime<chrono::Utc>>,
    /// `X.Y.Z` of the base interpreter.
    #[serde(default)]
    pub python_version: String,
    /// The date its requirements were resolved as of (RFC 3339, UTC), or
    /// `now` when as of its build (`created`).
    #[serde(default)]
    pub resolved_as_of: String,
    /// Every distribution installed, `name==version`, sorted; `None` for an
    /// environment built before locks were recorded.
    #[serde(default)]
    pub lock: Option<Vec<String>>,
    /// Why a date asked for was not applied, when it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// `uv` or `pip`.
    #[serde(default)]
    pub installer: String,
    /// The environment's directory.
    #[serde(default)]
    pub dir: String,
}

/// The largest frame read, in bytes: far above any answer (log lines are
/// at most 64 KiB), so a peer cannot make the reader hold without bound.
pub const MAX_FRAME: u64 = 16 << 20;

/// One frame as it goes on the wire.
pub fn encode_frame<T: Serialize>(msg: &T) -> std::io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// Write one frame.
pub async fn write_frame<W, T>(w: &mut W, msg: &T) -> std::io::Result<()>
where
    W: AsyncWriteExt + Unpin,
    T: Serialize,
{
    w.write_all(&encode_frame(msg)?).await?;
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

/// The largest request the daemon reads (a secret's values are the
/// largest part of any request); a longer line is refused unread. JSON
/// nesting is limited too: by `serde_json`'s 128 levels.
pub const MAX_REQUEST_BYTES: u64 = 4 * 1024 * 1024;

/// Read one frame; `Ok(None)` at end of stream.
pub async fn read_frame<R, T>(r: &mut R) -> std::io::Result<Option<T>>
where
    R: AsyncBufReadExt + Unpin,
    T: for<'de> Deserialize<'de>,
{
    read_frame_within(r, MAX_FRAME).await
}

/// Read one request from a client: a frame of at most [`MAX_REQUEST_BYTES`].
pub async fn read_request<R>(r: &mut R) -> std::io::Result<Option<Request>>
where
    R: AsyncBufReadExt + Unpin,
{
    read_frame_within(r, MAX_REQUEST_BYTES).await
}

async fn read_frame_within<R, T>(r: &mut R, limit: u64) -> std::io::Result<Option<T>>
where
    R: AsyncBufReadExt + Unpin,
    T: for<'de> Deserialize<'de>,
{
    let mut line = String::new();
    let n = r.take(limit).read_line(&mut line).await?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with('\n') && n as u64 >= limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad message: longer than {} MiB", limit >> 20),
        ));
    }
    serde_json::from_str(&line).map(Some).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad message: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Hello` without a request is written as protocol 14 wrote it, and
    /// one carrying a request reads as a plain `Hello` to a daemon that does
    /// not know the field (it ignores it, so it never runs the request).
    #[test]
    fn a_hello_carries_its_request_in_a_field_older_daemons_ignore() {
        let bare = Request::Hello {
            protocol: 15,
            then: None,
        };
        assert_eq!(
            serde_json::to_string(&bare).unwrap(),
            r#"{"request":"hello","protocol":15}"#
        );
        let carrying = Request::Hello {
            protocol: 15,
            then: Some(Box::new(Request::Status)),
        };
        let text = serde_json::to_string(&carrying).unwrap();
        #[derive(Deserialize)]
        #[serde(tag = "request", rename_all = "snake_case")]
        enum Protocol14 {
            Hello { protocol: u32 },
        }
        assert!(matches!(
            serde_json::from_str::<Protocol14>(&text).unwrap(),
            Protocol14::Hello { protocol: 15 }
        ));
        assert!(matches!(
            serde_json::from_str::<Request>(&text).unwrap(),
            Request::Hello { protocol: 15, then: Some(r) } if matches!(*r, Request::Status)
        ));
    }

    #[tokio::test]
    async fn a_frame_larger_than_the_limit_is_refused_not_held() {
        let mut big = vec![b'"'];
        big.resize(MAX_FRAME as usize + 100, b'x');
        big.extend_from_slice(b"\"\n");
        let mut reader = tokio::io::BufReader::new(&big[..]);
        let e = read_frame::<_, Response>(&mut reader).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("longer than 16 MiB"), "{e}");
        let ok = encode_frame(&Response::Ok).unwrap();
        let mut reader = tokio::io::BufReader::new(&ok[..]);
        let frame = read_frame::<_, Response>(&mut reader).await.unwrap();
        assert!(matches!(frame, Some(Response::Ok)));
    }

    #[tokio::test]
    async fn an_answer_reads_back_as_the_type_it_was_written_from() {
        let namespaces = vec!["a".to_string(), "b".to_string()];
        let frame = encode_frame(&Response::answer(&namespaces)).unwrap();
        let mut reader = tokio::io::BufReader::new(&frame[..]);
        let Some(Response::Answer { value }) =
            read_frame::<_, Response>(&mut reader).await.unwrap()
        else {
            panic!("not an answer");
        };
        assert_eq!(
            serde_json::from_value::<Vec<String>>(value).unwrap(),
            namespaces
        );
        // `()`, what a call that only acts returns, is an answer too.
        let frame = encode_frame(&Response::answer(&())).unwrap();
        let mut reader = tokio::io::BufReader::new(&frame[..]);
        let Some(Response::Answer { value }) =
            read_frame::<_, Response>(&mut reader).await.unwrap()
        else {
            panic!("not an answer");
        };
        serde_json::from_value::<()>(value).unwrap();
    }

    async fn request(bytes: Vec<u8>) -> std::io::Result<Option<Request>> {
        let mut r = tokio::io::BufReader::new(std::io::Cursor::new(bytes));
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn a_request_longer_than_the_limit_is_refused_unread() {
        let limit = usize::try_from(MAX_REQUEST_BYTES).unwrap();
        let mut huge = br#"{"request":"namespace_exists","namespace":""#.to_vec();
        huge.resize(limit * 4, b'a');
        huge.extend_from_slice(b"\"}\n");
        let err = request(huge).await.unwrap_err();
        assert_eq!(err.to_string(), "bad message: longer than 4 MiB");
        // Without a newline at all, too.
        let err = request(vec![b' '; limit + 1]).await.unwrap_err();
        assert!(err.to_string().contains("longer than"), "{err}");
    }

    #[tokio::test]
    async fn a_request_just_under_the_limit_is_read() {
        let limit = usize::try_from(MAX_REQUEST_BYTES).unwrap();
        let head = br#"{"request":"namespace_exists","namespace":""#;
        let mut line = head.to_vec();
        line.resize(limit - 3, b'a');
        line.extend_from_slice(b"\"}\n");
        assert_eq!(line.len(), limit);
        let Some(Request::NamespaceExists { namespace }) = request(line).await.unwrap() else {
            panic!("not read as NamespaceExists")
        };
        assert_eq!(namespace.len(), limit - head.len() - 3);
    }

    #[tokio::test]
    async fn deeply_nested_json_is_refused_by_the_recursion_limit() {
        let mut deep = br#"{"request":"namespace_exists","namespace":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 100_000));
        deep.push(b'\n');
        let err = request(deep).await.unwrap_err();
        assert!(err.to_string().contains("recursion limit"), "{err}");
    }
}
