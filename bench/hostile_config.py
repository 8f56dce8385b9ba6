#!/usr/bin/env python3
"""Daemon responsiveness while hostile project configs are submitted.
Prints a table of `bodywork runs` latencies.

Cases, each in the same temporary BODYWORK_HOME with its daemon running:
  1. baseline: `bodywork runs` with nothing else going on
  2. two workflow runs of local projects whose bodywork.yaml nests 100,000
     flow sequences deep, kept in flight (a new one is submitted as soon as
     one ends) for the whole sampling window
  3. the same with a classic project whose config.ini has 100,000 sections
During each window `bodywork runs --namespace hostile` is timed over and
over (each sample a new CLI process): median, p95 and max in ms.
                                                      target <= 50 ms (p95)
The hostile runs are resubmitted as fast as they fail, so the daemon also
records and logs dozens of runs a second: harsher than two submissions.

Usage:
  cargo build --release -p bodywork-cli
  python3 bench/hostile_config.py [BIN] [--window SECONDS] [--min-samples N]
                                  [--skip-ini] [--linearity]
BIN defaults to target/release/bodywork. Every sampling window lasts at
least --window seconds and until --min-samples samples are taken (a daemon
that stalls takes longer); hostile runs still going at the end are waited
for (at most --drain seconds) before the next case.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEEP = 100_000
NAMESPACE = "hostile"

STAGE_YAML = """version: "1.1"
pipeline:
  name: hostile
  docker_image: bodyworkml/bodywork-core:latest
  DAG: a
stages:
  a:
    executable_module_path: a.py
    batch:
      max_completion_time_seconds: 30
      retries: 0
"""


def deep_yaml_project(dirname):
    os.makedirs(dirname)
    with open(os.path.join(dirname, "bodywork.yaml"), "w") as f:
        f.write(STAGE_YAML + "extra: " + "[" * DEEP + "]" * DEEP + "\n")
    with open(os.path.join(dirname, "a.py"), "w") as f:
        f.write("print('stage ran')\n")
    return dirname


def many_sections_project(dirname):
    os.makedirs(os.path.join(dirname, "a"))
    with open(os.path.join(dirname, "bodywork.ini"), "w") as f:
        f.write("[default]\nPROJECT_NAME=hostile\nDOCKER_IMAGE=img\n[workflow]\nDAG=a\n")
    with open(os.path.join(dirname, "a", "config.ini"), "w") as f:
        f.write("[default]\nSTAGE_TYPE=batch\nEXECUTABLE_SCRIPT=a.py\n")
        f.write("".join(f"[x{i}]\n" for i in range(DEEP)))
    with open(os.path.join(dirname, "a", "a.py"), "w") as f:
        f.write("print('stage ran')\n")
    with open(os.path.join(dirname, "a", "requirements.txt"), "w") as f:
        f.write("")
    return dirname


LINEAR_SHAPES = {
    # Legal nesting just under the limit, line after line.
    "63-deep flow lines": lambda i: f"k{i}: " + "[" * 62 + "]" * 62 + "\n",
    # Brackets the pre-scan must skip: in a quoted scalar and a block scalar.
    "brackets in quotes": lambda i: f"k{i}: '" + "[{" * 40 + "'\n",
    "brackets in block scalars": lambda i: f"k{i}: |\n  " + "[{" * 40 + "\n",
    # Compact block sequences 60 deep, line after line.
    "60-deep '- - -' lines": lambda i: f"k{i}:\n" + "- " * 59 + "x\n",
}


def linearity(bin_path, scratch):
    """`bodywork validate` time against file size for shapes that make the
    pre-scan read the whole file (each file is invalid or valid YAML the
    loader rejects for its keys, which is beside the point here)."""
    print(f"\n{'validate: file shape':<30} " + " ".join(f"{k:>9} KiB" for k in (256, 512, 1000)))
    for name, line in LINEAR_SHAPES.items():
        cells = []
        for kib in (256, 512, 1000):
            d = os.path.join(scratch, f"lin-{len(cells)}-{abs(hash(name))}")
            os.makedirs(d)
            text, i = STAGE_YAML, 0
            while len(text) < kib * 1024 - 512:
                text += line(i)
                i += 1
            with open(os.path.join(d, "bodywork.yaml"), "w") as f:
                f.write(text)
            subprocess.run([bin_path, "validate", d], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                subprocess.run([bin_path, "validate", d], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                times.append((time.perf_counter() - t0) * 1000)
            cells.append(statistics.median(times))
        print(f"{name:<30} " + " ".join(f"{c:>10.1f} ms" for c in cells))


def environment(home):
    env = {k: v for k, v in os.environ.items() if not k.startswith("BODYWORK_")}
    env.update(
        BODYWORK_HOME=home,
        BODYWORK_GATEWAY_ADDR="127.0.0.1:0",
        NO_COLOR="1",
    )
    return env


def runs_ms(bin_path, env):
    t0 = time.perf_counter()
    done = subprocess.run(
        [bin_path, "runs", "--namespace", NAMESPACE],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    elapsed = (time.perf_counter() - t0) * 1000
    if done.returncode != 0:
        sys.exit(f"bodywork runs failed ({done.returncode}): {done.stderr}")
    return elapsed


def submit(bin_path, env, project):
    return subprocess.Popen(
        [bin_path, "workflow", "--namespace", NAMESPACE, project],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def sample(bin_path, env, args, projects):
    """Time `runs` for the window, keeping one hostile run per project in
    flight; returns the samples, the runs finished and one's last line."""
    flight = [submit(bin_path, env, p) for p in projects]
    finished, last_error = 0, ""
    samples = []
    start = time.monotonic()
    while time.monotonic() - start < args.window or len(samples) < args.min_samples:
        samples.append(runs_ms(bin_path, env))
        for i, proc in enumerate(flight):
            if proc.poll() is not None:
                out = proc.stdout.read()
                lines = [l for l in out.splitlines() if l.strip()]
                last_error = lines[-1].strip() if lines else ""
                finished += 1
                flight[i] = submit(bin_path, env, projects[i])
    deadline = time.monotonic() + args.drain
    for proc in flight:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            finished += 1
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return samples, finished, last_error


def stats(samples):
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(len(ordered) * 0.95)) - 1)]
    return statistics.median(ordered), p95, ordered[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin", nargs="?", default=os.path.join(ROOT, "target", "release", "bodywork"))
    ap.add_argument("--window", type=float, default=10.0)
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--drain", type=float, default=180.0)
    ap.add_argument("--skip-ini", action="store_true")
    ap.add_argument("--linearity", action="store_true",
                    help="also time `bodywork validate` on 256 KiB, 512 KiB and 1000 KiB files")
    args = ap.parse_args()
    bin_path = os.path.abspath(args.bin)
    if not os.path.exists(bin_path):
        sys.exit(f"no binary at {bin_path}: cargo build --release -p bodywork-cli")

    scratch = tempfile.mkdtemp(prefix="bw-bench-hostile-")
    home = os.path.join(scratch, "home")
    os.makedirs(home)
    env = environment(home)
    try:
        subprocess.run([bin_path, "setup-namespace", NAMESPACE], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        yaml_projects = [deep_yaml_project(os.path.join(scratch, f"yaml{i}")) for i in range(2)]
        ini_projects = [many_sections_project(os.path.join(scratch, f"ini{i}")) for i in range(2)]
        cases = [("baseline (nothing else running)", [])]
        cases.append(("2 x bodywork.yaml nested 100k deep", yaml_projects))
        if not args.skip_ini:
            cases.append(("2 x config.ini with 100k sections", ini_projects))

        print(f"binary: {bin_path}")
        print(f"{'case':<38} {'samples':>7} {'median ms':>10} {'p95 ms':>8} {'max ms':>8} "
              f"{'hostile runs':>12}  target")
        errors = []
        for name, projects in cases:
            if projects:
                samples, finished, last = sample(bin_path, env, args, projects)
                errors.append((name, last))
            else:
                runs_ms(bin_path, env)  # warm-up
                samples = [runs_ms(bin_path, env) for _ in range(max(args.min_samples, 50))]
                finished = "-"
            med, p95, worst = stats(samples)
            verdict = "ok" if p95 <= 50 else "MISSED"
            print(f"{name:<38} {len(samples):>7} {med:>10.1f} {p95:>8.1f} {worst:>8.1f} "
                  f"{finished!s:>12}  p95 <= 50 ms: {verdict}", flush=True)
        for name, last in errors:
            print(f"last line of a hostile run ({name}): {last}")
        if args.linearity:
            linearity(bin_path, scratch)
    finally:
        subprocess.run([bin_path, "daemon", "--stop"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
