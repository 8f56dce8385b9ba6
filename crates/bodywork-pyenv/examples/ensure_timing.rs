//! Times `EnvCache::ensure` for the benchmark in `bench/local_batch.py`:
//! `ensure_timing HOME REQUIREMENTS_FILE [RUNS]` prints one line of JSON
//! with the first call's time (a fresh cache object: interpreter probe
//! included, as after a daemon start) and the median of the following calls
//! (the daemon's steady state), in milliseconds, and whether it was reused.
//!
//! Must not: be used by anything but the benchmark.

use std::path::PathBuf;
use std::time::Instant;

use bodywork_pyenv::{EnvCache, EnvRequest};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(home), Some(reqs)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: ensure_timing HOME REQUIREMENTS_FILE [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.get(3).and_then(|r| r.parse().ok()).unwrap_or(50);
    let requirements = match std::fs::read_to_string(reqs) {
        Ok(text) => vec![text],
        Err(e) => {
            eprintln!("cannot read {reqs}: {e}");
            std::process::exit(2);
        }
    };
    let cache = EnvCache::new(&PathBuf::from(home));
    let request = EnvRequest {
        python: None,
        requirements,
        exclude_newer: None,
        python_version: None,
        python_downloads: false,
    };
    let timed = || {
        let t = Instant::now();
        let env = cache.ensure(&request, &mut |_| {});
        (t.elapsed().as_secs_f64() * 1000.0, env)
    };
    let (first, env) = timed();
    let reused = match env {
        Ok(env) => env.reused,
        Err(e) => {
            eprintln!("ensure failed: {e}");
            std::process::exit(1);
        }
    };
    let mut rest: Vec<f64> = (0..runs).map(|_| timed().0).collect();
    rest.sort_by(f64::total_cmp);
    let median = rest.get(rest.len() / 2).copied().unwrap_or(first);
    println!("{{\"first_ms\": {first:.3}, \"median_ms\": {median:.3}, \"reused\": {reused}}}");
}
