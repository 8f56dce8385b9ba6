//! The per-stage reaper: what makes a stage's whole process tree end with
//! it, double forks included.
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
//! untouched: the reaper prints nothing unless it cannot start the stage;
//! with `--log`, output goes through the reaper instead, see below);
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
//! With `--log FILE --log-part BYTES` (what the local runtime gives a
//! service replica), the reaper is also the stage's log writer: the
//! stage's stdout and stderr go to a pipe the reaper reads, on a thread of
//! its own, and writes to FILE through a [`crate::bounded_log::BoundedLog`]
//! (parts of at most BYTES, rotated by rename, lines capped at 64 KiB).
//! The writer is not the daemon, so a replica's output goes on being
//! written while no daemon runs; and since the reaper outlives every
//! process of its tree, it writes nothing once it has exited: what the tree
//! wrote last is in FILE by then (the reaper drains the pipe, for at most
//! [`DRAIN_LIMIT`], before it exits). The reaper's own stdout and stderr
//! (the log file, given by the daemon, so a stage that cannot start says
//! why there) are pointed at /dev/null once the stage runs: only the
//! writer holds the file.
//!
//! With `--log FILE`, the reaper also leaves how the stage ended in
//! `FILE.exit` ([`exit_record`]) as it exits: a daemon that adopted the
//! reaper by its pid (after a restart, or from a zygote's fork) is not its
//! parent and cannot wait for its status, so it reads the record instead.
//!
//! With `--adopt PID [--adopt-fd FD]` instead of a program, the reaper
//! starts nothing: PID, already its child, is the main process, and FD the
//! read end of the pipe that child writes its output to. A process forked
//! by a service's zygote under `workflow --watch` forks the replica's
//! Python and then execs the reaper so (see `bodywork_local`'s zygote):
//! the replica comes out as any other, under a reaper that leads its group.
//!
//! Still possible: a stage that kills its reaper (`kill -9 0`, or its
//! parent by pid) frees its escaped descendants; so does a process started
//! through another service (`systemd-run`, `at`, a container engine), which
//! is never in the tree. A cgroup per stage would cover those; it needs a
//! delegated cgroup v2 subtree, which an ordinary user session lacks.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::process::{StageCommand, descendants, process_table};

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

/// How long the reaper, once its tree has ended, goes on writing what is
/// left in the pipe (a process outside the tree may still hold it open).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Where a replica's output goes when the reaper writes it (`--log FILE
/// --log-part BYTES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogTo {
    pub path: PathBuf,
    /// The most one part of the log holds, in bytes.
    pub part_max: u64,
}

impl LogTo {
    /// The reaper's options that say so, for its command line.
    pub fn args(&self) -> [OsString; 4] {
        [
            "--log".into(),
            self.path.clone().into_os_string(),
            "--log-part".into(),
            self.part_max.to_string().into(),
        ]
    }
}

/// What `bodywork __reap [--log FILE --log-part BYTES] [--] PROGRAM
/// ARGS...` asks for (the arguments after the subcommand), or, with
/// `--adopt PID [--adopt-fd FD]` and no program, the adopt mode: the
/// reaper takes its existing child PID as the main process instead of
/// starting one, and reads that child's output from the inherited pipe FD
/// (which needs `--log`). What a process forked from a service's zygote
/// execs (see `bodywork_local`'s zygote): its Python forked the replica
/// before it became the reaper. With `--wait` and no program, a reaper
/// started ahead of its stage (see [`crate::process::keep_a_reaper_ready`])
/// waits for the whole command on its stdin.
#[derive(Debug, PartialEq, Eq)]
pub struct Invocation {
    pub log: Option<LogTo>,
    pub main: Main,
}

/// The reaper's main process: one to start, one to start once handed, or a
/// child to adopt.
#[derive(Debug, PartialEq, Eq)]
pub enum Main {
    /// On its command line.
    Start {
        program: OsString,
        args: Vec<OsString>,
    },
    /// `--wait`: the whole command (directory, program, arguments,
    /// environment) comes on its stdin, as [`encode`] writes it; nothing
    /// (whoever started it ahead went away) ends it.
    Wait,
    Adopt(Adopt),
}

/// A child of the reaper's process taken as its main process, and the read
/// end of the pipe its stdout and stderr write to, when it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Adopt {
    pub pid: i32,
    pub output: Option<i32>,
}

impl Adopt {
    /// The reaper's options that say so, for its command line.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--adopt".into(), self.pid.to_string().into()];
        if let Some(fd) = self.output {
            args.extend(["--adopt-fd".into(), fd.to_string().into()]);
        }
        args
    }
}

impl Invocation {
    /// Read the arguments after the subcommand; an error in words.
    pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
        let mut args = args.into_iter().peekable();
        let (mut path, mut part_max, mut pid, mut fd, mut wait) = (None, None, None, None, false);
        let number = |arg: Option<OsString>, what: &str| {
            arg.as_deref()
                .and_then(|a| a.to_str())
                .and_then(|a| a.parse::<u64>().ok())
                .ok_or_else(|| format!("--{what} needs a number"))
        };
        while let Some(arg) = args.next_if(|a| a.to_str().is_some_and(|a| a.starts_with("--"))) {
            match arg.to_str() {
                Some("--") => break,
                Some("--log") => {
                    path = Some(PathBuf::from(args.next().ok_or("--log needs a file")?))
                }
                Some("--log-part") => {
                    let bytes = args.next().ok_or("--log-part needs a size in bytes")?;
                    let bytes = bytes.to_str().and_then(|b| b.parse::<u64>().ok());
                    part_max = Some(bytes.ok_or("--log-part needs a size in bytes")?);
                }
                Some("--wait") => wait = true,
                Some("--adopt") => {
                    let n = number(args.next(), "adopt")?;
                    pid = Some(i32::try_from(n).map_err(|_| "--adopt needs a pid")?);
                }
                Some("--adopt-fd") => {
                    let n = number(args.next(), "adopt-fd")?;
                    fd = Some(i32::try_from(n).map_err(|_| "--adopt-fd needs a descriptor")?);
                }
                _ => return Err(format!("unknown option {}", arg.to_string_lossy())),
            }
        }
        let log = match (path, part_max) {
            (Some(path), Some(part_max)) => Some(LogTo { path, part_max }),
            (None, None) => None,
            _ => return Err("--log and --log-part go together".into()),
        };
        let main = match (pid, fd) {
            (Some(_), _) if wait => return Err("--wait and --adopt go apart".into()),
            (Some(pid), output) => {
                if output.is_some() && log.is_none() {
                    return Err("--adopt-fd needs --log".into());
                }
                if args.next().is_some() {
                    return Err("--adopt takes no program".into());
                }
                Main::Adopt(Adopt { pid, output })
            }
            (None, Some(_)) => return Err("--adopt-fd goes with --adopt".into()),
            (None, None) if wait => match args.next() {
                Some(_) => return Err("--wait takes its program on stdin".into()),
                None => Main::Wait,
            },
            (None, None) => Main::Start {
                program: args.next().ok_or("no program to run")?,
                args: args.collect(),
            },
        };
        Ok(Invocation { log, main })
    }
}

/// The command handed to a reaper started with `--wait`: NUL-separated
/// fields (none of which can hold a NUL: `exec` could not take it), the
/// directory, the program, the number of arguments, the arguments, then
/// each variable of the environment as a name and a value.
pub fn encode(cmd: &StageCommand) -> std::io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let count = cmd.args.len().to_string();
    let fields = [cmd.cwd.as_os_str(), cmd.program.as_os_str(), count.as_ref()]
        .into_iter()
        .chain(cmd.args.iter().map(|a| a.as_os_str()))
        .chain(cmd.env.iter().flat_map(|(k, v)| [k.as_ref(), v.as_ref()]));
    let mut out = Vec::new();
    for field in fields {
        let bytes = field.as_bytes();
        if bytes.contains(&0) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "nul byte found in the stage's command",
            ));
        }
        out.extend_from_slice(bytes);
        out.push(0);
    }
    Ok(out)
}

/// Read back what [`encode`] wrote; `None` for nothing at all.
pub fn decode(bytes: &[u8]) -> Result<Option<StageCommand>, String> {
    use std::os::unix::ffi::OsStrExt;
    if bytes.is_empty() {
        return Ok(None);
    }
    let Some(body) = bytes.strip_suffix(&[0]) else {
        return Err("the handed command was cut short".into());
    };
    let mut fields = body.split(|b| *b == 0);
    let mut next = |what: &str| {
        fields
            .next()
            .ok_or(format!("the handed command has no {what}"))
    };
    let os = |b: &[u8]| std::ffi::OsStr::from_bytes(b).to_os_string();
    let cwd = PathBuf::from(os(next("directory")?));
    let program = PathBuf::from(os(next("program")?));
    let count = std::str::from_utf8(next("argument count")?)
        .ok()
        .and_then(|c| c.parse::<usize>().ok())
        .ok_or("the handed command's argument count is not a number")?;
    let args = (0..count)
        .map(|_| next("argument").map(os))
        .collect::<Result<Vec<_>, _>>()?;
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| "an environment variable is not UTF-8".to_string())
    };
    let mut env = Vec::new();
    while let Ok(name) = next("variable") {
        let value = next("value of a variable")?;
        env.push((text(name)?, text(value)?));
    }
    Ok(Some(StageCommand {
        program,
        args,
        cwd,
        env,
    }))
}

/// The name of the reaper's own small program, installed beside
/// `bodywork`: it starts in a fraction of the time the whole `bodywork`
/// binary takes to load, and every stage waits for that start.
pub const PROGRAM: &str = "bodywork-reap";

/// The reaper as a program: when this process's first argument is
/// [`SUBCOMMAND`] (`bodywork __reap ...`, `bodywork-reap __reap ...`), run
/// it and return the exit code to end with; `None` for any other command
/// line. Call it first thing in `main`, before any thread exists (see
/// [`run`]) and before other parsing, so nothing in the stage's
/// environment (`BODYWORK_RUNTIME`...) changes how it parses.
pub fn main() -> Option<std::process::ExitCode> {
    let mut args = std::env::args_os().skip(1);
    if args.next()? != SUBCOMMAND {
        return None;
    }
    let invocation = match Invocation::parse(args) {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("bodywork {SUBCOMMAND}: {e}\nusage: bodywork {SUBCOMMAND} {USAGE_ARGS}");
            return Some(std::process::ExitCode::from(USAGE));
        }
    };
    let code = run(&invocation.main, invocation.log.as_ref());
    Some(std::process::ExitCode::from(
        u8::try_from(code).unwrap_or(1),
    ))
}

/// The reaper's command line after its subcommand, for a usage message.
pub const USAGE_ARGS: &str =
    "[--log FILE --log-part BYTES] (-- PROGRAM [ARGS...] | --wait | --adopt PID [--adopt-fd FD])";

/// The command a reaper started with `--wait` is handed on its stdin.
fn handed() -> Result<Option<StageCommand>, String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the handed command: {e}"))?;
    decode(&bytes)
}

/// Where a reaper writing the log `log` leaves how its stage ended:
/// `LOG.exit`, written as it exits and removed as it starts.
pub fn exit_record(log: &std::path::Path) -> PathBuf {
    crate::bounded_log::beside(log, ".exit")
}

/// How a stage ended, as its reaper recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

/// What the reaper of the log `log` recorded as it exited; `None` when it
/// recorded nothing (it was killed, or is from an older release).
pub fn read_exit_record(log: &std::path::Path) -> Option<Ended> {
    let text = std::fs::read_to_string(exit_record(log)).ok()?;
    let (kind, n) = text.trim().split_once(' ')?;
    let n = n.parse().ok()?;
    match kind {
        "code" => Some(Ended::Code(n)),
        "signal" => Some(Ended::Signal(n)),
        _ => None,
    }
}

/// Record how the stage ended (whole or not at all: written aside, then renamed).
fn write_exit_record(log: &std::path::Path, status: Option<WaitStatus>) {
    let text = match status {
        Some(WaitStatus::Exited(_, code)) => format!("code {code}\n"),
        Some(WaitStatus::Signaled(_, signal, _)) => format!("signal {}\n", signal as i32),
        _ => return,
    };
    let record = exit_record(log);
    let aside = crate::bounded_log::beside(&record, ".new");
    if std::fs::write(&aside, text).is_ok() {
        let _ = std::fs::rename(&aside, &record);
    }
}

/// Exit code of a command line the reaper cannot read (as the CLI's usage errors).
const USAGE: u8 = 2;

/// Run `main` (start it, or adopt the child) as the reaper described
/// above, writing its output to `log` when given; returns the exit code to
/// end with when the stage exited (a signal is re-raised and never
/// returns).
pub fn run(main: &Main, log: Option<&LogTo>) -> i32 {
    // Without the flag the tree is still ended through the links /proc
    // shows, as long as no intermediate process has exited.
    let _ = nix::sys::prctl::set_child_subreaper(true);
    // A record left by the log's previous reaper is not this stage's.
    if let Some(log) = log {
        let _ = std::fs::remove_file(exit_record(&log.path));
    }
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
    let started = match main {
        Main::Start { program, args } => {
            let mut stage = std::process::Command::new(program);
            stage.args(args);
            start(stage, std::path::Path::new(program), log.is_some(), watched)
        }
        Main::Wait => match handed() {
            Ok(Some(cmd)) => {
                let mut stage = std::process::Command::new(&cmd.program);
                stage
                    .args(&cmd.args)
                    .env_clear()
                    .envs(cmd.env.iter().map(|(k, v)| (k, v)))
                    .stdin(std::process::Stdio::null());
                // The reaper stands where a reaper started for this stage
                // would have been started.
                match std::env::set_current_dir(&cmd.cwd) {
                    Ok(()) => start(stage, &cmd.program, log.is_some(), watched),
                    Err(e) => {
                        eprintln!("bodywork: cannot start {}: {e}", cmd.program.display());
                        Err(CANNOT_START)
                    }
                }
            }
            // Nothing handed: whoever started it ahead has gone.
            Ok(None) => return 0,
            Err(e) => {
                eprintln!("bodywork {SUBCOMMAND}: {e}");
                Err(CANNOT_START)
            }
        },
        Main::Adopt(adopt) => Ok((Pid::from_raw(adopt.pid), adopt.output.map(adopted_pipe))),
    };
    let (main, pipe) = match started {
        Ok(started) => started,
        Err(code) => return code,
    };
    let writer = match (log, pipe) {
        (Some(log), Some(pipe)) => Some(start_writer(log, pipe)),
        _ => None,
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
        // A child ended: reaped above, without reading all of /proc (which
        // on a busy machine costs milliseconds, at the end of every stage).
        if signal == Signal::SIGCHLD {
            continue;
        }
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
    if let Some(done) = writer {
        // What the tree wrote last (a traceback) is in the log before the
        // reaper's exit tells the daemon the replica has ended.
        let _ = done.recv_timeout(DRAIN_LIMIT);
    }
    if let Some(log) = log {
        write_exit_record(&log.path, status);
    }
    exit_like(status)
}

/// Start `stage` (which runs `program`) in the reaper's group, with the mask the
/// reaper was started with (`watched` unblocked), its output to a pipe when
/// `logged`: its pid and the pipe's read end; the exit code to end with
/// when it cannot start (said on stderr).
fn start(
    mut stage: std::process::Command,
    program: &std::path::Path,
    logged: bool,
    watched: SigSet,
) -> Result<(Pid, Option<std::io::PipeReader>), i32> {
    // SAFETY: between fork and exec the child only calls pthread_sigmask,
    // which is async-signal-safe; the stage starts with the mask the
    // reaper was started with.
    unsafe {
        stage.pre_exec(move || watched.thread_unblock().map_err(std::io::Error::from));
    }
    // The stage's output goes to a pipe this process reads (both ends
    // close on exec: the stage gets the write end as its stdout and
    // stderr only).
    let pipe = match logged.then(|| output_pipe(&mut stage)).transpose() {
        Ok(pipe) => pipe,
        Err(e) => {
            eprintln!("bodywork: cannot start the stage's log writer: {e}");
            return Err(CANNOT_START);
        }
    };
    let main = match stage.spawn() {
        Ok(child) => Pid::from_raw(child.id() as i32),
        Err(e) => {
            eprintln!("bodywork: cannot start {}: {e}", program.display());
            return Err(CANNOT_START);
        }
    };
    // The write end's copies held for the spawn close here, so the pipe
    // ends when the tree's last process has gone.
    drop(stage);
    Ok((main, pipe))
}

/// The read end of an adopted child's output pipe, inherited as `fd`; it
/// closes on any exec of the reaper's from now on.
fn adopted_pipe(fd: i32) -> std::io::PipeReader {
    use std::os::fd::{FromRawFd, OwnedFd};
    // SAFETY: the fd was handed to this process for it alone to read (the
    // command line says so), and nothing else in it uses that number.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    std::io::PipeReader::from(fd)
}

/// Give `stage` a pipe as its stdout and stderr; returns the read end.
fn output_pipe(stage: &mut std::process::Command) -> std::io::Result<std::io::PipeReader> {
    let (read, write) = std::io::pipe()?;
    stage.stdout(write.try_clone()?).stderr(write);
    Ok(read)
}

/// Write what comes through `pipe` to the log, on a thread of its own
/// (signals stay blocked there: it inherits the reaper's mask); the
/// receiver hears once the pipe has ended and all is written. The reaper's
/// own stdout and stderr leave the log file first.
fn start_writer(log: &LogTo, mut pipe: std::io::PipeReader) -> mpsc::Receiver<()> {
    let (done_tx, done) = mpsc::channel();
    let opened =
        crate::bounded_log::BoundedLog::open(&log.path, log.part_max, bodywork_lines::MAX_LINE);
    let mut file = match opened {
        Ok(file) => Some(file),
        Err(e) => {
            // Said in the log the daemon gave (if it is there at all); the
            // output is read and dropped, so the stage is never blocked.
            eprintln!(
                "bodywork: cannot write the log {}: {e}; the output is dropped",
                log.path.display()
            );
            None
        }
    };
    away_from_the_log();
    std::thread::spawn(move || {
        let mut buf = vec![0; 1 << 16];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if let Some(file) = &mut file {
                        file.write(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if let Some(file) = &mut file {
            file.finish();
        }
        let _ = done_tx.send(());
    });
    done
}

/// Point the reaper's stdout and stderr (the log file the daemon gave) at
/// /dev/null, so a rotated part is not held open by them.
fn away_from_the_log() {
    use std::os::fd::AsFd;
    let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
        return;
    };
    let _ = nix::unistd::dup2_stdout(null.as_fd());
    let _ = nix::unistd::dup2_stderr(null.as_fd());
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

/// The example `name` of the crate whose tests run now (`cargo test`
/// builds examples beside them, in `target/debug/examples`): for a test
/// that needs the reaper as a program of its own. Panics when it is not
/// built (a test run another way than `cargo test`).
#[doc(hidden)]
pub fn test_example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/debug/deps/TEST-HASH → target/debug/examples/NAME
    let program = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("examples").join(name))
        .expect("the test's target directory");
    assert!(
        program.is_file(),
        "{} is not built: `cargo test` builds it (run the test that way)",
        program.display()
    );
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Invocation, String> {
        Invocation::parse(args.iter().map(OsString::from))
    }

    #[test]
    fn the_log_options_come_before_the_program_and_go_together() {
        let log = LogTo {
            path: "/h/logs/g1-r0.log".into(),
            part_max: 10,
        };
        let mut args: Vec<OsString> = log.args().into();
        args.extend(["--", "python", "--log", "x"].map(OsString::from));
        let parsed = Invocation::parse(args).unwrap();
        assert_eq!(parsed.log, Some(log));
        let start = |program: &str, args: &[&str]| Main::Start {
            program: program.into(),
            args: args.iter().map(OsString::from).collect(),
        };
        assert_eq!(parsed.main, start("python", &["--log", "x"]));
        let plain = parse(&["--", "sh", "-c", "true"]).unwrap();
        assert_eq!(
            (plain.log, plain.main),
            (None, start("sh", &["-c", "true"]))
        );
        assert_eq!(parse(&["sh"]).unwrap().main, start("sh", &[]));
        assert!(parse(&["--log", "f", "--", "sh"]).is_err());
        assert!(parse(&["--log-part", "ten", "--log", "f", "--", "sh"]).is_err());
        assert!(parse(&["--log"]).is_err());
        assert!(parse(&["--verbose", "--", "sh"]).is_err());
        assert!(parse(&["--"]).is_err());
        assert_eq!(parse(&["--wait"]).unwrap().main, Main::Wait);
        assert!(parse(&["--wait", "--", "sh"]).is_err());
        assert!(parse(&["--wait", "--adopt", "7"]).is_err());
    }

    #[test]
    fn a_handed_command_reads_back_as_it_was_written() {
        let cmd = StageCommand {
            program: "/env/bin/python".into(),
            args: vec!["-u".into(), "".into(), "main.py".into(), "a b=c".into()],
            cwd: "/home/x/checkouts/7".into(),
            env: vec![
                ("PATH".into(), "/env/bin:/usr/bin".into()),
                ("EMPTY".into(), String::new()),
                ("EQ".into(), "a=b".into()),
            ],
        };
        let back = decode(&encode(&cmd).unwrap()).unwrap().unwrap();
        assert_eq!(
            (back.program, back.args, back.cwd, back.env),
            (cmd.program, cmd.args, cmd.cwd, cmd.env)
        );
        let bare = StageCommand {
            args: Vec::new(),
            env: Vec::new(),
            ..cmd_with_nul()
        };
        assert!(
            decode(&encode(&bare).unwrap())
                .unwrap()
                .unwrap()
                .args
                .is_empty()
        );
        assert!(encode(&cmd_with_nul()).is_err());
        assert_eq!(decode(b"").unwrap().map(|c| c.program), None);
        assert!(decode(b"/d\x00prog\x002\x00one\x00").is_err());
        assert!(decode(b"/d\0prog\0x\0").is_err());
        assert!(decode(b"/d\x00prog\x000\x00NAME\x00").is_err());
        assert!(decode(b"/d\0prog").is_err());
    }

    fn cmd_with_nul() -> StageCommand {
        StageCommand {
            program: "sh".into(),
            args: vec!["a\0b".into()],
            cwd: "/".into(),
            env: Vec::new(),
        }
    }

    #[test]
    fn adopt_takes_a_pid_and_an_output_pipe_with_a_log_and_no_program() {
        let adopt = Adopt {
            pid: 42,
            output: Some(5),
        };
        let mut args: Vec<OsString> = ["--log", "f", "--log-part", "10"]
            .map(OsString::from)
            .into();
        args.extend(adopt.args());
        let parsed = Invocation::parse(args).unwrap();
        assert_eq!(parsed.main, Main::Adopt(adopt));
        assert!(parsed.log.is_some());
        assert_eq!(
            parse(&["--adopt", "7"]).unwrap().main,
            Main::Adopt(Adopt {
                pid: 7,
                output: None
            })
        );
        assert!(parse(&["--adopt", "7", "--adopt-fd", "5"]).is_err());
        assert!(parse(&["--adopt-fd", "5", "--log", "f", "--log-part", "1"]).is_err());
        assert!(parse(&["--adopt", "x"]).is_err());
        assert!(parse(&["--adopt", "7", "--", "sh"]).is_err());
    }

    /// A reaper adopting a forked child: it writes the child's output to
    /// the log and exits with the child's status.
    #[test]
    fn an_adopting_reaper_logs_its_child_and_exits_with_its_status() {
        let (mut reaper, dir) = adopting("sleep 0.1; echo out; echo err >&2; exit 3");
        let log = dir.path().join("r.log");
        // A record from the log's previous reaper goes as this one starts.
        std::fs::write(exit_record(&log), "code 99\n").unwrap();
        let out = reaper.output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{out:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
        // For a daemon that adopted it and cannot wait for its status.
        assert_eq!(read_exit_record(&log), Some(Ended::Code(3)));
    }

    /// [`END_TREE`] from outside: the adopted child's tree is killed and
    /// the reaper ends as its child did (by SIGKILL).
    #[test]
    fn an_adopting_reaper_ends_the_tree_on_end_tree() {
        use std::os::unix::process::ExitStatusExt;
        let (mut reaper, dir) = adopting("echo up; exec sleep 30");
        let mut reaper = reaper.spawn().unwrap();
        let log = dir.path().join("r.log");
        let until = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("up")) {
            assert!(Instant::now() < until, "the child never wrote");
            std::thread::sleep(Duration::from_millis(5));
        }
        // The shell has become the reaper by now (it wrote the log).
        kill(Pid::from_raw(reaper.id() as i32), END_TREE).unwrap();
        let status = reaper.wait().unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32), "{status:?}");
        assert_eq!(
            read_exit_record(&log),
            Some(Ended::Signal(Signal::SIGKILL as i32))
        );
    }

    /// A shell that forks a child running `child` with its output to a
    /// pipe (a FIFO), then becomes the reaper (the `reap` example) adopting
    /// it, logging to `r.log` in the directory given with it: what a
    /// zygote's fork does. `None` when the example is not built.
    fn adopting(child: &str) -> (std::process::Command, tempfile::TempDir) {
        let reap = test_example("reap");
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            r#"mkfifo "$1/p"
( exec >"$1/p" 2>&1; {child} ) &
exec 3<"$1/p"
rm "$1/p"
exec "$2" __reap --log "$1/r.log" --log-part 100000 --adopt $! --adopt-fd 3"#
        );
        let mut c = std::process::Command::new("sh");
        c.arg("-c").arg(script).arg("sh").arg(dir.path()).arg(reap);
        (c, dir)
    }
}
