//! The daemon's supervisor: a small process that starts the control plane
//! again when it dies, and keeps its listening sockets open meanwhile.
//!
//! `bodywork daemon` runs this; it starts the control plane itself as its
//! child, `bodywork daemon --worker`. When the worker dies (a crash, an
//! abort, the OOM killer, `kill -9`) the supervisor starts a new one at once
//! (after a crash loop, with a growing delay), which adopts the service
//! replicas as after any restart. The worker sends the supervisor a
//! duplicate of every listening socket it opens (the gateway's, each
//! cluster address's, the CLI's Unix socket) over a socket pair, and says
//! when it closes one; the supervisor hands the ones it holds to the next
//! worker. So while no worker runs, the sockets stay bound and listening:
//! connections queue in the kernel and are served when the new worker is
//! up, instead of being refused.
//!
//! A worker that exits 0 (`daemon --stop`, SIGTERM, a hand-over to a new
//! daemon) ends the supervisor too, and so does one that could not start
//! ([`EXIT_START_FAILED`]: another daemon runs, the state is damaged...),
//! since starting it again would fail the same way. SIGTERM, SIGINT and
//! SIGHUP to the supervisor are passed on to the worker and end both.
//!
//! One supervisor a home: it holds `supervisor.lock` while it runs. One
//! started meanwhile (a command that found no daemon answering while the
//! worker was being started again) leaves at once, with success, and that
//! command finds the restarted daemon. A worker that hands over to a new
//! daemon first tells its supervisor to retire: it lets go of the lock for
//! the new one and ends with its worker, whatever its end.
//!
//! Owns: the worker's life and the sockets it holds. Must not: do any of
//! the control plane's work; it stays small so that it does not crash.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use crate::home::Home;
use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};

/// The flag that makes `bodywork daemon` the worker rather than the supervisor.
pub const WORKER_FLAG: &str = "--worker";
/// Names the worker's end of the socket pair to its supervisor.
pub const SUPERVISOR_FD_ENV: &str = "BODYWORK_SUPERVISOR_FD";
/// Names an inherited listening Unix socket for the CLI (`daemon.sock`).
pub const CONTROL_ENV: &str = "BODYWORK_INHERITED_CONTROL";
/// The key the CLI's Unix socket is held under.
pub const CONTROL_KEY: &str = "control";
/// The worker's exit code when it could not start: not retried.
pub const EXIT_START_FAILED: u8 = 3;

/// A worker that dies after it has started (its CLI socket is open) is
/// started again at once, unless more than this many did so within
/// [`DEATH_WINDOW`]; one that dies while starting counts towards the delay.
const DEATHS_BEFORE_DELAY: usize = 5;
const DEATH_WINDOW: Duration = Duration::from_secs(60);
/// The longest wait before a crash-looping worker is started again.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// How often the worker's life is looked at between messages.
const LOOK_EVERY: Duration = Duration::from_millis(20);

static STOPPING: AtomicBool = AtomicBool::new(false);
static WORKER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn pass_on(sig: nix::libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
    let pid = WORKER_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            nix::libc::kill(pid, sig);
        }
    }
}

/// How the supervisor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The worker stopped as asked (or handed over).
    Stopped,
    /// The worker could not start, or the supervisor could not run it.
    Failed,
}

/// How long a new supervisor waits for the lock of one that retires.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Run the supervisor of `home` in the foreground: start `exe daemon
/// --worker` and start it again each time it dies, until it stops on purpose.
pub fn supervise(exe: &Path, home: &Home) -> Ended {
    let lock = match home.create().and_then(|()| home.open_supervisor_lock()) {
        Ok(lock) => lock,
        Err(e) => {
            tracing::error!(target: "supervisor", "cannot open the supervisor's lock in {}: {e}", home.root().display());
            return Ended::Failed;
        }
    };
    let deadline = Instant::now() + LOCK_WAIT;
    while lock.try_lock().is_err() {
        if Instant::now() > deadline {
            tracing::info!(target: "supervisor", "another supervisor runs for {}; leaving the daemon to it", home.root().display());
            return Ended::Stopped;
        }
        std::thread::sleep(LOOK_EVERY);
    }
    let mut lock = Some(lock);
    let (ours, theirs) = match socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    ) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::error!(target: "supervisor", "cannot make a socket pair: {e}; the daemon runs unsupervised");
            return run_unsupervised(exe);
        }
    };
    let mut held = inherited();
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let action = nix::sys::signal::SigAction::new(
            nix::sys::signal::SigHandler::Handler(pass_on),
            nix::sys::signal::SaFlags::SA_RESTART,
            nix::sys::signal::SigSet::empty(),
        );
        // SAFETY: the handler only stores to atomics and calls kill(2).
        if let Err(e) = unsafe { nix::sys::signal::sigaction(sig, &action) } {
            tracing::warn!(target: "supervisor", "cannot handle {sig}: {e}");
        }
    }
    let mut failed_starts = 0u32;
    let mut deaths: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    loop {
        let mut child = match spawn_worker(exe, theirs.as_raw_fd(), &held) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(target: "supervisor", "cannot start the daemon ({}): {e}", exe.display());
                return Ended::Failed;
            }
        };
        WORKER_PID.store(child.id() as i32, Ordering::SeqCst);
        if STOPPING.load(Ordering::SeqCst) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let (status, mut started) = watch(&mut child, &ours, &mut held, &mut lock);
        WORKER_PID.store(0, Ordering::SeqCst);
        // What it said before it died counts: an opened listener is kept.
        started |= receive_all(&ours, &mut held, false, &mut lock);
        if STOPPING.load(Ordering::SeqCst) || status.success() {
            return Ended::Stopped;
        }
        if lock.is_none() {
            tracing::warn!(target: "supervisor", "the daemon (pid {}) {} while handing over; the new daemon carries on", child.id(), died(status));
            return Ended::Stopped;
        }
        if status.code() == Some(i32::from(EXIT_START_FAILED)) {
            return Ended::Failed;
        }
        let now = Instant::now();
        deaths.push_back(now);
        while deaths
            .front()
            .is_some_and(|d| now.duration_since(*d) > DEATH_WINDOW)
        {
            deaths.pop_front();
        }
        let delay = if started {
            failed_starts = 0;
            let over = deaths.len().saturating_sub(DEATHS_BEFORE_DELAY);
            restart_delay(u32::try_from(over).unwrap_or(u32::MAX))
        } else {
            failed_starts = failed_starts.saturating_add(1);
            restart_delay(failed_starts - 1)
        };
        tracing::error!(target: "supervisor",
            "the daemon (pid {}) {}; starting it again{}, with {} listening socket(s) kept open",
            child.id(), died(status),
            if delay.is_zero() { String::new() } else { format!(" in {} s", delay.as_secs()) },
            held.len());
        let until = Instant::now() + delay;
        while Instant::now() < until {
            if STOPPING.load(Ordering::SeqCst) {
                return Ended::Stopped;
            }
            receive_all(&ours, &mut held, false, &mut lock);
            std::thread::sleep(LOOK_EVERY);
        }
    }
}

/// Without a socket pair: run the worker once, as before supervision.
fn run_unsupervised(exe: &Path) -> Ended {
    let status = Command::new(exe).arg("daemon").arg(WORKER_FLAG).status();
    match status {
        Ok(s) if s.success() => Ended::Stopped,
        _ => Ended::Failed,
    }
}

/// The delay before starting a worker again after `n` deaths that count
/// (see [`DEATHS_BEFORE_DELAY`]): none for the first, then 1 s, 2 s, 4 s...
/// up to [`MAX_DELAY`].
fn restart_delay(n: u32) -> Duration {
    match n {
        0 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_DELAY),
    }
}

/// How a worker ended, in words.
fn died(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
            Ok(sig) => format!("was killed by {sig}"),
            Err(_) => format!("was killed by signal {sig}"),
        },
        _ => "died".to_string(),
    }
}

/// Start a worker with the listening sockets held so far.
fn spawn_worker(
    exe: &Path,
    channel: RawFd,
    held: &HashMap<String, OwnedFd>,
) -> std::io::Result<Child> {
    let mut cmd = Command::new(exe);
    cmd.arg("daemon")
        .arg(WORKER_FLAG)
        .env(SUPERVISOR_FD_ENV, channel.to_string())
        .env_remove(crate::listeners::INHERITED_ENV)
        .env_remove(CONTROL_ENV);
    let tcp: Vec<String> = held
        .iter()
        .filter(|(key, _)| key.as_str() != CONTROL_KEY)
        .map(|(key, fd)| format!("{key}={}", fd.as_raw_fd()))
        .collect();
    if !tcp.is_empty() {
        cmd.env(crate::listeners::INHERITED_ENV, tcp.join(","));
    }
    if let Some(control) = held.get(CONTROL_KEY) {
        cmd.env(CONTROL_ENV, control.as_raw_fd().to_string());
    }
    let mut fds: Vec<RawFd> = held.values().map(AsRawFd::as_raw_fd).collect();
    fds.push(channel);
    // SAFETY: fcntl is async-signal-safe; `fds` was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || crate::listeners::keep_across_exec(&fds));
    }
    cmd.spawn()
}

/// Wait for the worker to end, taking its messages meanwhile; whether it
/// finished starting (it opened its CLI socket) comes with its status.
fn watch(
    child: &mut Child,
    channel: &OwnedFd,
    held: &mut HashMap<String, OwnedFd>,
    lock: &mut Option<std::fs::File>,
) -> (ExitStatus, bool) {
    let mut started = false;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (status, started),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(target: "supervisor", "cannot wait for the daemon: {e}");
                // Should not happen; blocking is the only way left.
                if let Ok(status) = child.wait() {
                    return (status, started);
                }
                return (ExitStatus::from_raw(1 << 8), started);
            }
        }
        started |= receive_all(channel, held, true, lock);
    }
}

/// Take every message waiting on `channel` (waiting up to [`LOOK_EVERY`]
/// for the first one when `wait`). A worker's retirement lets go of `lock`.
/// `true` when the worker opened its CLI socket: it has finished starting.
fn receive_all(
    channel: &OwnedFd,
    held: &mut HashMap<String, OwnedFd>,
    wait: bool,
    lock: &mut Option<std::fs::File>,
) -> bool {
    let mut started = false;
    let mut first = wait;
    loop {
        if first {
            first = false;
            let mut fds = [nix::poll::PollFd::new(
                channel.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            let timeout = nix::poll::PollTimeout::try_from(LOOK_EVERY.as_millis() as i32)
                .unwrap_or(nix::poll::PollTimeout::NONE);
            match nix::poll::poll(&mut fds, timeout) {
                Ok(n) if n > 0 => {}
                _ => return started,
            }
        }
        match receive(channel) {
            Some(Message::Open(key, fd)) => {
                started |= key == CONTROL_KEY;
                held.insert(key, fd);
            }
            Some(Message::Close(key)) => {
                held.remove(&key);
            }
            Some(Message::Retire) => {
                tracing::info!(target: "supervisor", "the daemon hands over to a new one; this supervisor ends with it");
                *lock = None;
            }
            None => return started,
        }
    }
}

/// What a worker tells its supervisor.
#[derive(Debug)]
enum Message {
    /// A listening socket it opened, under its key (an address, or
    /// [`CONTROL_KEY`]).
    Open(String, OwnedFd),
    /// It closed the one under this key.
    Close(String),
    /// It hands over to a new daemon, which has a supervisor of its own.
    Retire,
}

/// One message from `channel`, if one is waiting.
fn receive(channel: &OwnedFd) -> Option<Message> {
    let mut buf = [0u8; 512];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let (len, fd) = {
        let msg = socket::recvmsg::<()>(
            channel.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .ok()?;
        let mut fd = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for cmsg in cmsgs {
                if let ControlMessageOwned::ScmRights(fds) = cmsg {
                    for raw in fds {
                        // SAFETY: a descriptor just received is ours alone.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        fd.get_or_insert(owned);
                    }
                }
            }
        }
        (msg.bytes, fd)
    };
    if len == 0 {
        return None;
    }
    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
    match (text.split_once(' '), fd) {
        (Some(("open", key)), Some(fd)) => Some(Message::Open(key.to_string(), fd)),
        (Some(("close", key)), _) => Some(Message::Close(key.to_string())),
        (None, _) if text == "retire" => Some(Message::Retire),
        // Unknown: skipped, the next one is read.
        _ => receive(channel),
    }
}

/// The worker's side: tell the supervisor of a listening socket opened
/// under `key` (a duplicate of `fd` goes with it).
pub fn tell_opened(channel: RawFd, key: &str, fd: RawFd) -> std::io::Result<()> {
    send(channel, &format!("open {key}"), &[fd])
}

/// The worker's side: tell the supervisor the socket under `key` is closed.
pub fn tell_closed(channel: RawFd, key: &str) -> std::io::Result<()> {
    send(channel, &format!("close {key}"), &[])
}

/// The worker's side: tell the supervisor it hands over to a new daemon.
pub fn tell_retire(channel: RawFd) -> std::io::Result<()> {
    send(channel, "retire", &[])
}

/// One message: `text`, with `fds` (if any) passed along.
fn send(channel: RawFd, text: &str, fds: &[RawFd]) -> std::io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    socket::sendmsg::<()>(
        channel,
        &[IoSlice::new(text.as_bytes())],
        if fds.is_empty() { &[] } else { &rights },
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map(|_| ())
    .map_err(std::io::Error::from)
}

/// Listening sockets this supervisor was started with (a hand-over from
/// another daemon): held for its first worker, and every later one.
fn inherited() -> HashMap<String, OwnedFd> {
    let mut held = HashMap::new();
    if let Some(value) = std::env::var_os(crate::listeners::INHERITED_ENV) {
        let value = value.to_string_lossy();
        for (key, addr, fd) in crate::listeners::inherited_entries(&value) {
            if let Some(listener) = crate::listeners::adopt_fd(fd, addr) {
                held.insert(key.to_string(), OwnedFd::from(listener));
            }
        }
    }
    if let Some(fd) = std::env::var(CONTROL_ENV)
        .ok()
        .and_then(|v| v.parse::<RawFd>().ok())
        .and_then(crate::listeners::adopt_unix_fd)
    {
        held.insert(CONTROL_KEY.to_string(), OwnedFd::from(fd));
    }
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_loop_waits_longer_each_time_up_to_a_limit() {
        let delays: Vec<u64> = (0..9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn sockets_opened_and_closed_by_the_worker_are_held_and_let_go() {
        let (ours, theirs) = socket::socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("pair");
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let b = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
        let (ka, kb) = (
            a.local_addr().expect("addr").to_string(),
            b.local_addr().expect("addr").to_string(),
        );
        tell_opened(theirs.as_raw_fd(), &ka, a.as_raw_fd()).expect("sent");
        tell_opened(theirs.as_raw_fd(), &kb, b.as_raw_fd()).expect("sent");
        tell_closed(theirs.as_raw_fd(), &kb).expect("sent");
        tell_retire(theirs.as_raw_fd()).expect("sent");
        let mut held = HashMap::new();
        let mut lock = Some(tempfile::tempfile().expect("a file"));
        assert!(!receive_all(&ours, &mut held, true, &mut lock));
        assert!(lock.is_none(), "retired");
        assert_eq!(held.keys().collect::<Vec<_>>(), [&ka]);
        // The held duplicate is the same listening socket, still open once
        // the worker's own copy is closed.
        drop(a);
        let dup = std::net::TcpListener::from(held.remove(&ka).expect("held"));
        assert_eq!(dup.local_addr().expect("addr").to_string(), ka);
        let client = std::net::TcpStream::connect(&ka).expect("connect queues");
        let (served, _) = dup.accept().expect("accepted from the held socket");
        drop((client, served));
        // Nothing waiting: no message, no block.
        receive_all(&ours, &mut held, false, &mut lock);
        assert!(held.is_empty());
    }

    #[test]
    fn how_a_worker_died_is_said_in_words() {
        assert_eq!(died(ExitStatus::from_raw(9)), "was killed by SIGKILL");
        assert_eq!(died(ExitStatus::from_raw(101 << 8)), "exited with code 101");
    }
}
