"""
Batch stage: train the iris classifier and save it for the scoring service.

The model is written to `artefacts/classification_model.joblib` at the root of
the project. The local runtime runs all stages of one workflow run from the
same checkout, so the `scoring-service` stage, which runs next in the DAG,
loads it from there. The file is written under a temporary name and renamed
into place, so a reader never sees half a model.
"""
import os
from pathlib import Path

from joblib import dump
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = PROJECT_ROOT / "artefacts" / "classification_model.joblib"


def train_model() -> DecisionTreeClassifier:
    """Fit a decision tree to the iris data set that scikit-learn ships."""
    iris = load_iris()
    model = DecisionTreeClassifier(class_weight="balanced", random_state=42)
    model.fit(iris.data, iris.target)
    return model


def save_model(model: DecisionTreeClassifier, path: Path) -> None:
    """Persist the model at `path`, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    dump(model, partial, compress=3)
    os.replace(partial, path)


if __name__ == "__main__":
    model = train_model()
    accuracy = model.score(*load_iris(return_X_y=True))
    print(f"trained model={model} (training accuracy={accuracy:.3f})")
    save_model(model, MODEL_PATH)
    print(f"saved model to {MODEL_PATH.relative_to(PROJECT_ROOT)}")
