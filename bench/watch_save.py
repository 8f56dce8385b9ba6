#!/usr/bin/env python3
"""`bodywork workflow --watch`: the time from a save to serving the new answer.

Deploys a copy of examples/serve-model (the seed's Flask + scikit-learn
scoring service, 2 replicas) with `workflow --watch`, waits for the first
deploy (its environment built once, or reused from an earlier run with the
same uv cache), then saves `scoring-service/service.py` N times, each save
changing what the service answers. For each save it measures the time from
the write to the first answer of the new text through the gateway (a
client polling every 10 ms), while a second client scores without pause
and counts failed requests. Prints p50/p95/max over the saves, the failed
requests, and the status lines' own figures (from the save seen to
serving, the debounce included) and the failed requests they counted, in
a table with its anchor measured in the same run: the deployed
environment's python running the service by hand, from its start to its
first answer, while the scoring client still runs (what no roll can go
below without pre-importing; the roll adds the 150 ms debounce, starts
two such processes at once and switches the gateway over).

Under `--watch` a service's replicas are forked by its zygote, one Python
process kept for the whole watch that imported the modules the first
version's replicas recorded (and again when a version imports more). Saves
back to back (the default) come one roll after another; `--pause S` waits
S seconds after each status line (the first deploy's too) before the next
save, as someone editing does.

Usage: python3 bench/watch_save.py [--saves 20] [--pause 0] [--bin target/release/bodywork]
       [--uv-cache DIR]  (default: the test suite's shared uv cache, so the
       environment's packages are not downloaded)
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NS = "scoring-service"
SERVICE = "bodywork-serve-model-project--scoring-service"
BODY = b'{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}'
ANSWER = '"model_info": str(model)'


def score(url):
    req = urllib.request.Request(url, data=BODY, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def python_alone(home, service, runs):
    """The anchor: the deployed environment's python running the service
    by hand, from its start to its first answer (median of `runs`)."""
    envs = os.path.join(home, "envs")
    python = next(os.path.join(envs, d, "bin", "python") for d in sorted(os.listdir(envs))
                  if os.path.exists(os.path.join(envs, d, "bin", "python")))
    took = []
    for _ in range(runs):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.Popen([python, os.path.basename(service)], cwd=os.path.dirname(service),
                                env=dict(os.environ, PORT=str(port)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = started + 60
            while True:
                try:
                    score(f"http://127.0.0.1:{port}/iris/v1/score")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
            took.append(time.monotonic() - started)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return statistics.median(took)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--saves", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds between a status line and the next save")
    default_bin = os.path.join(ROOT, "target", "release", "bodywork")
    if not os.path.exists(default_bin):
        default_bin = os.path.join(ROOT, "target", "debug", "bodywork")
    ap.add_argument("--bin", default=default_bin)
    cache = os.path.join(ROOT, "target", "tmp", "test-cache")
    if not os.path.isdir(cache):
        # A worktree: the main checkout's test cache.
        cache = os.path.join(os.path.dirname(ROOT), "main", "target", "tmp", "test-cache")
    ap.add_argument("--uv-cache", default=os.path.join(cache, "uv-cache"))
    ap.add_argument("--anchor-runs", type=int, default=3)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bw-watch-bench-")
    home, project = os.path.join(work, "home"), os.path.join(work, "serve-model")
    shutil.copytree(os.path.join(ROOT, "examples", "serve-model"), project)
    service = os.path.join(project, "scoring-service", "service.py")
    with open(service) as f:
        original = f.read()
    assert ANSWER in original
    env = dict(os.environ, BODYWORK_HOME=home, BODYWORK_GATEWAY_ADDR="127.0.0.1:0",
               BODYWORK_LOOPBACK_BLOCK="91", NO_COLOR="1", BODYWORK_UV_CACHE_DIR=args.uv_cache)
    out_path = os.path.join(work, "watch.out")
    out = open(out_path, "w")
    watch = subprocess.Popen([args.bin, "workflow", "--watch", f"--namespace={NS}", project],
                             env=env, stdout=out, stderr=subprocess.STDOUT)

    def printed():
        with open(out_path) as f:
            return f.read()

    def wait(cond, limit, what):
        deadline = time.monotonic() + limit
        while not cond():
            if time.monotonic() > deadline or watch.poll() is not None:
                raise SystemExit(f"timed out waiting for {what}:\n{printed()[-3000:]}")
            time.sleep(0.01)

    try:
        started = time.monotonic()
        wait(lambda: "for changes (Ctrl-C to stop)" in printed(), 600, "the first deploy")
        first = time.monotonic() - started
        with open(os.path.join(home, "gateway.addr")) as f:
            gateway = f.read().strip()
        url = f"http://{gateway}/api/v1/namespaces/{NS}/services/{SERVICE}/proxy/iris/v1/score"
        counts = {"ok": 0, "failed": 0}
        stop = threading.Event()

        def client():
            while not stop.is_set():
                try:
                    score(url)
                    counts["ok"] += 1
                except Exception:
                    counts["failed"] += 1

        load = threading.Thread(target=client)
        load.start()
        times = []
        for n in range(1, args.saves + 1):
            marker = f"save-{n}"
            text = original.replace(ANSWER, f'{ANSWER}, "watch": "{marker}"')
            lines_before = printed().count("saved scoring-service/service.py")
            # After the previous status line (the first deploy's too).
            time.sleep(args.pause)
            saved = time.monotonic()
            with open(service, "w") as f:
                f.write(text)

            def new_answer():
                try:
                    return score(url).get("watch") == marker
                except Exception:
                    return False
            wait(new_answer, 120, f"save {n} to serve")
            times.append(time.monotonic() - saved)
            # The status line too, before the next save.
            wait(lambda: printed().count("saved scoring-service/service.py") > lines_before, 30,
                 f"save {n}'s status line")
        # The anchor under the same load as the saves.
        anchor = python_alone(home, service, args.anchor_runs)
        stop.set()
        load.join()
        lines = re.findall(r"saved scoring-service/service\.py → serving in ([0-9.]+) s \(([^)]*)\)",
                           printed())
        status = [float(secs) for secs, _ in lines]
        counted = [int(m.group(1)) for _, rest in lines
                   for m in [re.search(r"(\d+) failed requests?", rest)] if m]
        q = statistics.quantiles(times, n=20)
        p50, p95 = statistics.median(times), q[18]
        rows = [
            (f"save -> new answer through the gateway, p50 of {len(times)} saves", f"{p50:.3f} s",
             "<= 1 s" + ("  ok" if p50 <= 1 else "  MISSED")),
            ("  p95", f"{p95:.3f} s", "<= 1.5 s" + ("  ok" if p95 <= 1.5 else "  MISSED")),
            ("  max", f"{max(times):.3f} s", "-"),
        ]
        if status:
            rows.append(("status lines (save seen -> serving), p50", f"{statistics.median(status):.3f} s", "-"))
        handed = printed().count("from the service's zygote")
        rows.append(("rolls forked by the service's zygote", f"{handed} / {len(times)}", "-"))
        rows.append(("each save -> new answer, s", " ".join(f"{t:.2f}" for t in times), "-"))
        rows.append(("requests during the saves: answered / failed", f"{counts['ok']} / {counts['failed']}",
                     "0 failed" + ("  ok" if counts["failed"] == 0 else "  MISSED")))
        rows.append(("failed requests the status lines counted",
                     str(sum(counted)) if counted else "not shown", "-"))
        rows.append((f"anchor: a fresh replica's python under the same load, start -> first answer "
                     f"(median of {args.anchor_runs})",
                     f"{anchor:.3f} s", "-"))
        rows.append(("save -> new answer over the anchor, p50", f"{p50 - anchor:+.3f} s", "-"))
        rows.append(("first deploy (environment built or reused)", f"{first:.2f} s", "-"))
        width = max(len(r[0]) for r in rows)
        print(f"binary: {args.bin}" + (f", {args.pause} s between a status line and the next save"
                                        if args.pause else ", saves back to back"))
        print(f"{'measure':<{width}}  {'value':>12}  target")
        for name, value, target in rows:
            print(f"{name:<{width}}  {value:>12}  {target}")
    finally:
        watch.send_signal(signal.SIGINT)
        try:
            watch.wait(timeout=30)
        except subprocess.TimeoutExpired:
            watch.kill()
        subprocess.run([args.bin, "daemon", "--stop"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        out.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
