#!/usr/bin/env python3
"""Replica log rotation under a fast writer. Prints a table.

A service replica, once it listens, writes numbered lines to stdout as fast
as it can, one write(2) per line, about 16 MB in all. Its reaper writes its
log in parts of 10 MiB, renaming FILE to FILE.1 when a part is full
(before, the daemon copied and truncated it past 20 MiB, and
the default was 4,000,000 lines), so it rotates once during the write and
never twice. Afterwards FILE.1 and FILE together should hold every line:
the table says how many are missing (lost in the rotation) or appear
twice, and how fast the replica wrote.

Usage: cargo build --release -p bodywork-cli && python3 bench/log_rotation.py [--runs N]
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BODYWORK_BIN", os.path.join(ROOT, "target", "release", "bodywork"))

# Listens (so it gets ready), then writes LINES numbered lines, then
# "done ELAPSED" and keeps serving.
SERVER = """
import http.server, os, sys, threading, time
LINES = int(sys.argv[1])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H)
def write():
    time.sleep(1)
    start = time.perf_counter()
    for i in range(LINES):
        os.write(1, b"%d\\n" % i)
    os.write(1, b"done %.3f\\n" % (time.perf_counter() - start))
threading.Thread(target=write, daemon=True).start()
server.serve_forever()
"""

PROJECT = """version: "1.1"
pipeline:
  name: chatty
  namespace: bench
  DAG: web
stages:
  web:
    executable_module_path: app/server.py
    args: ["{lines}"]
    service: {{max_startup_time_seconds: 60, replicas: 1, port: {port}, ingress: false}}
"""


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def read_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().split(b"\n")
    except FileNotFoundError:
        return []


def one_run(env, project, lines):
    with open(os.path.join(project, "bodywork.yaml"), "w") as f:
        f.write(PROJECT.format(port=free_port("127.0.0.1"), lines=lines))
    subprocess.run([BIN, "workflow", project], env=env, check=True, capture_output=True)
    logs = os.path.join(env["BODYWORK_HOME"], "logs", "services", "bench", "web")
    deadline = time.time() + 600
    log = None
    while time.time() < deadline:
        found = sorted(glob.glob(os.path.join(logs, "*.log")))
        log = found[-1] if found else None
        if log and any(l.startswith(b"done ") for l in read_lines(log)[-3:]):
            break
        time.sleep(0.5)
    parts = read_lines(log + ".1") + read_lines(log)
    numbers = [int(l) for l in parts if l.isdigit()]
    elapsed = next((float(l.split()[1]) for l in parts if l.startswith(b"done ")), float("nan"))
    seen = set(numbers)
    rotated = os.path.exists(log + ".1")
    subprocess.run([BIN, "service", "delete", "--namespace", "bench", "--name", "web"],
                   env=env, capture_output=True)
    return {
        "rotated": rotated,
        "missing": lines - len(seen & set(range(lines))),
        "twice": len(numbers) - len(seen),
        "rate": lines / elapsed if elapsed == elapsed and elapsed > 0 else float("nan"),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--lines", type=int, default=2_000_000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bw-bench-rotate-")
    env = dict(os.environ, BODYWORK_HOME=os.path.join(work, "home"), NO_COLOR="1",
               BODYWORK_GATEWAY_ADDR="127.0.0.1:0", BODYWORK_LOOPBACK_BLOCK="251")
    project = os.path.join(work, "project")
    os.makedirs(os.path.join(project, "app"))
    with open(os.path.join(project, "app", "server.py"), "w") as f:
        f.write(SERVER)
    try:
        runs = [one_run(env, project, args.lines) for _ in range(args.runs)]
    finally:
        subprocess.run([BIN, "daemon", "--stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"| run | rotated | lines written | missing | twice | writer (lines/s) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(runs, 1):
        print(f"| {i} | {'yes' if r['rotated'] else 'no'} | {args.lines} | {r['missing']} | "
              f"{r['twice']} | {r['rate']:,.0f} |")


if __name__ == "__main__":
    main()
