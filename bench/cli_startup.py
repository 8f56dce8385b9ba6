#!/usr/bin/env python3
"""Wall time of short bodywork commands (targets: --version <= 5 ms,
validate examples/serve-model <= 10 ms). Prints a table of medians.

Usage: python3 bench/cli_startup.py [--runs N] [--bin PATH]
Build first: cargo build --release -p bodywork-cli
"""
import argparse
import os
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(cmd, runs):
    # One warm-up run so the page cache holds the binary and the project.
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1], times[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "bodywork"))
    args = ap.parse_args()
    cases = [
        ("bodywork --version", [args.bin, "--version"], 5.0),
        ("bodywork validate examples/serve-model", [args.bin, "validate", "examples/serve-model"], 10.0),
        ("(baseline) /bin/true", ["/bin/true"], None),
    ]
    print(f"{'command':<42} {'median ms':>10} {'p90 ms':>8} {'min ms':>8} {'target':>8}")
    for name, cmd, target in cases:
        med, p90, lo = measure(cmd, args.runs)
        tgt = f"<= {target:g}" if target else "-"
        ok = "" if target is None else ("  ok" if med <= target else "  MISSED")
        print(f"{name:<42} {med:>10.2f} {p90:>8.2f} {lo:>8.2f} {tgt:>8}{ok}")


if __name__ == "__main__":
    main()
