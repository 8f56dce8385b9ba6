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
serving, the debounce included).

Usage: python3 bench/watch_save.py [--saves 20] [--bin target/release/bodywork]
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--saves", type=int, default=20)
    default_bin = os.path.join(ROOT, "target", "release", "bodywork")
    if not os.path.exists(default_bin):
        default_bin = os.path.join(ROOT, "target", "debug", "bodywork")
    ap.add_argument("--bin", default=default_bin)
    ap.add_argument("--uv-cache", default=os.path.join(ROOT, "target", "tmp", "test-cache", "uv-cache"))
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
        stop.set()
        load.join()
        status = [float(s) for s in re.findall(r"saved scoring-service/service\.py → serving in ([0-9.]+) s",
                                              printed())]
        q = statistics.quantiles(times, n=20)
        print(f"binary: {args.bin}")
        print(f"first deploy (environment built or reused): {first:.2f} s")
        print(f"save -> new answer through the gateway, {len(times)} saves: "
              f"p50 {statistics.median(times):.3f} s, p95 {q[18]:.3f} s, max {max(times):.3f} s "
              f"(targets: p50 <= 1 s, p95 <= 1.5 s)")
        if status:
            print(f"status lines (save seen -> serving): p50 {statistics.median(status):.2f} s, "
                  f"max {max(status):.2f} s")
        print(f"requests during the saves: {counts['ok']} answered, {counts['failed']} failed")
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
