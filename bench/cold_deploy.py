#!/usr/bin/env python3
"""Cold first deploy of the seed example (examples/serve-model) in a fresh
BODYWORK_HOME, on a machine that has used uv before: its uv cache holds the
packages, and uv is installed.

Each run makes a fresh BODYWORK_HOME and a fresh XDG_CACHE_HOME whose `uv`
is the machine's warm uv cache (`--uv-cache`, by default the test suite's
shared one) and whose `pip` is the user's pip cache: that is how a user's
`~/.cache/uv` looks to bodywork. uv is put on PATH (`--uv`, by default the
test suite's bootstrapped uv) as a user who has used uv has it. Neither
UV_CACHE_DIR nor BODYWORK_UV_CACHE_DIR is set: finding the cache is part
of what is measured. It then times `bodywork workflow` of the example from
the start (the daemon starting included) until the service answers a
scoring request through the gateway, and stops the daemon.

The anchor, measured in the same run right after: what the deploy cannot
do without on this machine, by hand: `uv venv` and `uv pip install -r
requirements.txt` from the same warm cache (same interpreter), then
`python service.py` started and polled until it answers its first request.

Prints a table (median of --runs); `--json` prints the figures instead.
`--private-cache` gives the deploy an empty uv cache in its home instead,
as bodywork did before it looked for the user's: the "before" figure.

Usage: cargo build --release -p bodywork-cli && python3 bench/cold_deploy.py [--runs 3] [--json]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "serve-model")
NS = "scoring-service"
SERVICE = "bodywork-serve-model-project--scoring-service"
BODY = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
TARGET_S = 4.0


def score(url, timeout=5):
    req = urllib.request.Request(url, data=BODY, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.load(r)


def poll(url, limit):
    deadline = time.monotonic() + limit
    while True:
        try:
            return score(url, timeout=2)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_python(home):
    """The interpreter the deploy's environment was made from (pyvenv.cfg)."""
    envs = os.path.join(home, "envs")
    for name in sorted(os.listdir(envs)):
        cfg = os.path.join(envs, name, "pyvenv.cfg")
        if os.path.isfile(cfg):
            with open(cfg) as f:
                for line in f:
                    key, _, value = line.partition("=")
                    if key.strip() == "home":
                        for exe in ("python3", "python"):
                            path = os.path.join(value.strip(), exe)
                            if os.path.exists(path):
                                return path
    raise SystemExit(f"no environment found in {envs}")


def one_run(args, base_env):
    work = tempfile.mkdtemp(prefix="bw-cold-bench-")
    home = os.path.join(work, "home")
    xdg = os.path.join(work, "xdg-cache")
    os.makedirs(xdg)
    os.symlink(os.path.abspath(args.uv_cache), os.path.join(xdg, "uv"))
    pip_cache = os.path.expanduser("~/.cache/pip")
    if os.path.isdir(pip_cache):
        os.symlink(pip_cache, os.path.join(xdg, "pip"))
    env = dict(base_env, BODYWORK_HOME=home, XDG_CACHE_HOME=xdg,
               BODYWORK_GATEWAY_ADDR=f"127.0.0.1:{free_port()}", NO_COLOR="1")
    if args.private_cache:
        # What bodywork did before it reused the user's cache.
        env["BODYWORK_UV_CACHE_DIR"] = os.path.join(home, "cache", "uv")
    out = {}
    try:
        t0 = time.perf_counter()
        done = subprocess.run([args.bin, "workflow", f"--namespace={NS}", EXAMPLE], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        out["workflow_s"] = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"the deploy failed:\n{done.stdout[-4000:]}")
        with open(os.path.join(home, "gateway.addr")) as f:
            gateway = f.read().strip()
        url = f"http://{gateway}/api/v1/namespaces/{NS}/services/{SERVICE}/proxy/iris/v1/score"
        poll(url, 120)
        out["deploy_s"] = time.perf_counter() - t0
        python = env_python(home)
        subprocess.run([args.bin, "daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

        # The anchor: the same environment and first answer, by hand.
        venv = os.path.join(work, "anchor-venv")
        uv_env = dict(base_env, UV_CACHE_DIR=os.path.abspath(args.uv_cache), NO_COLOR="1")
        t0 = time.perf_counter()
        subprocess.run([args.uv, "venv", "--quiet", "--python", python, venv], env=uv_env, check=True,
                       cwd=work)
        out["anchor_venv_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        subprocess.run([args.uv, "pip", "install", "--quiet", "--python",
                        os.path.join(venv, "bin", "python"), "-r",
                        os.path.join(EXAMPLE, "scoring-service", "requirements.txt")],
                       env=uv_env, check=True, cwd=work)
        out["anchor_install_s"] = time.perf_counter() - t1
        port = free_port()
        t2 = time.perf_counter()
        server = subprocess.Popen([os.path.join(venv, "bin", "python"), "service.py"],
                                  cwd=os.path.join(EXAMPLE, "scoring-service"),
                                  env=dict(base_env, PORT=str(port)),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            poll(f"http://127.0.0.1:{port}/iris/v1/score", 120)
            out["anchor_answer_s"] = time.perf_counter() - t2
        finally:
            server.terminate()
            server.wait(timeout=10)
        out["anchor_s"] = out["anchor_venv_s"] + out["anchor_install_s"] + out["anchor_answer_s"]
        return out
    finally:
        subprocess.run([args.bin, "daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "bodywork"))
    cache = os.path.join(ROOT, "target", "tmp", "test-cache")
    if not os.path.isdir(cache):
        # A worktree: the main checkout's test cache.
        cache = os.path.join(os.path.dirname(ROOT), "main", "target", "tmp", "test-cache")
    ap.add_argument("--uv-cache", default=os.path.join(cache, "uv-cache"),
                    help="the warm uv cache standing in for the user's ~/.cache/uv")
    ap.add_argument("--uv", default=shutil.which("uv") or os.path.join(cache, "uv-pkg", "bin", "uv"),
                    help="the uv standing in for the user's (put on PATH)")
    ap.add_argument("--private-cache", action="store_true",
                    help="give the deploy an empty uv cache of its own in the fresh home, as bodywork "
                         "did before it reused the user's (the packages are downloaded)")
    args = ap.parse_args()
    if not os.path.isdir(args.uv_cache):
        raise SystemExit(f"no uv cache at {args.uv_cache}: run the test suite once, or pass --uv-cache")
    base_env = {k: v for k, v in os.environ.items()
                if k not in ("UV_CACHE_DIR", "BODYWORK_UV_CACHE_DIR", "BODYWORK_HOME")}
    base_env["PATH"] = os.path.dirname(os.path.abspath(args.uv)) + os.pathsep + base_env.get("PATH", "")
    runs = [one_run(args, base_env) for _ in range(args.runs)]
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    if args.json:
        print(json.dumps({"runs": args.runs, "median": med, "all": runs, "target_s": TARGET_S,
                          "bin": args.bin, "private_cache": args.private_cache}, indent=2))
        return
    cache = "its own empty uv cache" if args.private_cache else "the user's warm uv cache"
    rows = [
        (f"cold first deploy of serve-model, fresh home, {cache} (median of {args.runs})",
         f"{med['deploy_s']:.2f} s",
         f"<= {TARGET_S:.0f} s" + ("  ok" if med["deploy_s"] <= TARGET_S else "  MISSED")),
        ("  of which `bodywork workflow` returned after", f"{med['workflow_s']:.2f} s", "-"),
        ("anchor: uv venv + uv pip install + python's first answer", f"{med['anchor_s']:.2f} s", "-"),
        ("  uv venv", f"{med['anchor_venv_s']:.2f} s", "-"),
        ("  uv pip install -r requirements.txt (warm cache)", f"{med['anchor_install_s']:.2f} s", "-"),
        ("  python service.py: start to first answer", f"{med['anchor_answer_s']:.2f} s", "-"),
        ("deploy over the anchor", f"{med['deploy_s'] - med['anchor_s']:+.2f} s", "-"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"binary: {args.bin}")
    print(f"{'measure':<{width}}  {'value':>8}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>8}  {target}")


if __name__ == "__main__":
    main()
