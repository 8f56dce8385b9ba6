#!/usr/bin/env python3
"""The speed the data scientist's loop needs: four measurements side by side
in one run, each against an anchor measured in the same run. Prints ONE table.

  1. warm one-stage stdlib batch workflow (`bodywork workflow DIR`, daemon
     running, environment cached) over the environment's `bin/python main.py`
     alone                                                    target <= 10 ms
  2. gateway throughput on a trivial upstream against nginx in the same
     interleaved rounds (bench/gateway.sh)                    target >= 1.0
     and the gateway's added p50 latency against nginx's      target <= nginx
  3. warm rolling redeploy of the seed service (examples/serve-model)
     (bench/services.py's method); anchor: the new replica's python started
     alone until it answers                                   target <= 1 s
  4. cold first deploy of the seed service in a fresh BODYWORK_HOME with a
     warm uv cache (bench/cold_deploy.py --json when it exists)
                                                              target <= 4 s

Every figure is the median of --runs runs (quartiles q1..q3 in brackets where
the row has enough samples). The machine's load average at the start is
printed too: on a shared machine, read the differences and ratios, measured
against their anchors in the same run, rather than absolute figures.

Usage:
  cargo build --release -p bodywork-cli
  cargo build --release -p bodywork-gateway --example bench_upstream \\
      --example bench_gateway --example bench_latency
  python3 bench/loop_speed.py [--runs N] [--quick] [--bin PATH] [--skip ROW] [--only ROW]
--quick: fewer runs and short gateway rounds (a few minutes in all).
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from _common import ROOT, TARGET, batch_overhead, env_pythons, quartiles, timed

SEED = os.path.join(ROOT, "examples", "serve-model")
SEED_NS = "scoring-service"
SCORE_BODY = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'


def fmt(xs, unit, scale=1.0, digits=1):
    """`median unit (q1..q3)` of the samples."""
    q1, m, q3 = (x * scale for x in quartiles(xs))
    unit = f" {unit}" if unit else ""
    if len(xs) < 3:
        return f"{m:.{digits}f}{unit}"
    return f"{m:.{digits}f}{unit} ({q1:.{digits}f}..{q3:.{digits}f})"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answer(url, body, deadline_s):
    """Poll `url` with POST `body` until it answers 200; seconds it took."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < deadline_s:
        try:
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.005)
    sys.exit(f"{url} did not answer within {deadline_s} s")


def batch_row(bw, env, home, scratch, runs):
    t = batch_overhead(bw, env, home, scratch, runs)
    overhead = [w - p for w, p in zip(t["workflow"], t["in_env"])]
    med = statistics.median(overhead)
    return ("batch: warm 1-stage stdlib workflow overhead",
            f"python alone {fmt(t['in_env'], 'ms')}",
            f"workflow {fmt(t['workflow'], 'ms')}",
            f"+{fmt(overhead, 'ms')}", "<= 10 ms", med <= 10)


def gateway_rows(args):
    env = dict(os.environ, JSON="1", ROUNDS=str(args.gateway_rounds), DURATION=str(args.gateway_duration))
    if args.quick:
        env.setdefault("LATENCY_REQUESTS", "3000")
    env.setdefault("SKIP_BUILD", "1")
    done = subprocess.run(["bash", os.path.join(ROOT, "bench", "gateway.sh")], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"bench/gateway.sh failed:\n{done.stderr}\n{done.stdout}")
    g = json.loads(done.stdout.strip().splitlines()[-1])
    rps = g["rps"]
    ratio = [a / b for a, b in zip(rps["gateway"], rps["nginx"])]
    # Added p50 latency (over the direct run of the same latency block), per block.
    rounds = g["p50_rounds_us"]
    added_gw_rounds = [a - d for a, d in zip(rounds["gateway"], rounds["direct"])]
    added_ng_rounds = [a - d for a, d in zip(rounds["nginx"], rounds["direct"])]
    gap = statistics.median(a - b for a, b in zip(added_gw_rounds, added_ng_rounds))
    return [
        ("gateway: throughput, trivial upstream (req/s)",
         f"nginx {fmt(rps['nginx'], 'req/s', digits=0)}",
         f"gateway {fmt(rps['gateway'], 'req/s', digits=0)}",
         f"x{fmt(ratio, '', digits=3)}", ">= 1.0", statistics.median(ratio) >= 1.0),
        ("gateway: added p50 latency over direct",
         f"nginx +{fmt(added_ng_rounds, 'µs')}",
         f"gateway +{fmt(added_gw_rounds, 'µs')}",
         f"{gap:+.1f} µs", "<= nginx", gap <= 0),
    ]


def seed_env_python(home):
    """The seed service's environment: the one with flask installed."""
    for py in env_pythons(home):
        env_dir = os.path.dirname(os.path.dirname(py))
        lib = os.path.join(env_dir, "lib")
        for d in os.listdir(lib):
            if os.path.isdir(os.path.join(lib, d, "site-packages", "flask")):
                return py
    return None


def replica_alone(python, runs):
    """Seconds from starting the seed service with its python to its first answer."""
    cwd = os.path.join(SEED, "scoring-service")
    out = []
    for _ in range(runs):
        port = free_port()
        proc = subprocess.Popen([python, "service.py"], cwd=cwd, env=dict(os.environ, PORT=str(port)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            t0 = time.perf_counter()
            wait_answer(f"http://127.0.0.1:{port}/iris/v1/score", SCORE_BODY, 30)
            out.append(time.perf_counter() - t0)
        finally:
            proc.terminate()
            proc.wait()
    return out


def redeploy_row(bw, env, home, runs):
    timed(bw + ["setup-namespace", SEED_NS], env)
    timed(bw + ["workflow", f"--namespace={SEED_NS}", SEED], env)  # first deploy, builds the env
    times = []
    for _ in range(runs):
        ms, _ = timed(bw + ["workflow", f"--namespace={SEED_NS}", SEED], env)
        times.append(ms / 1000)
    python = seed_env_python(home)
    alone = replica_alone(python, runs) if python else []
    med = statistics.median(times)
    anchor = f"replica alone {fmt(alone, 's', digits=2)}" if alone else "-"
    diff = f"+{statistics.median(times) - statistics.median(alone):.2f} s" if alone else "-"
    return ("services: warm rolling redeploy of the seed", anchor,
            f"redeploy {fmt(times, 's', digits=2)}", diff, "<= 1 s", med <= 1.0)


def cold_row(args, bw, scratch):
    script = os.path.join(ROOT, "bench", "cold_deploy.py")
    if os.path.exists(script):
        done = subprocess.run([sys.executable, script, "--json", "--bin", args.bin, "--runs", str(args.cold_runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            sys.exit(f"bench/cold_deploy.py failed:\n{done.stderr}\n{done.stdout}")
        # Its --json: {"median": {"deploy_s", "anchor_s", ...}, "all": [per run], ...}
        r = json.loads(done.stdout)
        med = r.get("median", {})
        ours = med.get("deploy_s")
        if ours is None:
            sys.exit(f"bench/cold_deploy.py --json gave no median.deploy_s:\n{done.stdout}")
        times = [run["deploy_s"] for run in r.get("all", []) if "deploy_s" in run] or [ours]
        anchor = med.get("anchor_s")
        anchor_s = f"uv venv + install + answer by hand {anchor:.2f} s" if anchor is not None else "-"
        diff = f"+{ours - anchor:.2f} s" if anchor is not None else "-"
        return ("services: cold first deploy of the seed, warm uv cache", anchor_s,
                f"first deploy {fmt(times, 's', digits=2)}", diff, "<= 4 s", ours <= 4.0)
    # Measured here, as bench/services.py's "first deploy" row: a fresh
    # BODYWORK_HOME each run, one uv cache shared by all (warmed by a first,
    # untimed deploy), as on a machine that has used uv before.
    uv_cache = os.environ.get("UV_CACHE_DIR") or os.path.join(scratch, "uv-cache")
    times = []
    for i in range(args.cold_runs + 1):
        home = os.path.join(scratch, f"cold-home-{i}")
        env = dict(os.environ, BODYWORK_HOME=home, UV_CACHE_DIR=uv_cache, NO_COLOR="1",
                   BODYWORK_GATEWAY_ADDR=f"127.0.0.1:{free_port()}", BODYWORK_LOOPBACK_BLOCK="203")
        try:
            timed(bw + ["setup-namespace", SEED_NS], env)
            ms, _ = timed(bw + ["workflow", f"--namespace={SEED_NS}", SEED], env)
            if i > 0:  # run 0 warms the uv cache
                times.append(ms / 1000)
        finally:
            subprocess.run(bw + ["daemon", "--stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            shutil.rmtree(home, ignore_errors=True)
    med = statistics.median(times)
    return ("services: cold first deploy of the seed, warm uv cache", "-",
            f"first deploy {fmt(times, 's', digits=2)}", "-", "<= 4 s", med <= 4.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(TARGET, "release", "bodywork"))
    ap.add_argument("--runs", type=int, help="runs per row (default 20 batch, 5 redeploy; --quick: 10 and 3)")
    ap.add_argument("--quick", action="store_true", help="fewer runs and 3 gateway rounds of 3 s")
    rows = ["batch", "gateway", "redeploy", "cold"]
    ap.add_argument("--skip", action="append", default=[], choices=rows)
    ap.add_argument("--only", choices=rows, help="measure this row alone")
    args = ap.parse_args()
    if args.only:
        args.skip = [r for r in rows if r != args.only]
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it (cargo build --release -p bodywork-cli) or give --bin")
    batch_runs = args.runs or (10 if args.quick else 20)
    svc_runs = args.runs or (3 if args.quick else 5)
    args.cold_runs = 1 if args.quick else 3
    args.gateway_rounds = args.runs or (3 if args.quick else 6)
    args.gateway_duration = 3 if args.quick else 5

    scratch = tempfile.mkdtemp(prefix="bw-loop-speed-")
    home = os.path.join(scratch, "home")
    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1", BODYWORK_GATEWAY_ADDR=f"127.0.0.1:{free_port()}",
               BODYWORK_LOOPBACK_BLOCK="202")
    bw = [args.bin]
    rows = []
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    try:
        if "batch" not in args.skip:
            rows.append(batch_row(bw, env, home, scratch, batch_runs))
        if "gateway" not in args.skip:
            rows.extend(gateway_rows(args))
        if "redeploy" not in args.skip:
            rows.append(redeploy_row(bw, env, home, svc_runs))
    finally:
        subprocess.run(bw + ["daemon", "--stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if "cold" not in args.skip:
            rows.append(cold_row(args, bw, scratch))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    head = ("what", "anchor (same run)", "ours", "difference/ratio", "target", "met?")
    table = [head] + [(*r[:5], "yes" if r[5] else "NO") for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print(f"binary {args.bin}; load average at start {load}; medians (quartiles)")
    for r in table:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


if __name__ == "__main__":
    main()
