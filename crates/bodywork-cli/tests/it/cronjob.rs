//! Scheduled workflows end to end: the real `bodywork` binary, its real
//! daemon in a private `BODYWORK_HOME`, and a stdlib-only batch project in a
//! temporary directory.
//!
//! Owns: each case's home and project, and stopping its daemon afterwards
//! (a guard does it on drop, so a failed assertion still cleans up). Uses the
//! scheduler's test seam `BODYWORK_CRON_SECONDS=1` (6-field schedules with
//! seconds) so no case waits a minute, moves the daemon's cron clock on
//! (`BODYWORK_CRON_CLOCK_OFFSET_FILE`) instead of waiting for time to pass,
//! and waits with bounded polling, never fixed sleeps. The scheduler's
//! timing (back-off lengths, never a run too many, never two at once) is
//! tested in-process on a paused clock, in bodywork-local. Must not: talk to anything but loopback, or touch the
//! user's own `~/.bodywork`.
//!
//! The helpers its cases share (the daemon guard, the project writer,
//! bounded polling) live in this file with them.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helper::assert_rfc3339;

/// How long a case waits for the daemon to get somewhere.
const PATIENCE: Duration = Duration::from_secs(60);

/// One private bodywork home with a project; its daemon stops on drop.
struct Case {
    home: tempfile::TempDir,
    project: PathBuf,
}

impl Case {
    /// A home, the namespace `ns`, and a one-stage batch project whose stage
    /// runs `script` (Python, stdlib only).
    fn new(script: &str) -> Case {
        let home = tempfile::tempdir().expect("temp home");
        let project = home.path().join("project");
        std::fs::create_dir_all(&project).expect("project dir");
        std::fs::write(
            project.join("bodywork.yaml"),
            r#"version: "1.1"
pipeline:
  name: cron-test
  docker_image: bodyworkml/bodywork-core:latest
  DAG: hello
stages:
  hello:
    executable_module_path: hello.py
    cpu_request: 0.1
    memory_request_mb: 10
    batch:
      max_completion_time_seconds: 60
      retries: 0
"#,
        )
        .expect("bodywork.yaml");
        std::fs::write(project.join("hello.py"), script).expect("hello.py");
        let case = Case { home, project };
        case.ok(&["setup-namespace", "ns"]);
        case
    }

    /// Runs `bodywork ARGS` against this home.
    fn bw(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_bodywork"))
            .args(args)
            .env("BODYWORK_HOME", self.home.path())
            .env("BODYWORK_CRON_SECONDS", "1")
            .env("BODYWORK_CRON_CLOCK_OFFSET_FILE", self.clock_offset_file())
            .env("BODYWORK_PYENV_INSTALLER", "pip")
            .env("BODYWORK_PYTHON_DOWNLOADS", "never")
            .env("BODYWORK_GATEWAY_ADDR", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .env_remove("BODYWORK_RUNTIME")
            .output()
            .expect("run bodywork")
    }

    /// Runs `bodywork ARGS`, which must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.bw(args);
        assert!(
            out.status.success(),
            "bodywork {args:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cronjob create` for this case's project with extra flags.
    fn create(&self, name: &str, schedule: &str, extra: &[&str]) -> String {
        let project = self.project.display().to_string();
        let mut args = vec![
            "cronjob",
            "create",
            "--namespace",
            "ns",
            "--name",
            name,
            "--schedule",
            schedule,
            "--git-repo-url",
            &project,
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    /// `cronjob history -o json`, newest first.
    fn history(&self, name: &str) -> Vec<Value> {
        let text = self.ok(&[
            "cronjob", "history", "--ns", "ns", "--name", name, "-o", "json",
        ]);
        let doc: Value = serde_json::from_str(&text).expect("history is JSON");
        doc.as_array().cloned().expect("history is an array")
    }

    /// `cronjob display -o json`.
    fn display(&self) -> Vec<Value> {
        let text = self.ok(&["cronjob", "display", "--ns", "ns", "-o", "json"]);
        let doc: Value = serde_json::from_str(&text).expect("display is JSON");
        doc.as_array().cloned().expect("display is an array")
    }

    /// Polls `history` until `done` holds for it; panics with the last
    /// history after `PATIENCE`.
    fn wait_for_history(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        self.poll_history(name, what, done, || {})
    }

    /// Like [`Case::wait_for_history`], moving the daemon's cron clock a
    /// minute on between looks, so retries need not wait out their back-off.
    fn wait_for_history_skipping_back_offs(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let mut offset = 0;
        self.poll_history(name, what, done, || {
            offset += 60;
            self.move_clock_on(offset);
        })
    }

    fn poll_history(
        &self,
        name: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
        mut between: impl FnMut(),
    ) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let history = self.history(name);
            if done(&history) {
                return history;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; history:\n{history:#?}"
            );
            between();
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The file whose seconds move the daemon's cron clock on.
    fn clock_offset_file(&self) -> PathBuf {
        self.home.path().join("clock-offset")
    }

    /// Moves the daemon's cron clock `seconds` on from the system clock.
    fn move_clock_on(&self, seconds: i64) {
        std::fs::write(self.clock_offset_file(), seconds.to_string()).expect("clock offset");
    }

    fn stop_daemon(&self) {
        let _ = self.bw(&["daemon", "--stop"]);
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        self.stop_daemon();
    }
}

fn finished(entry: &Value) -> bool {
    entry["completion_time"].is_string()
}

fn count(entry: &Value, column: &str) -> u64 {
    entry[column].as_u64().unwrap_or(0)
}

fn runs(history: &[Value]) -> Vec<&Value> {
    history
        .iter()
        .filter(|e| !e["skipped"].as_bool().unwrap_or(false))
        .collect()
}

fn job_name(entry: &Value) -> String {
    entry["job_name"]
        .as_str()
        .expect("a run has a job name")
        .to_string()
}

#[test]
fn a_cron_job_fires_and_shows_in_history_with_its_logs() {
    let case = Case::new("print('hello from cron')\n");
    let created = case.create("every2", "*/2 * * * * *", &[]);
    assert!(
        created.contains("cronjob=every2 created in namespace=ns"),
        "{created}"
    );

    let history = case.wait_for_history("every2", "a finished run", |h| {
        h.iter().any(|e| finished(e) && count(e, "succeeded") == 1)
    });
    let run = history
        .iter()
        .find(|e| finished(e) && count(e, "succeeded") == 1)
        .expect("finished run");
    assert_eq!(run["kind"], "scheduled");
    assert_eq!((count(run, "active"), count(run, "failed")), (0, 0));
    let name = job_name(run);
    assert!(name.starts_with("every2-"), "{name}");

    // The seed's columns, in the table.
    let table = case.ok(&["cronjob", "history", "--ns", "ns", "--name", "every2"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header[..6],
        [
            "JOB_NAME",
            "START_TIME",
            "COMPLETION_TIME",
            "ACTIVE",
            "SUCCEEDED",
            "FAILED"
        ]
    );
    assert!(table.contains(&name), "{table}");

    // The whole log of that run, and nothing else, on stdout.
    let out = case.bw(&["cronjob", "logs", "--ns", "ns", "--name", &name]);
    assert!(out.status.success(), "{out:?}");
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("hello from cron"), "{log}");
    assert!(log.contains("---- pod logs for cron-test--hello"), "{log}");
    assert!(log.contains("successfully ran workflow"), "{log}");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let jobs = case.display();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["name"], "every2");
    assert_eq!(jobs[0]["schedule"], "*/2 * * * * *");
    assert_eq!(jobs[0]["timezone"], "UTC");
    assert_eq!(jobs[0]["repo"], case.project.display().to_string());
    // `-o json` times are RFC 3339, in UTC to the second.
    for field in ["created", "last_run", "next_run"] {
        assert_rfc3339(&jobs[0][field]);
    }
    assert!(jobs[0]["status"].is_string(), "{jobs:?}");
    for field in ["scheduled", "start_time", "completion_time"] {
        assert_rfc3339(&run[field]);
    }
    let table = case.ok(&["cronjob", "display", "--ns", "ns"]);
    for column in [
        "NAME", "SCHEDULE", "REPO", "BRANCH", "LAST RUN", "NEXT RUN", "STATUS",
    ] {
        assert!(table.contains(column), "{table}");
    }

    // A run of another cron job, or no run at all, is refused clearly.
    let out = case.bw(&["cronjob", "logs", "--ns", "ns", "--name", "other-1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run \"other-1\""));

    // Delete removes the cron job, its history and its logs.
    let deleted = case.ok(&["cronjob", "delete", "--ns", "ns", "--name", "every2"]);
    assert!(deleted.contains("cronjob=every2 deleted"), "{deleted}");
    assert!(case.display().is_empty());
    let out = case.bw(&["cronjob", "history", "--ns", "ns", "--name", "every2"]);
    assert_eq!(out.status.code(), Some(1));
    let out = case.bw(&["cronjob", "logs", "--ns", "ns", "--name", &name]);
    assert_eq!(out.status.code(), Some(1));
    let runs_left = case.ok(&["runs", "--ns", "ns", "-o", "json"]);
    let runs_left: Value = serde_json::from_str(&runs_left).expect("runs JSON");
    // A run that was going when the job was deleted is removed when it ends.
    let deadline = Instant::now() + PATIENCE;
    let mut runs_left = runs_left.as_array().map_or(0, Vec::len);
    while runs_left > 0 {
        assert!(
            Instant::now() < deadline,
            "runs of a deleted cron job remain"
        );
        std::thread::sleep(Duration::from_millis(250));
        let text = case.ok(&["runs", "--ns", "ns", "-o", "json"]);
        runs_left = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.as_array().map(Vec::len))
            .unwrap_or(0);
    }
}

#[test]
fn a_failed_run_is_retried_until_it_succeeds() {
    let home_marker = tempfile::tempdir().expect("marker dir");
    let marker = home_marker.path().join("failed-once");
    // Fails the first time, succeeds after: two runs, not four.
    let script = format!(
        "import pathlib, sys\nmarker = pathlib.Path({:?})\n\
         if not marker.exists():\n    marker.write_text('x')\n    print('failing on purpose')\n    sys.exit(3)\n\
         print('second time lucky')\n",
        marker.display().to_string()
    );
    let case = Case::new(&script);
    // A schedule that will not come during the test: the run is triggered.
    case.create("flaky", "0 0 1 1 *", &["--retries", "3"]);
    let out = case.ok(&["cronjob", "trigger", "--ns", "ns", "--name", "flaky"]);
    assert!(out.contains("run flaky-"), "{out}");

    let history = case.wait_for_history_skipping_back_offs("flaky", "a successful retry", |h| {
        h.iter().any(|e| count(e, "succeeded") == 1 && finished(e))
    });
    let runs = runs(&history);
    assert_eq!(runs.len(), 2, "{history:#?}");
    // Newest first: the retry succeeded after the first try failed.
    assert_eq!(
        (count(runs[0], "succeeded"), runs[0]["attempt"].as_u64()),
        (1, Some(2))
    );
    assert_eq!(
        (count(runs[1], "failed"), runs[1]["attempt"].as_u64()),
        (1, Some(1))
    );
    assert_eq!(
        (&runs[0]["kind"], &runs[1]["kind"]),
        (&"manual".into(), &"manual".into())
    );
    let table = case.ok(&["cronjob", "history", "--ns", "ns", "--name", "flaky"]);
    assert!(table.contains("manual, retry 1"), "{table}");
    let log = case.ok(&[
        "cronjob",
        "logs",
        "--ns",
        "ns",
        "--name",
        &job_name(runs[1]),
    ]);
    assert!(log.contains("failing on purpose"), "{log}");
}

#[test]
fn retries_stop_at_the_limit_and_back_off_in_between() {
    let case = Case::new("import sys\nprint('always failing')\nsys.exit(1)\n");
    case.create("broken", "0 0 1 1 *", &["--retries", "2"]);
    let trigger = ["cronjob", "trigger", "--ns", "ns", "--name", "broken"];
    case.ok(&trigger);

    // While a retry waits out its back-off, display says when it comes and
    // a manual trigger is refused.
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        let job = case.display().remove(0);
        if job["retry_at"].is_string() {
            break job;
        }
        assert!(Instant::now() < deadline, "never backing off: {job}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_rfc3339(&status["retry_at"]);
    assert_eq!(status["status"], "failed", "{status}");
    // The table says it in words, in local time (unless the retry has
    // started meanwhile).
    let table = case.ok(&["cronjob", "display", "--ns", "ns"]);
    assert!(
        table.contains("retrying at ") || table.contains("running"),
        "{table}"
    );
    let refused = case.bw(&trigger);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("wait for it to finish"), "{stderr}");

    // The back-offs' lengths are tested on a paused clock in bodywork-local.
    let history = case.wait_for_history_skipping_back_offs("broken", "three failed runs", |h| {
        runs(h).len() == 3 && runs(h).iter().all(|e| finished(e))
    });
    assert_eq!(
        attempts(&history),
        [(Some(3), 1), (Some(2), 1), (Some(1), 1)]
    );
    // No retry is pending: no fourth run comes.
    assert_eq!(case.display()[0]["status"], "failed");
    assert_eq!(self::runs(&case.history("broken")).len(), 3);
}

#[test]
fn a_pending_retry_survives_a_daemon_restart() {
    let case = Case::new("import sys\nprint('always failing')\nsys.exit(1)\n");
    case.create("broken", "0 0 1 1 *", &["--retries", "1"]);
    case.ok(&["cronjob", "trigger", "--ns", "ns", "--name", "broken"]);
    let deadline = Instant::now() + PATIENCE;
    while !case.display()[0]["retry_at"].is_string() {
        assert!(Instant::now() < deadline, "never backing off");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Restarted during the back-off: the new daemon takes the retry up.
    case.ok(&["daemon", "--restart"]);
    let history =
        case.wait_for_history_skipping_back_offs("broken", "the retry after the restart", |h| {
            runs(h).len() == 2 && runs(h).iter().all(|e| finished(e))
        });
    assert_eq!(attempts(&history), [(Some(2), 1), (Some(1), 1)]);
    assert_eq!(case.display()[0]["status"], "failed");
}

/// `(attempt, failed)` of each run in a history, newest first.
fn attempts(history: &[Value]) -> Vec<(Option<u64>, u64)> {
    runs(history)
        .iter()
        .map(|e| (e["attempt"].as_u64(), count(e, "failed")))
        .collect()
}

/// `seconds` from now, as `-o json` writes times, so that they compare as text.
fn utc_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn a_due_run_is_skipped_while_one_is_going() {
    let case = Case::new("import time\nprint('slow', flush=True)\ntime.sleep(8)\n");
    case.create("slow", "* * * * * *", &[]);
    let history = case.wait_for_history("slow", "a skipped run", |h| {
        h.iter().any(|e| e["skipped"] == true)
    });
    let skipped = history.iter().find(|e| e["skipped"] == true).expect("skip");
    assert_eq!(skipped["job_name"], Value::Null);
    assert!(
        skipped["skipped_for"]
            .as_str()
            .is_some_and(|run| run.starts_with("slow-")),
        "{skipped}"
    );
    // Never two at once.
    let active: u64 = history.iter().map(|e| count(e, "active")).sum();
    assert!(active <= 1, "two runs of one cron job at once");
    let out = case.bw(&["cronjob", "trigger", "--ns", "ns", "--name", "slow"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has a run going"));
    case.ok(&["cronjob", "delete", "--ns", "ns", "--name", "slow"]);
}

#[test]
fn only_the_newest_runs_are_kept() {
    let case = Case::new("print('quick')\n");
    case.create("quick", "* * * * * *", &["--history-limit", "2"]);
    // Run ids grow: once the newest is the 4th run and at most two are
    // listed, older ones were pruned (a timeout here means they never were).
    let history = case.wait_for_history("quick", "a fourth run and a pruned history", |h| {
        let runs = runs(h);
        runs.first()
            .and_then(|e| e["run"].as_i64())
            .is_some_and(|id| id >= 4)
            && runs.len() <= 2
    });
    let kept: Vec<i64> = runs(&history)
        .iter()
        .filter_map(|e| e["run"].as_i64())
        .collect();
    let log_dir = case.home.path().join("logs/runs");
    assert!(log_dir.join(format!("{}.log", kept[0])).exists());
    // The oldest runs are gone, with their logs.
    for pruned in [1, 2] {
        assert!(
            !log_dir.join(format!("{pruned}.log")).exists(),
            "{pruned}.log"
        );
        let name = format!("quick-{pruned}");
        let out = case.bw(&["cronjob", "logs", "--ns", "ns", "--name", &name]);
        assert_eq!(out.status.code(), Some(1), "{name}");
    }
    let text = case.ok(&["runs", "--ns", "ns", "-o", "json"]);
    let listed: Value = serde_json::from_str(&text).expect("runs JSON");
    let ids: Vec<i64> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["id"].as_i64()).collect())
        .unwrap_or_default();
    assert!(!ids.contains(&1) && !ids.contains(&2), "{ids:?}");
    case.ok(&["cronjob", "delete", "--ns", "ns", "--name", "quick"]);
}

#[test]
fn invalid_schedules_are_refused_clearly() {
    let case = Case::new("print('never')\n");
    let project = case.project.display().to_string();
    for (schedule, timezone, expected) in [
        ("* * *", None, "expected 5 fields"),
        ("61 * * * *", None, "invalid cron schedule \"61 * * * *\""),
        ("every day", None, "expected 5 fields"),
        (
            "0 9 * * *",
            Some("Mars/Olympus"),
            "unknown time zone \"Mars/Olympus\"",
        ),
    ] {
        let mut args = vec![
            "cronjob",
            "create",
            "--ns",
            "ns",
            "--name",
            "bad",
            "--schedule",
            schedule,
            "--git-repo-url",
            &project,
        ];
        if let Some(tz) = timezone {
            args.extend(["--timezone", tz]);
        }
        let out = case.bw(&args);
        assert_eq!(out.status.code(), Some(2), "{schedule}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{schedule}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = case.bw(&[
        "cronjob",
        "create",
        "--ns",
        "ns",
        "--name",
        "bad",
        "--schedule",
        "0 * * * *",
        "--git-repo-url",
        &project,
        "--history-limit",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A valid time zone is kept and shown.
    case.create("london", "0 9 * * *", &["--timezone", "Europe/London"]);
    assert_eq!(case.display()[0]["timezone"], "Europe/London");
    // Names must be DNS-1123, the namespace must exist, names are unique.
    let out = case.bw(&[
        "cronjob",
        "create",
        "--ns",
        "ns",
        "--name",
        "London",
        "--schedule",
        "0 * * * *",
        "--git-repo-url",
        &project,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = case.bw(&[
        "cronjob",
        "create",
        "--ns",
        "nowhere",
        "--name",
        "x",
        "--schedule",
        "0 * * * *",
        "--git-repo-url",
        &project,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("setup-namespace nowhere"));
    let out = case.bw(&[
        "cronjob",
        "create",
        "--ns",
        "ns",
        "--name",
        "london",
        "--schedule",
        "0 * * * *",
        "--git-repo-url",
        &project,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // Unknown cron jobs are named in the error.
    for verb in ["delete", "trigger", "history"] {
        let out = case.bw(&["cronjob", verb, "--ns", "ns", "--name", "nope"]);
        assert_eq!(out.status.code(), Some(1), "{verb}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("cron job nope does not exist in namespace ns"),
            "{verb}: {stderr}"
        );
    }
}

#[test]
fn a_daemon_restart_keeps_the_job_its_history_and_catches_up_once() {
    let case = Case::new("print('tick')\n");
    case.create("every2", "*/2 * * * * *", &[]);
    let before = case.wait_for_history("every2", "a finished run", |h| {
        runs(h).iter().any(|e| finished(e))
    });
    let first = job_name(
        runs(&before)
            .iter()
            .rev()
            .find(|e| finished(e))
            .expect("run"),
    );

    case.stop_daemon();
    let stopped_at = utc_in(0);
    // Down for five periods, as the restarted daemon's clock says: five
    // times are missed.
    case.move_clock_on(10);
    let restarted_at = utc_in(10);

    // Any command starts the daemon again; the job is still there.
    let jobs = case.display();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0]["name"], "every2");
    let after = case.wait_for_history("every2", "the catch-up run", |h| {
        h.iter().any(|e| e["kind"] == "catch_up" && finished(e))
    });
    assert!(
        after.iter().any(|e| e["job_name"] == first.as_str()),
        "history from before the restart is kept: {after:#?}"
    );
    let catch_ups: Vec<_> = after.iter().filter(|e| e["kind"] == "catch_up").collect();
    assert_eq!(
        catch_ups.len(),
        1,
        "one catch-up run, not a burst: {after:#?}"
    );
    let table = case.ok(&["cronjob", "history", "--ns", "ns", "--name", "every2"]);
    assert!(table.contains("catch-up"), "{table}");
    // Nothing else was replayed for a time while the daemon was down.
    let replayed = after.iter().filter(|e| {
        e["kind"] == "scheduled"
            && e["scheduled"]
                .as_str()
                .is_some_and(|t| t > stopped_at.as_str() && t < restarted_at.as_str())
    });
    assert_eq!(replayed.count(), 0, "{after:#?}");
    let log = case.ok(&["cronjob", "logs", "--ns", "ns", "--name", &first]);
    assert!(log.contains("tick"), "{log}");
}
