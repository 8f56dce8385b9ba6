//! The limits on what stages print (issue 15, point 3), end to end through
//! the real `bodywork` binary and its daemon: a line of megabytes is cut
//! at 64 KiB with a marker, in the CLI's output and in the stored log; a
//! CLI that stops reading gets a marker where lines were skipped while the
//! stored log keeps them all; a service's log is rotated past 20 MiB.
//!
//! Memory itself is measured by `bench/daemon_memory.py`, not here.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{TestHome, TestProject, args_line, batch_stage, kill, wait_for, yaml};

const LONG: Duration = Duration::from_secs(180);

/// The longest line kept (`bodywork_stage::lines::MAX_LINE`).
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

/// A service that prints 22 MiB at start, then listens and prints a tick
/// every 0.2 s.
const NOISY_SERVICE: &str = r#"
import http.server, os, threading, time
filler = "z" * 1023
for _ in range(22 * 1024):
    print(filler)
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.BaseHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    time.sleep(0.2)
"#;

/// The replica log files of a service (without their rotated parts).
fn replica_logs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect()
}

#[test]
fn a_service_log_past_20_mib_is_rotated_and_the_replica_writes_on() {
    let home = TestHome::new();
    let yaml = "version: \"1.1\"\npipeline:\n  name: noisy\n  namespace: noisy\n  DAG: noisy\nstages:\n  noisy:\n    executable_module_path: noisy.py\n    service: {max_startup_time_seconds: 60, replicas: 1, port: 5000, ingress: false}\n";
    let project = TestProject::new(&[("bodywork.yaml", yaml), ("noisy.py", NOISY_SERVICE)]);
    home.ok(&["workflow", project.arg()]);
    let dir = home.root().join("logs/services/noisy/noisy");
    let logs = replica_logs(&dir);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    let mut previous = log.clone().into_os_string();
    previous.push(".1");
    let previous = PathBuf::from(previous);
    wait_for("the replica's log to be rotated", LONG, || {
        previous.exists()
    });
    let kept = fs::metadata(&previous).unwrap().len();
    assert!(kept > 20 << 20, "the rotated part holds {kept} bytes");
    // The replica writes on at the start of the emptied file.
    wait_for("a tick in the emptied log", LONG, || {
        fs::read_to_string(log).is_ok_and(|t| t.starts_with("tick ") || t.contains("\ntick "))
    });
    let now = fs::metadata(log).unwrap().len();
    assert!(now < 20 << 20, "the log holds {now} bytes");
    let shown = home.ok(&["logs", "--namespace", "noisy", "noisy"]);
    shown.expect_output("tick ");
}
