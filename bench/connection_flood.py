#!/usr/bin/env python3
"""Idle connections flooding the gateway of a daemon with a low file
descriptor limit. Prints a table, one row per binary.

The daemon is started with RLIMIT_NOFILE = --fd-limit, then --idle
connections are opened to its gateway and held (sending nothing) for
--hold seconds. Measured:

- bytes the daemon wrote during the hold (/proc/PID/io wchar: its log,
  which rotation would otherwise hide, and anything else it writes)
- how long `bodywork runs --namespace flood`, started as the flood begins,
  took to answer (">HOLD" when it had not answered by the end of the hold)
- once the idle connections are closed, how long until the gateway answers
  GET /healthz again

Before accept loops backed off on EMFILE and the gateway capped its
connections, 320 idle connections against a 300-fd limit wrote 5.7 million
log lines (540 MB) in 30 s, and `bodywork runs` took 29 s.

Usage: python3 bench/connection_flood.py [--fd-limit 300] [--idle 320]
       [--hold 30] [BINARY ...]   (default: target/release/bodywork)
Runs in a private BODYWORK_HOME with the gateway on a free loopback port,
and stops everything it started.
"""
import argparse
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(ROOT, "target", "release", "bodywork")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wchar(pid):
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    return 0


def healthz(addr):
    host, port = addr.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=2) as s:
            s.settimeout(2)
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def one(binary, fd_limit, idle, hold):
    home = tempfile.mkdtemp(prefix="bw-flood-")
    env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1",
               BODYWORK_GATEWAY_ADDR=f"127.0.0.1:{free_port()}",
               BODYWORK_LOOPBACK_BLOCK=str(200 + os.getpid() % 50))
    env.pop("BODYWORK_RUNTIME", None)

    def limited():
        resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    sockets = []
    try:
        subprocess.run([binary, "setup-namespace", "flood"], env=env, check=True,
                       stdout=subprocess.DEVNULL, preexec_fn=limited)
        with open(os.path.join(home, "gateway.addr")) as f:
            gateway = f.read().strip()
        with open(os.path.join(home, "daemon.pid")) as f:
            pid = int(f.read().strip())
        host, port = gateway.rsplit(":", 1)
        written_before = wchar(pid)
        start = time.monotonic()
        for _ in range(idle):
            sockets.append(socket.create_connection((host, int(port)), timeout=5))
        runs = subprocess.Popen([binary, "runs", "--namespace", "flood"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        asked = time.monotonic()
        latency = None
        while time.monotonic() < start + hold:
            if latency is None and runs.poll() is not None:
                latency = time.monotonic() - asked
            time.sleep(0.01)
        if latency is None:
            runs.kill()
        runs.wait()
        written = wchar(pid) - written_before
        for s in sockets:
            s.close()
        sockets = []
        closed = time.monotonic()
        while not healthz(gateway):
            if time.monotonic() > closed + 60:
                break
            time.sleep(0.01)
        again = time.monotonic() - closed
        return written, latency, again
    finally:
        for s in sockets:
            s.close()
        subprocess.run([binary, "daemon", "--stop"], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(home, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fd-limit", type=int, default=300)
    parser.add_argument("--idle", type=int, default=320)
    parser.add_argument("--hold", type=float, default=30)
    parser.add_argument("binaries", nargs="*", default=[DEFAULT_BIN])
    args = parser.parse_args()
    print(f"{args.idle} idle gateway connections held {args.hold:g} s, daemon RLIMIT_NOFILE {args.fd_limit}")
    print(f"{'binary':<40} {'daemon wrote':>14} {'runs answered':>14} {'gateway again':>14}")
    for binary in args.binaries:
        written, latency, again = one(binary, args.fd_limit, args.idle, args.hold)
        answered = f"{latency:.2f} s" if latency is not None else f">{args.hold:g} s"
        print(f"{binary[-40:]:<40} {written / 1e6:>11.2f} MB {answered:>14} {again:>12.2f} s")


if __name__ == "__main__":
    main()
