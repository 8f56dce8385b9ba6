#!/usr/bin/env python3
"""Local-runtime services benchmarks. Prints a table.

- warm redeploy of examples/serve-model (environment cached) until ready:
  wall time of `bodywork workflow` for a rolling update, target <= 2 s
- daemon resident memory (VmRSS) with 10 services deployed, target <= 40 MB
- `bodywork daemon --restart` with those 10 services: wall time, whether
  every replica was adopted (same pids), and how many requests to the
  scoring service through the gateway failed while it ran (a client
  sending one request every 5 ms; the listening sockets are handed over,
  so the expectation is 0)

Usage: cargo build --release -p bodywork-cli && python3 bench/services.py [--runs N]
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bodywork")

SERVER = """
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), H).serve_forever()
"""


def bw(env, *args, check=True):
    return subprocess.run([BIN, *args], env=env, check=check, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def replica_pids(home):
    import sqlite3
    db = sqlite3.connect(os.path.join(home, "state.db"))
    try:
        return sorted(r[0] for r in db.execute("select pid from replicas where pid is not null"))
    finally:
        db.close()


def restart_rows(env, home):
    """Time `daemon --restart` while a client scores through the gateway."""
    with open(os.path.join(home, "gateway.addr")) as f:
        gateway = f.read().strip()
    url = (f"http://{gateway}/api/v1/namespaces/scoring-service/services/"
           "bodywork-serve-model-project--scoring-service/proxy/iris/v1/score")
    body = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
    counts = {"ok": 0, "failed": 0}
    stop = threading.Event()

    def client():
        while not stop.is_set():
            req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    r.read()
                counts["ok"] += 1
            except Exception:
                counts["failed"] += 1
            time.sleep(0.005)

    before = replica_pids(home)
    t = threading.Thread(target=client)
    t.start()
    time.sleep(0.5)
    t0 = time.perf_counter()
    bw(env, "daemon", "--restart")
    took = time.perf_counter() - t0
    time.sleep(0.5)
    stop.set()
    t.join()
    adopted = replica_pids(home) == before
    return [
        (f"daemon --restart with {len(before)} replicas running", f"{took * 1000:.0f} ms",
         "replicas adopted" if adopted else "REPLICAS RESTARTED"),
        ("  requests through the gateway during it: ok / failed",
         f"{counts['ok']} / {counts['failed']}", "-"),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bw-bench-home-")
    # A fixed free port: a restarted daemon must listen where the last one did.
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        gateway = f"127.0.0.1:{sock.getsockname()[1]}"
    env = dict(os.environ, BODYWORK_HOME=home, BODYWORK_GATEWAY_ADDR=gateway, BODYWORK_LOOPBACK_BLOCK="201", NO_COLOR="1")
    rows = []
    try:
        bw(env, "setup-namespace", "scoring-service")
        t0 = time.perf_counter()
        bw(env, "workflow", "--namespace=scoring-service", os.path.join(ROOT, "examples", "serve-model"))
        cold = time.perf_counter() - t0
        rows.append(("first deploy of serve-model (cold environment)", f"{cold:.2f} s", "-"))
        times = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            bw(env, "workflow", "--namespace=scoring-service", os.path.join(ROOT, "examples", "serve-model"))
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append((f"warm rolling redeploy of serve-model (median of {args.runs})", f"{med:.2f} s", "<= 2 s" + ("  ok" if med <= 2 else "  MISSED")))

        project = tempfile.mkdtemp(prefix="bw-bench-svcs-")
        os.makedirs(os.path.join(project, "app"))
        with open(os.path.join(project, "app", "server.py"), "w") as f:
            f.write(SERVER)
        stages = "".join(
            f"  svc-{i}:\n    executable_module_path: app/server.py\n    service: {{max_startup_time_seconds: 30, replicas: 1, port: 5000, ingress: false}}\n"
            for i in range(9)
        )
        dag = ", ".join(f"svc-{i}" for i in range(9))
        with open(os.path.join(project, "bodywork.yaml"), "w") as f:
            f.write(f'version: "1.1"\npipeline:\n  name: ten\n  namespace: ten\n  DAG: {dag}\nstages:\n{stages}')
        bw(env, "workflow", project)
        with open(os.path.join(home, "daemon.pid")) as f:
            pid = int(f.read().strip())
        time.sleep(1)
        import json
        services = sum(
            len(json.loads(bw(env, "service", "display", "--namespace", ns, "-o", "json").stdout))
            for ns in ("ten", "scoring-service")
        )
        kb = rss_kb(pid)
        rows.append((f"daemon VmRSS with {services} services deployed", f"{kb / 1024:.1f} MB", "<= 40 MB" + ("  ok" if kb <= 40 * 1024 else "  MISSED")))
        rows.extend(restart_rows(env, home))
        shutil.rmtree(project, ignore_errors=True)
    finally:
        bw(env, "daemon", "--stop", check=False)
        shutil.rmtree(home, ignore_errors=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>10}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>10}  {target}")


if __name__ == "__main__":
    main()
