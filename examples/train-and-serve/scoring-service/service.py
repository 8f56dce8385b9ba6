"""
A Flask REST API that scores single iris instances with a pre-trained model.

POST /iris/v1/score with a JSON object holding the four measurements
(`sepal_length`, `sepal_width`, `petal_length`, `petal_width`) and receive the
predicted species, the class probabilities and a description of the model.
Bad input is answered with a 400 and a JSON error, never a stack trace.

The model is the one the `train-model` stage wrote to
`artefacts/classification_model.joblib` at the project root earlier in the same
workflow run; if it is missing the service exits at once with a clear message.
"""
import math
import os
import sys
from pathlib import Path
from typing import Any, Dict

import numpy as np
from flask import Flask, Response, jsonify, make_response, request
from joblib import load
from sklearn.base import BaseEstimator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODEL_PATH = PROJECT_ROOT / "artefacts" / "classification_model.joblib"
FEATURE_NAMES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
SPECIES_NAMES = ("setosa", "versicolor", "virginica")

app = Flask(__name__)
# Keep the documented key order in responses (modern Flask sorts keys).
app.json.sort_keys = False

model: BaseEstimator


class InvalidRequest(ValueError):
    """The request body cannot be turned into model features."""


@app.route("/iris/v1/score", methods=["POST"])
def score() -> Response:
    """Iris species classification API endpoint."""
    request_data = request.get_json(silent=True)
    try:
        X = make_features_from_request_data(request_data)
    except InvalidRequest as e:
        return make_response(jsonify({"error": str(e)}), 400)
    model_output = model_predictions(X)
    response_data = jsonify({**model_output, "model_info": str(model)})
    return make_response(response_data)


def make_features_from_request_data(request_data: Any) -> np.ndarray:
    """Build the (1, 4) feature array from the JSON body, or say what is wrong."""
    if not isinstance(request_data, dict):
        raise InvalidRequest(
            "request body must be a JSON object with the fields "
            + ", ".join(FEATURE_NAMES)
        )
    missing = [name for name in FEATURE_NAMES if name not in request_data]
    if missing:
        raise InvalidRequest(f"missing field(s): {', '.join(missing)}")
    values = []
    for name in FEATURE_NAMES:
        value = request_data[name]
        # bool is an int in Python, but `true` is not a measurement.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidRequest(f"field {name} must be a number (found {value!r})")
        if not math.isfinite(value):
            raise InvalidRequest(f"field {name} must be finite (found {value!r})")
        values.append(float(value))
    return np.array(values).reshape(1, len(FEATURE_NAMES))


def model_predictions(features: np.ndarray) -> Dict[str, str]:
    """Predicted species and the per-class probabilities as a readable string."""
    predicted_class = int(model.predict(features)[0])
    class_probabilities = model.predict_proba(features)[0]
    probabilities = "|".join(
        f"{species}={float(probability)}"
        for species, probability in zip(SPECIES_NAMES, class_probabilities)
    )
    return {
        "species_prediction": SPECIES_NAMES[predicted_class],
        "probabilities": probabilities,
    }


def load_model(path: Path) -> BaseEstimator:
    """Load the persisted model, exiting with a clear message if it is missing."""
    if not path.is_file():
        sys.exit(
            f"model file not found: {path} "
            "(the train-model stage writes it; run the whole workflow, not this stage alone)"
        )
    return load(path)


if __name__ == "__main__":
    model = load_model(MODEL_PATH)
    print(f"loaded model={model}")
    print("starting API server")
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", 5000)))
