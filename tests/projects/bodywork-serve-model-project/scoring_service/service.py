"""Stand-in for the seed repository's scoring service: imports what its
pins provide and answers on port 5000 (the pins are what this fixture is
for; see ../bodywork.yaml)."""

import flask
import joblib  # noqa: F401
import numpy
import sklearn

app = flask.Flask(__name__)


@app.route("/versions")
def versions():
    return {"numpy": numpy.__version__, "scikit-learn": sklearn.__version__}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
