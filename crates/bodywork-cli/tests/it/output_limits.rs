//! The limits on what stages print, end to end through
//! the real `bodywork` binary and its daemon: a line of megabytes is cut
//! at 64 KiB with a marker, in the CLI's output and in the stored log; a
//! CLI that stops reading gets a marker where lines were skipped while the
//! stored log keeps them all; a service replica's log is kept in two parts
//! of 10 MiB on disk however fast it is written, `bodywork logs` reads
//! across both, and a deleted service's log folder stays gone.
//!
//! Memory itself is measured by `bench/daemon_memory.py`, not here.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::helper::{self, TestHome, TestProject, args_line, batch_stage, kill, wait_for, yaml};

const LONG: Duration = Duration::from_secs(180);

/// The longest line kept (`bodywork_lines::MAX_LINE`).
const MAX_LINE: usize = 64 * 1024;

/// 5 MB on one line with no newline inside, then a normal line on stdout;
/// 3 MB on stderr with no newline at all.
const LONG_LINES: &str = r#"
import sys
sys.stdout.write("x" * 5_000_000)
sys.stdout.write("\nafter the long line\n")
sys.stdout.flush()
sys.stderr.write("y" * 3_000_000)
sys.stderr.flush()
"#;

/// The line a cut line becomes.
fn cut(byte: char, total: usize) -> String {
    format!(
        "{}… [bodywork: line cut at {MAX_LINE} bytes, {} bytes dropped]",
        byte.to_string().repeat(MAX_LINE),
        total - MAX_LINE
    )
}

/// The stored log of run `id`.
fn run_log(home: &TestHome, id: i64) -> PathBuf {
    home.root()
        .join("logs")
        .join("runs")
        .join(format!("{id}.log"))
}

fn only_run(home: &TestHome, ns: &str) -> i64 {
    let runs = home.runs_json(ns);
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0]["id"].as_i64().expect("run id")
}

#[test]
fn a_line_of_megabytes_without_a_newline_is_cut_with_a_marker_and_the_run_goes_on() {
    let home = TestHome::new();
    home.namespace("long");
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "long",
                "talk",
                "",
                &[batch_stage("talk", "talk.py", 60, 0, "")],
            ),
        ),
        ("talk.py", LONG_LINES),
    ]);
    let run = home.ok(&["workflow", "--namespace", "long", project.arg()]);
    let (xs, ys) = (cut('x', 5_000_000), cut('y', 3_000_000));
    for output in [
        &run.stdout,
        &fs::read_to_string(run_log(&home, only_run(&home, "long"))).unwrap(),
    ] {
        let lines: Vec<&str> = output.lines().collect();
        let at = lines.iter().position(|l| *l == xs);
        assert!(at.is_some(), "no cut line of x in {} lines", lines.len());
        assert!(lines.contains(&"after the long line"));
        assert!(lines.contains(&ys.as_str()), "no cut line of y");
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE + 100));
    }
    // The stored log is within its cap: 8 MB were printed.
    let stored = fs::metadata(run_log(&home, only_run(&home, "long")))
        .unwrap()
        .len();
    assert!(stored < 200_000, "the run log holds {stored} bytes");
    let logs = home.ok(&[
        "logs",
        "--namespace",
        "long",
        &only_run(&home, "long").to_string(),
    ]);
    assert!(
        logs.stdout.lines().any(|l| l == xs),
        "bodywork logs shows no cut line"
    );
    assert!(logs.stdout.contains("after the long line\n"));
}

/// Says it started, waits for a release file, then prints `lines` lines of
/// 1000 bytes, numbered.
const FLOOD: &str = r#"
import os, sys, time
started, release, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(started, "w") as f:
    f.write("started")
while not os.path.exists(release):
    time.sleep(0.02)
filler = "f" * 990
for n in range(lines):
    print(f"{n:08d} {filler}")
print("flood done")
"#;

/// Whether the only run of `ns` has succeeded (its whole log is written).
fn flooded(home: &TestHome, ns: &str) -> bool {
    let runs = home.runs_json(ns);
    runs.first().is_some_and(|r| r["status"] == "succeeded")
}

#[test]
fn a_client_that_stops_reading_gets_a_marker_and_the_stored_log_keeps_every_line() {
    let home = TestHome::new();
    home.namespace("slow");
    let holder = TestProject::new(&[]);
    let (started, release) = (holder.scratch("started"), holder.scratch("release"));
    let lines = 30_000;
    let project = TestProject::new(&[
        (
            "bodywork.yaml",
            &yaml(
                "slow",
                "flood",
                "",
                &[batch_stage(
                    "flood",
                    "flood.py",
                    120,
                    0,
                    &args_line(&[
                        started.to_str().unwrap(),
                        release.to_str().unwrap(),
                        &lines.to_string(),
                    ]),
                )],
            ),
        ),
        ("flood.py", FLOOD),
    ]);
    // The CLI's output goes to a file: a pipe nobody reads would stop it too.
    let out = holder.scratch("cli.out");
    let mut cli = home
        .cmd(&["workflow", "--namespace", "slow", project.arg()])
        .stdout(fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the stage to start", LONG, || started.exists());
    // The CLI stops reading (SIGSTOP) while 30 MB are printed.
    kill(cli.id() as i32, "STOP");
    fs::write(&release, "go").unwrap();
    wait_for("the run to succeed", LONG, || flooded(&home, "slow"));
    kill(cli.id() as i32, "CONT");
    let status = wait_child(&mut cli, LONG);
    assert!(status.success(), "the workflow failed: {status}");
    let id = only_run(&home, "slow");
    let shown = fs::read_to_string(&out).unwrap();
    let marker = format!("the client read too slowly; see `bodywork logs --namespace slow {id}`]");
    let markers: Vec<&str> = shown.lines().filter(|l| l.ends_with(&marker)).collect();
    assert!(!markers.is_empty(), "no skip marker in the CLI's output");
    assert!(markers[0].starts_with("[bodywork: "), "{}", markers[0]);
    assert!(
        shown.contains("flood done\n"),
        "the end of the stream is missing"
    );
    // Shown plus skipped is every line; the stored log has them all.
    let skipped: u64 = markers
        .iter()
        .map(|m| m.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap())
        .sum();
    let numbered = |text: &str| {
        text.lines()
            .filter(|l| l.ends_with(&"f".repeat(990)))
            .count() as u64
    };
    assert_eq!(numbered(&shown) + skipped, lines);
    let stored = fs::read_to_string(run_log(&home, id)).unwrap();
    assert_eq!(numbered(&stored), lines);
}

fn wait_child(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let mut status = None;
    wait_for("the CLI to finish", limit, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status.unwrap()
}

/// A service that prints 22 MiB of numbered lines at start, then listens,
/// says so and prints a tick every 0.2 s.
const NOISY_SERVICE: &str = r#"
import http.server, os, threading, time
filler = "z" * 1013
for n in range(22 * 1024):
    print(f"{n:09d} {filler}")
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.BaseHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("numbered lines done")
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(0.2)
"#;

/// The most one part of a replica's log holds
/// (`bodywork_local::logfiles::SERVICE_LOG_PART`).
const LOG_PART: u64 = 10 << 20;
/// The most a replica's log holds on disk: two parts.
const REPLICA_LOG_CAP: u64 = 2 * LOG_PART;

/// The replica log files of a service (`FILE`, not their rotated parts
/// `FILE.1`; named even while `FILE` is being rotated).
fn replica_logs(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let name = p.to_str()?;
            let log = name.strip_suffix(".1").unwrap_or(name);
            log.ends_with(".log").then(|| PathBuf::from(log))
        })
        .collect();
    logs.sort();
    logs.dedup();
    logs
}

/// `FILE.1`, the rotated part of `FILE`.
fn rotated(log: &Path) -> PathBuf {
    let mut previous = log.as_os_str().to_owned();
    previous.push(".1");
    PathBuf::from(previous)
}

/// What the files under `dir` hold in all, rotated parts and anything
/// else included (`du --apparent-size`).
fn bytes_under(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => bytes_under(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The numbered lines (`NNNNNNNNN ...`) of `text`, as numbers, in order.
fn numbers(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once(' ').and_then(|(n, _)| n.parse().ok()))
        .collect()
}

#[test]
fn a_service_log_is_kept_in_two_parts_and_logs_reads_across_both() {
    let home = TestHome::new();
    let yaml = "version: \"1.1\"\npipeline:\n  name: noisy\n  namespace: noisy\n  DAG: noisy\nstages:\n  noisy:\n    executable_module_path: noisy.py\n    service: {max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}\n";
    let project = TestProject::new(&[("bodywork.yaml", yaml), ("noisy.py", NOISY_SERVICE)]);
    home.ok(&["workflow", project.arg()]);
    let dir = home.root().join("logs/services/noisy/noisy");
    let logs = replica_logs(&dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    wait_for("a tick after the numbered lines", LONG, || {
        fs::read_to_string(log).is_ok_and(|t| t.contains("\ntick "))
    });
    // 22 MiB were written: two rotations, each part within its size.
    for part in [log.clone(), rotated(log)] {
        let len = fs::metadata(&part).unwrap().len();
        assert!(len <= LOG_PART, "{} holds {len} bytes", part.display());
    }
    let older = fs::read_to_string(rotated(log)).unwrap();
    let first_kept = numbers(&older)[0];
    // `bodywork logs` shows the rotated part and the file after it: every
    // numbered line from the rotated part's first to the last, in order.
    let shown = home.ok(&["logs", "--namespace", "noisy", "noisy"]);
    let shown_numbers = numbers(&shown.stdout);
    let last = 22 * 1024 - 1;
    assert_eq!(
        shown_numbers,
        (first_kept..=last).collect::<Vec<_>>(),
        "the numbered lines shown are not those of both parts"
    );
    assert!(shown.stdout.contains("numbered lines done\ntick 1\n"));
    // The replica's reaper writes its log, not the daemon: ticks go on
    // while no daemon runs, and the next one (adopting it) shows them.
    let daemon = home.daemon_pid().expect("daemon pid");
    kill(daemon, "KILL");
    wait_for("the daemon to die", LONG, || {
        !helper::is_alive(daemon as u32)
    });
    let ticks = |text: &str| text.lines().filter(|l| l.starts_with("tick ")).count();
    let before = ticks(&fs::read_to_string(log).unwrap());
    wait_for("ticks written with no daemon", LONG, || {
        ticks(&fs::read_to_string(log).unwrap()) > before + 2
    });
    let last = fs::read_to_string(log)
        .unwrap()
        .lines()
        .rfind(|l| l.starts_with("tick "))
        .unwrap()
        .to_string();
    let shown = home.ok(&["logs", "--namespace", "noisy", "noisy"]);
    assert!(
        shown.stdout.contains(&format!("{last}\n")),
        "{last} not shown"
    );
}

/// A service that listens, waits for a release file, then writes numbered
/// lines of 1000 bytes to stderr as fast as it can for SECONDS (forever
/// when 0), says how many, and serves on.
const STDERR_FLOOD: &str = r#"
import http.server, os, sys, threading, time
release, seconds = sys.argv[1], float(sys.argv[2])
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.BaseHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
while not os.path.exists(release):
    time.sleep(0.02)
filler = "e" * 990
n = 0
end = time.monotonic() + (seconds or 1e9)
while time.monotonic() < end:
    for _ in range(1000):
        sys.stderr.write(f"{n:09d} {filler}\n")
        n += 1
sys.stderr.write(f"flood over after {n} lines\n")
sys.stderr.flush()
while True:
    time.sleep(3600)
"#;

/// A project `flood` in namespace `ns` of two replicas running
/// [`STDERR_FLOOD`], released by `release`.
fn flood_project(ns: &str, release: &Path, seconds: u32) -> TestProject {
    let yaml = format!(
        "version: \"1.1\"\npipeline:\n  name: flood\n  namespace: {ns}\n  DAG: flood\nstages:\n  flood:\n    executable_module_path: flood.py\n{}    service: {{max_startup_time_seconds: 60, replicas: 2, port: 5000, ingress: false}}\n",
        args_line(&[release.to_str().unwrap(), &seconds.to_string()])
    );
    TestProject::new(&[("bodywork.yaml", &yaml), ("flood.py", STDERR_FLOOD)])
}

/// The number of the last numbered line of `log` (read from its end).
fn latest_number(log: &Path) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = fs::File::open(log).ok()?;
    let len = file.metadata().ok()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(4096))).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    numbers(&String::from_utf8_lossy(&tail)).last().copied()
}

/// A child process killed (and waited for) when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pids of every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    fs::read_dir("/proc")
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Sample the size of `dir` until `done`, failing as soon as it passes
/// `cap`; returns the largest size seen.
fn within_cap_until(dir: &Path, cap: u64, what: &str, mut done: impl FnMut() -> bool) -> u64 {
    let mut peak = 0;
    wait_for(what, LONG, || {
        let now = bytes_under(dir);
        peak = peak.max(now);
        assert!(
            now <= cap,
            "{} holds {now} bytes, past the cap of {cap}",
            dir.display()
        );
        done()
    });
    peak
}

#[test]
fn two_replicas_flooding_stderr_stay_within_the_log_cap_and_logs_shows_their_last_lines() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let release = holder.scratch("release");
    let project = flood_project("flood", &release, 5);
    home.ok(&["workflow", project.arg()]);
    let dir = home.root().join("logs/services/flood/flood");
    let logs = replica_logs(&dir);
    assert_eq!(logs.len(), 2, "{logs:?}");
    // A follow started before the flood reaches each replica's last line
    // across the renames (its output goes to a file: it is read later).
    let followed = holder.scratch("followed");
    let follow = Killed(
        home.cmd(&["logs", "--namespace", "flood", "flood", "-f"])
            .stdout(fs::File::create(&followed).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    fs::write(&release, "go").unwrap();
    let over = |log: &PathBuf| fs::read_to_string(log).is_ok_and(|t| t.contains("flood over"));
    let peak = within_cap_until(&dir, 2 * REPLICA_LOG_CAP, "both floods to end", || {
        logs.iter().all(over)
    });
    // Each wrote well past its cap (else nothing was tested).
    for log in &logs {
        let text = fs::read_to_string(log).unwrap();
        let line = text.lines().find(|l| l.starts_with("flood over")).unwrap();
        let written: u64 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(
            written * 1000 > 2 * REPLICA_LOG_CAP,
            "only {written} lines written: {line}"
        );
        assert!(rotated(log).exists());
    }
    assert!(
        peak > REPLICA_LOG_CAP,
        "the logs never filled: {peak} bytes"
    );
    // `bodywork logs` ends each replica's part with its last line.
    let shown = home.ok(&["logs", "--namespace", "flood", "flood"]);
    let mut sections = 0;
    for section in shown.stdout.split("---- ").skip(1) {
        sections += 1;
        let last = section.lines().last().unwrap_or_default();
        assert!(last.starts_with("flood over after "), "ends with {last:?}");
        // Numbered lines in order, none missing, up to the last one.
        let shown_numbers = numbers(section);
        assert!(
            shown_numbers.len() > 10_000,
            "{} lines",
            shown_numbers.len()
        );
        assert!(shown_numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }
    assert_eq!(
        sections,
        2,
        "{}",
        &shown.stdout[..shown.stdout.len().min(2000)]
    );
    wait_for("the follow to reach both last lines", LONG, || {
        let text = fs::read(&followed).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        text.lines().filter(|l| l.starts_with("flood over")).count() == 2
    });
    drop(follow);
    home.ok(&["delete-namespace", "flood"]);
    assert!(!home.root().join("logs/services/flood").exists());
}

#[test]
fn a_service_deleted_while_it_floods_its_log_leaves_no_log_folder_behind() {
    let home = TestHome::new();
    let holder = TestProject::new(&[]);
    let release = holder.scratch("release");
    fs::write(&release, "go").unwrap();
    let project = flood_project("gone", &release, 0);
    home.ok(&["workflow", project.arg()]);
    let dir = home.root().join("logs/services/gone/flood");
    let logs = replica_logs(&dir);
    assert_eq!(logs.len(), 2, "{logs:?}");
    // Deleted once each has written 1 GB: under a rotation by copy, a copy
    // of that size is under way then.
    within_cap_until(
        &dir,
        2 * REPLICA_LOG_CAP,
        "each replica to write 1 GB",
        || {
            logs.iter()
                .all(|l| rotated(l).exists() && latest_number(l).is_some_and(|n| n > 1_000_000))
        },
    );
    // Every process of the replicas: reapers (their command line names
    // their log) and the scripts (theirs, the release file).
    let writers = [
        processes_mentioning(dir.to_str().unwrap()),
        processes_mentioning(release.to_str().unwrap()),
    ]
    .concat();
    assert!(writers.len() >= 2, "{writers:?}");
    home.ok(&[
        "service",
        "delete",
        "--namespace",
        "gone",
        "--name",
        "flood",
    ]);
    assert!(
        !dir.exists(),
        "the log folder is still there after the delete"
    );
    // Nothing that wrote there is left to make it again.
    wait_for("the replicas' processes to end", LONG, || {
        assert!(!dir.exists(), "the log folder came back");
        writers.iter().all(|pid| !helper::is_alive(*pid))
    });
    assert!(!dir.exists(), "the log folder came back");
}
