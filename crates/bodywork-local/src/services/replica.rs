//! One replica of a service: a supervised, long-lived process.
//!
//! Its output goes to its own log file through its reaper (not through the
//! daemon), which bounds the file on disk (see `crate::logfiles`), so a
//! replica outlives a crash of the daemon, its output still written, and
//! can be adopted by the next one. The supervision loop probes readiness (every socket listening
//! for the pod address and port is the replica's own process tree's, and
//! accepts a TCP connection; a squatter's socket is reported, never taken
//! for the replica), and every new connection to a ready replica is vetted
//! the same way ([`Replica::vet`]: a squatter that re-creates its
//! `SO_REUSEPORT` socket between two probes is caught there), restarts a
//! crashed process with exponential back-off,
//! and on stop sends SIGTERM to the whole process group, then after a grace
//! period ends the whole tree (its reaper kills what left the group, then
//! SIGKILL to the group).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bodywork_runtime::CancellationToken;
use nix::sys::signal::Signal;
use tokio::sync::{mpsc, watch};

use crate::sockets::{self, Holder, Ownership};
use bodywork_stage::process::{self, ProcessId, StageCommand};
use bodywork_stage::reaper::LogTo;

/// Back-off after a crash: 1 s, doubling, at most this.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A process that ran this long before crashing starts its back-off afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How often readiness is probed while not ready: often in the first
/// seconds of a process, when a roll waits for it (a refused connection to
/// loopback costs microseconds), less after.
const PROBE_INTERVAL: Duration = Duration::from_millis(50);
const FIRST_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// How long after a start readiness is probed every [`FIRST_PROBE_INTERVAL`].
const FIRST_PROBES: Duration = Duration::from_secs(10);
/// How often a ready replica's sockets are checked again for a squatter.
const RECHECK_INTERVAL: Duration = Duration::from_secs(2);

/// What a replica runs and where.
#[derive(Debug, Clone)]
pub struct ReplicaSpec {
    pub index: u32,
    pub generation: i64,
    pub address: Ipv4Addr,
    pub port: u16,
    pub command: StageCommand,
    pub log_path: PathBuf,
}

impl ReplicaSpec {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((self.address, self.port))
    }

    fn target(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.address, self.port)
    }

    /// Where its process's output goes: its log, bounded as a service's.
    pub fn log_to(&self) -> LogTo {
        LogTo {
            path: self.log_path.clone(),
            part_max: crate::logfiles::SERVICE_LOG_PART,
        }
    }
}

/// What the vetting of new connections ([`Replica::vet`]) and the
/// supervisor share.
struct OwnSockets {
    /// Inodes of the sockets listening on the replica's port that the last
    /// full ownership check found harmless (its tree's, or IPv6-only): a
    /// new connection needs no full check while only these listen.
    cleared: RwLock<HashSet<u64>>,
    /// One full check at a time: connections opened together wait for the
    /// first one's answer instead of each reading `/proc`.
    full_check: tokio::sync::Mutex<()>,
    /// A foreign socket found by a vetting, for the supervisor to take the
    /// replica out of service (it alone changes its readiness).
    found: mpsc::Sender<String>,
}

impl OwnSockets {
    fn clear(&self, cleared: Vec<u64>) {
        if let Ok(mut set) = self.cleared.write() {
            *set = cleared.into_iter().collect();
        }
    }

    fn only_cleared_listen(&self, target: SocketAddrV4) -> bool {
        self.cleared
            .read()
            .is_ok_and(|set| sockets::only_known_listen(target, &set))
    }
}

/// Whether a replica takes traffic, as its supervisor last found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Starting,
    Ready,
    /// Someone else listens for its pod address and port: why, in words
    /// (`pod address A:P is held by pid N (COMMAND)`).
    Held(String),
}

/// Why a replica did not get ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    TimedOut,
    Held(String),
}

/// Where a replica is in its life, as the supervisor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Crashed,
    Stopped,
}

/// Told about every change, to record it (state store) and report it (logs).
pub trait ReplicaEvents: Send + Sync + 'static {
    fn changed(&self, spec: &ReplicaSpec, phase: Phase, pid: Option<ProcessId>, restarts: u32);
    fn crashed(&self, spec: &ReplicaSpec, how: &str, restart_in: Duration, restarts: u32);
}

pub struct Replica {
    pub spec: ReplicaSpec,
    ready: watch::Receiver<Readiness>,
    own: Arc<OwnSockets>,
    restarts: Arc<Mutex<u32>>,
    pid: Arc<Mutex<Option<ProcessId>>>,
    stop: CancellationToken,
    detach: CancellationToken,
    /// Held while the supervisor spawns or records: see `Supervisor::unless_detached`.
    gate: Arc<Mutex<()>>,
    grace: Arc<Mutex<Duration>>,
    finished: watch::Receiver<bool>,
}

impl Replica {
    /// Start supervising: adopt `adopt` when it is still the same live
    /// process, else spawn a new one.
    pub fn start(
        spec: ReplicaSpec,
        adopt: Option<ProcessId>,
        restarts: u32,
        events: Arc<dyn ReplicaEvents>,
    ) -> Arc<Replica> {
        let (ready_tx, ready) = watch::channel(Readiness::Starting);
        let (finished_tx, finished) = watch::channel(false);
        // One finding is enough: the replica is out of service after it.
        let (found, found_rx) = mpsc::channel(1);
        let own = Arc::new(OwnSockets {
            cleared: RwLock::new(HashSet::new()),
            full_check: tokio::sync::Mutex::new(()),
            found,
        });
        let replica = Arc::new(Replica {
            spec,
            ready,
            own: own.clone(),
            restarts: Arc::new(Mutex::new(restarts)),
            pid: Arc::new(Mutex::new(None)),
            stop: CancellationToken::new(),
            detach: CancellationToken::new(),
            gate: Arc::new(Mutex::new(())),
            grace: Arc::new(Mutex::new(Duration::from_secs(10))),
            finished,
        });
        let supervisor = Supervisor {
            spec: replica.spec.clone(),
            ready: ready_tx,
            restarts: replica.restarts.clone(),
            pid: replica.pid.clone(),
            stop: replica.stop.clone(),
            detach: replica.detach.clone(),
            gate: replica.gate.clone(),
            grace: replica.grace.clone(),
            own,
            events,
        };
        tokio::spawn(async move {
            supervisor.run(adopt, found_rx).await;
            let _ = finished_tx.send(true);
        });
        replica
    }

    pub fn is_ready(&self) -> bool {
        *self.ready.borrow() == Readiness::Ready
    }

    pub fn restarts(&self) -> u32 {
        self.restarts.lock().map(|r| *r).unwrap_or(0)
    }

    pub fn pid(&self) -> Option<ProcessId> {
        self.pid.lock().ok().and_then(|p| *p)
    }

    /// Whether a new connection to the replica may be used, asked just
    /// before it is opened and again once it is (before anything is sent
    /// on it): every socket listening for the pod address and port must be
    /// one the last full check found harmless ([`sockets::only_known_listen`],
    /// tens of microseconds). Another socket gets the full check of its
    /// process tree (a few ms). One found foreign refuses the connection
    /// with the holder named, and the supervisor takes the replica out of
    /// service, as its own recheck would; otherwise its inodes are
    /// remembered. A socket that was gone before the look found its holder
    /// is looked at again, so one closing as it is looked at is not taken
    /// for a squatter.
    pub async fn vet(&self) -> Result<(), String> {
        /// Looks at a foreign socket whose holder could not be seen.
        const LOOKS: usize = 3;
        let target = self.spec.target();
        if self.own.only_cleared_listen(target) {
            return Ok(());
        }
        let _one = self.own.full_check.lock().await;
        if self.own.only_cleared_listen(target) {
            return Ok(());
        }
        let Some(id) = self.pid() else {
            return Ok(()); // Not running: connecting tells.
        };
        for look in 1..=LOOKS {
            match ownership(target, id.pid, Duration::ZERO).await {
                Some(Ownership::Ours { cleared }) => {
                    self.own.clear(cleared);
                    return Ok(());
                }
                Some(Ownership::Foreign(held))
                    if matches!(held.holder, Holder::Process { .. }) || look == LOOKS =>
                {
                    let why = held.describe("pod address", target);
                    // Full: the supervisor has a finding to act on already.
                    let _ = self.own.found.try_send(why.clone());
                    return Err(why);
                }
                Some(Ownership::Foreign(_)) => {}
                // Nothing listens (connecting tells), or /proc unreadable
                // (the replica could not have been found ready either).
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// Wait until the replica is ready, someone else is found holding its
    /// address, or `deadline` (if any) passes.
    pub async fn wait_ready(&self, deadline: Option<Instant>) -> Result<(), NotReady> {
        let mut rx = self.ready.clone();
        let settled = async {
            rx.wait_for(|r| *r != Readiness::Starting)
                .await
                .map(|r| r.clone())
                .ok()
        };
        let settled = match deadline {
            Some(deadline) => {
                let until = tokio::time::Instant::from_std(deadline);
                tokio::time::timeout_at(until, settled).await.ok().flatten()
            }
            None => settled.await,
        };
        match settled {
            Some(Readiness::Ready) => Ok(()),
            Some(Readiness::Held(why)) => Err(NotReady::Held(why)),
            _ => Err(NotReady::TimedOut),
        }
    }

    /// Stop supervising it, leaving its process running and its state as
    /// it is, for the next daemon to adopt. It stays ready for traffic.
    /// When this returns, the supervisor spawns and records nothing more
    /// (a spawn or record in progress has finished).
    pub fn detach(&self) {
        self.detach.cancel();
        drop(self.gate.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Stop it: SIGTERM to its process group, SIGKILL after `grace`; returns
    /// when the process is gone.
    pub async fn stop(&self, grace: Duration) {
        if let Ok(mut g) = self.grace.lock() {
            *g = grace;
        }
        self.stop.cancel();
        let mut done = self.finished.clone();
        let _ = done.wait_for(|f| *f).await;
    }
}

struct Supervisor {
    spec: ReplicaSpec,
    ready: watch::Sender<Readiness>,
    restarts: Arc<Mutex<u32>>,
    pid: Arc<Mutex<Option<ProcessId>>>,
    stop: CancellationToken,
    detach: CancellationToken,
    gate: Arc<Mutex<()>>,
    grace: Arc<Mutex<Duration>>,
    own: Arc<OwnSockets>,
    events: Arc<dyn ReplicaEvents>,
}

enum Running {
    Child(tokio::process::Child),
    /// A process started by an earlier daemon or forked by a zygote: not
    /// our child, so watched through /proc instead of `wait`, and how it
    /// ended read from its reaper's exit record.
    Adopted(ProcessId),
}

impl Running {
    /// Wait for the process to end; a description of how it ended. `log`:
    /// the replica's log, beside which its reaper records how it ended.
    async fn exited(&mut self, log: &Path) -> String {
        use bodywork_stage::reaper::{Ended, read_exit_record};
        let ended = match self {
            Running::Child(child) => match child.wait().await {
                Ok(status) => {
                    use std::os::unix::process::ExitStatusExt;
                    match (status.code(), status.signal()) {
                        (Some(c), _) => Some(Ended::Code(c)),
                        (_, Some(s)) => Some(Ended::Signal(s)),
                        _ => None,
                    }
                }
                Err(e) => return format!("could not be waited for: {e}"),
            },
            Running::Adopted(id) => {
                process::until_gone(*id).await;
                read_exit_record(log)
            }
        };
        match ended {
            Some(Ended::Code(c)) => format!("exited with code {c}"),
            Some(Ended::Signal(s)) => format!("was killed by signal {s}"),
            None => "exited".into(),
        }
    }
}

impl Supervisor {
    /// Run `f` (a spawn, a state record) unless the replica was handed over;
    /// `Replica::detach` waits for a call in progress, so the next daemon
    /// never reads a state this one is still changing.
    fn unless_detached<T>(&self, f: impl FnOnce() -> T) -> Option<T> {
        let _gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        (!self.detach.is_cancelled()).then(f)
    }

    fn restarts(&self) -> u32 {
        self.restarts.lock().map(|r| *r).unwrap_or(0)
    }

    fn set_pid(&self, id: Option<ProcessId>) {
        if let Ok(mut p) = self.pid.lock() {
            *p = id;
        }
    }

    fn spawn(&self) -> std::io::Result<(Running, ProcessId)> {
        let child = process::logged_process_command(&self.spec.command, &self.spec.log_to())?
            .kill_on_drop(false)
            .spawn()?;
        let pid = child.id().unwrap_or(0);
        Ok((
            Running::Child(child),
            ProcessId {
                pid,
                start_time: process::start_time(pid),
            },
        ))
    }

    async fn run(self, mut adopt: Option<ProcessId>, mut found: mpsc::Receiver<String>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let started = Instant::now();
            // Handed over: the next daemon starts what is not running.
            let Some(spawned) = self.unless_detached(|| {
                let pair = match adopt.take().filter(|id| process::is_running(*id)) {
                    Some(id) => (Running::Adopted(id), id),
                    None => match self.spawn() {
                        Ok(pair) => pair,
                        Err(e) => {
                            self.events.crashed(
                                &self.spec,
                                &format!("could not start: {e}"),
                                backoff,
                                self.restarts(),
                            );
                            return None;
                        }
                    },
                };
                self.set_pid(Some(pair.1));
                self.events
                    .changed(&self.spec, Phase::Starting, Some(pair.1), self.restarts());
                Some(pair)
            }) else {
                return;
            };
            let Some((mut running, id)) = spawned else {
                if self.sleep_or_stop(backoff).await {
                    return self.finish();
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            };
            let target = self.spec.target();
            // A new process: its sockets are yet to be found its own.
            self.own.clear(Vec::new());
            while found.try_recv().is_ok() {}
            let mut ready = false;
            // Found held: probed at the pace of a ready replica, since each
            // probe then looks for the holder among every process.
            let mut held = false;
            let mut suspect = None;
            let how = loop {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => {
                        self.terminate(id, &mut running).await;
                        return self.finish();
                    }
                    _ = self.detach.cancelled() => return,
                    how = running.exited(&self.spec.log_path) => break how,
                    Some(why) = found.recv() => {
                        // A new connection found a foreign socket.
                        if ready {
                            if self.unless_detached(|| self.held(why, true)).is_none() {
                                return;
                            }
                            (ready, held) = (false, true);
                        }
                    }
                    probed = probe(target, id.pid, ready, ready || held, &mut suspect, probe_interval(started)) => match probed {
                        Probe::Ready(cleared) if !ready => {
                            self.own.clear(cleared);
                            let recorded = self.unless_detached(|| {
                                let _ = self.ready.send(Readiness::Ready);
                                self.events.changed(&self.spec, Phase::Ready, Some(id), self.restarts());
                            });
                            if recorded.is_none() {
                                return;
                            }
                            (ready, held) = (true, false);
                        }
                        Probe::Ready(cleared) => self.own.clear(cleared),
                        Probe::Held(why) => {
                            if self.unless_detached(|| self.held(why, ready)).is_none() {
                                return;
                            }
                            (ready, held) = (false, true);
                        }
                        _ => {}
                    },
                }
            };
            // Ended while someone else listens for its address: that is
            // why (it could not bind), said now rather than after restarts.
            if let Some(why) = foreign_listener(target, id.pid).await
                && self.unless_detached(|| self.held(why, false)).is_none()
            {
                return;
            }
            if started.elapsed() > HEALTHY_RUN {
                backoff = Duration::from_secs(1);
            }
            let recorded = self.unless_detached(|| {
                self.unready();
                // Grandchildren the replica left behind go with it.
                process::kill_group(id.pid, Signal::SIGKILL);
                let restarts = {
                    let mut r = self.restarts.lock().map(|r| *r).unwrap_or(0);
                    r += 1;
                    if let Ok(mut guard) = self.restarts.lock() {
                        *guard = r;
                    }
                    r
                };
                self.set_pid(None);
                self.events
                    .changed(&self.spec, Phase::Crashed, None, restarts);
                self.events.crashed(&self.spec, &how, backoff, restarts);
            });
            if recorded.is_none() {
                return;
            }
            if self.sleep_or_stop(backoff).await {
                return self.finish();
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sleep, unless told to stop (or detached) first (then true).
    async fn sleep_or_stop(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => true,
            _ = self.detach.cancelled() => true,
            _ = tokio::time::sleep(d) => false,
        }
    }

    /// Not ready any more (a replica found held stays so: that is why).
    fn unready(&self) {
        self.ready.send_if_modified(|r| {
            let was_ready = *r == Readiness::Ready;
            if was_ready {
                *r = Readiness::Starting;
            }
            was_ready
        });
    }

    /// Someone else listens for the replica's address: no traffic for it,
    /// and whoever waits for it learns why (said once, not at every probe).
    fn held(&self, why: String, was_ready: bool) {
        let held = Readiness::Held(why);
        self.ready.send_if_modified(|r| {
            if *r == held {
                return false;
            }
            let (index, generation) = (self.spec.index, self.spec.generation);
            let now = if was_ready {
                "no longer takes traffic"
            } else {
                "is not ready"
            };
            if let Readiness::Held(why) = &held {
                tracing::warn!(target: "services", "replica {index} (generation {generation}) {now}: {why}");
            }
            *r = held.clone();
            true
        });
    }

    async fn terminate(&self, id: ProcessId, running: &mut Running) {
        self.unready();
        let grace = self
            .grace
            .lock()
            .map(|g| *g)
            .unwrap_or(Duration::from_secs(10));
        process::kill_group(id.pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, running.exited(&self.spec.log_path))
            .await
            .is_err()
        {
            // Its reaper ends the tree, double forks included, then the group goes.
            process::end_tree_async(id).await;
            let _ =
                tokio::time::timeout(Duration::from_secs(5), running.exited(&self.spec.log_path))
                    .await;
        }
        // Whatever else is left in the group goes too.
        process::kill_group(id.pid, Signal::SIGKILL);
        // Gone before this returns: its reaper writes its log until it
        // exits, and a deleted service's log folder is removed next.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), running.exited(&self.spec.log_path)).await;
        self.set_pid(None);
    }

    /// Record the end of supervision; a detached replica's record is left
    /// for the next daemon.
    fn finish(&self) {
        self.unless_detached(|| {
            self.unready();
            self.events
                .changed(&self.spec, Phase::Stopped, None, self.restarts());
        });
    }
}

/// [`sockets::ownership`] off the async workers (it reads `/proc`); `None`
/// when `/proc` cannot be read.
async fn ownership(target: SocketAddrV4, root: u32, max_age: Duration) -> Option<Ownership> {
    let checked =
        tokio::task::spawn_blocking(move || sockets::ownership(target, root, max_age)).await;
    checked.ok()?.ok()
}

/// Who else listens for `target`, if anyone does, in words.
async fn foreign_listener(target: SocketAddrV4, root: u32) -> Option<String> {
    match ownership(target, root, Duration::ZERO).await? {
        Ownership::Foreign(held) => Some(held.describe("pod address", target)),
        _ => None,
    }
}

/// The pause after a probe that found a process `started` then not ready.
fn probe_interval(started: Instant) -> Duration {
    if started.elapsed() < FIRST_PROBES {
        FIRST_PROBE_INTERVAL
    } else {
        PROBE_INTERVAL
    }
}

/// What one probe found.
enum Probe {
    /// The inodes found harmless ([`Ownership::Ours`]).
    Ready(Vec<u64>),
    NotYet,
    /// Someone else listens for the address (seen on two probes in a row,
    /// so a socket closing as it is looked at is not taken for a squatter).
    Held(String),
}

/// One readiness probe: `target` must take a TCP connection, and every
/// socket listening for it must be held by the process tree of `root` (see
/// [`sockets::tree`]). A ready replica is checked again (its sockets only,
/// no connection); with `slow`, after [`RECHECK_INTERVAL`]. After a
/// failure, pause before the next probe. `suspect` is the inode of a
/// foreign socket seen by the previous probe.
async fn probe(
    target: SocketAddrV4,
    root: u32,
    ready: bool,
    slow: bool,
    suspect: &mut Option<u64>,
    interval: Duration,
) -> Probe {
    if slow {
        tokio::time::sleep(RECHECK_INTERVAL).await;
    }
    // Until something accepts, there is nothing to look up (the socket
    // tables are costly to read: a few ms each on a large machine).
    let connect = tokio::net::TcpStream::connect(target);
    if !ready
        && !matches!(
            tokio::time::timeout(Duration::from_secs(1), connect).await,
            Ok(Ok(_))
        )
    {
        *suspect = None;
        if !slow {
            tokio::time::sleep(interval).await;
        }
        return Probe::NotYet;
    }
    // Rechecks of ready replicas may share one read of the tables.
    let max_age = if ready {
        RECHECK_INTERVAL / 2
    } else {
        Duration::ZERO
    };
    let found = match ownership(target, root, max_age).await {
        Some(Ownership::Ours { cleared }) => {
            *suspect = None;
            Probe::Ready(cleared)
        }
        Some(Ownership::Foreign(held)) => {
            if suspect.replace(held.inode) == Some(held.inode) {
                Probe::Held(held.describe("pod address", target))
            } else {
                Probe::NotYet
            }
        }
        _ => {
            *suspect = None;
            Probe::NotYet
        }
    };
    if !slow && matches!(found, Probe::NotYet) {
        tokio::time::sleep(interval).await;
    }
    found
}
