//! The CLI side of the socket: connect to the daemon, starting it in the
//! background on first use, and exchange frames.

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
    Io(#[from] std::io::Error),
    #[error("the bodywork daemon closed the connection unexpectedly; see {0}")]
    Closed(String),
    #[error("{0}")]
    Daemon(String),
}

/// One connection carrying one request.
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
    /// `Error` frame into `ClientError::Daemon`.
    pub async fn call(mut self, request: &Request) -> Result<Response, ClientError> {
        self.send(request).await?;
        match self.next().await? {
            Response::Error { message } => Err(ClientError::Daemon(message)),
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

/// Connect to the daemon of `home`, starting it when it is not running,
/// and restarting it when it speaks another protocol version (after an upgrade).
pub async fn connect(home: &Home) -> Result<Connection, ClientError> {
    if let Ok(conn) = try_connect(home).await {
        match conn
            .call(&Request::Hello {
                protocol: PROTOCOL_VERSION,
            })
            .await
        {
            Ok(Response::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {
                return Ok(try_connect(home).await?);
            }
            _ => {
                tracing::info!(target: "daemon", "restarting the daemon (it speaks another protocol version)");
                stop(home).await?;
            }
        }
    }
    start(home).await?;
    Ok(try_connect(home).await?)
}

/// Ask the daemon to stop and wait until its socket is gone.
pub async fn stop(home: &Home) -> Result<bool, ClientError> {
    let Ok(conn) = try_connect(home).await else {
        return Ok(false);
    };
    conn.call(&Request::Shutdown).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while try_connect(home).await.is_ok() {
        if Instant::now() > deadline {
            return Err(ClientError::Daemon(
                "the daemon did not stop within 30 seconds".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(true)
}

/// Start `bodywork daemon` detached from this terminal, logging to the home.
async fn start(home: &Home) -> Result<(), ClientError> {
    home.create()
        .map_err(|e| ClientError::Start(format!("{}: {e}", home.root().display())))?;
    let exe = std::env::current_exe().map_err(|e| ClientError::Start(e.to_string()))?;
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
    cmd.arg("daemon")
        .env("BODYWORK_HOME", home.root())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .kill_on_drop(false);
    // A session of its own: no terminal hang-up or Ctrl-C reaches the daemon.
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| ClientError::Start(e.to_string()))?;
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
            return Err(ClientError::Start(format!(
                "it exited with {status}; see {}",
                log_path.display()
            )));
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
