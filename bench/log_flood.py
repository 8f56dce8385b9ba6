#!/usr/bin/env python3
"""Service logs on disk under a flood. Prints a table.

A service of two replicas, once both are ready, writes numbered lines of
100 bytes to stderr as fast as Python can (`sys.stderr.write` in a loop) for
SECONDS, then says how many. Meanwhile the service's log folder
(`logs/services/bench/flood`, every file in it, rotated parts included) is
measured every 20 ms, both as the sum of the file sizes (what `du
--apparent-size` counts) and as the blocks allocated (what `du` counts).
A replica's log holds at most two parts of 10 MiB, so the folder should
never pass 2 x 20 MiB, whatever the write rate: the table gives the peak
beside that cap, and the lines the replicas wrote (their rate is what the
reapers writing the logs, and the disk, let them write: a pipe slows a
writer faster than that). Afterwards `bodywork logs` must end each
replica's part with its last line, and `service delete` during a second
flood must leave no log folder behind.

Usage: cargo build --release -p bodywork-cli && python3 bench/log_flood.py [--seconds 20]
(BODYWORK_BIN=target/debug/bodywork to measure another binary.) Runs in a
private BODYWORK_HOME with the gateway on a free loopback port, and stops
everything it started.
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

CAP = 2 * 2 * (10 << 20)  # two replicas, two parts of 10 MiB each

# Listens (so it gets ready), waits for RELEASE, floods stderr for SECONDS
# (for ever with 0), then says how many lines it wrote and serves on.
SERVER = """
import http.server, os, sys, threading, time
release, seconds = sys.argv[1], float(sys.argv[2])
server = http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), http.server.BaseHTTPRequestHandler)
threading.Thread(target=server.serve_forever, daemon=True).start()
while not os.path.exists(release):
    time.sleep(0.02)
filler = "e" * 90
n = 0
start = time.monotonic()
end = start + (seconds or 1e9)
while time.monotonic() < end:
    for _ in range(1000):
        sys.stderr.write(f"{n:09d} {filler}\\n")
        n += 1
sys.stderr.write(f"flood over after {n} lines in {time.monotonic() - start:.2f} s\\n")
sys.stderr.flush()
while True:
    time.sleep(3600)
"""

PROJECT = """version: "1.1"
pipeline:
  name: flood
  namespace: bench
  DAG: flood
stages:
  flood:
    executable_module_path: app/server.py
    args: ["{release}", "{seconds}"]
    service: {{max_startup_time_seconds: 60, replicas: 2, port: {port}, ingress: false}}
"""


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def folder_size(folder):
    """(sum of file sizes, bytes allocated) of every file under `folder`."""
    size = blocks = 0
    for dirpath, _, files in os.walk(folder):
        for name in files:
            try:
                st = os.stat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            size += st.st_size
            blocks += st.st_blocks * 512
    return size, blocks


def tail(path, n=4096):
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.path.getsize(path) - n))
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def deploy(env, project, seconds):
    release = os.path.join(project, "..", f"release-{seconds}")
    with open(os.path.join(project, "bodywork.yaml"), "w") as f:
        f.write(PROJECT.format(release=release, seconds=seconds, port=free_port("127.0.0.1")))
    subprocess.run([BIN, "workflow", project], env=env, check=True, capture_output=True)
    return release


def flood(env, project, seconds):
    folder = os.path.join(env["BODYWORK_HOME"], "logs", "services", "bench", "flood")
    release = deploy(env, project, seconds)
    logs = sorted({p.removesuffix(".1") for p in glob.glob(os.path.join(folder, "*.log*"))})
    assert len(logs) == 2, logs
    open(release, "w").close()
    peak_size = peak_blocks = samples = 0
    started = time.monotonic()
    deadline = started + seconds + 120
    while time.monotonic() < deadline:
        size, blocks = folder_size(folder)
        peak_size, peak_blocks, samples = max(peak_size, size), max(peak_blocks, blocks), samples + 1
        if all("flood over" in tail(log) for log in logs):
            break
        time.sleep(0.02)
    written, elapsed = 0, 0.0
    for log in logs:
        line = next(l for l in tail(log).splitlines() if l.startswith("flood over"))
        words = line.split()
        written += int(words[3])
        elapsed = max(elapsed, float(words[6]))
    shown = subprocess.run([BIN, "logs", "--namespace", "bench", "flood"], env=env,
                           capture_output=True, text=True).stdout
    sections = shown.split("---- ")[1:]
    last_shown = len(sections) == 2 and all(
        s.rstrip("\n").splitlines()[-1].startswith("flood over") for s in sections)
    return {
        "peak_size": peak_size, "peak_blocks": peak_blocks, "samples": samples,
        "written": written, "rate": written / elapsed if elapsed else float("nan"),
        "last_shown": last_shown,
    }


def delete_during_flood(env, project):
    """`service delete` while both replicas flood; True when no folder is
    left once their processes are gone."""
    folder = os.path.join(env["BODYWORK_HOME"], "logs", "services", "bench", "flood")
    subprocess.run([BIN, "service", "delete", "--namespace", "bench", "--name", "flood"],
                   env=env, capture_output=True)
    release = deploy(env, project, 0)
    open(release, "w").close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(glob.glob(os.path.join(folder, "*.log.1"))) < 2:
        time.sleep(0.02)
    subprocess.run([BIN, "service", "delete", "--namespace", "bench", "--name", "flood"],
                   env=env, check=True, capture_output=True)
    gone_at_once = not os.path.exists(folder)
    # The replicas' processes mention the release file: wait for them to end.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and subprocess.run(
            ["pgrep", "-f", release], capture_output=True).returncode == 0:
        time.sleep(0.05)
    return gone_at_once and not os.path.exists(folder)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bw-bench-flood-")
    env = dict(os.environ, BODYWORK_HOME=os.path.join(work, "home"), NO_COLOR="1",
               BODYWORK_GATEWAY_ADDR="127.0.0.1:0", BODYWORK_LOOPBACK_BLOCK="252")
    project = os.path.join(work, "project")
    os.makedirs(os.path.join(project, "app"))
    with open(os.path.join(project, "app", "server.py"), "w") as f:
        f.write(SERVER)
    try:
        r = flood(env, project, args.seconds)
        r["deleted"] = delete_during_flood(env, project)
    finally:
        subprocess.run([BIN, "daemon", "--stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    mib = 1 << 20
    print("| replicas | flood | lines written (100 B) | lines/s | peak on disk (sizes) "
          "| peak on disk (blocks) | cap | within cap | logs ends with the last line "
          "| delete leaves no folder |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| 2 | {args.seconds} s | {r['written']:,} | {r['rate']:,.0f} | "
          f"{r['peak_size'] / mib:.1f} MiB | {r['peak_blocks'] / mib:.1f} MiB | {CAP / mib:.0f} MiB | "
          f"{'yes' if max(r['peak_size'], r['peak_blocks']) <= CAP else 'NO'} | "
          f"{'yes' if r['last_shown'] else 'NO'} | {'yes' if r['deleted'] else 'NO'} |")
    print(f"\n({r['samples']} samples of the folder; binary {BIN})")


if __name__ == "__main__":
    main()
