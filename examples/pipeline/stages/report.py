"""
Stage `report`: compare the trained models and write `data/report.json`.

Needs the secret API_TOKEN in its environment (from the secret
`pipeline-credentials`, see bodywork.yaml), as a stage that publishes its
results somewhere would. It prints only that the token is set and its length,
never its value; without it the stage fails, and so does the workflow, which
then runs the `on-failure` stage. A model the train stages wrote elsewhere (on
Kubernetes each stage runs in a pod of its own) is trained again here from the
same `--rows` and `--seed`.
"""
import argparse
import json
import os
import sys
from pathlib import Path

from train import train

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
MODEL_NAMES = ("line", "mean")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    token = os.environ.get("API_TOKEN")
    if not token:
        sys.exit(
            "report: API_TOKEN is not set; create it with `bodywork secret create "
            "--namespace pipeline --name pipeline-credentials --data API_TOKEN=...`"
        )
    print(f"report: API_TOKEN is set ({len(token)} characters)")
    models = []
    for name in MODEL_NAMES:
        path = DATA_DIR / f"model-{name}.json"
        if path.is_file():
            models.append(json.loads(path.read_text()))
        else:
            print(f"report: no {path.name} here (a pod of its own); training it again")
            models.append(train(name, args.rows, args.seed))
    best = min(models, key=lambda model: model["mse"])
    report = {"best_model": best["name"], "models": models}
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    (DATA_DIR / "report.json").write_text(json.dumps(report, indent=2))
    for model in models:
        print(
            f"report: {model['name']:<4} mse={model['mse']:.4f} "
            f"y = {model['slope']:.3f} x + {model['intercept']:.3f}"
        )
    print(f"report: best model is {best['name']} -> data/report.json")
