//! The CLI side of the socket: connect to the daemon, starting it in the
//! background on first use, and exchange frames; [`LocalControl`] is the
//! local runtime's [`bodywork_runtime::ControlPlane`], forwarding each call.

mod control;

pub use control::LocalControl;

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::BufReader;
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::home::Home;
use crate::protocol::{PROTOCOL_VERSION, Request, Response, read_frame, write_frame};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start the bodywork daemon: {0}")]
    Start(String),
    #[error("the bodywork daemon did not come up within {0} seconds; see {1}")]
    StartTimeout(u64, String),
    #[error("lost the connection to the bodywork daemon: {0}")]
    Io(std::io::Error),
    #[error("the bodywork daemon closed the connection unexpectedly; see {0}")]
    Closed(String),
    #[error("{0}")]
    Daemon(String),
    #[error("{UNEXPECTED}; {RESTART}")]
    Unexpected,
    /// The daemon answered with the runtime's own error.
    #[error(transparent)]
    Runtime(#[from] bodywork_runtime::RuntimeError),
}

// Not `#[from]`: the message already says the cause, and a `source()`
// would have it printed twice.
impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

/// The daemon's failure as a runtime error: what failed, its cause, and
/// where to look.
impl From<ClientError> for bodywork_runtime::RuntimeError {
    fn from(e: ClientError) -> Self {
        use bodywork_runtime::RuntimeError;
        match e {
            ClientError::Runtime(e) => e,
            ClientError::Start(why) => {
                RuntimeError::unavailable("cannot start the bodywork daemon").with_cause(why)
            }
            ClientError::StartTimeout(secs, log) => RuntimeError::unavailable(format!(
                "the bodywork daemon did not come up within {secs} seconds"
            ))
            .with_hint(format!("see {log}")),
            ClientError::Io(e) => {
                RuntimeError::unavailable("lost the connection to the bodywork daemon")
                    .with_cause(e)
            }
            ClientError::Closed(log) => {
                RuntimeError::unavailable("the bodywork daemon closed the connection unexpectedly")
                    .with_hint(format!("see {log}"))
            }
            ClientError::Unexpected => unexpected(),
            ClientError::Daemon(message) => RuntimeError::unavailable(message),
        }
    }
}

/// What to say when the daemon answers something this CLI did not ask for
/// (a daemon of another build that kept the protocol number), and what to do.
const UNEXPECTED: &str = "unexpected answer from the bodywork daemon";
const RESTART: &str = "restart it with `bodywork daemon --restart`";

/// [`UNEXPECTED`] as a runtime error, its advice as a hint.
pub fn unexpected() -> bodywork_runtime::RuntimeError {
    bodywork_runtime::RuntimeError::failed(UNEXPECTED).with_hint(RESTART)
}

/// One connection carrying one request (after the protocol check, when
/// [`connect`] made it).
pub struct Connection {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    log_hint: String,
}

impl Connection {
    pub async fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        Ok(write_frame(&mut self.write, request).await?)
    }

    /// The next frame; an error when the daemon hung up mid-answer.
    pub async fn next(&mut self) -> Result<Response, ClientError> {
        read_frame(&mut self.read)
            .await?
            .ok_or_else(|| ClientError::Closed(self.log_hint.clone()))
    }

    /// Send a request and return its single answer, turning a daemon
    /// `Error` frame into `ClientError::Runtime`.
    pub async fn call(mut self, request: &Request) -> Result<Response, ClientError> {
        self.ask(request).await
    }

    /// [`Connection::call`], keeping the connection for the next request
    /// (only after a `Hello`: the daemon reads one other request).
    async fn ask(&mut self, request: &Request) -> Result<Response, ClientError> {
        self.send(request).await?;
        self.answer().await
    }

    /// The next frame as the single answer to a request, a daemon `Error`
    /// frame turned into `ClientError::Runtime`.
    pub async fn answer(&mut self) -> Result<Response, ClientError> {
        match self.next().await? {
            Response::Error(e) => Err(ClientError::Runtime(e)),
            other => Ok(other),
        }
    }

    pub fn writer(&mut self) -> &mut OwnedWriteHalf {
        &mut self.write
    }
}

async fn try_connect(home: &Home) -> std::io::Result<Connection> {
    let stream = UnixStream::connect(home.socket()).await?;
    let (read, write) = stream.into_split();
    Ok(Connection {
        read: BufReader::new(read),
        write,
        log_hint: home.daemon_log().display().to_string(),
    })
}

/// Is a daemon answering for this home?
pub async fn is_running(home: &Home) -> bool {
    try_connect(home).await.is_ok()
}

/// Connect to the daemon of `home` and send it `request`, starting the
/// daemon when it is not running, and restarting it when it speaks another
/// protocol version (after an upgrade). The request rides on the protocol
/// check (`Hello`'s `then`), which a daemon of another protocol does not
/// run: one connection and one message, not two of each. The connection
/// returned carries the request's answers.
pub async fn connect(home: &Home, request: &Request) -> Result<Connection, ClientError> {
    if let Ok(mut conn) = try_connect(home).await {
        match conn
            .ask(&Request::Hello {
                protocol: PROTOCOL_VERSION,
                then: Some(Box::new(request.clone())),
            })
            .await
        {
            Ok(Response::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {
                return Ok(conn);
            }
            // It went away while answering: it crashed (its supervisor
            // starts it again) or stopped. Whichever daemon comes up is
            // waited for below; a second supervisor leaves it to the first.
            Err(ClientError::Io(_) | ClientError::Closed(_)) => {}
            _ => {
                tracing::info!(target: "daemon", "restarting the daemon (it speaks another protocol version)");
                // Keep the services serving if it knows how to hand over;
                // an older daemon does not, and stops them.
                if handover(home).await.is_ok() {
                    return sent(home, request).await;
                }
                stop(home).await?;
            }
        }
    }
    start(home).await?;
    sent(home, request).await
}

/// A new connection to the daemon (just started, or handed over to)
/// carrying `request`.
async fn sent(home: &Home, request: &Request) -> Result<Connection, ClientError> {
    let mut conn = try_connect(home).await?;
    conn.send(request).await?;
    Ok(conn)
}

/// Ask the daemon to stop (its services too) and wait until it has.
/// `false` when none was running.
pub async fn stop(home: &Home) -> Result<bool, ClientError> {
    let Ok(conn) = try_connect(home).await else {
        return Ok(false);
    };
    conn.call(&Request::Shutdown).await?;
    wait_gone(home).await?;
    Ok(true)
}

/// Restart the daemon without stopping services: the running daemon starts
/// a new one from this binary and hands it its replicas and listening
/// sockets, so services keep serving throughout. Refused while workflow
/// runs are going. `false` when none was running (one is started).
pub async fn restart(home: &Home) -> Result<bool, ClientError> {
    if try_connect(home).await.is_err() {
        start(home).await?;
        return Ok(false);
    }
    handover(home).await?;
    Ok(true)
}

/// Ask the running daemon to hand over to one started from this binary,
/// and wait until the new one answers.
async fn handover(home: &Home) -> Result<(), ClientError> {
    let old = daemon_pid(home).await?;
    let exe = std::env::current_exe().map_err(|e| ClientError::Start(e.to_string()))?;
    let conn = try_connect(home).await?;
    let request = Request::Handover {
        exe: exe.display().to_string(),
        env: std::env::vars_os()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect(),
    };
    match conn.call(&request).await? {
        Response::Ok => {}
        _ => return Err(ClientError::Unexpected),
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(pid) = daemon_pid(home).await
            && pid != old
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ClientError::StartTimeout(
                30,
                home.daemon_log().display().to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pid of the daemon answering on the home's socket.
async fn daemon_pid(home: &Home) -> Result<u32, ClientError> {
    let conn = try_connect(home).await?;
    match conn
        .call(&Request::Hello {
            protocol: PROTOCOL_VERSION,
            then: None,
        })
        .await?
    {
        Response::Hello { pid, .. } => Ok(pid),
        _ => Err(ClientError::Unexpected),
    }
}

/// Wait until a stopping daemon has gone: its socket removed and its lock
/// released (so a new daemon can take it at once).
async fn wait_gone(home: &Home) -> Result<(), ClientError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let socket_gone = try_connect(home).await.is_err();
        if socket_gone && lock_is_free(home) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(ClientError::Daemon(
                "the daemon did not stop within 30 seconds".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether no daemon holds the home's lock (taken and released at once).
fn lock_is_free(home: &Home) -> bool {
    home.open_lock().is_ok_and(|file| file.try_lock().is_ok())
}

/// Start `bodywork daemon` detached from this terminal, logging to the home.
async fn start(home: &Home) -> Result<(), ClientError> {
    let exe = std::env::current_exe().map_err(|e| ClientError::Start(e.to_string()))?;
    let child = spawn_daemon(home, &exe, None, &[], None)?;
    wait_started(home, child).await
}

/// Start `EXE daemon` for `home`, detached from this terminal, logging to
/// the home, with `env` (else this process's environment); `inherit_*`
/// hand it listening sockets (see `crate::listeners`).
pub(crate) fn spawn_daemon(
    home: &Home,
    exe: &std::path::Path,
    env: Option<&[(String, String)]>,
    inherit_fds: &[std::os::fd::RawFd],
    inherit_env: Option<&str>,
) -> Result<tokio::process::Child, ClientError> {
    home.create()
        .map_err(|e| ClientError::Start(format!("{}: {e}", home.root().display())))?;
    let log_path = home.daemon_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ClientError::Start(format!("{}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| ClientError::Start(e.to_string()))?;
    let mut cmd = tokio::process::Command::new(exe);
    if let Some(env) = env {
        cmd.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    cmd.arg("daemon")
        .env("BODYWORK_HOME", home.root())
        .env("NO_COLOR", "1")
        .env_remove(crate::listeners::INHERITED_ENV)
        .env_remove(crate::supervisor::SUPERVISOR_FD_ENV)
        .env_remove(crate::supervisor::CONTROL_ENV)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(false);
    if let Some(env) = inherit_env {
        cmd.env(crate::listeners::INHERITED_ENV, env);
    }
    let fds = inherit_fds.to_vec();
    // A session of its own: no terminal hang-up or Ctrl-C reaches the
    // daemon; the listeners handed to it survive exec.
    // SAFETY: setsid and fcntl are async-signal-safe and touch no memory of
    // the parent (`fds` was allocated before the fork).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            crate::listeners::keep_across_exec(&fds)
        });
    }
    cmd.spawn().map_err(|e| ClientError::Start(e.to_string()))
}

/// Wait until the daemon `child` answers on the home's socket.
pub(crate) async fn wait_started(
    home: &Home,
    mut child: tokio::process::Child,
) -> Result<(), ClientError> {
    let log_path = home.daemon_log();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if try_connect(home).await.is_ok() {
            // The daemon lives on; nobody waits for it but init.
            tokio::spawn(async move {
                let _ = child.wait().await;
            });
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            // Lost a race with another CLI starting the daemon at the same time?
            if try_connect(home).await.is_ok() {
                return Ok(());
            }
            // A supervisor that found another one running (whose daemon is
            // starting again) leaves with success: wait for that daemon.
            if status.success() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if Instant::now() > deadline {
                    return Err(ClientError::StartTimeout(
                        15,
                        log_path.display().to_string(),
                    ));
                }
                continue;
            }
            // Its last words say why (e.g. a damaged state database).
            return Err(ClientError::Start(match last_error(&log_path) {
                Some(why) => why,
                None => format!("it exited with {status}; see {}", log_path.display()),
            }));
        }
        if Instant::now() > deadline {
            return Err(ClientError::StartTimeout(
                15,
                log_path.display().to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The daemon's own error, when the last line of its log is one
/// (`error: ...`, as a daemon that cannot start prints it).
fn last_error(log: &std::path::Path) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))
        .ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    let last = tail.lines().rev().find(|l| !l.trim().is_empty())?;
    last.strip_prefix("error: ").map(str::to_string)
}
