//! The per-stage reaper: what makes a stage's whole process tree end with
//! it, double forks included (issue 15, point 5).
//!
//! A process group is not a tree: a grandchild that calls `setsid()` (or
//! `setpgid`) and forks again leaves the group, so `killpg` misses it and it
//! outlives its stage. The local runtime therefore starts every batch stage
//! and every service replica as `bodywork __reap -- PROGRAM ARGS...` (see
//! [`crate::process::use_reaper`]): this small process, the group leader
//! whose pid the daemon records, marks itself a *child subreaper*
//! (`PR_SET_CHILD_SUBREAPER`), so every orphan of the tree is reparented to
//! it instead of to init and stays findable through /proc parent links;
//! starts the stage in the reaper's process group, with the environment,
//! directory and stdout/stderr the reaper was given (passed through
//! untouched: the reaper prints nothing unless it cannot start the stage);
//! reaps every descendant (`waitpid(-1)` is safe: it has no other
//! children); and then:
//!
//! - SIGTERM, SIGINT, SIGHUP or SIGQUIT reaching it (the daemon signals the
//!   group) is forwarded to the descendants that left its process group:
//!   group members got it already, so the stage sees each signal once;
//! - when the stage's main process ends, or on [`END_TREE`] from outside
//!   the tree (what the daemon sends where it used to SIGKILL the group;
//!   the reaper ignores the stage's own `kill -USR2 0`), it SIGKILLs every
//!   descendant until it has no child left, then exits with the main
//!   process's status (re-raising its signal, so the daemon still sees
//!   `Signalled(n)`).
//!
//! The daemon never SIGKILLs a live reaper first (a killed reaper cannot
//! clean up): [`crate::process::end_tree`] asks it with [`END_TREE`], waits
//! for it to exit, and only then kills the group as before. Nothing ties
//! the reaper to the daemon (no parent-death signal): when the daemon is
//! killed with SIGKILL, replicas keep running and the next daemon adopts
//! them by the reaper's pid. `bodywork stage` (what a Kubernetes pod runs)
//! uses the reaper too, so a timed-out attempt's escaped grandchild does not
//! live on into the next attempt in the same pod.
//!
//! Still possible: a stage that kills its reaper (`kill -9 0`, or its
//! parent by pid) frees its escaped descendants; so does a process started
//! through another service (`systemd-run`, `at`, a container engine), which
//! is never in the tree. A cgroup per stage would cover those; it needs a
//! delegated cgroup v2 subtree, which an ordinary user session lacks.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use crate::process::{descendants, process_table};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{Pid, getpgrp};

/// Asks a reaper to kill its whole tree now and exit.
pub const END_TREE: Signal = Signal::SIGUSR2;

/// The hidden subcommand of the `bodywork` binary that runs [`run`].
pub const SUBCOMMAND: &str = "__reap";

/// Signals forwarded to descendants that left the reaper's process group.
const FORWARDED: [Signal; 4] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
];

/// How long ending the tree may take before the reaper gives up on what it
/// cannot kill (another user's process, one stuck in the kernel).
const END_LIMIT: Duration = Duration::from_secs(5);

/// Exit code when the stage cannot be started (as a shell's "not found").
const CANNOT_START: i32 = 127;

/// Run `program` with `args` as the reaper described above; returns the
/// exit code to end with when the stage exited (a signal is re-raised and
/// never returns).
pub fn run(program: &OsString, args: &[OsString]) -> i32 {
    // Without the flag the tree is still ended through the links /proc
    // shows, as long as no intermediate process has exited.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    let mut watched = SigSet::empty();
    watched.add(Signal::SIGCHLD);
    watched.add(END_TREE);
    for s in FORWARDED {
        watched.add(s);
    }
    // Blocked from before the stage starts, so none is missed, and read
    // from a signalfd, which also names the sender. The reaper runs before
    // any other thread exists (see `bodywork_cli::main`), so this thread's
    // mask is the process's.
    let signals = match watched
        .thread_block()
        .and_then(|()| SignalFd::with_flags(&watched, SfdFlags::SFD_CLOEXEC))
    {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("bodywork: cannot start the stage's reaper: {e}");
            return CANNOT_START;
        }
    };
    let mut stage = std::process::Command::new(program);
    stage.args(args);
    // SAFETY: between fork and exec the child only calls pthread_sigmask,
    // which is async-signal-safe; the stage starts with the mask the
    // reaper was started with.
    unsafe {
        stage.pre_exec(move || watched.thread_unblock().map_err(std::io::Error::from));
    }
    let main = match stage.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            eprintln!(
                "bodywork: cannot start {}: {e}",
                std::path::Path::new(program).display()
            );
            return CANNOT_START;
        }
    };
    let own_group = getpgrp();
    let mut status = None;
    loop {
        if let Some(s) = reap(main).main {
            status = Some(s);
            break;
        }
        let Ok(Some(info)) = signals.read_signal() else {
            continue;
        };
        let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
            continue;
        };
        let tree = descendants(&[std::process::id()], &process_table());
        if FORWARDED.contains(&signal) {
            for pid in &tree {
                let pid = Pid::from_raw(*pid as i32);
                if nix::unistd::getpgid(Some(pid)).is_ok_and(|g| g != own_group) {
                    let _ = kill(pid, signal);
                }
            }
        } else if signal == END_TREE && !tree.contains(&info.ssi_pid) {
            // From outside the tree only: a stage signalling its own
            // group (`kill -USR2 0`) does not end itself this way.
            break;
        }
    }
    let status = end_all(main).or(status);
    exit_like(status)
}

/// What one round of [`reap`] found.
struct Reaped {
    /// The main process's status, when it was reaped in this round.
    main: Option<WaitStatus>,
    /// No child is left, live or zombie: so no descendant either (every
    /// orphan of the tree is reparented to the reaper).
    none_left: bool,
}

/// Reap every child that has ended, without waiting.
fn reap(main: Pid) -> Reaped {
    let mut main_status = None;
    loop {
        let none_left = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => false,
            Err(Errno::ECHILD) => true,
            Ok(ws) => {
                if ws.pid() == Some(main) {
                    main_status = Some(ws);
                }
                continue;
            }
            Err(Errno::EINTR) => continue,
            Err(_) => false,
        };
        return Reaped {
            main: main_status,
            none_left,
        };
    }
}

/// SIGKILL every descendant until none is left (or [`END_LIMIT`] passes);
/// the main process's status if it was reaped meanwhile.
fn end_all(main: Pid) -> Option<WaitStatus> {
    let started = Instant::now();
    let mut status = None;
    loop {
        // Reaped first: with no child left (the usual end of a stage) there
        // is nothing to look for in /proc.
        let reaped = reap(main);
        status = status.or(reaped.main);
        if reaped.none_left || started.elapsed() > END_LIMIT {
            return status;
        }
        for pid in descendants(&[std::process::id()], &process_table()) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// End this process as the stage's main process ended.
fn exit_like(status: Option<WaitStatus>) -> i32 {
    match status {
        Some(WaitStatus::Exited(_, code)) => code,
        Some(WaitStatus::Signaled(_, signal, _)) => {
            // No core file of the reaper's own for the stage's crash.
            let _ = nix::sys::prctl::set_dumpable(false);
            // SAFETY: restoring the default disposition runs no handler code.
            let _ =
                unsafe { nix::sys::signal::signal(signal, nix::sys::signal::SigHandler::SigDfl) };
            let mut only = SigSet::empty();
            only.add(signal);
            let _ = kill(Pid::this(), signal);
            let _ = only.thread_unblock();
            128 + signal as i32
        }
        _ => 1,
    }
}
