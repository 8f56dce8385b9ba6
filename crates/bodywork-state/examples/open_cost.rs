//! What `Store::open` costs now that it runs `PRAGMA quick_check` first:
//! states of a few hundred to tens of thousands of rows (runs, their stage
//! attempts, secrets), built through the store's own API, then opened again
//! and again. Prints a table (median of 9 opens each).
//!
//! `cargo run -p bodywork-state --example open_cost [DIR]` (DIR defaults to
//! /dev/shm when it exists, so building the states does not wait on fsync;
//! the figures are for a warm page cache, as for a daemon's restart).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bodywork_runtime::RunState;
use bodywork_state::{NewRun, Store};

fn build(db: &Path, runs: usize) -> usize {
    let store = Store::open(db).expect("open");
    store.create_namespace("ns").expect("ns");
    let mut rows = 1;
    for i in 0..runs {
        let id = store
            .insert_run(&NewRun {
                namespace: "ns".into(),
                project: Some("proj".into()),
                repo: "https://example.com/proj.git".into(),
                branch: Some("main".into()),
                commit: Some(format!("{i:040x}")),
                trigger: "cli".into(),
                log_path: PathBuf::from(format!("/home/u/.bodywork/logs/runs/{i}.log")),
                options: bodywork_runtime::RunOptions::default(),
            })
            .expect("run");
        store.insert_attempt(id, "train", 1).expect("attempt");
        store
            .finish_run(id, RunState::Succeeded, None)
            .expect("finish");
        rows += 2;
        if i % 10 == 0 {
            let data = BTreeMap::from([("TOKEN".to_string(), "v".repeat(64))]);
            store
                .put_secret("ns", &format!("secret-{i}"), &data)
                .expect("secret");
            rows += 1;
        }
    }
    rows
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let shm = PathBuf::from("/dev/shm");
            if shm.is_dir() {
                shm
            } else {
                std::env::temp_dir()
            }
        });
    println!("| rows | file (KiB) | Store::open (ms) | quick_check alone (ms) |");
    println!("|-----:|-----------:|-----------------:|-----------------------:|");
    for runs in [100, 1_000, 3_000, 10_000] {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let db = dir.path().join("state.db");
        let rows = build(&db, runs);
        let kib = std::fs::metadata(&db).map(|m| m.len() / 1024).unwrap_or(0);
        let opens = (0..9)
            .map(|_| {
                let started = Instant::now();
                drop(Store::open(&db).expect("reopen"));
                started.elapsed()
            })
            .collect();
        let checks = (0..9)
            .map(|_| {
                let conn = rusqlite::Connection::open(&db).expect("raw open");
                let started = Instant::now();
                let ok: String = conn
                    .query_row("PRAGMA quick_check", [], |r| r.get(0))
                    .expect("quick_check");
                assert_eq!(ok, "ok");
                started.elapsed()
            })
            .collect();
        println!(
            "| {rows} | {kib} | {:.2} | {:.2} |",
            median(opens).as_secs_f64() * 1000.0,
            median(checks).as_secs_f64() * 1000.0
        );
    }
}
