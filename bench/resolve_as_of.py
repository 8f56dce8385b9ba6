#!/usr/bin/env python3
"""Requirements resolved as of the commit. Prints a table.

A git repository whose one batch stage pins `flask==2.1.2` (nothing else),
committed on 2022-05-20, is deployed with `bodywork workflow` (file://
URL, daemon running) once cold, then --runs more times:

  1. environment work of a warm redeploy of the same commit: what the
     stage's log says `EnvCache::ensure` took, lock and all
     (`environment ready for stage=main in N ms (reused KEY)`)
                                                        target <= 50 ms
  2. the whole warm redeploy (`bodywork workflow`), for scale
  3. the cold build of that commit's environment (first deploy), for scale
  4. whether every redeploy reused the one environment with the same lock
     (and Werkzeug 2.1.2, as of the commit)

Usage:
  cargo build --release -p bodywork-cli     (else the debug binary is used)
  python3 bench/resolve_as_of.py [--bin PATH] [--runs 20]
Needs PyPI once (or a warm uv cache: BODYWORK_UV_CACHE_DIR, default the
test suite's target/tmp/test-cache/uv-cache) and `uv` on PATH (else the
test suite's, else bodywork bootstraps its own).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TEST_CACHE = os.path.join(TARGET, "tmp", "test-cache")
DATE = "2022-05-20T12:00:00Z"

YAML = """version: "1.1"
pipeline:
  name: bench-as-of
  docker_image: bodyworkml/bodywork-core:latest
  DAG: main
stages:
  main:
    executable_module_path: main.py
    requirements: [flask==2.1.2]
    batch:
      max_completion_time_seconds: 60
      retries: 0
"""
MAIN = "import flask\nprint('flask', flask.__version__)\n"
READY = re.compile(r"environment ready for stage=main in ([\d.]+) ms \(reused (\w+)\)")
BUILT = re.compile(r"environment ready for stage=main in ([\d.]+)s \(built (\w+)\)")
LOCK = re.compile(r"environment lock for stage=main: (.*)$", re.M)


def default_bin():
    for profile in ("release", "debug"):
        path = os.path.join(TARGET, profile, "bodywork")
        if os.path.exists(path):
            return path
    sys.exit("no bodywork binary: cargo build --release -p bodywork-cli")


def git(cwd, *args, date=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=cwd)
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-as-of-")
    home = os.path.join(work, "home")
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    with open(os.path.join(repo, "bodywork.yaml"), "w") as f:
        f.write(YAML)
    with open(os.path.join(repo, "main.py"), "w") as f:
        f.write(MAIN)
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "as of then", date=DATE)

    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1", BODYWORK_GATEWAY_ADDR="127.0.0.1:0",
               BODYWORK_LOOPBACK_BLOCK="201")
    env.pop("BODYWORK_RESOLVE_AS_OF", None)
    env.setdefault("BODYWORK_UV_CACHE_DIR", os.path.join(TEST_CACHE, "uv-cache"))
    uv_bin = os.path.join(TEST_CACHE, "uv-pkg", "bin")
    if not shutil.which("uv") and os.path.exists(os.path.join(uv_bin, "uv")):
        env["PATH"] = uv_bin + os.pathsep + env.get("PATH", "")
    url = "file://" + repo
    cmd = [args.bin, "workflow", "--namespace", "bench", url, "master"]

    def deploy():
        t0 = time.perf_counter()
        done = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        ms = (time.perf_counter() - t0) * 1000
        if done.returncode != 0:
            sys.exit(f"workflow failed:\n{done.stdout}")
        return ms, done.stdout

    try:
        subprocess.run([args.bin, "setup-namespace", "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        cold_ms, out = deploy()
        built = BUILT.search(out)
        first_lock = LOCK.search(out)
        if not built or not first_lock:
            sys.exit(f"the first deploy built no environment:\n{out}")
        key, lock = built.group(2), first_lock.group(1)
        env_work, whole, same = [], [], True
        for _ in range(args.runs):
            ms, out = deploy()
            ready, this_lock = READY.search(out), LOCK.search(out)
            if not ready or not this_lock:
                sys.exit(f"a redeploy did not reuse the environment:\n{out}")
            same &= ready.group(2) == key and this_lock.group(1) == lock
            env_work.append(float(ready.group(1)))
            whole.append(ms)
    finally:
        subprocess.run([args.bin, "daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)

    def p95(xs):
        return sorted(xs)[max(0, int(round(0.95 * len(xs))) - 1)]

    werkzeug = next((p for p in lock.split() if p.startswith("werkzeug==")), "?")
    print(f"binary: {args.bin}; commit dated {DATE}; {args.runs} warm redeploys")
    print(f"{'measure':58} {'median':>10} {'p95':>10} {'target':>10}")
    print(f"{'warm redeploy: environment work (stage log)':58} "
          f"{statistics.median(env_work):>7.1f} ms {p95(env_work):>7.1f} ms {'<= 50 ms':>10}")
    print(f"{'warm redeploy: whole `bodywork workflow`':58} "
          f"{statistics.median(whole):>7.0f} ms {p95(whole):>7.0f} ms {'-':>10}")
    print(f"{'cold: first deploy, environment built (stage log)':58} "
          f"{float(built.group(1)):>8.1f} s {'':>10} {'-':>10}")
    print(f"{'cold: first deploy, whole `bodywork workflow`':58} {cold_ms / 1000:>8.1f} s")
    print(f"{'every redeploy reused one environment, same lock':58} {'yes' if same else 'NO':>10}")
    print(f"{'resolved as of the commit: ' + werkzeug:58}")
    print(json.dumps({"env_work_ms": env_work, "whole_ms": whole, "lock": lock}), file=sys.stderr)


if __name__ == "__main__":
    main()
