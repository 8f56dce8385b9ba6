"""
Train the iris classifier that `service.py` serves and save it beside this file.

This script is not part of the workflow DAG: the trained model is committed
(`classification_model.joblib`) so the service can start without a training
step. Run it again, with the packages pinned in `requirements.txt`, to
regenerate the same model deterministically:

    python train_model.py
"""
from pathlib import Path

from joblib import dump
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

MODEL_PATH = Path(__file__).parent / "classification_model.joblib"


def train_model() -> DecisionTreeClassifier:
    """Fit a decision tree to the iris data set that scikit-learn ships.

    The features are passed as a plain array (no column names), so the model
    scores the plain arrays that `service.py` builds without warnings.
    """
    iris = load_iris()
    model = DecisionTreeClassifier(class_weight="balanced", random_state=42)
    model.fit(iris.data, iris.target)
    return model


def main() -> None:
    """Train the model and persist it next to this script."""
    model = train_model()
    dump(model, MODEL_PATH, compress=3)
    print(f"saved model={model} to {MODEL_PATH.name}")


if __name__ == "__main__":
    main()
