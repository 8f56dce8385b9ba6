//! The local runtime's batch workflows end to end, through the
//! real `bodywork` binary and its real daemon: DAG order and parallel
//! steps, retries, timeouts, secrets, installer errors, `run_on_failure`,
//! crash recovery, concurrency rules, sources, the display commands,
//! cancellation, the stage environment, notebooks, file modes and
//! `bodywork stage`.
//!
//! Every test has its own `$BODYWORK_HOME` (see `common`), writes its
//! stdlib-only stage scripts into a temp dir and checks exact output and
//! exit codes. Must not: depend on another test's state, or sleep where it
//! can wait on a condition.
//!
//! Each test is a full, independent scenario with its own scripts; only the
//! helpers in `common` are shared.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::helper::{
    TestHome, TestProject, args_line, assert_rfc3339, batch_stage, git, http, is_alive, kill,
    read_pid, shown_time, wait_for, yaml,
};

const LONG: Duration = Duration::from_secs(120);

/// Appends `start NAME T` / `end NAME T` lines to a shared file, sleeping in between.
const STEP_SCRIPT: &str = r#"
import sys, time
name, path = sys.argv[1], sys.argv[2]
pause = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
with open(path, "a") as f:
    f.write(f"start {name} {time.time()}\n")
time.sleep(pause)
with open(path, "a") as f:
    f.write(f"end {name} {time.time()}\n")
print(f"stage {name} done")
"#;

/// Counts its attempts in a file and fails the first N of them.
const FLAKY_SCRIPT: &str = r#"
import sys
path, failures = sys.argv[1], int(sys.argv[2])
try:
    with open(path) as f:
        n = int(f.read())
except FileNotFoundError:
    n = 0
n += 1
with open(path, "w") as f:
    f.write(str(n))
print(f"attempt {n}")
sys.exit(1 if n <= failures else 0)
"#;

/// Writes its own pid and the pid of a `sleep 60` grandchild, then waits.
const SPAWNER_SCRIPT: &str = r#"
import os, subprocess, sys, time

def put(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)

child = subprocess.Popen(["sleep", "60"])
put(sys.argv[2], str(child.pid))
put(sys.argv[1], str(os.getpid()))
print("spawned", flush=True)
time.sleep(60)
"#;

/// Says it started, then waits for a release file.
const GATED_SCRIPT: &str = r#"
import os, sys, time
with open(sys.argv[1], "w") as f:
    f.write("started")
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
print("released")
"#;

/// Writes its whole environment as JSON.
const ENV_SCRIPT: &str = r#"
import json, os, sys
with open(sys.argv[1], "w") as f:
    json.dump(dict(os.environ), f)
print("token length", len(os.environ.get("TOKEN", "")))
"#;

fn step_lines(path: &Path) -> Vec<(String, String, f64)> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(parts.len(), 3, "bad line {l:?}");
            (
                parts[0].to_string(),
                parts[1].to_string(),
                parts[2].parse().expect("a time"),
            )
        })
        .collect()
}

fn time_of(lines: &[(String, String, f64)], what: &str, name: &str) -> f64 {
    lines
        .iter()
        .find(|(w, n, _)| w == what && n == name)
        .map(|(_, _, t)| *t)
        .unwrap_or_else(|| panic!("no {what} of {name} in {lines:?}"))
}

/// A project of one or more `STEP_SCRIPT` stages writing to `log`.
fn step_project(
    dag: &str,
    stages: &[(&str, f64)],
    log: &Path,
    extra_pipeline: &str,
) -> TestProject {
    let blocks: Vec<String> = stages
        .iter()
        .map(|(name, pause)| {
            batch_stage(
                name,
                "stages/step.py",
                30,
                0,
                &args_line(&[name, log.to_str().unwrap(), &pause.to_string()]),
            )
        })
        .collect();
    TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml("steps", dag, extra_pipeline, &blocks),
        ),
        ("stages/step.py", STEP_SCRIPT),
    ])
}

#[test]
fn steps_run_in_dag_order() {
    let home = TestHome::new();
    let log_holder = TestProject::new(&[]);
    let log = log_holder.scratch("order.txt");
    let project = step_project(
        "first >> middle-a, middle-b >> last",
        &[
            ("first", 0.0),
            ("middle-a", 0.0),
            ("middle-b", 0.0),
            ("last", 0.0),
        ],
        &log,
        "",
    );
    let run = home.run(&["workflow", "--namespace", "order", project.arg()]);
    run.expect_code(0)
        .expect_output("---- pod logs for steps--first\nstage first done")
        .expect_output("successfully ran workflow for project=steps in namespace=order");
    let lines = step_lines(&log);
    let order: Vec<&str> = lines
        .iter()
        .filter(|(w, _, _)| w == "end")
        .map(|(_, n, _)| n.as_str())
        .collect();
    assert_eq!(order.len(), 4, "{lines:?}");
    assert_eq!(order[0], "first");
    let middle: BTreeSet<&str> = order[1..3].iter().copied().collect();
    assert_eq!(middle, BTreeSet::from(["middle-a", "middle-b"]));
    assert_eq!(order[3], "last");
    // Each step starts only after the previous one ended.
    assert!(time_of(&lines, "start", "middle-a") >= time_of(&lines, "end", "first"));
    assert!(time_of(&lines, "start", "last") >= time_of(&lines, "end", "middle-b"));
    assert!(time_of(&lines, "start", "last") >= time_of(&lines, "end", "middle-a"));
}

#[test]
fn stages_of_one_step_run_in_parallel() {
    let home = TestHome::new();
    let log_holder = TestProject::new(&[]);
    let log = log_holder.scratch("parallel.txt");
    let project = step_project(
        "slow-a, slow-b",
        &[("slow-a", 1.5), ("slow-b", 1.5)],
        &log,
        "",
    );
    home.run(&["workflow", "--namespace", "par", project.arg()])
        .expect_code(0);
    let lines = step_lines(&log);
    let first_start = time_of(&lines, "start", "slow-a").min(time_of(&lines, "start", "slow-b"));
    let last_end = time_of(&lines, "end", "slow-a").max(time_of(&lines, "end", "slow-b"));
    let span = last_end - first_start;
    // Sequential would be >= 3 s; parallel is 1.5 s plus start-up skew.
    assert!(span >= 1.5, "span {span}");
    assert!(span < 2.4, "two 1.5 s stages took {span:.2} s together");
}

#[test]
fn retries_until_success_and_fails_after_the_last_attempt() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let flaky_count = holder.scratch("flaky.count");
    let broken_count = holder.scratch("broken.count");
    let stage = |name: &str, count: &Path, failures: &str| {
        batch_stage(
            name,
            "flaky.py",
            30,
            2,
            &args_line(&[count.to_str().unwrap(), failures]),
        )
    };
    let flaky = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml("flaky", "flaky", "", &[stage("flaky", &flaky_count, "2")]),
        ),
        ("flaky.py", FLAKY_SCRIPT),
    ]);
    let run = home.run(&["workflow", "--namespace", "retry", flaky.arg()]);
    run.expect_code(0)
        .expect_output("retrying stage=flaky (attempt 2 of 3)")
        .expect_output("retrying stage=flaky (attempt 3 of 3)")
        .expect_output("attempt 3\n");
    assert_eq!(fs::read_to_string(&flaky_count).unwrap(), "3");

    let broken = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "broken",
                "broken",
                "",
                &[stage("broken", &broken_count, "99")],
            ),
        ),
        ("flaky.py", FLAKY_SCRIPT),
    ]);
    let run = home.run(&["workflow", "--namespace", "retry", broken.arg()]);
    run.expect_code(1)
        .expect_output("stage broken failed: exit code 1 after 3 attempts");
    assert_eq!(fs::read_to_string(&broken_count).unwrap(), "3");
}

#[test]
fn a_timeout_kills_the_stage_and_its_grandchildren() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (own, grandchild) = (holder.scratch("stage.pid"), holder.scratch("sleep.pid"));
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "slow",
                "hang",
                "",
                &[batch_stage(
                    "hang",
                    "spawner.py",
                    2,
                    0,
                    &args_line(&[own.to_str().unwrap(), grandchild.to_str().unwrap()]),
                )],
            ),
        ),
        ("spawner.py", SPAWNER_SCRIPT),
    ]);
    let run = home.run(&["workflow", "--namespace", "slow", project.arg()]);
    run.expect_code(1)
        .expect_output("stage hang failed: did not complete within 2 seconds");
    assert!(run.elapsed < Duration::from_secs(30), "{run}");
    let stage_pid = read_pid(&own).expect("the stage wrote its pid");
    let sleep_pid = read_pid(&grandchild).expect("the stage wrote its child's pid");
    wait_for("the stage tree to be gone", Duration::from_secs(5), || {
        !is_alive(stage_pid) && !is_alive(sleep_pid)
    });
}

#[test]
fn a_missing_secret_fails_before_any_stage_starts() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let marker = holder.scratch("ran.txt");
    home.namespace("sec");
    let stage = |name: &str, secrets: &str| {
        batch_stage(
            name,
            "step.py",
            30,
            0,
            &format!("{}{secrets}", args_line(&[name, marker.to_str().unwrap()])),
        )
    };
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "needs-secret",
                "free >> locked",
                "",
                &[
                    stage("free", ""),
                    stage("locked", "    secrets:\n      TOKEN: creds\n"),
                ],
            ),
        ),
        ("step.py", STEP_SCRIPT),
    ]);
    let run = home.run(&["workflow", "--namespace", "sec", project.arg()]);
    run.expect_code(1)
        .expect_output("secrets are missing, so no stage was started:")
        .expect_output("stage locked: TOKEN -> secret \"creds\" does not exist");
    assert!(!run.all().contains("---- pod logs for"), "{run}");
    assert!(!marker.exists(), "a stage ran");
    // With the secret but without the key, the message names the key.
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "sec",
        "--name",
        "creds",
        "--data",
        "OTHER=1",
    ]);
    home.run(&["workflow", "--namespace", "sec", project.arg()])
        .expect_code(1)
        .expect_output("stage locked: TOKEN -> secret \"creds\" has no key \"TOKEN\"");
    assert!(!marker.exists(), "a stage ran");
}

#[test]
fn an_invalid_project_says_why_and_runs_nothing() {
    let home = TestHome::new();
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "broken",
                "a >> missing",
                "",
                &[batch_stage("a", "a.py", 30, 0, "")],
            ),
        ),
        ("a.py", "print('stage-a-ran')\n"),
    ]);
    let run = home.run(&["workflow", "--namespace", "bad", project.arg()]);
    run.expect_code(1)
        .expect_output("ERROR - workflow - workflow failed: the project is not valid:");
    assert!(!run.all().contains("stage-a-ran"), "{run}");
    let runs = home.runs_json("bad");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "failed");
}

#[test]
fn a_nonexistent_package_fails_with_the_installers_own_words() {
    let home = TestHome::new();
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "bad-reqs",
                "install",
                "",
                &[batch_stage(
                    "install",
                    "main.py",
                    30,
                    0,
                    "    requirements:\n      - no-such-package-bodywork-test-4242\n",
                )],
            ),
        ),
        ("main.py", "print('should not run')\n"),
    ]);
    let run = home.run(&["workflow", "--namespace", "reqs", project.arg()]);
    run.expect_code(1)
        .expect_output("stage install failed: could not install its requirements")
        // uv's own explanation.
        .expect_output("no-such-package-bodywork-test-4242 was not found in the package registry");
    assert!(!run.all().contains("should not run"), "{run}");
}

/// A later step's environment is made while the first step runs; its
/// stage's log still says what the installer did, as when the stage makes
/// it itself, and that it built it rather than reused it.
#[test]
fn an_environment_made_ahead_keeps_its_installer_lines() {
    let home = TestHome::new();
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "ahead",
                "first >> second",
                "",
                &[
                    batch_stage("first", "first.py", 60, 0, ""),
                    batch_stage(
                        "second",
                        "second.py",
                        60,
                        0,
                        "    requirements:\n      - six==1.16.0\n",
                    ),
                ],
            ),
        ),
        ("first.py", "print('first ran')\n"),
        (
            "second.py",
            "import six\nprint('second ran with six', six.__version__)\n",
        ),
    ]);
    let run = home.run(&["workflow", "--namespace", "ahead", project.arg()]);
    run.expect_code(0)
        .expect_output("second ran with six 1.16.0")
        // uv's own lines, from the build made ahead.
        .expect_output("+ six==1.16.0")
        .expect_output("environment ready for stage=second in");
    let all = run.all();
    let ready = all
        .lines()
        .find(|l| l.contains("environment ready for stage=second"))
        .unwrap_or_default();
    assert!(ready.contains("(built "), "{ready}\n{run}");
    let installed = all.find("+ six==1.16.0").unwrap_or(usize::MAX);
    let resolves = all
        .find("stage=second resolves its requirements")
        .unwrap_or(usize::MAX);
    assert!(
        resolves < installed && installed < all.find(ready).unwrap_or(0),
        "in order:\n{run}"
    );
}

#[test]
fn run_on_failure_gets_the_exception_message() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let message = holder.scratch("message.txt");
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "fails",
                "boom",
                "  run_on_failure: cleanup\n",
                &[
                    batch_stage("boom", "boom.py", 30, 0, ""),
                    batch_stage(
                        "cleanup",
                        "cleanup.py",
                        30,
                        0,
                        &args_line(&[message.to_str().unwrap()]),
                    ),
                ],
            ),
        ),
        ("boom.py", "import sys\nprint('exploding')\nsys.exit(3)\n"),
        (
            "cleanup.py",
            "import os, sys\nopen(sys.argv[1], 'w').write(os.environ['EXCEPTION_MESSAGE'])\nprint('cleaned up')\n",
        ),
    ]);
    let run = home.run(&["workflow", "--namespace", "fails", project.arg()]);
    run.expect_code(1)
        .expect_output("---- pod logs for fails--cleanup\ncleaned up");
    assert_eq!(
        fs::read_to_string(&message).unwrap(),
        "stage boom failed: exit code 3"
    );
}

/// A project with one `GATED_SCRIPT` stage: it writes `started`, then
/// waits for `release` to exist.
fn gated_project(name: &str, started: &Path, release: &Path) -> TestProject {
    TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                name,
                "wait",
                "",
                &[batch_stage(
                    "wait",
                    "gate.py",
                    60,
                    0,
                    &args_line(&[started.to_str().unwrap(), release.to_str().unwrap()]),
                )],
            ),
        ),
        ("gate.py", GATED_SCRIPT),
    ])
}

fn spawner_project(name: &str, own: &Path, grandchild: &Path) -> TestProject {
    TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                name,
                "long",
                "",
                &[batch_stage(
                    "long",
                    "spawner.py",
                    120,
                    0,
                    &args_line(&[own.to_str().unwrap(), grandchild.to_str().unwrap()]),
                )],
            ),
        ),
        ("spawner.py", SPAWNER_SCRIPT),
    ])
}

#[test]
fn a_killed_daemon_restarts_with_state_intact_and_the_run_failed() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (own, grandchild) = (holder.scratch("stage.pid"), holder.scratch("sleep.pid"));
    let log = holder.scratch("steps.txt");
    home.namespace("crash");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "crash",
        "--name",
        "creds",
        "--data",
        "K=v",
    ]);
    let quick = step_project("one", &[("one", 0.0)], &log, "");
    home.ok(&["workflow", "--namespace", "crash", quick.arg()]);
    let long = spawner_project("crashing", &own, &grandchild);
    let cli = home.spawn(&["workflow", "--namespace", "crash", long.arg()]);
    wait_for("the stage to start", LONG, || own.exists());
    let stage_pid = read_pid(&own).unwrap();
    let sleep_pid = read_pid(&grandchild).unwrap();
    let daemon = home.daemon_pid().expect("a daemon pid");
    kill(daemon, "KILL");
    let run = cli.finish(Duration::from_secs(30));
    run.expect_code(1).expect_output("bodywork daemon");
    // The next command starts a new daemon, which cleans up after the old one.
    let secrets = home.ok(&["secret", "display", "--namespace", "crash"]);
    assert!(secrets.stdout.contains(" creds "), "{secrets}");
    assert_ne!(home.daemon_pid(), Some(daemon));
    wait_for(
        "the orphaned stage to be killed",
        Duration::from_secs(10),
        || !is_alive(stage_pid) && !is_alive(sleep_pid),
    );
    let runs = home.runs_json("crash");
    let statuses: BTreeSet<(i64, String)> = runs
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from([(1, "succeeded".to_string()), (2, "failed".to_string())]),
        "{runs:?}"
    );
    let interrupted = runs.iter().find(|r| r["id"] == 2).unwrap();
    assert!(
        interrupted["error"]
            .as_str()
            .unwrap_or("")
            .contains("daemon stopped"),
        "{interrupted}"
    );
    assert_eq!(interrupted["project"], "crashing");
}

#[test]
fn workflows_in_different_namespaces_run_at_once() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let log = holder.scratch("both.txt");
    let project = step_project("s", &[("s", 1.5)], &log, "");
    // Start the daemon first so both runs race only with each other.
    home.namespace("ns-a");
    let a = home.spawn(&["workflow", "--namespace", "ns-a", project.arg()]);
    let b = home.spawn(&["workflow", "--namespace", "ns-b", project.arg()]);
    a.finish(LONG).expect_code(0);
    b.finish(LONG).expect_code(0);
    let lines = step_lines(&log);
    let starts: Vec<f64> = lines
        .iter()
        .filter(|l| l.0 == "start")
        .map(|l| l.2)
        .collect();
    let ends: Vec<f64> = lines.iter().filter(|l| l.0 == "end").map(|l| l.2).collect();
    assert_eq!((starts.len(), ends.len()), (2, 2), "{lines:?}");
    let latest_start = starts.iter().copied().fold(f64::MIN, f64::max);
    let earliest_end = ends.iter().copied().fold(f64::MAX, f64::min);
    assert!(
        latest_start < earliest_end,
        "the runs did not overlap: {lines:?}"
    );
    assert_eq!(home.runs_json("ns-a").len(), 1);
    assert_eq!(home.runs_json("ns-b").len(), 1);
}

#[test]
fn a_second_run_of_the_same_project_and_namespace_is_refused() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (started, release) = (holder.scratch("started"), holder.scratch("release"));
    let project = gated_project("gated", &started, &release);
    let first = home.spawn(&["workflow", "--namespace", "one", project.arg()]);
    wait_for("the first run's stage", LONG, || started.exists());
    let second = home.run(&["workflow", "--namespace", "one", project.arg()]);
    second.expect_code(1).expect_output(
        "a workflow of project gated is already running in namespace one (run 1); \
         wait for it to finish, or cancel it (Ctrl-C where it was started), then try again",
    );
    assert!(!second.all().contains("---- pod logs for"), "{second}");
    fs::write(&release, "go").unwrap();
    first
        .finish(LONG)
        .expect_code(0)
        .expect_output("---- pod logs for gated--wait\nreleased");
    let runs = home.runs_json("one");
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    assert!(
        statuses.contains(&"succeeded") && statuses.contains(&"failed"),
        "{runs:?}"
    );
}

/// Holds every connection it accepts, answering nothing; appends a line to
/// `DIR/requested` for each, and to `DIR/closed` when its client closes it.
const SILENT_SERVER: &str = r#"
import os, select, socket, sys
d = sys.argv[1]
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
open(d + "/port.tmp", "w").write(str(s.getsockname()[1]))
os.rename(d + "/port.tmp", d + "/port")
conns = []
while True:
    ready, _, _ = select.select([s] + conns, [], [], 0.1)
    for x in ready:
        if x is s:
            c, _ = s.accept()
            conns.append(c)
            open(d + "/requested", "a").write("1\n")
            continue
        try:
            data = x.recv(65536)
        except OSError:
            data = b""
        if not data:
            conns.remove(x)
            x.close()
            open(d + "/closed", "a").write("1\n")
"#;

/// When a run fails, the environments its later steps were having made
/// ahead are stopped: the installer's process tree killed (its download
/// dropped), the half-built environment removed.
#[test]
fn a_failed_runs_environments_made_ahead_are_stopped_and_removed() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let dir = holder.scratch("server");
    fs::create_dir_all(&dir).unwrap();
    /// Killed however the test ends.
    struct Server(std::process::Child);
    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Server(
        std::process::Command::new("python3")
            .args(["-c", SILENT_SERVER, dir.to_str().unwrap()])
            .spawn()
            .expect("python3"),
    );
    wait_for("the server's port", LONG, || dir.join("port").exists());
    let port = fs::read_to_string(dir.join("port")).unwrap();
    let lines = |name: &str| {
        fs::read_to_string(dir.join(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let requested = dir.join("requested");
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "stopped",
                "first >> second",
                "",
                &[
                    batch_stage("first", "first.py", 120, 0, ""),
                    batch_stage(
                        "second",
                        "second.py",
                        60,
                        0,
                        &format!(
                            "    requirements:\n      - slowpkg @ http://127.0.0.1:{port}/slowpkg-0.1-py3-none-any.whl\n"
                        ),
                    ),
                ],
            ),
        ),
        (
            "first.py",
            &format!(
                "import os, sys, time\nwhile not os.path.exists({:?}):\n    time.sleep(0.05)\n\
                 print('failing while the next environment downloads')\nsys.exit(1)\n",
                requested.to_str().unwrap()
            ),
        ),
        ("second.py", "print('should not run')\n"),
    ]);
    let run = home.run(&["workflow", "--namespace", "stopped", project.arg()]);
    let ended = std::time::Instant::now();
    run.expect_code(1)
        .expect_output("failing while the next environment downloads");
    assert!(!run.all().contains("should not run"), "{run}");
    // uv would wait 30 s for an answer; killed, it drops its downloads now.
    wait_for(
        "the installer made ahead to be killed",
        Duration::from_secs(15),
        || lines("closed") >= lines("requested"),
    );
    assert!(ended.elapsed() < Duration::from_secs(20));
    // Only complete environments are left (the first stage's).
    let envs = home.root().join("envs");
    wait_for(
        "the half-built environment to go",
        Duration::from_secs(15),
        || {
            fs::read_dir(&envs).unwrap().flatten().all(|e| {
                e.file_name().to_string_lossy().starts_with('.')
                    || e.path().join("bodywork-env.json").exists()
            })
        },
    );
}

/// The environments page names the runs going whose stages use an
/// environment, and, of a held build lock, the run and stage it builds for
/// (as the lock file says), each with a link to the run's page.
#[test]
fn the_environments_page_names_the_runs_using_an_environment_and_a_locks_stage() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (started, release) = (holder.scratch("started"), holder.scratch("release"));
    let project = gated_project("gated", &started, &release);
    let first = home.spawn(&["workflow", "--namespace", "envs", project.arg()]);
    wait_for("the run's stage", LONG, || started.exists());
    // A build of another environment, for run 1's stage `wait`, as the
    // lock file of a build going on says.
    let locks = home.root().join("envs").join(".locks");
    fs::create_dir_all(&locks).unwrap();
    let lock_path = locks.join("0123456789abcdef.lock");
    fs::write(
        &lock_path,
        "pid=4242\nsince=1700000000\nnamespace=envs\nrun=1\nstage=wait\n",
    )
    .unwrap();
    let lock = fs::File::open(&lock_path).unwrap();
    lock.lock().unwrap();
    let gateway = home.gateway();
    let (status, page) = http(&gateway, "GET", "/ui/environments", None).expect("the page");
    assert_eq!(status, 200, "{page}");
    let link = "<a href=\"/ui/namespaces/envs/runs/1\">run 1</a>";
    assert!(
        page.contains(&format!("{link} (stage wait)")),
        "no run using an environment in\n{page}"
    );
    assert!(
        page.contains(&format!(
            "being built</span> for {link}, stage wait (pid 4242), for "
        )),
        "no lock's run in\n{page}"
    );
    drop(lock);
    fs::write(&release, "go").unwrap();
    first.finish(LONG).expect_code(0);
    // The run is over: it uses no environment any more.
    let (_, page) = http(&gateway, "GET", "/ui/environments", None).expect("the page");
    assert!(!page.contains("(stage wait)"), "{page}");
}

#[test]
fn delete_namespace_is_refused_while_a_run_is_going_and_then_removes_the_runs() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (started, release) = (holder.scratch("started"), holder.scratch("release"));
    let project = gated_project("gated", &started, &release);
    home.namespace("busy");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "busy",
        "--name",
        "creds",
        "--data",
        "KEY=value",
    ]);
    let first = home.spawn(&["workflow", "--namespace", "busy", project.arg()]);
    wait_for("the run's stage", LONG, || started.exists());
    home.run(&["delete-namespace", "busy"])
        .expect_code(1)
        .expect_output(
            "error: cannot delete namespace busy\n  \
             Caused by: workflow run 1 is going in it\n  \
             hint: wait for it to finish (or cancel it), then try again",
        );
    // Nothing was deleted.
    home.ok(&["secret", "display", "--namespace", "busy"])
        .expect_output("creds");
    fs::write(&release, "go").unwrap();
    first.finish(LONG).expect_code(0);
    let log = home.root().join("logs/runs/1.log");
    assert!(log.exists());

    home.ok(&["delete-namespace", "busy"]).expect_output(
        "deleted 1 secret(s) and 0 cron job(s) in namespace=busy\n\
         deleted 1 workflow run(s) with their logs in namespace=busy\n\
         deleted namespace=busy\n\
         deleted cluster-role-binding=bodywork-workflow-controller--busy\n",
    );
    assert!(!log.exists(), "the run's log is removed with it");
    assert!(home.runs_json("busy").is_empty());
    home.run(&["delete-namespace", "busy"])
        .expect_code(1)
        .expect_output("namespace busy does not exist");
    home.run(&["delete-namespace", "Not_Valid"]).expect_code(2);
}

#[test]
fn projects_come_from_file_urls_branches_and_local_directories() {
    let home = TestHome::new();
    let repo = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "src",
                "show",
                "",
                &[batch_stage("show", "show.py", 30, 0, "")],
            ),
        ),
        (
            "show.py",
            "import os\nprint(open('flavour.txt').read().strip(), os.environ['GIT_COMMIT_HASH'])\n",
        ),
        ("flavour.txt", "on-main\n"),
    ]);
    let dir = repo.path();
    git(dir, &["init", "--quiet", "-b", "main"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "--quiet", "-m", "main"]);
    let main_commit = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "-b", "feature"]);
    fs::write(dir.join("flavour.txt"), "on-feature\n").unwrap();
    git(dir, &["commit", "--quiet", "-am", "feature"]);
    let feature_commit = git(dir, &["rev-parse", "HEAD"]);
    git(dir, &["checkout", "--quiet", "main"]);
    let url = format!("file://{}", dir.display());

    home.ok(&["workflow", "--namespace", "src", &url])
        .expect_output(&format!(
            "---- pod logs for src--show\non-main {main_commit}\n"
        ));
    home.ok(&["workflow", "--namespace", "src", &url, "feature"])
        .expect_output(&format!(
            "---- pod logs for src--show\non-feature {feature_commit}\n"
        ));
    home.ok(&["workflow", "--namespace", "src", repo.arg()])
        .expect_output(&format!(
            "---- pod logs for src--show\non-main {main_commit}\n"
        ));
    // A local directory without git deploys as it is.
    let plain = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "plain",
                "show",
                "",
                &[batch_stage("show", "show.py", 30, 0, "")],
            ),
        ),
        ("show.py", "print('plain directory')\n"),
    ]);
    home.ok(&["workflow", "--namespace", "src", plain.arg()])
        .expect_output("---- pod logs for plain--show\nplain directory\n");
    let runs = home.runs_json("src");
    assert_eq!(runs.len(), 4);
    let commits: BTreeSet<&str> = runs.iter().filter_map(|r| r["commit"].as_str()).collect();
    assert!(commits.contains(main_commit.as_str()) && commits.contains(feature_commit.as_str()));
}

#[test]
fn setup_namespace_prints_the_seeds_four_lines() {
    let home = TestHome::new();
    let run = home.ok(&["setup-namespace", "scoring-service"]);
    assert_eq!(
        run.stdout,
        "creating namespace=scoring-service\n\
         creating service-account=bodywork-workflow-controller in namespace=scoring-service\n\
         creating cluster-role-binding=bodywork-workflow-controller--scoring-service\n\
         creating service-account=bodywork-jobs-and-deployments in namespace=scoring-service\n"
    );
    let again = home.ok(&["setup-namespace", "scoring-service"]);
    assert_eq!(again.stdout.lines().count(), 4);
    assert!(
        again
            .stdout
            .starts_with("found existing namespace=scoring-service\n"),
        "{again}"
    );
}

#[test]
fn secret_values_are_masked_and_never_logged() {
    const VALUE: &str = "s3cr3t-VALUE-4711";
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let env_file = holder.scratch("env.json");
    home.namespace("vault");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "vault",
        "--name",
        "creds",
        "--data",
        &format!("TOKEN={VALUE}"),
    ]);
    let masked = home.ok(&["secret", "display", "--namespace", "vault"]);
    assert!(!masked.all().contains(VALUE), "{masked}");
    assert!(
        masked.stdout.contains("creds   TOKEN  ********"),
        "{masked}"
    );
    let json = home.ok(&["secret", "display", "--namespace", "vault", "-o", "json"]);
    assert!(!json.all().contains(VALUE), "{json}");
    // Its creation time: RFC 3339 in the document, local time in the table.
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let created = shown_time(&doc[0]["created"]);
    assert!(masked.stdout.contains(&created), "{created} in\n{masked}");
    let shown = home.ok(&["secret", "display", "--namespace", "vault", "--show-values"]);
    assert!(
        shown.stdout.contains(&format!("creds   TOKEN  {VALUE}")),
        "{shown}"
    );

    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "uses-secret",
                "read",
                "",
                &[batch_stage(
                    "read",
                    "env.py",
                    30,
                    0,
                    &format!(
                        "{}    secrets:\n      TOKEN: creds\n",
                        args_line(&[env_file.to_str().unwrap()])
                    ),
                )],
            ),
        ),
        ("env.py", ENV_SCRIPT),
    ]);
    let run = home.ok(&["workflow", "--namespace", "vault", project.arg()]);
    run.expect_output(&format!("token length {}", VALUE.len()));
    assert!(!run.all().contains(VALUE), "{run}");
    // The stage got it...
    let env: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&env_file).unwrap()).unwrap();
    assert_eq!(env["TOKEN"], VALUE);
    // ...but no log of ours has it.
    let logs = home.ok(&["logs", "--namespace", "vault", "1"]);
    assert!(logs.stdout.contains("token length"), "{logs}");
    assert!(!logs.all().contains(VALUE));
    for entry in walk(&home.root().join("logs")) {
        let text = fs::read_to_string(&entry).unwrap_or_default();
        assert!(
            !text.contains(VALUE),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn runs_and_logs_show_history_and_whole_logs() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let log = holder.scratch("steps.txt");
    let project = step_project("a >> b", &[("a", 0.0), ("b", 0.0)], &log, "");
    let live = home.ok(&["workflow", "--namespace", "hist", project.arg()]);
    let fail = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml("steps", "x", "", &[batch_stage("x", "x.py", 30, 0, "")]),
        ),
        ("x.py", "raise SystemExit(4)\n"),
    ]);
    home.run(&["workflow", "--namespace", "hist", fail.arg()])
        .expect_code(1);

    let runs = home.runs_json("hist");
    assert_eq!(runs.len(), 2, "{runs:?}");
    let first = runs.iter().find(|r| r["id"] == 1).expect("run 1");
    assert_eq!(first["status"], "succeeded");
    assert_eq!(first["project"], "steps");
    assert_eq!(first["namespace"], "hist");
    assert_eq!(first["trigger"], "cli");
    assert_eq!(first["repo"], project.arg());
    assert!(first["error"].is_null());
    let second = runs.iter().find(|r| r["id"] == 2).expect("run 2");
    assert_eq!(second["status"], "failed");
    assert_eq!(second["error"], "stage x failed: exit code 4");
    // `-o json` times are RFC 3339 in UTC; the table shows them in local time.
    let (started, finished) = (
        assert_rfc3339(&first["started"]),
        assert_rfc3339(&first["finished"]),
    );
    assert!(started <= finished, "{first}");
    assert!(assert_rfc3339(&second["started"]) >= started, "{runs:?}");
    let started_shown = shown_time(&first["started"]);

    // The saved log is exactly what was streamed live.
    let logs = home.ok(&["logs", "--namespace", "hist", "1"]);
    assert_eq!(logs.stdout, live.stdout);
    assert!(
        logs.stdout
            .contains("---- pod logs for steps--b\nstage b done\n")
    );
    let table = home.ok(&["runs", "--namespace", "hist"]);
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header[..3], ["RUN", "PROJECT", "STATUS"]);
    assert_eq!(table.stdout.lines().count(), 3, "{table}");
    assert!(table.stdout.contains(&started_shown), "{table}");
    // Runs of another namespace are not shown there.
    home.run(&["logs", "--namespace", "other", "1"])
        .expect_code(1)
        .expect_output("no workflow run 1 in namespace other");
}

#[test]
fn ctrl_c_cancels_the_run_and_stops_its_processes() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (own, grandchild) = (holder.scratch("stage.pid"), holder.scratch("sleep.pid"));
    let project = spawner_project("cancel-me", &own, &grandchild);
    let cli = home.spawn(&["workflow", "--namespace", "cancel", project.arg()]);
    wait_for("the stage to start", LONG, || own.exists());
    let (stage_pid, sleep_pid) = (read_pid(&own).unwrap(), read_pid(&grandchild).unwrap());
    kill(cli.pid() as i32, "INT");
    let run = cli.finish(Duration::from_secs(30));
    run.expect_code(1)
        .expect_output("cancelling the run (Ctrl-C again to leave at once)")
        .expect_output("run cancelled; every stage process was stopped");
    assert!(!is_alive(stage_pid) && !is_alive(sleep_pid), "{run}");
    let runs = home.runs_json("cancel");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["status"], "cancelled", "{runs:?}");
}

#[test]
fn stages_get_only_the_intended_environment() {
    let home = TestHome::new().with_env("BODYWORK_TEST_LEAK", "leaked");
    let holder = TestProject::new(&[]);
    let env_file = holder.scratch("env.json");
    home.namespace("envs");
    home.ok(&[
        "secret",
        "create",
        "--namespace",
        "envs",
        "--name",
        "creds",
        "--data",
        "TOKEN=t",
    ]);
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "env-check",
                "dump",
                "",
                &[batch_stage(
                    "dump",
                    "env.py",
                    30,
                    0,
                    &format!(
                        "{}    secrets:\n      TOKEN: creds\n",
                        args_line(&[env_file.to_str().unwrap()])
                    ),
                )],
            ),
        ),
        ("env.py", ENV_SCRIPT),
    ]);
    home.ok(&["workflow", "--namespace", "envs", project.arg()]);
    let env: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&fs::read_to_string(&env_file).unwrap()).unwrap();
    let allowed = [
        "GIT_COMMIT_HASH",
        "PYTHONUNBUFFERED",
        "TOKEN",
        "PATH",
        "VIRTUAL_ENV",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LC_ALL",
        "LC_CTYPE",
        "TZ",
        "TMPDIR",
        // Service discovery of the local runtime (the namespace's service names).
        "BODYWORK_NAMESPACE",
        "BODYWORK_HOSTS_FILE",
    ];
    for name in env.keys() {
        assert!(
            allowed.contains(&name.as_str()),
            "unexpected variable {name} in {env:?}"
        );
    }
    for needed in [
        "GIT_COMMIT_HASH",
        "PYTHONUNBUFFERED",
        "TOKEN",
        "PATH",
        "VIRTUAL_ENV",
    ] {
        assert!(env.contains_key(needed), "{needed} missing from {env:?}");
    }
    assert_eq!(env["PYTHONUNBUFFERED"], "1");
    assert_eq!(env["TOKEN"], "t");
    assert!(!env.contains_key("BODYWORK_TEST_LEAK"));
    assert!(!env.contains_key("BODYWORK_HOME"));
    let venv = env["VIRTUAL_ENV"].as_str().unwrap();
    assert!(
        venv.starts_with(home.root().join("envs").to_str().unwrap()),
        "{venv}"
    );
    assert!(
        env["PATH"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{venv}/bin:"))
    );
}

#[test]
fn notebooks_run_headless() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let out = holder.scratch("nb.txt");
    let notebook = serde_json::json!({
        "cells": [
            {"cell_type": "markdown", "metadata": {}, "source": ["# Title\n"]},
            {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
             "source": ["import sys\n", "total = sum(range(5))\n"]},
            {"cell_type": "code", "metadata": {}, "execution_count": null, "outputs": [],
             "source": format!("print('notebook total', total)\nopen({:?}, 'w').write(str(total))\n", out.to_str().unwrap())}
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5
    });
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "nb",
                "nb",
                "",
                &[batch_stage("nb", "work/analysis.ipynb", 30, 0, "")],
            ),
        ),
        ("work/analysis.ipynb", &notebook.to_string()),
    ]);
    home.ok(&["workflow", "--namespace", "nb", project.arg()])
        .expect_output("---- pod logs for nb--nb\nnotebook total 10\n");
    assert_eq!(fs::read_to_string(&out).unwrap(), "10");
}

#[test]
fn the_socket_and_state_are_private_to_the_user() {
    let home = TestHome::new();
    home.namespace("private");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let socket = home.root().join("daemon.sock");
    assert!(fs::metadata(&socket).unwrap().file_type().is_socket());
    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(&home.root().join("state.db")), 0o600);
    assert_eq!(mode(home.root()), 0o700);
}

#[test]
fn the_stage_command_runs_one_stage_in_the_foreground() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let count = holder.scratch("count");
    let (own, grandchild) = (holder.scratch("stage.pid"), holder.scratch("sleep.pid"));
    let repo = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "direct",
                "hello >> flaky >> code >> hang >> spawn",
                "",
                &[
                    batch_stage(
                        "hello",
                        "hello.py",
                        30,
                        0,
                        &format!("{}    secrets:\n      TOKEN: creds\n", args_line(&["a b"])),
                    ),
                    batch_stage(
                        "flaky",
                        "flaky.py",
                        30,
                        1,
                        &args_line(&[count.to_str().unwrap(), "1"]),
                    ),
                    batch_stage("code", "code.py", 30, 0, ""),
                    batch_stage("hang", "hang.py", 1, 0, ""),
                    batch_stage(
                        "spawn",
                        "spawner.py",
                        60,
                        0,
                        &args_line(&[own.to_str().unwrap(), grandchild.to_str().unwrap()]),
                    ),
                ],
            ),
        ),
        (
            "hello.py",
            "import os, sys\nprint('hello', sys.argv[1:], os.environ['GIT_COMMIT_HASH'], os.environ['TOKEN'], os.environ['PYTHONUNBUFFERED'])\n",
        ),
        ("flaky.py", FLAKY_SCRIPT),
        ("code.py", "raise SystemExit(7)\n"),
        ("hang.py", "import time\ntime.sleep(60)\n"),
        ("spawner.py", SPAWNER_SCRIPT),
    ]);
    git(repo.path(), &["init", "--quiet", "-b", "trunk"]);
    git(repo.path(), &["add", "."]);
    git(repo.path(), &["commit", "--quiet", "-m", "c"]);
    let commit = git(repo.path(), &["rev-parse", "HEAD"]);
    let url = format!("file://{}", repo.path().display());

    // The secret arrives as an environment variable, as in a container.
    let mut cmd = home.cmd(&["stage", &url, "trunk", "hello"]);
    cmd.env("TOKEN", "from-env");
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, format!("hello ['a b'] {commit} from-env 1\n"));

    // `--commit` (what every pod of a deployed version runs): that commit,
    // although the branch has moved on since.
    fs::write(repo.path().join("hello.py"), "print('a later commit')\n").unwrap();
    git(repo.path(), &["commit", "--quiet", "-am", "later"]);
    let mut cmd = home.cmd(&["stage", &url, "trunk", "hello", "--commit", &commit]);
    cmd.env("TOKEN", "from-env");
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hello ['a b'] {commit} from-env 1\n")
    );

    let flaky = home.run(&["stage", &url, "trunk", "flaky"]);
    flaky
        .expect_code(0)
        .expect_output("retrying stage=flaky (attempt 2 of 2)");
    assert_eq!(flaky.stdout, "attempt 1\nattempt 2\n");

    home.run(&["stage", repo.arg(), "trunk", "code"])
        .expect_code(7)
        .expect_output("stage=code failed: exit code 7");
    home.run(&["stage", &url, "trunk", "hang"])
        .expect_code(1)
        .expect_output("stage=hang failed: did not complete within 1 seconds");
    home.run(&["stage", &url, "trunk", "nope"])
        .expect_code(1)
        .expect_output(
            "project direct has no stage \"nope\" (its stages: hello, flaky, code, hang, spawn)",
        );
    // SIGTERM (`docker stop`) stops the stage's whole tree; exit 130.
    let cli = home.spawn(&["stage", &url, "trunk", "spawn"]);
    wait_for("the stage to start", LONG, || own.exists());
    let (stage_pid, sleep_pid) = (read_pid(&own).unwrap(), read_pid(&grandchild).unwrap());
    kill(cli.pid() as i32, "TERM");
    cli.finish(Duration::from_secs(30))
        .expect_code(130)
        .expect_output("stage=spawn was stopped");
    assert!(!is_alive(stage_pid) && !is_alive(sleep_pid));
    // No daemon was involved, and no checkout is left behind.
    assert!(!home.root().join("daemon.sock").exists());
    let left: Vec<_> = fs::read_dir(home.root().join("checkouts"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn credentials_in_a_git_url_are_never_shown() {
    // `https://user:TOKEN@host/r.git`: fetched with, never printed — not in
    // the run's log, `runs`, or `cronjob display` (tables and JSON).
    let home = TestHome::new();
    home.namespace("creds");
    let url = "https://deploy:s3cr3t-token@127.0.0.1:1/org/repo.git";
    let run = home.run(&["workflow", "--namespace", "creds", url, "main"]);
    run.expect_code(1);
    assert!(!run.all().contains("s3cr3t-token"), "{}", run.all());
    assert!(
        run.all().contains("https://***@127.0.0.1:1/org/repo.git"),
        "{}",
        run.all()
    );
    home.ok(&[
        "cronjob",
        "create",
        "--namespace",
        "creds",
        "--name",
        "nightly",
        "--schedule",
        "0 3 * * *",
        "--git-repo-url",
        url,
    ]);
    for args in [
        &["runs", "--namespace", "creds"][..],
        &["-o", "json", "runs", "--namespace", "creds"],
        &["cronjob", "display", "--namespace", "creds"],
        &["-o", "json", "cronjob", "display", "--namespace", "creds"],
        &["logs", "--namespace", "creds", "1"],
    ] {
        let shown = home.ok(args);
        assert!(
            !shown.all().contains("s3cr3t-token"),
            "{args:?}: {}",
            shown.all()
        );
    }
}

#[test]
fn secret_values_come_from_a_file_or_standard_input_and_keep_their_lines() {
    // Values given as arguments show in `ps` and shell history; a key
    // file is several lines.
    let home = TestHome::new();
    home.namespace("vault");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    fs::write(&key_file, "-----BEGIN KEY-----\nabc\n-----END KEY-----\n").unwrap();
    let mut cmd = home.cmd(&[
        "secret",
        "create",
        "--namespace",
        "vault",
        "--name",
        "creds",
        "--data-file",
        &format!("KEY={}", key_file.display()),
        "--data-stdin",
        "TOKEN",
    ]);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"from-stdin").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("secret=creds created in namespace=vault")
    );
    // The table keeps one row a value; JSON has the value as it is.
    let table = home.ok(&["secret", "display", "--namespace", "vault", "--show-values"]);
    assert!(
        table
            .stdout
            .contains("-----BEGIN KEY-----\\nabc\\n-----END KEY-----\\n"),
        "{}",
        table.stdout
    );
    assert!(table.stdout.contains("from-stdin"));
    let json = home.ok(&[
        "-o",
        "json",
        "secret",
        "display",
        "--namespace",
        "vault",
        "--show-values",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        doc[0]["data"]["KEY"],
        "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"
    );
    // Masked unless asked.
    let masked = home.ok(&["secret", "display", "--namespace", "vault"]);
    assert!(!masked.stdout.contains("abc") && !masked.stdout.contains("from-stdin"));
}

/// A gated batch stage, then a service (stdlib) on `port`.
fn gated_service_project(name: &str, started: &Path, release: &Path, port: u16) -> TestProject {
    let web = format!(
        "  web:\n    executable_module_path: web.py\n    service: {{max_startup_time_seconds: 30, replicas: 1, port: {port}, ingress: false}}\n"
    );
    TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                name,
                "wait >> web",
                "",
                &[
                    batch_stage(
                        "wait",
                        "gate.py",
                        60,
                        0,
                        &args_line(&[started.to_str().unwrap(), release.to_str().unwrap()]),
                    ),
                    web,
                ],
            ),
        ),
        ("gate.py", GATED_SCRIPT),
        (
            "web.py",
            "import http.server, os\nhttp.server.HTTPServer(('0.0.0.0', int(os.environ['PORT'])), http.server.SimpleHTTPRequestHandler).serve_forever()\n",
        ),
    ])
}

#[test]
fn two_repositories_deployed_at_once_into_one_namespace_cannot_both_pass() {
    // Before, both first deploys saw a namespace without services and went
    // on; each later redeploy was then refused because of the other.
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let (started, release) = (holder.scratch("started"), holder.scratch("release"));
    let first_project = gated_service_project("gated", &started, &release, 5000);
    let (other_started, other_release) = (holder.scratch("o-started"), holder.scratch("o-release"));
    let other_project = gated_service_project("other", &other_started, &other_release, 5001);
    fs::write(&other_release, "go").unwrap();
    let first = home.spawn(&["workflow", "--namespace", "shared", first_project.arg()]);
    wait_for("the first run's stage", LONG, || started.exists());
    let second = home.run(&["workflow", "--namespace", "shared", other_project.arg()]);
    second
        .expect_code(1)
        .expect_output("namespace shared is being deployed by run 1 of project gated from");
    assert!(
        !other_started.exists(),
        "no stage of the second project ran"
    );
    // A batch-only project claims nothing: it may run beside.
    let (b_started, b_release) = (holder.scratch("b-started"), holder.scratch("b-release"));
    fs::write(&b_release, "go").unwrap();
    let batch_only = gated_project("batchonly", &b_started, &b_release);
    home.ok(&["workflow", "--namespace", "shared", batch_only.arg()]);
    fs::write(&release, "go").unwrap();
    first.finish(LONG).expect_code(0);
}
