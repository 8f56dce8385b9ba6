"""
Stage `prepare`: make a small, reproducible regression data set.

Writes `data/dataset.csv` (columns x, y with y = 2.5 x + 1 + noise) at the
root of the project, for the training stages of the next step. The number of
rows and the random seed come from the stage's `args` in bodywork.yaml.
"""
import argparse
import csv
import os
import random
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def parse_args(argv: list) -> argparse.Namespace:
    """The stage's command-line arguments (its `args` in bodywork.yaml)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.rows < 2:
        parser.error(f"--rows must be at least 2 (found {args.rows})")
    return args


def make_dataset(rows: int, seed: int) -> list:
    """`rows` (x, y) points on a noisy line, the same for the same seed."""
    rng = random.Random(seed)
    points = []
    for _ in range(rows):
        x = rng.uniform(0.0, 10.0)
        points.append((x, 2.5 * x + 1.0 + rng.gauss(0.0, 1.0)))
    return points


if __name__ == "__main__":
    args = parse_args(sys.argv[1:])
    print(f"prepare: args={sys.argv[1:]} -> rows={args.rows} seed={args.seed}")
    print(f"prepare: deploying commit {os.environ.get('GIT_COMMIT_HASH', '(unknown)')}")
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / "dataset.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y"])
        writer.writerows(make_dataset(args.rows, args.seed))
    print(f"prepare: wrote {args.rows} rows to data/{path.name}")
