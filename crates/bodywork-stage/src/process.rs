//! Process handling for stages: spawn in a process group of its own, stream
//! output line by line (or leave it on the terminal), stop at a deadline or
//! on cancel, and kill the whole tree. The only module that sends signals;
//! the local runtime's service replicas use it too. Once a host calls
//! [`use_reaper`], every stage runs under a per-stage reaper, which ends
//! the processes that left the group too (see [`crate::reaper`]).
//!
//! Must not: retry, log or record anything (see [`crate::run_batch`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bodywork_runtime::CancellationToken;

use crate::Outcome;
use bodywork_lines::CappedLines;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, BufReader};
use tokio::process::Command;

/// Receives each line a process prints.
pub type LineSink = Arc<dyn Fn(String) + Send + Sync>;

/// What to run, fully decided: nothing is inherited from the daemon.
#[derive(Debug, Clone)]
pub struct StageCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

/// Where a stage process's output goes, and how it is stopped on cancel.
#[derive(Clone)]
pub struct Attach {
    /// Where stdout and stderr go.
    pub output: Output,
    /// On cancel: how long after SIGTERM the group is killed (zero: SIGKILL at once).
    pub stop_grace: Duration,
}

/// Where a stage process's stdout and stderr go.
#[derive(Clone)]
pub enum Output {
    /// Each line, of either stream, to this sink (the daemon's run log).
    Lines(LineSink),
    /// This process's own stdout and stderr (`bodywork stage` in a terminal or pod).
    Terminal,
}

impl Attach {
    /// Lines to `sink`; killed at once when cancelled.
    pub fn lines(sink: LineSink) -> Attach {
        Attach {
            output: Output::Lines(sink),
            stop_grace: Duration::ZERO,
        }
    }

    /// The terminal's stdout and stderr; on cancel SIGTERM, then SIGKILL
    /// after `stop_grace`.
    pub fn terminal(stop_grace: Duration) -> Attach {
        Attach {
            output: Output::Terminal,
            stop_grace,
        }
    }
}

/// Identity of a started process, stable against pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: u32,
    pub start_time: Option<u64>,
}

/// What `/proc/PID/stat` says of `pid`, when it can be read.
fn stat(pid: u32) -> Option<procfs::process::Stat> {
    procfs::process::Process::new(i32::try_from(pid).ok()?)
        .ok()?
        .stat()
        .ok()
}

/// `(pid, parent pid, process group)` of every process this one can see,
/// from `/proc/PID/stat`.
pub fn process_table() -> Vec<(u32, u32, u32)> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|process| {
        let stat = process.ok()?.stat().ok()?;
        let id = |n: i32| u32::try_from(n).ok();
        Some((id(stat.pid)?, id(stat.ppid)?, id(stat.pgrp)?))
    })
    .collect()
}

/// Every descendant of any of `roots` in `table` (as [`process_table`]
/// gives it), through parent links, the roots excluded. A table read while
/// pids are recycled may hold a loop: each pid is visited once.
pub fn descendants(roots: &[u32], table: &[(u32, u32, u32)]) -> Vec<u32> {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    for &(pid, ppid, _) in table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut seen: std::collections::HashSet<u32> = roots.iter().copied().collect();
    let mut found = Vec::new();
    let mut next = roots.to_vec();
    while let Some(p) = next.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if seen.insert(c) {
                found.push(c);
                next.push(c);
            }
        }
    }
    found
}

/// Start time of a process in clock ticks since boot (`/proc/PID/stat`
/// field 22), which tells a live process from a recycled pid.
pub fn start_time(pid: u32) -> Option<u64> {
    Some(stat(pid)?.starttime)
}

/// True when `id` still names the same live process.
pub fn is_alive(id: ProcessId) -> bool {
    match (start_time(id.pid), id.start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// True when `id` names the same live process and it still runs: not a
/// zombie, an ended process nobody has reaped yet (orphans stay zombies
/// where init does not reap, as in some containers). What may be adopted;
/// [`is_alive`] (a zombie's pid is still taken) is what may be killed.
pub fn is_running(id: ProcessId) -> bool {
    stat(id.pid).is_some_and(|stat| {
        !matches!(stat.state, 'Z' | 'X') && id.start_time.is_none_or(|then| stat.starttime == then)
    })
}

/// Wait until `id` has ended. A process that is not this one's child (an
/// adopted replica) cannot be waited for: a pidfd tells of its end at once
/// (Linux 5.3 and later); without one, /proc is looked at every 250 ms.
pub async fn until_gone(id: ProcessId) {
    if let Some(pidfd) = rustix::process::Pid::from_raw(id.pid as i32).and_then(|pid| {
        rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK).ok()
    })
        // Still the same process once the pidfd is open (not a later one
        // given its pid), so the pidfd is its.
        && is_running(id)
        // SAFETY: an `OwnedFd`, owned by the `AsyncFd` from here on, stays
        // open and names the same descriptor until it is dropped with it.
        && let Ok(pidfd) = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
        }
    {
        // Readable once the process has ended.
        let _ = pidfd.readable().await;
        return;
    }
    while is_running(id) {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Kill every process in the group led by `pgid`. A group that is already
/// gone is not an error.
pub fn kill_group(pgid: u32, signal: Signal) {
    if let Ok(pgid) = i32::try_from(pgid)
        && pgid > 1
    {
        let _ = killpg(Pid::from_raw(pgid), signal);
    }
}

/// The program every stage runs under (`bodywork-reap __reap -- PROGRAM
/// ARGS...`, or `bodywork __reap ...`), once a host has said so; see
/// [`crate::reaper`].
static REAPER: OnceLock<PathBuf> = OnceLock::new();

/// From now on, run every stage under the reaper: `program` is what
/// [`reaper_for`] found, resolved once so a binary replaced by an upgrade
/// is still found. The first call wins.
pub fn use_reaper(program: PathBuf) {
    let _ = REAPER.set(program);
}

/// The reaper program in use, once a host has said so ([`use_reaper`]).
pub fn reaper_program() -> Option<&'static std::path::Path> {
    REAPER.get().map(PathBuf::as_path)
}

/// The reaper to run stages under for the `bodywork` binary `exe`
/// (`std::env::current_exe()`): its own small program
/// ([`crate::reaper::PROGRAM`]) when it is installed beside `exe`, which
/// starts in a fraction of the time; else `exe` itself, which runs the
/// same reaper (`bodywork __reap`). Both take the same command line.
pub fn reaper_for(exe: &std::path::Path) -> PathBuf {
    let small = exe.with_file_name(crate::reaper::PROGRAM);
    if small.is_file() {
        small
    } else {
        exe.to_path_buf()
    }
}

/// The reaper started ahead of the next stage, once a host has asked for
/// one ([`keep_a_reaper_ready`]).
static READY: OnceLock<Mutex<Option<tokio::process::Child>>> = OnceLock::new();

/// From now on keep one reaper started ahead (`__reap --wait`) for the
/// next stage whose output comes back as lines (the daemon's batch
/// stages): the stage is handed to it over its stdin and starts without
/// waiting for the reaper's exec, the longest step between a request and
/// the stage's own start after the daemon's own work. Another is started
/// once one is taken; the first stage after this call starts a reaper of
/// its own. Needs [`use_reaper`]; for a host whose stages all run on the
/// runtime the ready reaper is started on (it is waited for there).
pub fn keep_a_reaper_ready() {
    let _ = READY.set(Mutex::new(None));
}

/// What a spawn of `cmd` would find wrong before it starts, said here:
/// under a reaper the stage's start fails in the reaper, which can only
/// say so through its exit code.
fn check_startable(cmd: &StageCommand) -> std::io::Result<()> {
    if cmd.program.components().count() > 1 {
        std::fs::metadata(&cmd.program)?;
    }
    Ok(())
}

/// The ready reaper, handed `cmd` and now running it; `None` when there
/// is none (none asked for, none started yet, or it has gone).
async fn hand_to_ready(cmd: &StageCommand) -> std::io::Result<Option<tokio::process::Child>> {
    use tokio::io::AsyncWriteExt;
    let Some(slot) = READY.get() else {
        return Ok(None);
    };
    if REAPER.get().is_none() {
        return Ok(None);
    }
    check_startable(cmd)?;
    // As a spawn into a missing directory would fail.
    if !std::fs::metadata(&cmd.cwd)?.is_dir() {
        return Err(std::io::ErrorKind::NotADirectory.into());
    }
    let bytes = crate::reaper::encode(cmd)?;
    let taken = slot.lock().ok().and_then(|mut ready| ready.take());
    let Some(mut child) = taken else {
        return Ok(None);
    };
    // A reaper that has gone (or cannot be told) is dropped, which kills it.
    if !matches!(child.try_wait(), Ok(None)) {
        return Ok(None);
    }
    let Some(mut stdin) = child.stdin.take() else {
        return Ok(None);
    };
    if stdin.write_all(&bytes).await.is_err() {
        return Ok(None);
    }
    // The end of its stdin tells it the command is whole.
    drop(stdin);
    Ok(Some(child))
}

/// Start the next ready reaper, when one is kept and none is waiting.
fn refill_ready() {
    let (Some(slot), Some(reaper)) = (READY.get(), REAPER.get()) else {
        return;
    };
    if slot.lock().map(|ready| ready.is_some()).unwrap_or(true) {
        return;
    }
    let started = Command::new(reaper)
        .arg(crate::reaper::SUBCOMMAND)
        .arg("--wait")
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn();
    // When it cannot start, the next stage starts a reaper of its own,
    // and tries again.
    if let Ok(child) = started
        && let Ok(mut ready) = slot.lock()
        && ready.is_none()
    {
        *ready = Some(child);
    }
}

/// How long [`end_tree`] waits for a reaper to end its tree.
const REAPER_LIMIT: Duration = Duration::from_secs(10);

/// A command starting `cmd` in a process group of its own, with only its
/// own environment and no stdin; under the reaper when one is in use.
pub fn process_command(cmd: &StageCommand) -> std::io::Result<Command> {
    command_under_reaper(cmd, None)
}

/// [`process_command`] for a long-lived process whose output goes to the
/// log file `log`, bounded on disk: its reaper writes it (see
/// [`crate::reaper`]). The log is opened for appending here and given as
/// the reaper's stdout and stderr (what it says if the program cannot
/// start), so a log that cannot be opened is this call's error. Without a
/// reaper (the host never called [`use_reaper`]), the process writes to
/// the file itself, and nothing bounds it.
pub fn logged_process_command(
    cmd: &StageCommand,
    log: &crate::reaper::LogTo,
) -> std::io::Result<Command> {
    let file = crate::bounded_log::open_append(&log.path)?;
    let err = file.try_clone()?;
    let mut command = command_under_reaper(cmd, Some(log))?;
    command.stdout(Stdio::from(file)).stderr(Stdio::from(err));
    Ok(command)
}

fn command_under_reaper(
    cmd: &StageCommand,
    log: Option<&crate::reaper::LogTo>,
) -> std::io::Result<Command> {
    let mut command = match REAPER.get() {
        Some(reaper) => {
            check_startable(cmd)?;
            let mut c = Command::new(reaper);
            c.arg(crate::reaper::SUBCOMMAND);
            if let Some(log) = log {
                c.args(log.args());
            }
            c.arg("--").arg(&cmd.program);
            c
        }
        None => Command::new(&cmd.program),
    };
    command
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .env_clear()
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .process_group(0);
    Ok(command)
}

/// True when `pid` runs the reaper (its second argument is
/// [`crate::reaper::SUBCOMMAND`], whichever program runs it: `bodywork` or
/// [`crate::reaper::PROGRAM`]): only a reaper is sent
/// [`crate::reaper::END_TREE`] (a replica started before reapers existed
/// is not).
pub fn is_reaper(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).nth(1) == Some(crate::reaper::SUBCOMMAND.as_bytes()))
}

/// Kill the whole tree of the stage process `id`, the leader of its group:
/// a reaper is asked to end its tree ([`crate::reaper::END_TREE`]) and
/// given up to 10 s to exit (it cannot clean up once SIGKILLed); then
/// SIGKILL goes to the group, as without a reaper. Blocks while it waits.
pub fn end_tree(id: ProcessId) {
    end_trees(&[id]);
}

/// [`end_tree`] for several stage processes at once: every reaper is asked
/// first and all are waited for together, so ending many takes at most the
/// 10 s one may take, not 10 s each.
pub fn end_trees(ids: &[ProcessId]) {
    let reapers: Vec<ProcessId> = ids
        .iter()
        .copied()
        .filter(|id| is_running(*id) && is_reaper(id.pid))
        .collect();
    for id in &reapers {
        if let Ok(pid) = i32::try_from(id.pid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), crate::reaper::END_TREE);
        }
    }
    let until = Instant::now() + REAPER_LIMIT;
    while reapers.iter().any(|id| is_running(*id)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    for id in ids {
        kill_group(id.pid, Signal::SIGKILL);
    }
    // Gone before this returns: a replica's reaper writes its log until it
    // exits, and a deleted service's log folder is removed next.
    let until = Instant::now() + Duration::from_secs(2);
    while ids.iter().any(|id| is_running(*id)) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// [`end_tree`] off the async workers.
pub async fn end_tree_async(id: ProcessId) {
    let _ = tokio::task::spawn_blocking(move || end_tree(id)).await;
}

/// Run `cmd` to its end, its output going where `attach` says. Stops it
/// at `deadline` or when `cancel` fires. Whatever the outcome, the whole
/// process group (under a reaper: the whole tree) is killed before
/// returning, so no grandchild outlives its stage. `on_spawn` learns the
/// process's identity once it runs.
pub async fn run_to_end(
    cmd: &StageCommand,
    attach: &Attach,
    deadline: Option<Duration>,
    cancel: &CancellationToken,
    on_spawn: impl FnOnce(ProcessId),
) -> std::io::Result<Outcome> {
    let (stdout, stderr) = match attach.output {
        Output::Lines(_) => (Stdio::piped(), Stdio::piped()),
        Output::Terminal => (Stdio::inherit(), Stdio::inherit()),
    };
    // A reaper started ahead has its stdout and stderr piped already.
    let ready = match attach.output {
        Output::Lines(_) => hand_to_ready(cmd).await?,
        Output::Terminal => None,
    };
    let mut child = match ready {
        Some(child) => child,
        None => process_command(cmd)?
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()?,
    };
    let pid = child.id().unwrap_or(0);
    let id = ProcessId {
        pid,
        start_time: start_time(pid),
    };
    on_spawn(id);
    if let Output::Lines(_) = attach.output {
        refill_ready();
    }
    let mut pumps = Vec::new();
    if let Output::Lines(on_line) = &attach.output {
        pumps.extend(
            child
                .stdout
                .take()
                .map(|s| tokio::spawn(pump(s, on_line.clone()))),
        );
        pumps.extend(
            child
                .stderr
                .take()
                .map(|s| tokio::spawn(pump(s, on_line.clone()))),
        );
    }

    let wait = async {
        match deadline {
            Some(d) => tokio::time::timeout(d, child.wait()).await.ok(),
            None => Some(child.wait().await),
        }
    };
    let outcome = tokio::select! {
        r = wait => match r {
            Some(status) => {
                let status = status?;
                use std::os::unix::process::ExitStatusExt;
                match (status.code(), status.signal()) {
                    (Some(c), _) => Outcome::Exited(c),
                    (None, Some(s)) => Outcome::Signalled(s),
                    (None, None) => Outcome::Exited(-1),
                }
            }
            None => Outcome::TimedOut,
        },
        _ = cancel.cancelled() => {
            if !attach.stop_grace.is_zero() {
                kill_group(pid, Signal::SIGTERM);
                let _ = tokio::time::timeout(attach.stop_grace, child.wait()).await;
            }
            Outcome::Cancelled
        }
    };
    end_tree_async(id).await;
    let _ = child.wait().await;
    // The pipes close once every member of the tree is gone.
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(5), pump).await;
    }
    Ok(outcome)
}

/// Hand each line of `stream` to `on_line`, at most
/// [`bodywork_lines::MAX_LINE`] bytes of it (a longer line is cut, with a
/// marker saying how much was dropped; see [`crate::lines`]).
async fn pump(stream: impl AsyncRead + Unpin, on_line: LineSink) {
    let mut reader = BufReader::new(stream);
    let mut lines = CappedLines::default();
    while let Ok(Some(line)) = lines.next_async(&mut reader).await {
        on_line(line);
    }
    // The end of the stream, or a read error: a last line without its newline.
    if let Some(line) = lines.take_partial() {
        on_line(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::sh;
    use std::sync::Mutex;

    /// An adopted replica is no child of the daemon's: here, a `sleep`
    /// whose shell has exited. Its end is waited for, and only its end.
    #[tokio::test]
    async fn until_gone_waits_for_a_process_that_is_not_a_child() {
        let out = std::process::Command::new("sh")
            .args(["-c", "sleep 30 >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let id = ProcessId {
            pid,
            start_time: start_time(pid),
        };
        assert!(is_running(id));
        let wait = std::time::Duration::from_millis(300);
        assert!(
            tokio::time::timeout(wait, until_gone(id)).await.is_err(),
            "said gone while it runs"
        );
        nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), until_gone(id))
            .await
            .expect("its end was never seen");
        // Gone already: at once.
        tokio::time::timeout(std::time::Duration::from_secs(10), until_gone(id))
            .await
            .expect("a process gone before is gone");
    }

    fn collector() -> (Arc<Mutex<Vec<String>>>, Attach) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let attach = Attach::lines(Arc::new(move |l| sink.lock().unwrap().push(l)));
        (lines, attach)
    }

    #[test]
    fn descendants_follow_parent_links_at_any_depth() {
        let table = [
            (10, 1, 10),
            (11, 10, 10),
            (12, 11, 12),
            (13, 1, 13),
            (14, 12, 12),
            (15, 13, 13),
        ];
        let mut found = descendants(&[10], &table);
        found.sort();
        assert_eq!(found, [11, 12, 14]);
        assert!(descendants(&[14], &table).is_empty());
    }

    #[test]
    fn descendants_survive_a_cycle_in_a_racy_table() {
        // A table read while pids are recycled may hold a loop.
        let table = [(2, 1, 2), (3, 2, 2), (2, 3, 2)];
        let mut found = descendants(&[1], &table);
        found.sort();
        assert_eq!(found, [2, 3]);
    }

    /// The table reads a command name with spaces and parentheses, as a
    /// program may name itself, and gives its group.
    #[test]
    fn the_table_reads_odd_command_names_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a) b (c");
        std::os::unix::fs::symlink("/bin/sleep", &odd).unwrap();
        let mut child = std::process::Command::new(&odd).arg("30").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stat(pid).is_none_or(|s| s.comm != "a) b (c") {
            assert!(std::time::Instant::now() < deadline, "never exec'd");
            std::thread::sleep(Duration::from_millis(5));
        }
        let row = process_table().into_iter().find(|(p, _, _)| *p == pid);
        let me = std::process::id();
        let group = nix::unistd::getpgrp().as_raw() as u32;
        assert_eq!(row, Some((pid, me, group)));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn this_process_has_a_parent_in_the_table() {
        let me = std::process::id();
        let table = process_table();
        let parent = table
            .iter()
            .find(|(p, _, _)| *p == me)
            .map(|(_, pp, _)| *pp);
        assert_eq!(parent, Some(nix::unistd::getppid().as_raw() as u32));
    }

    #[test]
    fn a_zombie_is_alive_but_not_running() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let id = ProcessId {
            pid: child.id(),
            start_time: start_time(child.id()),
        };
        // Ended but not reaped yet: a zombie.
        let stat = format!("/proc/{}/stat", child.id());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&stat).is_ok_and(|s| s.contains(") Z ")) {
            assert!(std::time::Instant::now() < deadline, "no zombie");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!is_running(id));
        child.wait().unwrap();
        assert!(!is_alive(id));
        let me = ProcessId {
            pid: std::process::id(),
            start_time: start_time(std::process::id()),
        };
        assert!(is_running(me) && is_alive(me));
    }

    #[test]
    fn end_trees_ends_every_group_given() {
        use std::os::unix::process::CommandExt;
        let mut leaders = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..3 {
            // A leader and a child in a group of their own.
            let child = std::process::Command::new("sh")
                .args(["-c", "sleep 60 & wait"])
                .process_group(0)
                .spawn()
                .unwrap();
            ids.push(ProcessId {
                pid: child.id(),
                start_time: start_time(child.id()),
            });
            leaders.push(child);
        }
        // Each group got SIGKILL (so its leader did).
        end_trees(&ids);
        for mut leader in leaders {
            let status = leader.wait().unwrap();
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(9)
            );
        }
        end_trees(&[]);
    }

    #[tokio::test]
    async fn streams_lines_and_reports_exit_code() {
        let (lines, sink) = collector();
        let exit = run_to_end(
            &sh("echo one; echo two >&2; exit 3"),
            &sink,
            None,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(exit, Outcome::Exited(3));
        let mut got = lines.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["one", "two"]);
    }

    #[tokio::test]
    async fn environment_is_only_what_was_given() {
        let (lines, sink) = collector();
        let mut cmd = sh("env | sort");
        cmd.env.push(("ONLY".into(), "this".into()));
        run_to_end(&cmd, &sink, None, &CancellationToken::new(), |_| {})
            .await
            .unwrap();
        let got = lines.lock().unwrap().clone();
        assert!(got.contains(&"ONLY=this".to_string()), "{got:?}");
        assert!(!got.iter().any(|l| l.starts_with("HOME=")), "{got:?}");
    }

    #[tokio::test]
    async fn a_line_longer_than_the_cap_arrives_cut_with_a_marker() {
        use bodywork_lines::{MAX_LINE, cut_marker};
        let (lines, sink) = collector();
        // 1 MB with no newline, a short line, then 300 kB at the end with none.
        let script = "head -c 1000000 /dev/zero | tr '\\0' x; echo; echo after; \
                      head -c 300000 /dev/zero | tr '\\0' y";
        let exit = run_to_end(&sh(script), &sink, None, &CancellationToken::new(), |_| {})
            .await
            .unwrap();
        assert_eq!(exit, Outcome::Exited(0));
        let got = lines.lock().unwrap().clone();
        assert_eq!(
            got.len(),
            3,
            "{:?}",
            got.iter().map(String::len).collect::<Vec<_>>()
        );
        let cap = MAX_LINE as u64;
        assert_eq!(
            got[0],
            format!(
                "{}{}",
                "x".repeat(MAX_LINE),
                cut_marker(MAX_LINE, 1_000_000 - cap)
            )
        );
        assert_eq!(got[1], "after");
        assert_eq!(
            got[2],
            format!(
                "{}{}",
                "y".repeat(MAX_LINE),
                cut_marker(MAX_LINE, 300_000 - cap)
            )
        );
    }

    /// Run a script that leaves a `sleep 30` grandchild past `deadline`
    /// with `attach`; assert it timed out and return the grandchild's pid.
    async fn time_out_with_a_grandchild(attach: &Attach, deadline: Duration) -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let outcome = run_to_end(
            &sh(&script),
            attach,
            Some(deadline),
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::TimedOut);
        std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// True once `pid` is gone or a zombie (reaped by init shortly after
    /// the kill; give it a moment).
    fn gone(pid: u32) -> bool {
        (0..100).any(|_| {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| !s.contains(") Z "));
            if alive {
                std::thread::sleep(Duration::from_millis(20));
            }
            !alive
        })
    }

    #[tokio::test]
    async fn deadline_kills_grandchildren() {
        let (_lines, sink) = collector();
        let pid = time_out_with_a_grandchild(&sink, Duration::from_millis(500)).await;
        assert!(gone(pid), "grandchild {pid} still running");
    }

    #[tokio::test]
    async fn cancel_stops_the_process() {
        let (_lines, sink) = collector();
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let t = std::time::Instant::now();
        let exit = run_to_end(&sh("sleep 30"), &sink, None, &cancel, |_| {})
            .await
            .unwrap();
        assert_eq!(exit, Outcome::Cancelled);
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_attempt_past_its_deadline_is_killed_with_its_children() {
        let terminal = Attach::terminal(Duration::from_secs(5));
        let pid = time_out_with_a_grandchild(&terminal, Duration::from_millis(1000)).await;
        assert!(gone(pid), "grandchild {pid} survived the timeout");
    }

    #[tokio::test]
    async fn cancel_stops_an_attempt_and_exit_codes_pass_through() {
        let terminal = Attach::terminal(Duration::from_secs(5));
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            c.cancel();
        });
        let started = std::time::Instant::now();
        let outcome = run_to_end(&sh("sleep 30"), &terminal, None, &cancel, |_| {})
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Cancelled);
        assert!(started.elapsed() < Duration::from_secs(5));
        let outcome = run_to_end(
            &sh("exit 5"),
            &terminal,
            None,
            &CancellationToken::new(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!(outcome, Outcome::Exited(5));
    }

    #[test]
    fn a_live_process_is_running_and_a_recycled_pid_is_not() {
        let me = ProcessId {
            pid: std::process::id(),
            start_time: start_time(std::process::id()),
        };
        assert!(is_running(me));
        let recycled = ProcessId {
            start_time: me.start_time.map(|t| t + 1),
            ..me
        };
        assert!(!is_running(recycled));
        // Only a process started as `bodywork __reap` is asked to end its tree.
        assert!(!is_reaper(me.pid));
    }

    #[test]
    fn start_time_of_self_is_stable() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
    }
}
