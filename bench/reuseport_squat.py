#!/usr/bin/env python3
"""SO_REUSEPORT squatting through re-created sockets.
Prints a table.

For each binary given (`--before PATH` and the one under test), in a
private BODYWORK_HOME:

- a 2-replica service whose replicas listen with SO_REUSEPORT and close
  each connection (as Flask's development server does), so that every
  request is a new connection from the gateway or the cluster address to a
  replica, each of which is vetted;
- latency of requests through the cluster address with no squatter
  (median, p95): what the checks on each new connection add end to end;
- then a same-user squatter joins replica 1's pod address and port with
  SO_REUSEPORT and closes and re-creates its socket every 100-200 ms;
  requests through the gateway and the cluster address in turn for
  --seconds: the share answered by the squatter, the share that failed,
  and whether the daemon's log took replica 1 out of service naming the
  squatter's pid.

Then the cost of the checks themselves, from the `vet_cost` example of
bodywork-local (the sock_diag check made twice per new connection, the full
ownership check, a /proc/net/tcp read), when it is built.

Usage:
  cargo build --release -p bodywork-cli
  cargo build --release -p bodywork-local --example vet_cost
  python3 bench/reuseport_squat.py [--before OLD_BODYWORK] [--seconds 30] [--requests 500]
Stops everything it started.
"""
import argparse
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("BODYWORK_BIN", os.path.join(ROOT, "target", "release", "bodywork"))
VET_COST = os.path.join(ROOT, "target", "release", "examples", "vet_cost")

SERVER = """
import http.server, os, socket
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "4")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(b"real")
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
S(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""

PROJECT = """version: "1.1"
pipeline:
  name: web
  namespace: bench
  DAG: web
stages:
  web:
    executable_module_path: app/server.py
    service: {{max_startup_time_seconds: 60, replicas: 2, port: {port}, ingress: false}}
"""

# Joins HOST:PORT with SO_REUSEPORT, answers "squatter", and makes a new
# socket every 100-200 ms (the new one before closing the old).
SQUATTER = r"""
import random, socket, sys, threading, time
host, port = sys.argv[1], int(sys.argv[2])
def serve(c):
    try:
        c.settimeout(5)
        if c.recv(65536):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nsquatter")
    except OSError:
        pass
    finally:
        c.close()
def listener():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((host, port))
    s.listen(64)
    s.settimeout(0.01)
    return s
def take(s):
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
s = listener()
print("ready", flush=True)
while True:
    until = time.monotonic() + random.uniform(0.1, 0.2)
    while time.monotonic() < until:
        try:
            take(s)
        except socket.timeout:
            pass
    s, old = listener(), s
    old.setblocking(False)
    try:
        while True:
            take(old)
    except OSError:
        pass
    old.close()
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(host, port, path):
    """One request on a new connection: the body, or None when it failed."""
    try:
        with socket.create_connection((host, port), timeout=10) as c:
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return body.decode(errors="replace") if head.startswith(b"HTTP/1.1 200") else None


def run(binary, seconds, requests):
    work = tempfile.mkdtemp(prefix="bw-bench-reuseport-")
    home = os.path.join(work, "home")
    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1",
               BODYWORK_GATEWAY_ADDR="127.0.0.1:0", BODYWORK_LOOPBACK_BLOCK="251")
    project = os.path.join(work, "project")
    os.makedirs(os.path.join(project, "app"))
    with open(os.path.join(project, "app", "server.py"), "w") as f:
        f.write(SERVER)
    port = free_port()
    with open(os.path.join(project, "bodywork.yaml"), "w") as f:
        f.write(PROJECT.format(port=port))
    squatter = None
    try:
        subprocess.run([binary, "workflow", project], env=env, check=True, capture_output=True)
        with open(os.path.join(home, "gateway.addr")) as f:
            gw_host, gw_port = f.read().strip().rsplit(":", 1)
        db = sqlite3.connect(os.path.join(home, "state.db"))
        spec = db.execute("select spec from deployments where namespace='bench'").fetchone()[0]
        cluster = json.loads(spec)["cluster_address"]
        generation = db.execute("select generation from deployments where namespace='bench'").fetchone()[0]
        pod = db.execute("select address from replicas where namespace='bench' and generation=? "
                         "order by \"index\"", (generation,)).fetchone()[0]
        db.close()
        proxied = "/api/v1/namespaces/bench/services/web/proxy/"

        for _ in range(50):  # warm-up
            get(cluster, port, "/")
        latencies = []
        for _ in range(requests):
            start = time.perf_counter()
            body = get(cluster, port, "/")
            latencies.append(time.perf_counter() - start)
            if body != "real":
                raise SystemExit(f"a request with no squatter failed: {body!r}")
        latencies.sort()

        squatter = subprocess.Popen([sys.executable, "-c", SQUATTER, pod, str(port)],
                                    stdout=subprocess.PIPE, text=True)
        squatter.stdout.readline()
        sent, squatted, failed = 0, 0, 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for host, p, path in ((gw_host, int(gw_port), proxied), (cluster, port, "/")):
                sent += 1
                body = get(host, p, path)
                if body == "squatter":
                    squatted += 1
                elif body != "real":
                    failed += 1
        log = open(os.path.join(home, "logs", "daemon.log")).read()
        named = any("no longer takes traffic" in line and f"held by pid {squatter.pid} " in line
                    for line in log.splitlines())
        return {
            "median": statistics.median(latencies) * 1000,
            "p95": latencies[int(0.95 * (len(latencies) - 1))] * 1000,
            "sent": sent, "squatted": squatted, "failed": failed, "named": named,
        }
    finally:
        if squatter:
            squatter.kill()
            squatter.wait()
        subprocess.run([binary, "daemon", "--stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", help="a bodywork binary to compare with (e.g. built from main)")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--requests", type=int, default=500,
                        help="requests timed through the cluster address, no squatter")
    args = parser.parse_args()
    random.seed()
    runs = []
    if args.before:
        runs.append(("before", run(args.before, args.seconds, args.requests)))
    runs.append(("this build", run(BIN, args.seconds, args.requests)))
    print("| measure | " + " | ".join(name for name, _ in runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    rows = [
        ("request through the cluster address, a new connection each, no squatter: median",
         lambda r: f"{r['median']:.2f} ms"),
        ("same: p95", lambda r: f"{r['p95']:.2f} ms"),
        (f"requests in {args.seconds:g} s with a squatter re-creating its socket (gateway + cluster address)",
         lambda r: str(r["sent"])),
        ("answered by the squatter", lambda r: f"{r['squatted']} ({100 * r['squatted'] / max(r['sent'], 1):.1f} %)"),
        ("failed", lambda r: f"{r['failed']} ({100 * r['failed'] / max(r['sent'], 1):.1f} %)"),
        ("replica taken out of service, the squatter's pid named", lambda r: "yes" if r["named"] else "no"),
    ]
    for label, cell in rows:
        print(f"| {label} | " + " | ".join(cell(r) for _, r in runs) + " |")
    if os.path.exists(VET_COST):
        print()
        print(subprocess.run([VET_COST], capture_output=True, text=True, check=True).stdout, end="")
    else:
        print(f"\n(build the vet_cost example for the cost of the checks: {VET_COST} is missing)")


if __name__ == "__main__":
    main()
