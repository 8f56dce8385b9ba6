//! A stage's whole process tree ends with it, through
//! the real `bodywork` binary and its daemon: a grandchild that leaves the
//! stage's process group (`fork`, `setsid`, `fork`: a double fork) is gone
//! after a batch timeout, a cancel, a batch stage that exits at once, a
//! timed-out attempt of `bodywork stage`, a replica's crash, `service
//! delete` and `daemon --stop`; it keeps running while the daemon itself is
//! killed with SIGKILL (replicas are adopted by the next daemon, and the
//! next daemon ends a batch stage's tree left behind).
//! The reaper every local stage runs under (`bodywork-reap __reap`, or
//! `bodywork __reap`) is also
//! tested on its own: output, exit codes and signals pass through, SIGTERM
//! reaches the descendants that left the group, the daemon's request to
//! end the tree (SIGUSR2) kills them all, and with `--log` it writes the
//! stage's output to a log bounded on disk.
//!
//! Every grandchild writes its pid to a scratch file; a [`Survivors`] guard
//! kills whatever pid it read, so no test leaves a process behind even when
//! an assertion fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::helper::{
    self, TestHome, TestProject, args_line, batch_stage, is_alive, kill, read_pid, wait_for,
};

/// Python that double-forks a grandchild out of the stage's process group:
/// it writes its pid to `path` and sleeps 300 s. Returns once the pid is
/// written.
const DOUBLE_FORK: &str = r#"
import os, sys, time

def double_fork(path):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(path + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(path + ".tmp", path)
            time.sleep(300)
            os._exit(0)
        os._exit(0)
    os.wait()
    while not os.path.exists(path):
        time.sleep(0.01)
"#;

/// A batch stage: double-forks, prints, then sleeps `argv[2]` seconds.
fn batch_script() -> String {
    format!(
        "{DOUBLE_FORK}\ndouble_fork(sys.argv[1])\nprint(\"forked\", flush=True)\ntime.sleep(float(sys.argv[2]))\n"
    )
}

/// A service replica: double-forks, then serves HTTP on `$PORT`; exits
/// with code 3 (a crash) once a file `PID_FILE.crash` appears, removing it.
fn service_script() -> String {
    format!(
        "{DOUBLE_FORK}\nimport http.server, threading\ndouble_fork(sys.argv[1])\n\
         def crash_when_told(path):\n\
        \x20   while not os.path.exists(path):\n\
        \x20       time.sleep(0.05)\n\
        \x20   os.remove(path)\n\
        \x20   os._exit(3)\n\
         threading.Thread(target=crash_when_told, args=(sys.argv[1] + \".crash\",), daemon=True).start()\n\
         server = http.server.HTTPServer((\"0.0.0.0\", int(os.environ[\"PORT\"])), http.server.SimpleHTTPRequestHandler)\n\
         server.serve_forever()\n"
    )
}

/// Kills, when dropped, every grandchild whose pid file it was given.
struct Survivors(Vec<PathBuf>);

impl Survivors {
    fn pid(&self, file: &Path) -> u32 {
        read_pid(file).unwrap_or_else(|| panic!("no pid in {}", file.display()))
    }
}

impl Drop for Survivors {
    fn drop(&mut self) {
        for pid in self.0.iter().filter_map(|f| read_pid(f)) {
            if is_alive(pid) {
                kill(pid as i32, "KILL");
            }
        }
    }
}

/// A project with one batch stage `fork` running [`batch_script`].
fn batch_project(pid_file: &Path, sleep: &str, timeout: u64) -> TestProject {
    let stage = batch_stage(
        "fork",
        "fork.py",
        timeout,
        0,
        &args_line(&[pid_file.to_str().expect("UTF-8 temp path"), sleep]),
    );
    TestProject::new(&[
        (
            "bodywork.yaml",
            &helper::yaml("forker", "fork", "", &[stage]),
        ),
        ("fork.py", &batch_script()),
    ])
}

/// A home and a batch project whose stage's grandchild writes its pid to
/// `pid_file`. Fields drop in order: the daemon, the grandchild, the files.
struct BatchCase {
    home: TestHome,
    guard: Survivors,
    project: TestProject,
    pid_file: PathBuf,
    _holder: TestProject,
}

impl BatchCase {
    /// Start the run in the background; returns it once the grandchild
    /// runs, with the grandchild's pid.
    fn start(&self) -> (helper::Background, u32) {
        let cli = self
            .home
            .spawn(&["workflow", "--namespace", "tree", self.project.arg()]);
        wait_for("the grandchild to start", Duration::from_secs(120), || {
            self.pid_file.exists()
        });
        (cli, self.guard.pid(&self.pid_file))
    }
}

/// The stage sleeps `sleep` seconds after forking, with a `timeout`.
fn batch_case(sleep: &str, timeout: u64) -> BatchCase {
    let holder = TestProject::new(&[]);
    let pid_file = holder.scratch("grandchild.pid");
    BatchCase {
        home: TestHome::new(),
        guard: Survivors(vec![pid_file.clone()]),
        project: batch_project(&pid_file, sleep, timeout),
        pid_file,
        _holder: holder,
    }
}

/// Wait (a bounded while) for `pid` to be killed.
fn wait_gone(pid: u32) {
    wait_for(
        "the double-forked grandchild to be killed",
        Duration::from_secs(10),
        || !is_alive(pid),
    );
}

#[test]
fn a_timed_out_stage_takes_its_double_forked_grandchild_with_it() {
    let case = batch_case("60", 2);
    case.home
        .run(&["workflow", "--namespace", "tree", case.project.arg()])
        .expect_code(1)
        .expect_output("stage fork failed: did not complete within 2 seconds");
    wait_gone(case.guard.pid(&case.pid_file));
}

#[test]
fn a_cancelled_run_takes_the_double_forked_grandchild_with_it() {
    let case = batch_case("60", 120);
    let (cli, pid) = case.start();
    kill(cli.pid() as i32, "INT");
    cli.finish(Duration::from_secs(30))
        .expect_code(1)
        .expect_output("run cancelled; every stage process was stopped");
    wait_gone(pid);
}

#[test]
fn the_next_daemon_ends_the_tree_of_a_stage_left_by_a_killed_one() {
    let case = batch_case("120", 300);
    let (cli, pid) = case.start();
    let daemon = case.home.daemon_pid().expect("daemon pid");
    kill(daemon, "KILL");
    cli.finish(Duration::from_secs(30)).expect_code(1);
    // Any command starts a new daemon, which stops what the old one left.
    case.home.ok(&["runs", "--namespace", "tree"]);
    wait_gone(pid);
}

#[test]
fn a_stage_that_exits_at_once_leaves_no_double_forked_grandchild() {
    let case = batch_case("0", 60);
    case.home
        .ok(&["workflow", "--namespace", "tree", case.project.arg()])
        .expect_output("forked");
    let pid = case.guard.pid(&case.pid_file);
    // Gone by the time the run has ended: the stage's tree ends with it.
    assert!(!is_alive(pid), "grandchild {pid} outlived its stage");
}

#[test]
fn the_stage_command_takes_a_timed_out_attempts_double_forked_grandchild_with_it() {
    // What a pod runs: its attempts retry in the same container, so an
    // escaped grandchild must not outlive the attempt it belongs to.
    let case = batch_case("60", 2);
    for args in [
        &["init", "--quiet", "-b", "trunk"][..],
        &["add", "."],
        &["commit", "--quiet", "-m", "c"],
    ] {
        helper::git(case.project.path(), args);
    }
    // Output to a file: a surviving grandchild would hold a pipe open.
    let log = case.pid_file.with_file_name("stage.log");
    let file = std::fs::File::create(&log).expect("create the stage log");
    let status = case
        .home
        .cmd(&["stage", case.project.arg(), "trunk", "fork"])
        .stdout(file.try_clone().expect("share the stage log"))
        .stderr(file)
        .status()
        .expect("run bodywork stage");
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains("stage=fork failed: did not complete within 2 seconds"),
        "{out}"
    );
    wait_gone(case.guard.pid(&case.pid_file));
}

#[test]
fn exit_codes_and_signals_of_a_stage_under_its_reaper_are_reported_as_before() {
    let home = TestHome::new();
    // The stage's parent is the reaper's own small program, installed
    // beside `bodywork` (as cargo builds them both).
    let stage = batch_stage("end", "end.py", 30, 0, "");
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &helper::yaml("ending", "end", "", &[stage]),
        ),
        (
            "end.py",
            "import os\nprint(open(f'/proc/{os.getppid()}/cmdline').read().split('\\0')[:3])\n",
        ),
    ]);
    home.run(&["workflow", "--namespace", "codes", project.arg()])
        .expect_code(0)
        .expect_output("bodywork-reap', '__reap', '--']");
    for (script, says) in [
        ("raise SystemExit(3)\n", "stage end failed: exit code 3"),
        (
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
            "stage end failed: killed by signal SIGKILL",
        ),
    ] {
        let stage = batch_stage("end", "end.py", 30, 0, "");
        let project = TestProject::new(&[
            (
                "bodywork.yaml",
                &helper::yaml("ending", "end", "", &[stage]),
            ),
            ("end.py", script),
        ]);
        home.run(&["workflow", "--namespace", "codes", project.arg()])
            .expect_code(1)
            .expect_output(says);
    }
}

/// One service stage block with one replica, handing the replica its pid file.
fn service_stage(name: &str, pid_file: &Path) -> String {
    format!(
        "  {name}:\n    executable_module_path: server.py\n{}    service: {{max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}}\n",
        args_line(&[pid_file.to_str().expect("UTF-8 temp path")])
    )
}

/// A project of one-replica services (name, pid file of its grandchild).
fn services_project(services: &[(&str, &Path)]) -> TestProject {
    let names: Vec<&str> = services.iter().map(|(name, _)| *name).collect();
    let stages: String = services
        .iter()
        .map(|(name, file)| service_stage(name, file))
        .collect();
    let yaml = format!(
        "version: \"1.1\"\npipeline:\n  name: forking\n  namespace: tree\n  DAG: {}\nstages:\n{stages}",
        names.join(", ")
    );
    TestProject::new(&[("bodywork.yaml", &yaml), ("server.py", &service_script())])
}

#[test]
fn a_crashed_replica_takes_its_double_forked_grandchild_with_it() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let file = holder.scratch("a.pid");
    let guard = Survivors(vec![file.clone()]);
    let project = services_project(&[("svc-a", &file)]);
    home.ok(&["workflow", project.arg()]);
    let first = guard.pid(&file);
    let mut crash = file.clone().into_os_string();
    crash.push(".crash");
    std::fs::write(&crash, "").expect("tell the replica to crash");
    wait_gone(first);
    // The supervisor restarts the replica, which forks a new grandchild
    // (the daemon's stop and the guard end it).
    wait_for("the replica to restart", Duration::from_secs(30), || {
        read_pid(&file).is_some_and(|p| p != first)
    });
}

#[test]
fn replicas_take_their_double_forked_grandchildren_with_them_but_survive_a_daemon_kill() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (file_a, file_b) = (holder.scratch("a.pid"), holder.scratch("b.pid"));
    let guard = Survivors(vec![file_a.clone(), file_b.clone()]);
    let project = services_project(&[("svc-a", &file_a), ("svc-b", &file_b)]);
    home.ok(&["workflow", project.arg()]);
    let (a, b) = (guard.pid(&file_a), guard.pid(&file_b));
    assert!(is_alive(a) && is_alive(b));

    // The daemon killed with SIGKILL: replicas and their trees keep running,
    // for the next daemon to adopt.
    let daemon = home.daemon_pid().expect("daemon pid");
    kill(daemon, "KILL");
    wait_for("the daemon to die", Duration::from_secs(10), || {
        !is_alive(daemon as u32)
    });
    assert!(
        is_alive(a) && is_alive(b),
        "a daemon kill ended a replica's tree"
    );

    // The next daemon adopts the replicas; deleting one service ends its tree.
    home.ok(&[
        "service",
        "delete",
        "--namespace",
        "tree",
        "--name",
        "svc-a",
    ]);
    wait_for(
        "svc-a's double-forked grandchild to be killed",
        Duration::from_secs(30),
        || !is_alive(a),
    );
    assert!(is_alive(b), "deleting svc-a ended svc-b's tree");

    // An orderly daemon stop stops the replicas, trees included.
    home.ok(&["daemon", "--stop"]);
    wait_for(
        "svc-b's double-forked grandchild to be killed",
        Duration::from_secs(30),
        || !is_alive(b),
    );
}

/// The reaper's own program, which every local stage runs under.
fn reaper_program() -> &'static str {
    env!("CARGO_BIN_EXE_bodywork-reap")
}

/// `bodywork-reap __reap -- ARGS...`, the reaper every local stage runs under.
fn reaper(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(reaper_program());
    cmd.arg("__reap").arg("--").args(args);
    cmd
}

#[test]
fn the_reaper_passes_output_exit_codes_and_signals_through() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    // `bodywork __reap` (where `bodywork-reap` is not installed) is the same.
    for program in [reaper_program(), helper::bin()] {
        let out = std::process::Command::new(program)
            .args(["__reap", "--", "sh", "-c", "echo out; echo err >&2; exit 7"])
            .output()
            .expect("run the reaper");
        assert_eq!(out.status.code(), Some(7));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    }
    // Its program alone is no command for a user.
    let out = std::process::Command::new(reaper_program())
        .output()
        .expect("run the reaper");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: bodywork-reap __reap"));
    // A stage killed by a signal: the reaper dies of the same one, so the
    // daemon still sees `Signalled(n)`; signals are not blocked in the stage.
    let out = reaper(&["sh", "-c", "kill -TERM $$; echo survived"])
        .output()
        .expect("run the reaper");
    assert_eq!(out.status.signal(), Some(15), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // The stage's own SIGUSR2 to its group is not the daemon's request to
    // end the tree.
    let out = reaper(&[
        "python3",
        "-c",
        "import os, signal, time\nsignal.signal(signal.SIGUSR2, signal.SIG_IGN)\n\
         os.killpg(0, signal.SIGUSR2)\ntime.sleep(0.5)\nraise SystemExit(5)\n",
    ])
    .process_group(0)
    .output()
    .expect("run the reaper");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let out = reaper(&["/nonexistent/program"])
        .output()
        .expect("run the reaper");
    assert_eq!(out.status.code(), Some(127));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot start /nonexistent/program"),
        "{out:?}"
    );
}

/// Kills, when dropped, the process group it names.
struct Group(u32);

impl Group {
    fn signal(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.0 as i32), signal);
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
    }
}

#[test]
fn the_reaper_forwards_sigterm_to_escaped_descendants_and_ends_its_tree_when_asked() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let holder = TestProject::new(&[]);
    let (first, second) = (holder.scratch("first.pid"), holder.scratch("second.pid"));
    let guard = Survivors(vec![first.clone(), second.clone()]);
    // Two escaped grandchildren: the second, like the stage itself, ignores SIGTERM.
    let script = format!(
        "{DOUBLE_FORK}\nimport signal\ndouble_fork(sys.argv[1])\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\ndouble_fork(sys.argv[2])\ntime.sleep(300)\n"
    );
    let mut child = reaper(&[
        "python3",
        "-c",
        &script,
        first.to_str().expect("UTF-8 temp path"),
        second.to_str().expect("UTF-8 temp path"),
    ])
    .process_group(0)
    .spawn()
    .expect("start the reaper");
    let group = Group(child.id());
    wait_for(
        "the grandchildren to start",
        Duration::from_secs(30),
        || second.exists(),
    );
    let (one, two) = (guard.pid(&first), guard.pid(&second));
    // SIGTERM to the group (as the daemon sends it) reaches the grandchildren
    // that left it; the stage ignores it and goes on.
    group.signal(Signal::SIGTERM);
    wait_for(
        "SIGTERM to reach a grandchild",
        Duration::from_secs(10),
        || !is_alive(one),
    );
    assert!(is_alive(two), "the grandchild ignoring SIGTERM was killed");
    assert!(
        child.try_wait().expect("the reaper's status").is_none(),
        "the reaper ended while its stage ignores SIGTERM"
    );
    // The daemon's request to end the tree: everything goes, the reaper last.
    kill(child.id() as i32, "USR2");
    let status = child.wait().expect("the reaper's status");
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(!is_alive(two), "grandchild {two} outlived its reaper");
}

#[test]
fn the_reaper_writes_its_stage_output_to_a_log_bounded_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("g1-r0.log");
    let previous = dir.path().join("g1-r0.log.1");
    // 5 MB of numbered lines on stdout and stderr, as fast as they come,
    // into parts of 64 KiB; then a last word on stderr and a crash.
    let script = "import sys\n\
        for n in range(50_000):\n    (sys.stdout if n % 2 else sys.stderr).write(f'{n:09d} ' + 'x' * 90 + '\\n')\n\
        sys.stdout.flush()\n\
        sys.stderr.write('the last word\\n')\n\
        sys.exit(3)\n";
    let out = std::process::Command::new(reaper_program())
        .args(["__reap", "--log"])
        .arg(&log)
        .args(["--log-part", "65536", "--", "python3", "-u", "-c", script])
        .output()
        .expect("run the reaper");
    // The exit code passes through; nothing is printed but in the log.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
    let (now, before) = (
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(&previous).unwrap(),
    );
    assert!(now.len() <= 65536 && before.len() <= 65536);
    // All written by the time the reaper exited, whole lines, in order.
    assert!(
        now.ends_with("the last word\n"),
        "{}",
        &now[now.len().saturating_sub(300)..]
    );
    let numbered: Vec<u64> = before
        .lines()
        .chain(now.lines())
        .filter_map(|l| l.split_once(' ').and_then(|(n, _)| n.parse().ok()))
        .collect();
    assert_eq!(numbered.last(), Some(&49_999));
    assert!(numbered.windows(2).all(|w| w[1] == w[0] + 1), "lines lost");
    // The two parts, and how the stage ended (for a daemon that adopted
    // the reaper and cannot wait for it).
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files, ["g1-r0.log", "g1-r0.log.1", "g1-r0.log.exit"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("g1-r0.log.exit")).unwrap(),
        "code 3\n"
    );

    // A line of megabytes is cut at 64 KiB, with the marker.
    let long = dir.path().join("long.log");
    let out = std::process::Command::new(reaper_program())
        .args(["__reap", "--log"])
        .arg(&long)
        .args(["--log-part", "1048576", "--"])
        .args(["python3", "-c", "print('y' * 3_000_000); print('after')"])
        .output()
        .expect("run the reaper");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&long).unwrap();
    let expected = format!(
        "{}… [bodywork: line cut at 65536 bytes, {} bytes dropped]\nafter\n",
        "y".repeat(65536),
        3_000_000 - 65536
    );
    assert!(text == expected, "{} bytes written", text.len());
}
