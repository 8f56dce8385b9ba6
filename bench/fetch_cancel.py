#!/usr/bin/env python3
"""A `bodywork workflow` whose git clone is
stalled on a loopback server that accepts and never answers.

For each run: while git waits on the server, how many processes' command
lines (/proc/PID/cmdline, what `ps` shows any local user), the CLI's own
left aside (it holds the URL as typed), hold the token given in the URL's
user-info, and the one given in its query (a documented limit); then Ctrl-C (SIGINT)
to the CLI: the time until the CLI exits, the run's recorded status, the
git processes left naming the server's port, and the files of
BODYWORK_HOME holding either token. Prints one table.

Usage: python3 bench/fetch_cancel.py [--runs N] [--bin PATH]
Build first: cargo build -p bodywork-cli (the default --bin is the debug one)
"""
import argparse
import json
import os
import socket
import subprocess
import statistics
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_TOKEN = "u53r-t0ken-bench"
QUERY_TOKEN = "qu3ry-t0ken-bench"


def stalled_server():
    """A listening socket whose connections are accepted, held, never answered."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held, seen = [], threading.Event()

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            held.append(conn)
            seen.set()

    threading.Thread(target=loop, daemon=True).start()
    return srv, held, seen


def cmdlines_with(needle, but=None):
    """Command lines holding `needle`, of every process but pid `but`."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == but:
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                line = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in line:
            found.append(line)
    return found


def files_with(root, needle):
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                with open(path, "rb") as f:
                    if needle.encode() in f.read():
                        hits.append(path)
            except OSError:
                pass
    return hits


def one_run(binary, patience):
    srv, held, seen = stalled_server()
    port = srv.getsockname()[1]
    address = f"127.0.0.1:{port}"
    url = f"http://deploy:{USER_TOKEN}@{address}/repo.git?access_token={QUERY_TOKEN}"
    with tempfile.TemporaryDirectory(prefix="bw-bench-") as home:
        env = dict(os.environ, BODYWORK_HOME=home, NO_COLOR="1", BODYWORK_GATEWAY_ADDR="127.0.0.1:0")
        env.pop("BODYWORK_RUNTIME", None)
        subprocess.run([binary, "setup-namespace", "bench"], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cli = subprocess.Popen([binary, "workflow", "--namespace", "bench", url], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            if not seen.wait(60):
                raise SystemExit("git never reached the stalled server")
            # git-remote-http holds the connection: wait for it to show.
            deadline = time.monotonic() + 10
            while not any("remote-http" in l for l in cmdlines_with(address)):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            # The CLI's own command line holds the URL as the user typed it.
            user_seen = len(cmdlines_with(USER_TOKEN, but=cli.pid))
            query_seen = len(cmdlines_with(QUERY_TOKEN, but=cli.pid))
            t0 = time.perf_counter()
            cli.send_signal(2)
            try:
                cli.wait(timeout=patience)
            except subprocess.TimeoutExpired:
                # Not out within `patience`: shown as more than that.
                cli.kill()
                cli.wait()
            exit_s = time.perf_counter() - t0
            deadline = time.monotonic() + 5
            while cmdlines_with(address) and time.monotonic() < deadline:
                time.sleep(0.01)
            left = len(cmdlines_with(address))
            runs = json.loads(subprocess.run([binary, "runs", "--namespace", "bench", "-o", "json"],
                                             env=env, check=True, capture_output=True).stdout)
            status = runs[0]["status"] if runs else "-"
            kept = len(files_with(home, USER_TOKEN)) + len(files_with(home, QUERY_TOKEN))
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
            subprocess.run([binary, "daemon", "--stop"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            srv.close()
            for conn in held:
                conn.close()
    return user_seen, query_seen, exit_s, status, left, kept


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "bodywork"))
    ap.add_argument("--patience", type=float, default=60.0,
                    help="seconds to wait for the CLI after Ctrl-C before killing it")
    args = ap.parse_args()
    rows = [one_run(args.bin, args.patience) for _ in range(args.runs)]
    print(f"{'run':>3} {'user-info token in argv':>24} {'query token in argv':>20} "
          f"{'Ctrl-C to exit s':>17} {'status':>10} {'git left':>9} {'files w/ token':>15}")
    for i, (u, q, s, st, left, kept) in enumerate(rows, 1):
        print(f"{i:>3} {u:>24} {q:>20} {s:>17.3f} {st:>10} {left:>9} {kept:>15}")
    times = [r[2] for r in rows]
    print(f"Ctrl-C to exit: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
          f"(target: a few seconds; the run was 'failed' after the 15 min fetch limit before)")


if __name__ == "__main__":
    main()
