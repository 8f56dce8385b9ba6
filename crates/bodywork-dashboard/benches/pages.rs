//! Server time per page, from the request's path to the whole answer
//! (reading through the control plane, rendering, headers), with 50
//! services, 1,000 workflow runs, 10 cron jobs of 20 runs each and 10
//! secrets in one namespace, each service with 60 periods of traffic.
//! The control plane answers from memory, so this is the dashboard's own
//! time: a real runtime adds its answers' (the local daemon's socket round
//! trips, a cluster's API calls).
//!
//! `cargo bench -p bodywork-dashboard` prints one row a page.

#[path = "../src/fake.rs"]
mod fake;

use std::time::{Duration, Instant};

use bodywork_dashboard::Site;
use bodywork_runtime::{RunState, StageState};
use chrono::{TimeDelta, Utc};
use fake::*;

const ROUNDS: usize = 200;

fn main() {
    let now = Utc::now();
    let ns = "prod";
    let states = [RunState::Succeeded, RunState::Failed, RunState::Cancelled];
    let cp = FakeControl {
        namespaces: vec![ns.into(), "dev".into(), "staging".into()],
        services: (0..50)
            .map(|i| {
                service(
                    ns,
                    &format!("service-{i:02}"),
                    2,
                    2,
                    now - TimeDelta::hours(i),
                )
            })
            .collect(),
        runs: (0..1000)
            .rev()
            .map(|i| {
                let started = now - TimeDelta::minutes(1000 - i);
                run(ns, i, states[i as usize % 3], started, 40 + i % 100)
            })
            .collect(),
        cronjobs: (0..10)
            .map(|i| cronjob(ns, &format!("job-{i}"), now + TimeDelta::minutes(i)))
            .collect(),
        history: (0..10)
            .flat_map(|j| {
                (0..20).map(move |n| {
                    cron_run(
                        &format!("job-{j}"),
                        n,
                        now - TimeDelta::minutes(5 * n),
                        n % 7 == 3,
                    )
                })
            })
            .collect(),
        secrets: (0..10)
            .map(|i| {
                secret(
                    ns,
                    &format!("secret-{i}"),
                    &[("USER", "u"), ("PASSWORD", "p")],
                )
            })
            .collect(),
        no_runs: false,
        // The newest run: 12 stages in 4 steps; every log: 2,000 lines.
        stages: (0..12)
            .map(|i| {
                let started = now - TimeDelta::minutes(60 - 10 * (i / 3));
                let state = if i == 11 {
                    StageState::Failed
                } else {
                    StageState::Succeeded
                };
                (
                    999,
                    attempt(&format!("stage-{i:02}"), 1, state, started, Some(300 + i)),
                )
            })
            .collect(),
        log_lines: (0..2000)
            .map(|i| format!("line {i}: scored 1,000 rows in 0.42 s"))
            .collect(),
        // Every service's traffic: 60 periods of 10 s.
        traffic: (0..50)
            .map(|i| {
                let per_period: Vec<u64> = (0..60).map(|p| (p * 7 + i) % 40).collect();
                (
                    ns.to_string(),
                    traffic(&format!("service-{i:02}"), &per_period, now),
                )
            })
            .collect(),
        ..FakeControl::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let token = bodywork_dashboard::Token::from_bytes(&[0; 32]);
    let site = Site {
        control: &cp,
        base: "",
        port: 8002,
        token: &token,
    };
    println!("page                                   p50        p95        max     bytes");
    for (what, path) in [
        ("namespaces (3)", "/"),
        ("namespace (50 services, 1,000 runs)", "/namespaces/prod"),
        ("namespace, runs before 500", "/namespaces/prod?before=500"),
        ("run (12 stages in 4 steps)", "/namespaces/prod/runs/999"),
        ("run's log (2,000 lines)", "/namespaces/prod/runs/999/logs"),
    ] {
        let mut times: Vec<Duration> = Vec::with_capacity(ROUNDS);
        let mut bytes = 0;
        for round in 0..ROUNDS + 20 {
            let started = Instant::now();
            let answer = runtime.block_on(bodywork_dashboard::serve::page_at(site, path));
            let took = started.elapsed();
            assert_eq!(answer.status(), 200, "{path}");
            bytes = answer.body().len();
            if round >= 20 {
                times.push(took);
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
        println!(
            "{what:<36} {:>8.2?} {:>10.2?} {:>10.2?} {bytes:>9}",
            at(0.5),
            at(0.95),
            at(1.0)
        );
    }
}
