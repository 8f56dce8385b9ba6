"""
Stages `train-line` and `train-mean`: fit one model to `data/dataset.csv`.

Which model is chosen by the stage's `args` (`--model line` or
`--model mean`); both stages run in parallel, in the same step of the DAG, and
each writes its own `data/model-<name>.json`, so they never write the same file.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def read_dataset(path: Path) -> list:
    """The (x, y) points written by the `prepare` stage."""
    with path.open(newline="") as f:
        return [(float(row["x"]), float(row["y"])) for row in csv.DictReader(f)]


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
    args = parser.parse_args()
    print(f"train: args={sys.argv[1:]} -> model={args.model}")
    dataset = DATA_DIR / "dataset.csv"
    if not dataset.is_file():
        sys.exit(f"train: {dataset} not found (the prepare stage writes it)")
    points = read_dataset(dataset)
    model = MODELS[args.model](points)
    model["name"] = args.model
    model["mse"] = mean_squared_error(model, points)
    (DATA_DIR / f"model-{args.model}.json").write_text(json.dumps(model, indent=2))
    print(f"train: model={args.model} mse={model['mse']:.4f} -> data/model-{args.model}.json")
