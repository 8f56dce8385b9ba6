#!/usr/bin/env python3
"""Squatted service ports. Prints a table.

- a redeploy of a 2-replica service onto a port that another process holds
  on 0.0.0.0, with MAX_STARTUP_TIME_SECONDS=900: wall time of
  `bodywork workflow` until it fails, and whether the error names the
  squatter's pid (before the fix it waited for readiness through the
  squatter, reported success, and the replicas crash-looped)
- what one read of /proc/net/tcp and /proc/net/tcp6 costs on this machine
  (wall and CPU time), which is what a readiness check reads

Usage: cargo build --release -p bodywork-cli && python3 bench/squatting.py [--runs N]
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BODYWORK_BIN", os.path.join(ROOT, "target", "release", "bodywork"))

SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""

PROJECT = """version: "1.1"
pipeline:
  name: web
  namespace: bench
  DAG: web
stages:
  web:
    executable_module_path: app/server.py
    service: {{max_startup_time_seconds: 900, replicas: 2, port: {port}, ingress: false}}
"""


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def one_run(env, project):
    squatter = socket.socket()
    squatter.bind(("0.0.0.0", 0))
    squatter.listen()
    port = squatter.getsockname()[1]
    try:
        with open(os.path.join(project, "bodywork.yaml"), "w") as f:
            f.write(PROJECT.format(port=free_port("127.0.0.1")))
        subprocess.run([BIN, "workflow", project], env=env, check=True, capture_output=True)
        with open(os.path.join(project, "bodywork.yaml"), "w") as f:
            f.write(PROJECT.format(port=port))
        started = time.perf_counter()
        run = subprocess.run([BIN, "workflow", project], env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        named = f"held by pid {os.getpid()}" in run.stdout + run.stderr
        return elapsed, run.returncode, named
    finally:
        squatter.close()


def proc_read_cost(n=200):
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(table) as f:
                    f.read()
            except OSError:
                pass
    return (time.perf_counter() - wall) / n * 1000, (time.process_time() - cpu) / n * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bw-bench-squat-")
    env = dict(os.environ, BODYWORK_HOME=os.path.join(work, "home"), NO_COLOR="1",
               BODYWORK_GATEWAY_ADDR="127.0.0.1:0", BODYWORK_LOOPBACK_BLOCK="252")
    project = os.path.join(work, "project")
    os.makedirs(os.path.join(project, "app"))
    with open(os.path.join(project, "app", "server.py"), "w") as f:
        f.write(SERVER)
    try:
        runs = [one_run(env, project) for _ in range(args.runs)]
    finally:
        subprocess.run([BIN, "daemon", "--stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    times = [t for t, _, _ in runs]
    wall, cpu = proc_read_cost()
    print("| measure | value |")
    print("| --- | --- |")
    print(f"| redeploy onto a squatted port, MAX_STARTUP_TIME_SECONDS=900 ({len(runs)} runs): median | {statistics.median(times):.2f} s |")
    print(f"| same: slowest | {max(times):.2f} s |")
    print(f"| runs that failed (exit 1) | {sum(1 for _, c, _ in runs if c == 1)}/{len(runs)} |")
    print(f"| runs whose error named the squatter's pid | {sum(1 for _, _, n in runs if n)}/{len(runs)} |")
    print(f"| one read of /proc/net/tcp + tcp6: wall | {wall:.2f} ms |")
    print(f"| same: CPU | {cpu:.2f} ms |")


if __name__ == "__main__":
    main()
