#!/usr/bin/env python3
"""Wall time of `bodywork create deployment URL --async` (the target:
well under a second) against the attached `create deployment URL`, on the
local runtime, with a one-stage project in a local Git repository. The
daemon is started once before measuring; each detached run is waited for
(outside the timing) before the next. Prints a table of medians.

Usage: python3 bench/detached.py [--runs N] [--bin PATH]
Build first: cargo build -p bodywork-cli (or --release, and pass --bin)
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """version: "1.1"
pipeline:
  name: bench-detached
  docker_image: bodyworkml/bodywork-core:latest
  DAG: stage
stages:
  stage:
    executable_module_path: stage.py
    batch:
      max_completion_time_seconds: 60
      retries: 0
"""


def git(cwd, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "bodywork"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as home, tempfile.TemporaryDirectory() as repo:
        with open(os.path.join(repo, "bodywork.yaml"), "w") as f:
            f.write(CONFIG)
        with open(os.path.join(repo, "stage.py"), "w") as f:
            f.write("print('done')\n")
        git(repo, "init", "-q", "-b", "master")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "bench")
        url = f"file://{repo}"
        env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1",
                   BODYWORK_GATEWAY_ADDR="127.0.0.1:0")
        env.pop("BODYWORK_RUNTIME", None)

        def bw(*a):
            t0 = time.perf_counter()
            out = subprocess.run([args.bin, *a], env=env, capture_output=True, text=True)
            return (time.perf_counter() - t0) * 1000, out

        def finished():
            _, out = bw("get", "deployment", "--async", "-o", "json")
            return all(r["status"] != "running" for r in json.loads(out.stdout or "[]"))

        bw("daemon", "--status")
        bw("create", "deployment", url)  # warm-up: environment built, daemon up
        detached, attached = [], []
        for _ in range(args.runs):
            ms, out = bw("create", "deployment", url, "--async")
            assert out.returncode == 0, out.stderr
            detached.append(ms)
            while not finished():
                time.sleep(0.05)
            ms, out = bw("create", "deployment", url)
            assert out.returncode == 0, out.stderr
            attached.append(ms)
        bw("daemon", "--stop")
    print(f"{'command':<44} {'median ms':>10} {'max ms':>8} {'target':>8}")
    for name, times, target in [
        ("create deployment URL --async", detached, "< 1000"),
        ("create deployment URL (attached)", attached, "-"),
    ]:
        print(f"{name:<44} {statistics.median(times):>10.1f} {max(times):>8.1f} {target:>8}")


if __name__ == "__main__":
    main()
