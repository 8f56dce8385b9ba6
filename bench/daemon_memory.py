#!/usr/bin/env python3
"""Local runtime, memory while stages print a lot. Prints a table.

  1. a batch stage writes 200 MB in lines of 1 MB         daemon target <= 50 MB
  2. a batch stage writes one line of 200 MB (no newline
     until the end)                                       daemon target <= 50 MB
  3. a batch stage writes 100 MB in lines of 1 kB while
     the attached `bodywork workflow` is stopped (SIGSTOP),
     resumed once the run has ended                       daemon target <= 50 MB

Each case runs against a fresh daemon (stopped and started between cases)
in a temporary BODYWORK_HOME, so the daemon's peak (VmHWM from
/proc/PID/status) is that case's. The CLI's peak is its maximum resident
size as the kernel reports it when it exits (wait4). `daemon after` is the
daemon's VmRSS once the case is over; `run log` the size of the run's
stored log (MB = 10^6 bytes; memory in MiB).

Usage:
  cargo build --release -p bodywork-cli
  python3 bench/daemon_memory.py [--bin PATH] [--uv PATH] [--mb 200]
The stage environment (stdlib only) is built once with `uv` (from PATH,
else --uv, else the one the integration tests installed under
target/tmp/test-cache, else bodywork bootstraps its own).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
TEST_CACHE = os.path.join(TARGET, "tmp", "test-cache")

YAML = """version: "1.1"
pipeline:
  name: {name}
  docker_image: bodyworkml/bodywork-core:latest
  DAG: main
stages:
  main:
    executable_module_path: main.py
    args: {args}
    batch:
      max_completion_time_seconds: 600
      retries: 0
"""

# argv: mode, megabytes, started-file, release-file ("-": no gate).
STAGE = r'''
import os, sys, time
mode, mb, started, release = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
if release != "-":
    with open(started, "w") as f:
        f.write("started")
    while not os.path.exists(release):
        time.sleep(0.02)
out = sys.stdout
mib = 1 << 20
if mode == "lines-1mb":
    line = "a" * (mib - 1) + "\n"
    for _ in range(mb):
        out.write(line)
elif mode == "one-line":
    chunk = "b" * mib
    for _ in range(mb):
        out.write(chunk)
    out.write("\n")
elif mode == "lines-1kb":
    line = "c" * 999 + "\n"
    for _ in range(mb * 1024):
        out.write(line)
out.flush()
print("done")
'''


def project(scratch, name, args):
    d = os.path.join(scratch, name)
    os.makedirs(d)
    with open(os.path.join(d, "bodywork.yaml"), "w") as f:
        f.write(YAML.format(name=name, args=json.dumps(args)))
    with open(os.path.join(d, "main.py"), "w") as f:
        f.write(STAGE)
    return d


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def find_uv(explicit):
    if explicit:
        return os.path.abspath(explicit)
    found = shutil.which("uv")
    if found:
        return found
    cached = os.path.join(TEST_CACHE, "uv-pkg", "bin", "uv")
    return cached if os.access(cached, os.X_OK) else None


class Bench:
    def __init__(self, bw, env, home, scratch):
        self.bw, self.env, self.home, self.scratch = bw, env, home, scratch

    def run(self, *args, check=True):
        done = subprocess.run(self.bw + list(args), env=self.env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if check and done.returncode != 0:
            sys.exit(f"bodywork {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-4000:]}")
        return done.stdout

    def fresh_daemon(self):
        """Stop the daemon and start a new one; its pid."""
        self.run("daemon", "--stop", check=False)
        self.run("runs", "--namespace", "bench")
        with open(os.path.join(self.home, "daemon.pid")) as f:
            return int(f.read().strip())

    def last_run_ended(self):
        runs = json.loads(self.run("runs", "--namespace", "bench", "-o", "json"))
        return bool(runs) and all(r["status"] != "running" for r in runs)

    def case(self, name, mode, mb, stop_cli=False):
        gate = os.path.join(self.scratch, f"{name}.started"), os.path.join(self.scratch, f"{name}.release")
        args = [mode, str(mb), gate[0], gate[1] if stop_cli else "-"]
        proj = project(self.scratch, name, args)
        daemon = self.fresh_daemon()
        t0 = time.perf_counter()
        cli = subprocess.Popen(self.bw + ["workflow", "--namespace", "bench", proj], env=self.env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if stop_cli:
            while not os.path.exists(gate[0]):
                if cli.poll() is not None:
                    sys.exit(f"{name}: the workflow ended before its stage started")
                time.sleep(0.02)
            os.kill(cli.pid, signal.SIGSTOP)
            with open(gate[1], "w") as f:
                f.write("go")
            while not self.last_run_ended():
                time.sleep(0.2)
            os.kill(cli.pid, signal.SIGCONT)
        _, status, usage = os.wait4(cli.pid, 0)
        cli.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        if cli.returncode != 0:
            sys.exit(f"{name}: the workflow failed ({cli.returncode})")
        time.sleep(0.5)
        peak = status_kb(daemon, "VmHWM")
        after = status_kb(daemon, "VmRSS")
        runs = json.loads(self.run("runs", "--namespace", "bench", "-o", "json"))
        newest = max(r["id"] for r in runs)
        stored = os.path.getsize(os.path.join(self.home, "logs", "runs", f"{newest}.log"))
        return peak / 1024, after / 1024, usage.ru_maxrss / 1024, seconds, stored / 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(TARGET, "release", "bodywork"))
    ap.add_argument("--uv")
    ap.add_argument("--mb", type=int, default=200, help="output of cases 1 and 2 (case 3: half)")
    args = ap.parse_args()
    if not os.access(args.bin, os.X_OK):
        sys.exit(f"{args.bin} not found: build it (cargo build --release -p bodywork-cli) or give --bin")

    scratch = tempfile.mkdtemp(prefix="bw-bench-mem-")
    home = os.path.join(scratch, "home")
    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1", BODYWORK_GATEWAY_ADDR="127.0.0.1:0")
    env.pop("BODYWORK_RUNTIME", None)
    uv = find_uv(args.uv)
    if uv:
        env["PATH"] = os.path.dirname(uv) + os.pathsep + env.get("PATH", "")
    if os.path.isdir(os.path.join(TEST_CACHE, "uv-cache")):
        env.setdefault("BODYWORK_UV_CACHE_DIR", os.path.join(TEST_CACHE, "uv-cache"))
    bench = Bench([os.path.abspath(args.bin)], env, home, scratch)
    try:
        print(f"binary: {args.bin}\nhome: {home}\n")
        bench.run("setup-namespace", "bench")
        # Build the stage's environment once, outside the measures.
        bench.run("workflow", "--namespace", "bench", project(scratch, "warm", ["lines-1kb", "0", "-", "-"]))
        cases = [
            (f"{args.mb} MB in 1 MB lines", "lines-1mb", args.mb, False),
            (f"one {args.mb} MB line", "one-line", args.mb, False),
            (f"{args.mb // 2} MB in 1 kB lines, CLI stopped (SIGSTOP)", "lines-1kb", args.mb // 2, True),
        ]
        print(f"{'case':<48} {'daemon peak':>11} {'daemon after':>12} {'CLI peak':>9} {'seconds':>8} "
              f"{'run log':>9}  daemon <= 50 MB")
        for i, (label, mode, mb, stop) in enumerate(cases):
            peak, after, cli, seconds, stored = bench.case(f"case{i + 1}", mode, mb, stop)
            verdict = "ok" if peak <= 50 else "MISSED"
            print(f"{label:<48} {peak:>8.1f} MB {after:>9.1f} MB {cli:>6.1f} MB {seconds:>8.1f} "
                  f"{stored:>6.1f} MB  {verdict}", flush=True)
    finally:
        subprocess.run(bench.bw + ["daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
