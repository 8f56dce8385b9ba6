#!/usr/bin/env python3
"""A Python the pins support. Prints a table.

The seed's pins (flask==2.1.2, joblib==1.1.0, numpy==1.22.3,
scikit-learn==1.0.2; numpy 1.22.3 has no wheels for Python 3.11 or later),
committed on 2022-05-20, in one batch stage. Each run, alternately:

  bodywork  a fresh BODYWORK_HOME, `bodywork workflow` of that commit: the
            environment is built cold, the Python chosen on the way (the
            stage log's `environment ready ... in N s (built KEY)`, which
            covers asking the default Python who it is, the wheels-only
            resolutions that choose (from uv's cache, or online with the
            requirements as written when it has nothing), the build under
            the one chosen and its check)
  by hand   `uv venv --python PY` + `uv pip install --exclude-newer DATE` of
            the same pins (and pip, setuptools<82, wheel, as every
            environment has), PY being the Python bodywork chose, given by
            hand: what a person who knew would type
                                                        target ratio <= 1.15

Both share one uv package cache (warm after the first run, as on a
machine that has built environments before; --cold-cache gives each run a
fresh one, which downloads everything from PyPI every time).

Usage:
  cargo build --release -p bodywork-cli     (else the debug binary is used)
  python3 bench/python_choice.py [--bin PATH] [--runs 5] [--cold-cache]
Needs Pythons on this machine (pyenv's 3.10 and newer), `uv` (on PATH or
the test suite's), and PyPI once.
"""
import argparse
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
PINS = ["flask==2.1.2", "joblib==1.1.0", "numpy==1.22.3", "scikit-learn==1.0.2"]
BASE = ["pip", "setuptools<82", "wheel"]

YAML = """version: "1.1"
pipeline:
  name: bench-python
  docker_image: bodyworkml/bodywork-core:latest
  DAG: main
stages:
  main:
    executable_module_path: main.py
    requirements: [{pins}]
    batch:
      max_completion_time_seconds: 120
      retries: 0
"""
MAIN = "import numpy, sklearn, flask\nprint('numpy', numpy.__version__)\n"
BUILT = re.compile(r"environment ready for stage=main in ([\d.]+)s \(built \w+\): Python (\S+),")
CHOSEN = re.compile(r"stage main: (.*)$", re.M)


def default_bin():
    for profile in ("release", "debug"):
        path = os.path.join(TARGET, profile, "bodywork")
        if os.path.exists(path):
            return path
    sys.exit("no bodywork binary: cargo build --release -p bodywork-cli")


def find_uv():
    uv = shutil.which("uv")
    if uv:
        return uv
    uv = os.path.join(TEST_CACHE, "uv-pkg", "bin", "uv")
    if os.path.exists(uv):
        return uv
    sys.exit("no uv: put one on PATH (pip install 'uv>=0.13.9,<0.14')")


def git(cwd, *args, date=None):
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@example.com",
               GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com",
               GIT_CONFIG_NOSYSTEM="1", HOME=cwd)
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)


def find_python(version):
    """The interpreter of `version` (X.Y.Z) bodywork named: pyenv's, uv's or PATH's."""
    roots = [os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions", version)]
    for root in roots:
        exe = os.path.join(root, "bin", "python3")
        if os.path.exists(exe):
            return exe
    minor = ".".join(version.split(".")[:2])
    exe = shutil.which("python" + minor)
    if exe:
        return exe
    sys.exit(f"cannot find Python {version} by hand")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold-cache", action="store_true")
    args = ap.parse_args()
    uv = find_uv()

    work = tempfile.mkdtemp(prefix="bench-python-")
    repo = os.path.join(work, "repo")
    os.makedirs(repo)
    with open(os.path.join(repo, "bodywork.yaml"), "w") as f:
        f.write(YAML.format(pins=", ".join(PINS)))
    with open(os.path.join(repo, "main.py"), "w") as f:
        f.write(MAIN)
    reqs = os.path.join(work, "requirements.txt")
    with open(reqs, "w") as f:
        f.write("\n".join(PINS + BASE) + "\n")
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the seed's pins", date=DATE)
    shared_cache = os.environ.get("BODYWORK_UV_CACHE_DIR", os.path.join(TEST_CACHE, "uv-cache"))
    path = os.path.dirname(uv) + os.pathsep + os.environ.get("PATH", "")

    def cache_dir(i, side):
        if args.cold_cache:
            return os.path.join(work, f"cache-{side}-{i}")
        return shared_cache

    def bodywork(i):
        home = os.path.join(work, f"home-{i}")
        env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1", PATH=path,
                   BODYWORK_GATEWAY_ADDR="127.0.0.1:0", BODYWORK_LOOPBACK_BLOCK="202",
                   BODYWORK_UV_CACHE_DIR=cache_dir(i, "bw"))
        for var in ("BODYWORK_RESOLVE_AS_OF", "BODYWORK_PYTHON"):
            env.pop(var, None)
        try:
            subprocess.run([args.bin, "setup-namespace", "bench"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            done = subprocess.run([args.bin, "workflow", "--namespace", "bench", "file://" + repo, "master"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        finally:
            subprocess.run([args.bin, "daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        built = BUILT.search(done.stdout)
        if done.returncode != 0 or not built:
            sys.exit(f"bodywork workflow failed or built nothing:\n{done.stdout}")
        chosen = CHOSEN.search(done.stdout)
        shutil.rmtree(home, ignore_errors=True)
        return float(built.group(1)), built.group(2), chosen.group(1) if chosen else "(default Python)"

    def by_hand(i, python):
        venv = os.path.join(work, f"venv-{i}")
        env = dict(os.environ, UV_CACHE_DIR=cache_dir(i, "uv"), UV_PYTHON_DOWNLOADS="never", NO_COLOR="1")
        env.pop("VIRTUAL_ENV", None)
        t0 = time.perf_counter()
        subprocess.run([uv, "venv", "-q", "--python", python, venv], env=env, check=True)
        subprocess.run([uv, "pip", "install", "-q", "--python", os.path.join(venv, "bin", "python"),
                        "--exclude-newer", DATE, "-r", reqs], env=env, check=True)
        seconds = time.perf_counter() - t0
        shutil.rmtree(venv, ignore_errors=True)
        return seconds

    try:
        # One untimed bodywork run: warms the shared cache and says which
        # Python to give by hand.
        _, version, chosen = bodywork("warm")
        python = find_python(version)
        ours, theirs = [], []
        for i in range(args.runs):
            ours.append(bodywork(i)[0])
            theirs.append(by_hand(i, python))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    mo, mt = statistics.median(ours), statistics.median(theirs)
    cache = "a fresh uv cache each run" if args.cold_cache else "a warm shared uv cache"
    print(f"binary: {args.bin}; {args.runs} runs each, {cache}")
    print(f"bodywork said: stage main: {chosen}")
    print(f"{'measure':62} {'median':>9} {'min':>9}")
    print(f"{'bodywork: cold environment, Python chosen (stage log)':62} {mo:>7.2f} s {min(ours):>7.2f} s")
    print(f"{'by hand: uv venv --python ' + version + ' + uv pip install':62} {mt:>7.2f} s {min(theirs):>7.2f} s")
    print(f"{'ratio (target <= 1.15)':62} {mo / mt:>9.2f}")


if __name__ == "__main__":
    main()
