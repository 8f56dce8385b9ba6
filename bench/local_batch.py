#!/usr/bin/env python3
"""Local runtime, batch workflows, against targets. Prints a table.

  1. overhead of a warm one-stage stdlib batch workflow
     (`bodywork workflow DIR`, daemon running, environment cached)
     over `python3 main.py` alone                     target <= 150 ms (median)
  2. cold environment build for examples/serve-model/scoring-service/
     requirements.txt (flask + scikit-learn), as a workflow-time delta
     (cold workflow - warm workflow), over `uv venv` + `uv pip install -r`
     of the same requirements into a fresh venv, same warm uv cache
                                                        target ratio <= 1.1
     (every environment also gets pip, setuptools<82 and wheel, as
     Bodywork's container had: the comparison installs them too, and the
     build may exceed plain `uv pip install -r` by at most their install)
  3. warm reuse of that environment (`EnvCache::ensure`, timed by the
     `ensure_timing` example of bodywork-pyenv)          target <= 50 ms
  4. daemon idle resident memory after start + one workflow
                                                        target <= 30 MB

Usage:
  cargo build --release -p bodywork-cli
  cargo build --release -p bodywork-pyenv --example ensure_timing
  python3 bench/local_batch.py [--bin PATH] [--ensure-timing PATH]
                               [--runs 20] [--cold-runs 3] [--skip-cold]
Needs `uv` on PATH (else give --uv, or it is installed into a temp dir with
pip) and, for the cold build, access to PyPI once to warm the uv cache.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from _common import ROOT, TARGET, batch_overhead, env_pythons, project, timed

# What every stage environment has besides its requirements, as Bodywork's
# container had (bodywork_pyenv::CONTAINER_BASE).
CONTAINER_BASE = ("pip", "setuptools<82", "wheel")
REQUIREMENTS = os.path.join(ROOT, "examples", "serve-model", "scoring-service", "requirements.txt")


def find_uv(explicit, scratch):
    if explicit:
        return os.path.abspath(explicit)
    found = shutil.which("uv")
    if found:
        return found
    target = os.path.join(scratch, "uv-pkg")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", target, "uv"], check=True)
    return os.path.join(target, "bin", "uv")


def requirement_lines():
    with open(REQUIREMENTS) as f:
        return [l.strip() for l in f if l.strip() and not l.strip().startswith("#")]


def row(name, value, unit, target, ok):
    verdict = "-" if ok is None else ("ok" if ok else "MISSED")
    print(f"{name:<66} {value:>10} {unit:<4} {target:>10}  {verdict}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(TARGET, "release", "bodywork"))
    ap.add_argument("--ensure-timing", default=os.path.join(TARGET, "release", "examples", "ensure_timing"))
    ap.add_argument("--uv")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--cold-runs", type=int, default=3)
    ap.add_argument("--skip-cold", action="store_true")
    args = ap.parse_args()

    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it (cargo build --release -p bodywork-cli) or give --bin")
    scratch = tempfile.mkdtemp(prefix="bw-bench-")
    home = os.path.join(scratch, "home")
    uv = find_uv(args.uv, scratch)
    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1")
    env["PATH"] = os.path.dirname(uv) + os.pathsep + env.get("PATH", "")
    bw = [os.path.abspath(args.bin)]
    try:
        print(f"binary: {args.bin}\nuv: {uv}\nhome: {home}\n")
        print(f"{'measure':<66} {'value':>10} {'unit':<4} {'target':>10}  verdict")
        # 1. Warm overhead.
        t = batch_overhead(bw, env, home, scratch, args.runs)
        wf, shim, direct, in_env = (statistics.median(t[k]) for k in ("workflow", "shim", "direct", "in_env"))
        real = t["real"]
        py = min(shim, direct, in_env)
        row(f"workflow, warm, 1 stdlib stage (median of {args.runs})", f"{wf:.1f}", "ms", "", None)
        row(f"python3 main.py alone (median of {args.runs})", f"{shim:.1f}", "ms", "", None)
        row(f"{real} main.py alone (median of {args.runs})", f"{direct:.1f}", "ms", "", None)
        row(f"the environment's bin/python main.py alone (median of {args.runs})", f"{in_env:.1f}", "ms", "", None)
        row("overhead of the workflow over the fastest python alone", f"{wf - py:.1f}", "ms", "<= 150", wf - py <= 150)

        # 4. Daemon memory, idle after start + workflows.
        with open(os.path.join(home, "daemon.pid")) as f:
            pid = f.read().strip()
        time.sleep(0.5)
        with open(f"/proc/{pid}/status") as f:
            rss_kb = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        row("daemon idle resident memory (VmRSS)", f"{rss_kb / 1024:.1f}", "MB", "<= 30", rss_kb / 1024 <= 30)

        if not args.skip_cold:
            cold_bench(args, bw, env, home, scratch, uv)
    finally:
        subprocess.run(bw + ["daemon", "--stop"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(scratch, ignore_errors=True)


def cold_bench(args, bw, env, home, scratch, uv):
    reqs = requirement_lines()
    heavy = project(os.path.join(scratch, "heavy"), reqs)
    uv_env = dict(env, UV_CACHE_DIR=os.path.join(home, "cache", "uv"), UV_NO_PROGRESS="1")
    uv_env.pop("VIRTUAL_ENV", None)

    def uv_alone(i, extra=()):
        venv = os.path.join(scratch, f"venv-{i}")
        t0 = time.perf_counter()
        subprocess.run([uv, "venv", "--quiet", "--python", "python3", venv], env=uv_env, check=True)
        subprocess.run([uv, "pip", "install", "--quiet", "--python", os.path.join(venv, "bin", "python"),
                        "-r", REQUIREMENTS, *extra], env=uv_env, check=True)
        elapsed = (time.perf_counter() - t0) * 1000
        shutil.rmtree(venv)
        return elapsed

    def env_dirs():
        return [os.path.dirname(os.path.dirname(p)) for p in env_pythons(home)]

    # Warm uv's cache (downloads once), and build the env once.
    uv_alone("warm", CONTAINER_BASE)
    before = set(env_dirs())
    timed(bw + ["workflow", "--namespace", "bench", heavy], env)
    heavy_envs = sorted(set(env_dirs()) - before)
    cold, uv_times, uv_base_times, reported = [], [], [], []
    for i in range(args.cold_runs):
        for d in heavy_envs:
            shutil.rmtree(d)
        t_cold, out = timed(bw + ["workflow", "--namespace", "bench", heavy], env)
        t_warm, _ = timed(bw + ["workflow", "--namespace", "bench", heavy], env)
        cold.append(t_cold - t_warm)
        reported += [float(l.rsplit(" ", 1)[1].rstrip("s")) * 1000 for l in out.splitlines()
                     if "environment ready in" in l]
        uv_times.append(uv_alone(i))
        uv_base_times.append(uv_alone(f"{i}-base", CONTAINER_BASE))
    build, alone = statistics.median(cold), statistics.median(uv_times)
    with_base = statistics.median(uv_base_times)
    row(f"cold env build in a workflow (cold - warm run, median of {args.cold_runs})", f"{build:.0f}", "ms", "", None)
    if reported:
        row("  (as the run log reports it: 'environment ready in')", f"{statistics.median(reported):.0f}", "ms", "", None)
    row(f"uv venv + uv pip install alone (median of {args.cold_runs})", f"{alone:.0f}", "ms", "", None)
    row(f"  the same plus {' '.join(CONTAINER_BASE)} (median of {args.cold_runs})", f"{with_base:.0f}", "ms", "",
        None)
    row("ratio bodywork build / uv alone with the same packages", f"{build / with_base:.2f}", "x", "<= 1.1",
        build / with_base <= 1.1)
    row("bodywork build - uv alone (today's baseline, without the three)", f"{build - alone:.0f}", "ms",
        f"<= {max(with_base - alone, 0) * 1.1 + 50:.0f}", build - alone <= max(with_base - alone, 0) * 1.1 + 50)

    # 3. Warm reuse of the same environment.
    if os.path.exists(args.ensure_timing):
        out = subprocess.run([args.ensure_timing, home, REQUIREMENTS, "50"], env=env,
                             capture_output=True, text=True, check=True).stdout
        t = json.loads(out)
        assert t["reused"], t
        row("warm reuse: first ensure of a fresh cache (probe included)", f"{t['first_ms']:.1f}", "ms", "<= 50",
            t["first_ms"] <= 50)
        row("warm reuse: ensure in steady state (median of 50)", f"{t['median_ms']:.2f}", "ms", "<= 50",
            t["median_ms"] <= 50)
    else:
        print(f"(skipped warm reuse: build {args.ensure_timing} first)")


if __name__ == "__main__":
    main()
