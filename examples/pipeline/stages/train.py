"""
Stages `train-line` and `train-mean`: fit one model to `data/dataset.csv`.

Which model is chosen by the stage's `args` (`--model line` or
`--model mean`); both stages run in parallel, in the same step of the DAG, and
each writes its own `data/model-<name>.json`, so they never write the same file.
When `data/dataset.csv` is not there (on Kubernetes, where each stage runs in
a pod of its own), the data set is rebuilt from the same `--rows` and `--seed`.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

from prepare import make_dataset

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def read_dataset(path: Path, rows: int, seed: int) -> list:
    """The (x, y) points the `prepare` stage wrote, or, in a pod of its
    own, the same points made again from the same rows and seed."""
    if not path.is_file():
        print(f"train: no {path.name} here (a pod of its own); rebuilding it from the seed")
        return make_dataset(rows, seed)
    with path.open(newline="") as f:
        return [(float(row["x"]), float(row["y"])) for row in csv.DictReader(f)]


def train(name: str, rows: int, seed: int) -> dict:
    """Fit model `name` to the data set; its parameters and error."""
    points = read_dataset(DATA_DIR / "dataset.csv", rows, seed)
    model = MODELS[name](points)
    model["name"] = name
    model["mse"] = mean_squared_error(model, points)
    return model


def fit_line(points: list) -> dict:
    """Least-squares line y = slope * x + intercept."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in points)
    slope = sxy / sxx if sxx else 0.0
    return {"slope": slope, "intercept": mean_y - slope * mean_x}


def fit_mean(points: list) -> dict:
    """The baseline: always predict the mean of y."""
    return {"slope": 0.0, "intercept": sum(y for _, y in points) / len(points)}


MODELS = {"line": fit_line, "mean": fit_mean}


def mean_squared_error(model: dict, points: list) -> float:
    """Average squared error of the model's predictions over the points."""
    errors = [(model["slope"] * x + model["intercept"] - y) ** 2 for x, y in points]
    return sum(errors) / len(errors)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"train: args={sys.argv[1:]} -> model={args.model}")
    model = train(args.model, args.rows, args.seed)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    (DATA_DIR / f"model-{args.model}.json").write_text(json.dumps(model, indent=2))
    print(f"train: model={args.model} mse={model['mse']:.4f} -> data/model-{args.model}.json")
