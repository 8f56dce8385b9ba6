//! The control-plane daemon: one per `$BODYWORK_HOME`, serving the CLI over
//! a Unix socket readable by the user only.
//!
//! Owns: the single-instance lock, start-up recovery after a crash (leftover
//! stage processes killed, interrupted runs marked failed), accepting
//! connections, and an orderly stop on SIGTERM / SIGINT / `daemon --stop`
//! (every run cancelled, every child killed, state recorded).

mod dashboard;
mod live;
mod requests;
pub(crate) mod runs;
mod scheduler;
mod service_logs;
mod traffic;

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bodywork_gateway::AcceptBackoff;
use bodywork_runtime::CancellationToken;
use bodywork_state::{AttemptStatus, Store};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};

use crate::home::Home;
use crate::protocol::{Request, read_request, write_error, write_frame};
use crate::runtime::LocalRuntime;
use bodywork_stage::process::{self, ProcessId};

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another bodywork daemon is already running for {home} (pid {pid})")]
    AlreadyRunning { home: String, pid: String },
    #[error("cannot prepare {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    /// Its message names the database file and says what to do.
    #[error("{0}")]
    Store(bodywork_state::StoreError),
}

// Not `#[from]`: the message already says the cause, and a `source()`
// would have it printed twice.
impl From<bodywork_state::StoreError> for DaemonError {
    fn from(e: bodywork_state::StoreError) -> DaemonError {
        DaemonError::Store(e)
    }
}

fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.display().to_string(),
        cause: source,
    }
}

/// A workflow run in progress.
pub(crate) struct ActiveRun {
    pub cancel: CancellationToken,
    /// `(namespace, project)` once the plan is known.
    pub key: Option<(String, String)>,
    /// The repository whose services it deploys, once the plan is known
    /// (shown redacted); `None` for a batch-only run.
    pub repo: Option<String>,
}

/// What every connection handler shares.
pub(crate) struct Daemon {
    pub runtime: LocalRuntime,
    pub runs: Mutex<HashMap<i64, ActiveRun>>,
    pub shutdown: CancellationToken,
    pub started: chrono::DateTime<chrono::Utc>,
    /// Where the gateway listens (`127.0.0.1:8001`), or why it does not.
    pub gateway: Mutex<Result<SocketAddr, String>>,
    pub gateway_stop: CancellationToken,
    /// The cron scheduler's shared half (see `crate::cron`).
    pub cron: crate::cron::CronHandle,
    /// Set when the daemon stops for a handover: the next daemon, which
    /// adopts the service replicas and listening sockets.
    pub handover: Mutex<Option<Successor>>,
    /// The gateway's accept loop; it ends once its requests in flight have.
    pub gateway_task: Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
    /// The gateway's counters, sampled every period.
    pub traffic: Arc<traffic::TrafficHistory>,
}

/// The daemon to hand over to: its program and environment.
#[derive(Debug, Clone)]
pub(crate) struct Successor {
    pub exe: std::path::PathBuf,
    pub env: Vec<(String, String)>,
}

impl Daemon {
    pub fn home(&self) -> &Home {
        self.runtime.home()
    }

    /// The workflow runs going now.
    pub fn active_run_ids(&self) -> Vec<i64> {
        self.runs
            .lock()
            .map(|r| r.keys().copied().collect())
            .unwrap_or_default()
    }
}

/// Run the daemon in the foreground until it is told to stop.
pub async fn run(home: Home) -> Result<(), DaemonError> {
    home.create().map_err(io_err(home.root()))?;
    let lock = home.open_lock().map_err(io_err(&home.lock_file()))?;
    if lock.try_lock().is_err() {
        let pid = std::fs::read_to_string(home.pid_file()).unwrap_or_default();
        return Err(DaemonError::AlreadyRunning {
            home: home.root().display().to_string(),
            pid: pid.trim().to_string(),
        });
    }
    std::fs::write(home.pid_file(), std::process::id().to_string())
        .map_err(io_err(&home.pid_file()))?;

    let store = Store::open(home.state_db())?;
    recover(&store);
    let (cron, cron_commands) = crate::cron::CronHandle::new();
    let runtime = LocalRuntime::new(home.clone(), store);
    let traffic = Arc::new(traffic::TrafficHistory::new(
        runtime.services().traffic(),
        chrono::Utc::now(),
    ));
    let daemon = Arc::new(Daemon {
        runtime,
        runs: Mutex::new(HashMap::new()),
        shutdown: CancellationToken::new(),
        started: chrono::Utc::now(),
        gateway: Mutex::new(Err("not started".into())),
        gateway_stop: CancellationToken::new(),
        cron,
        handover: Mutex::new(None),
        gateway_task: Mutex::new(None),
        traffic,
    });

    daemon.runtime.restore_services().await;
    start_gateway(&daemon).await;
    // Sockets a previous daemon handed over that nothing claimed.
    daemon.runtime.services().listeners().drop_unclaimed();

    let socket = home.socket();
    let listener = daemon
        .runtime
        .services()
        .listeners()
        .control(&socket)
        .map_err(io_err(&socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(io_err(&socket))?;
    tracing::info!(target: "daemon", "listening on {} (pid {})", socket.display(), std::process::id());
    let scheduler = tokio::spawn(scheduler::run_scheduler(daemon.clone(), cron_commands));
    tokio::spawn(
        daemon
            .traffic
            .clone()
            .keep_sampling(daemon.shutdown.clone()),
    );
    tokio::spawn(crate::logfiles::keep_rotating(
        home.clone(),
        daemon.shutdown.clone(),
    ));

    let mut sigterm = signal(SignalKind::terminate()).map_err(io_err(&socket))?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(io_err(&socket))?;
    let mut backoff = AcceptBackoff::new(format!("the CLI socket {}", socket.display()));
    loop {
        tokio::select! {
            stream = accept_cli(&listener, &mut backoff) => {
                let daemon = daemon.clone();
                tokio::spawn(async move { serve(daemon, stream).await });
            },
            _ = sigterm.recv() => { tracing::info!(target: "daemon", "SIGTERM received, stopping"); break; }
            _ = sigint.recv() => { tracing::info!(target: "daemon", "SIGINT received, stopping"); break; }
            _ = daemon.shutdown.cancelled() => { tracing::info!(target: "daemon", "stop requested"); break; }
        }
    }
    // No cron run or retry may start once runs are being cancelled.
    daemon.cron.stop();
    let _ = scheduler.await;
    stop(&daemon).await;
    let next = daemon.handover.lock().ok().and_then(|h| h.clone());
    if let Some(next) = next {
        drop(listener);
        hand_over(&daemon, &home, lock, &next).await;
        return Ok(());
    }
    daemon.runtime.services().shutdown().await;
    daemon.gateway_stop.cancel();
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(home.pid_file());
    drop(lock);
    Ok(())
}

/// The next CLI connection. An accept that fails (out of file descriptors)
/// is retried after a pause that grows while it keeps failing, and logged
/// once, rather than at once and per failure: the socket stays readable,
/// so the loop would spin and fill the log. Cancel-safe.
async fn accept_cli(listener: &UnixListener, backoff: &mut AcceptBackoff) -> UnixStream {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.succeeded();
                return stream;
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

/// How long a daemon that handed over waits for the requests (gateway) and
/// connections (cluster addresses) it still carries to finish before it exits.
const HANDOVER_DRAIN: Duration = Duration::from_secs(10);

/// Start the next daemon from `exe` and hand it this one's place: the home's
/// socket, pid file and lock, the service replicas (adopted, never stopped)
/// and the listening sockets (both daemons accept on them until the new one
/// is up, so no connection is refused). Then stop accepting, let requests in
/// flight finish, and return. If the next daemon does not come up, the
/// replicas keep running and the next command starts a daemon that adopts
/// them.
async fn hand_over(daemon: &Daemon, home: &Home, lock: File, next: &Successor) {
    let services = daemon.runtime.services();
    services.detach();
    let _ = std::fs::remove_file(home.socket());
    let _ = std::fs::remove_file(home.pid_file());
    drop(lock);
    services.listeners().retire();
    let (fds, env) = services.listeners().handed_on();
    tracing::info!(target: "daemon", "handing over to a new daemon ({}): {} replica(s), {} listening socket(s)",
        next.exe.display(), services.replica_count(), fds.len());
    let spawned = crate::client::spawn_daemon(home, &next.exe, Some(&next.env), &fds, Some(&env));
    let started = match spawned {
        Ok(child) => crate::client::wait_started(home, child).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(()) => {
            tracing::info!(target: "daemon", "the new daemon is up; this one stops accepting")
        }
        Err(e) => {
            tracing::error!(target: "daemon", "the new daemon did not come up ({e}); the replicas keep running for the next one")
        }
    }
    daemon.gateway_stop.cancel();
    services.stop_accepting();
    // Requests through the gateway, then connections through the cluster
    // addresses, that this daemon still carries.
    let deadline = tokio::time::Instant::now() + HANDOVER_DRAIN;
    let task = daemon.gateway_task.lock().ok().and_then(|mut t| t.take());
    if let Some(task) = task {
        let _ = tokio::time::timeout_at(deadline, task).await;
    }
    let traffic = services.traffic();
    while traffic.total_in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = traffic.total_in_flight();
    if left > 0 {
        tracing::warn!(target: "daemon", "{left} request(s) or connection(s) still in flight after {}s; leaving them", HANDOVER_DRAIN.as_secs());
    }
}

/// The address the gateway listens on: `BODYWORK_GATEWAY_ADDR`, else
/// loopback port 8001: only this machine reaches it unless told otherwise.
pub const DEFAULT_GATEWAY: &str = "127.0.0.1:8001";

/// Where the gateway listens, from `BODYWORK_GATEWAY_ADDR`: an address, or
/// `localhost:PORT` (loopback). Beyond loopback every service would be open
/// to the network, so that takes `BODYWORK_GATEWAY_PUBLIC=1`, and
/// a warning says so.
fn gateway_addr(wanted: &str, public: bool) -> Result<SocketAddr, String> {
    let addr = match wanted.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}"),
        None => wanted.to_string(),
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|e| format!("BODYWORK_GATEWAY_ADDR={wanted:?} is not an address: {e}"))?;
    if addr.ip().is_loopback() {
        return Ok(addr);
    }
    if !public {
        return Err(format!(
            "BODYWORK_GATEWAY_ADDR={wanted} is not a loopback address: every service would be \
             open to the network; set BODYWORK_GATEWAY_PUBLIC=1 as well if that is what you want"
        ));
    }
    tracing::warn!(target: "daemon", "the gateway listens on {addr}, beyond loopback: every service is open to the network (BODYWORK_GATEWAY_PUBLIC=1)");
    Ok(addr)
}

/// The gateway's options: the hosts it answers are kubectl proxy's
/// (localhost, 127.0.0.1, [::1]) and those of
/// `BODYWORK_GATEWAY_ACCEPT_HOSTS` (comma-separated names).
fn gateway_options(max_connections: usize) -> bodywork_gateway::GatewayOptions {
    let mut options = bodywork_gateway::GatewayOptions {
        max_connections,
        ..bodywork_gateway::GatewayOptions::default()
    };
    if let Ok(more) = std::env::var("BODYWORK_GATEWAY_ACCEPT_HOSTS") {
        options.accept_hosts.extend(
            more.split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(String::from),
        );
    }
    options
}

/// Start the HTTP gateway. A daemon without its gateway still runs stages
/// and services (reachable at their cluster addresses), so a failure to
/// bind is reported, not fatal.
async fn start_gateway(daemon: &Arc<Daemon>) {
    let wanted =
        std::env::var("BODYWORK_GATEWAY_ADDR").unwrap_or_else(|_| DEFAULT_GATEWAY.to_string());
    let public = std::env::var("BODYWORK_GATEWAY_PUBLIC").is_ok_and(|v| v == "1");
    let result = match gateway_addr(&wanted, public) {
        Err(e) => Err(e),
        Ok(addr) => match daemon.runtime.services().listeners().listen(addr) {
            Err(e) => Err(format!("cannot listen on {addr}: {e}")),
            Ok(listener) => {
                let bound = listener.local_addr().unwrap_or(addr);
                let services = daemon.runtime.services();
                let budget = services.connection_budget();
                tracing::info!(target: "daemon", "connections served at once: {} by the gateway, {} by the cluster addresses (from the file descriptor limit, {})",
                    budget.gateway, budget.cluster, budget.nofile);
                let directory: Arc<dyn bodywork_gateway::Directory> = services.table();
                let mut options = gateway_options(budget.gateway);
                match dashboard::GatewayDashboard::new(
                    daemon.home().clone(),
                    bound.port(),
                    daemon.gateway_stop.clone(),
                ) {
                    Ok(pages) => {
                        options.pages = Some(bodywork_gateway::PagesHandle(Arc::new(pages)));
                    }
                    Err(e) => {
                        tracing::warn!(target: "daemon", "no dashboard at the gateway's /ui/: {e}");
                    }
                }
                let task = tokio::spawn(bodywork_gateway::serve_gateway(
                    listener,
                    directory,
                    services.traffic(),
                    options,
                    daemon.gateway_stop.clone(),
                ));
                if let Ok(mut slot) = daemon.gateway_task.lock() {
                    *slot = Some(task);
                }
                services.set_gateway_url(format!("http://{bound}"));
                Ok(bound)
            }
        },
    };
    match &result {
        Ok(addr) => tracing::info!(target: "daemon", "gateway listening on http://{addr}"),
        Err(why) => tracing::error!(target: "daemon", "the gateway is not running: {why}"),
    }
    let _ = std::fs::write(
        daemon.home().root().join("gateway.addr"),
        result.as_ref().map(|a| a.to_string()).unwrap_or_default(),
    );
    if let Ok(mut g) = daemon.gateway.lock() {
        *g = result;
    }
}

/// After a crash: kill stage processes the previous daemon left behind and
/// mark its unfinished runs failed, so nothing is left in limbo.
fn recover(store: &Store) {
    match store.running_attempts() {
        Ok(attempts) => {
            let mut leftovers = Vec::new();
            for a in &attempts {
                if let Some(pid) = a.pid {
                    let id = ProcessId {
                        pid,
                        start_time: a.pid_start_time,
                    };
                    if process::is_alive(id) {
                        tracing::warn!(target: "daemon", "stopping leftover process {pid} of run {} stage {}", a.run_id, a.stage);
                        leftovers.push(id);
                    }
                }
            }
            // All at once: each may take its reaper up to 10 s.
            process::end_trees(&leftovers);
            for a in attempts {
                let _ = store.finish_attempt(
                    a.id,
                    AttemptStatus::Failed,
                    None,
                    Some("the daemon stopped while the stage was running"),
                );
            }
        }
        Err(e) => tracing::error!(target: "daemon", "cannot list leftover stage attempts: {e}"),
    }
    match store.mark_interrupted_runs("the daemon stopped while the run was going on") {
        Ok(runs) => {
            for r in runs {
                tracing::warn!(target: "daemon", "run {} was interrupted and is now marked failed", r.id);
            }
        }
        Err(e) => tracing::error!(target: "daemon", "cannot mark interrupted runs: {e}"),
    }
}

/// Cancel every run and wait (bounded) for them to record their end.
async fn stop(daemon: &Daemon) {
    let tokens: Vec<CancellationToken> = match daemon.runs.lock() {
        Ok(runs) => runs.values().map(|r| r.cancel.clone()).collect(),
        Err(_) => Vec::new(),
    };
    for t in &tokens {
        t.cancel();
    }
    for _ in 0..100 {
        if daemon.runs.lock().map(|r| r.is_empty()).unwrap_or(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One connection: one request, one or more responses; a `Hello` (the
/// client's protocol check) is answered first, on the same connection,
/// and the request it carries (`then`) is the connection's request when
/// the client speaks this daemon's protocol.
async fn serve(daemon: Arc<Daemon>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let request: Request = loop {
        match read_request(&mut read).await {
            Ok(Some(Request::Hello { protocol, then })) => {
                let hello = Request::Hello {
                    protocol,
                    then: None,
                };
                let response = requests::handle(&daemon, hello).await;
                if write_frame(&mut write, &response).await.is_err() {
                    return;
                }
                // Of another protocol, the request may mean something else
                // here: the client restarts this daemon instead.
                if let Some(request) = then
                    && protocol == requests::announced_protocol()
                {
                    break *request;
                }
            }
            Ok(Some(r)) => break r,
            Ok(None) => return,
            Err(e) => {
                write_error(&mut write, bodywork_runtime::RuntimeError::failed(e)).await;
                return;
            }
        }
    };
    if let Request::RunWorkflow(submission) = request {
        runs::attached::run_for_client(daemon, submission, read, write).await;
        return;
    }
    if let Request::RunDetached {
        submission,
        name,
        retries,
    } = request
    {
        let response = runs::detached::start_detached(daemon, submission, name, retries);
        let _ = write_frame(&mut write, &response).await;
        return;
    }
    if let Request::RunLogs {
        namespace,
        run,
        follow,
    } = request
    {
        runs::streaming::stream_logs(&daemon, &namespace, run, follow, &mut write).await;
        return;
    }
    if let Request::ServiceLogs {
        namespace,
        name,
        follow,
    } = request
    {
        service_logs::stream(&daemon, &namespace, &name, follow, read, &mut write).await;
        return;
    }
    if let Request::CronLogs { namespace, name } = request {
        requests::stream_run_logs(&daemon, &namespace, &name, &mut write).await;
        return;
    }
    let response = requests::handle(&daemon, request).await;
    let _ = write_frame(&mut write, &response).await;
}

#[cfg(test)]
mod gateway_addr_tests {
    use super::gateway_addr;

    #[test]
    fn the_gateway_stays_on_loopback_unless_told_otherwise() {
        assert_eq!(
            gateway_addr("127.0.0.1:8001", false).unwrap().to_string(),
            "127.0.0.1:8001"
        );
        assert_eq!(
            gateway_addr("localhost:9000", false).unwrap().to_string(),
            "127.0.0.1:9000"
        );
        assert_eq!(
            gateway_addr("[::1]:8001", false).unwrap().to_string(),
            "[::1]:8001"
        );
        let refused = gateway_addr("0.0.0.0:8001", false).unwrap_err();
        assert!(refused.contains("BODYWORK_GATEWAY_PUBLIC=1"), "{refused}");
        assert_eq!(
            gateway_addr("0.0.0.0:8001", true).unwrap().to_string(),
            "0.0.0.0:8001"
        );
        assert!(gateway_addr("nowhere", false).is_err());
    }
}
