#!/usr/bin/env python3
"""What the per-stage reaper (`bodywork __reap`) costs:
wall time to start and end a process directly and under the reaper (the
difference is what every stage attempt and replica start pays), and the
reaper's own memory while its stage runs. Prints a table of medians.

Usage: python3 bench/reaper.py [--runs N] [--bin PATH]
Build first: cargo build --release -p bodywork-cli
"""
import argparse
import os
import signal
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wall_ms(cmd, runs):
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def reaper_memory_kb(binary):
    """VmRSS and RssAnon of a reaper whose stage sleeps."""
    proc = subprocess.Popen([binary, "__reap", "--", "sleep", "5"])
    try:
        time.sleep(0.5)
        fields = {}
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        return fields.get("VmRSS", "?"), fields.get("RssAnon", "?")
    finally:
        proc.send_signal(signal.SIGUSR2)  # end the tree, as the daemon does
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "bodywork"))
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        sys.exit(f"no binary at {args.bin}: build it first (see the docstring)")
    reap = [args.bin, "__reap", "--"]
    cases = [
        ("/bin/true", ["/bin/true"]),
        ("python3 -c pass", ["python3", "-c", "pass"]),
    ]
    print(f"{'process':<20} {'direct ms':>10} {'reaped ms':>10} {'added ms':>9} {'p90 reaped':>11}")
    for name, cmd in cases:
        direct, _ = wall_ms(cmd, args.runs)
        reaped, p90 = wall_ms(reap + cmd, args.runs)
        print(f"{name:<20} {direct:>10.2f} {reaped:>10.2f} {reaped - direct:>9.2f} {p90:>11.2f}")
    rss, anon = reaper_memory_kb(args.bin)
    print(f"reaper memory while its stage runs: VmRSS {rss}, RssAnon {anon}")


if __name__ == "__main__":
    main()
