#!/usr/bin/env python3
"""Local runtime: a daemon killed, and the alias bomb. Prints a table.

1. kill -9 of the daemon (the control plane, `bodywork daemon --worker`)
   while 4 clients send requests through the gateway and 4 straight to the
   service's cluster address, each one request at a time, as fast as
   answers come. Nobody types a command: the supervisor starts the
   control plane again. Measured per run, from the kill:
     - until the gateway / the cluster address answered again (the end of
       the first successful request sent after the kill),
     - requests that failed (target: at most the ones in flight through
       the dead process, one per client),
     - whether the replicas were adopted (same pids).
2. the alias bomb: a 920 KB bodywork.yaml (one 900 KB string anchored and
   aliased 5,000 times) submitted with `bodywork workflow`: the daemon's
   peak resident memory (VmHWM) after the run is refused, target < 100 MB,
   and how the refusal reads.

Usage:
  cargo build --release -p bodywork-cli
  python3 bench/daemon_crash.py [--bin PATH] [--runs 5]
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import http.client
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))

SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""

PROJECT = """version: "1.1"
pipeline:
  name: crash
  namespace: crash
  DAG: web
stages:
  web:
    executable_module_path: app/server.py
    service: {max_startup_time_seconds: 30, replicas: 2, port: 5000, ingress: true}
"""


def bw(binary, env, *args, check=True):
    return subprocess.run([binary, *args], env=env, check=check, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(addr, path):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        return r.status == 200
    finally:
        conn.close()


def daemon_pid(home):
    try:
        with open(os.path.join(home, "daemon.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def replica_pids(home):
    db = sqlite3.connect(os.path.join(home, "state.db"))
    try:
        return sorted(r[0] for r in db.execute("select pid from replicas where pid is not null"))
    finally:
        db.close()


def cluster_address(home):
    import json
    db = sqlite3.connect(os.path.join(home, "state.db"))
    try:
        spec = db.execute("select spec from deployments where namespace='crash' and name='web'").fetchone()[0]
        return json.loads(spec)["cluster_address"] + ":5000"
    finally:
        db.close()


class Load:
    """`clients` threads, each sending one request at a time to addr+path."""

    def __init__(self, addr, path, clients):
        self.stop = False
        self.lock = threading.Lock()
        self.results = []  # (start, end, ok)
        self.threads = [threading.Thread(target=self.client, args=(addr, path)) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def client(self, addr, path):
        deadline = time.monotonic() + 120
        while not self.stop and time.monotonic() < deadline:
            start = time.monotonic()
            try:
                ok = get(addr, path)
            except OSError:
                ok = False
            with self.lock:
                self.results.append((start, time.monotonic(), ok))

    def finish(self):
        self.stop = True
        for t in self.threads:
            t.join()
        return self.results


def crash_run(binary, env, home, gateway):
    cluster = cluster_address(home)
    pids = replica_pids(home)
    loads = {
        "gateway": Load(gateway, "/api/v1/namespaces/crash/services/web/proxy/", 4),
        "cluster address": Load(cluster, "/", 4),
    }
    time.sleep(1)
    old = daemon_pid(home)
    killed = time.monotonic()
    os.kill(old, 9)
    deadline = killed + 30
    while time.monotonic() < deadline:
        pid = daemon_pid(home)
        if pid and pid != old and os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.01)
    time.sleep(2)
    out = {}
    for name, load in loads.items():
        results = load.finish()
        after = [end for (start, end, ok) in results if ok and start >= killed]
        failed = sum(1 for (_, _, ok) in results if not ok)
        out[name] = ((min(after) - killed) if after else None, failed, len(results))
    adopted = replica_pids(home) == pids
    return out, adopted


def alias_bomb(binary, env, home):
    project = tempfile.mkdtemp(prefix="bw-bench-bomb-")
    try:
        with open(os.path.join(project, "s.py"), "w") as f:
            f.write("print('hi')\n")
        text = ('version: "1.1"\npipeline:\n  name: bomb\n  namespace: bomb\n  DAG: s\n'
                'stages:\n  s:\n    executable_module_path: s.py\n'
                '    batch: {max_completion_time_seconds: 5, retries: 0}\n'
                f'big: &big "{"x" * 900_000}"\nlist:\n' + "  - *big\n" * 5000)
        with open(os.path.join(project, "bodywork.yaml"), "w") as f:
            f.write(text)
        run = bw(binary, env, "workflow", project, check=False)
        pid = daemon_pid(home)
        hwm = 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        said = next((l for l in run.stdout.splitlines() if "alias" in l), run.stdout.strip()[-200:])
        return len(text), hwm, run.returncode, said
    finally:
        shutil.rmtree(project, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(TARGET, "release", "bodywork"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bw-bench-home-")
    gateway = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, BODYWORK_HOME=home, BODYWORK_GATEWAY_ADDR=gateway,
               BODYWORK_LOOPBACK_BLOCK="203", NO_COLOR="1")
    project = tempfile.mkdtemp(prefix="bw-bench-crash-")
    try:
        os.makedirs(os.path.join(project, "app"))
        with open(os.path.join(project, "app", "server.py"), "w") as f:
            f.write(SERVER)
        with open(os.path.join(project, "bodywork.yaml"), "w") as f:
            f.write(PROJECT)
        bw(args.bin, env, "workflow", project)
        # The alias bomb first, against a fresh daemon: its peak is the bomb's.
        size, hwm, code, said = alias_bomb(args.bin, env, home)
        runs = [crash_run(args.bin, env, home, gateway) for _ in range(args.runs)]
    finally:
        bw(args.bin, env, "daemon", "--stop", check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(project, ignore_errors=True)

    print(f"kill -9 of the daemon under load, {args.runs} runs (4 clients per path, one request at a time each)")
    print(f"{'path':<16} {'back after (median / max)':>26} {'failed per run':>16} {'requests per run':>17}  target")
    for name in ("gateway", "cluster address"):
        backs = [r[0][name][0] for r in runs]
        fails = [r[0][name][1] for r in runs]
        totals = [r[0][name][2] for r in runs]
        known = [b for b in backs if b is not None]
        back = (f"{statistics.median(known) * 1000:.0f} / {max(known) * 1000:.0f} ms"
                if len(known) == len(backs) else "NEVER in some runs")
        ok = len(known) == len(backs) and max(known) <= 1.0 and max(fails) <= 4
        print(f"{name:<16} {back:>26} {','.join(map(str, fails)):>16} {statistics.median(totals):>17.0f}"
              f"  back <= 1 s, failed <= 4 (in flight){'  ok' if ok else '  MISSED'}")
    adopted = sum(1 for r in runs if r[1])
    print(f"replicas adopted (same pids): {adopted} of {len(runs)} runs")
    print()
    print("alias bomb")
    print(f"{'file':>10} {'daemon peak (VmHWM)':>20} {'exit':>5}  target")
    print(f"{size / 1e3:>7.0f} KB {hwm / 1024:>17.1f} MB {code:>5}  peak < 100 MB{'  ok' if hwm < 100 * 1024 else '  MISSED'}")
    print(f"  said: {said}")


if __name__ == "__main__":
    main()
