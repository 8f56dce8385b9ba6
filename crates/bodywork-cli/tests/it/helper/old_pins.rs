//! Old projects' fixtures, shared by the local runtime's tests
//! (`resolve_as_of.rs`) and the cluster's (`cluster.rs`): projects
//! committed in May 2022 with that time's pins, and the model of the
//! seed's kind pickled by scikit-learn 1.0.2 under this machine's Python
//! 3.10 (none downloaded).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{TestProject, batch_stage, git, git_cmd, run_ok, yaml};

/// The committer date of the fixtures: when the seed's repository was
/// written (flask 2.1.2 was current, with Werkzeug 2.1.2).
pub const MAY_2022: &str = "2022-05-20T12:00:00Z";

/// A service that pins Flask only, as Bodywork's example projects did: it
/// answers the versions of Flask and Werkzeug it runs with.
pub const FLASK_SERVICE: &str = r#"
import flask, werkzeug
from importlib.metadata import version
app = flask.Flask(__name__)

@app.route("/")
def hello():
    return f"flask {flask.__version__} werkzeug {version('werkzeug')}"

if __name__ == "__main__":
    app.run(host="0.0.0.0", port=5000)
"#;

/// The seed's pins of its model stage: numpy 1.22.3 has no wheels for
/// Python 3.11 and later.
pub const SEED_PINS: [&str; 3] = ["numpy==1.22.3", "scikit-learn==1.0.2", "joblib==1.1.0"];

/// Loads `model.joblib` (next to the script) and scores one flower.
const SCORE: &str = r#"
import joblib, numpy, sklearn
import os
model = joblib.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.joblib"))
species = ["setosa", "versicolor", "virginica"]
prediction = model.predict(numpy.array([[5.1, 3.5, 1.4, 0.2]]))[0]
print(f"numpy {numpy.__version__} scikit-learn {sklearn.__version__} scored {species[prediction]}")
"#;

/// What [`SCORE`] prints with the seed's pins and model.
pub const SCORED: &str = "numpy 1.22.3 scikit-learn 1.0.2 scored setosa";

/// Trains the seed's kind of model (a decision tree on the iris data that
/// scikit-learn ships) with scikit-learn 1.0.2 and pickles it with joblib.
const TRAIN: &str = r#"
import sys, joblib
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeClassifier
data = load_iris()
model = DecisionTreeClassifier(class_weight="balanced", random_state=42)
model.fit(data.data, data.target)
joblib.dump(model, sys.argv[1])
"#;

/// The seed's `scoring-service/service.py` as the tutorial summarises it,
/// written for the Flask of its day (2.1: no `app.json`, whose `jsonify`
/// sorts keys): the model beside it, the tutorial's route and answer.
pub const SEED_SERVICE: &str = r#"
from pathlib import Path
from typing import Dict

import numpy as np
from flask import Flask, Response, jsonify, make_response, request
from joblib import load

MODEL_PATH = Path(__file__).parent / 'classification_model.joblib'
SPECIES = {0: 'setosa', 1: 'versicolor', 2: 'virginica'}

app = Flask(__name__)


@app.route('/iris/v1/score', methods=['POST'])
def score() -> Response:
    """Iris species classification API endpoint"""
    request_data = request.json
    X = make_features_from_request_data(request_data)
    model_output = model_predictions(X)
    response_data = jsonify({**model_output, 'model_info': str(model)})
    return make_response(response_data)


def make_features_from_request_data(request_data: Dict[str, float]) -> np.ndarray:
    """Create feature array from JSON data parsed as dictionary."""
    X = np.array([
        request_data['sepal_length'],
        request_data['sepal_width'],
        request_data['petal_length'],
        request_data['petal_width']
    ]).reshape(1, -1)
    return X


def model_predictions(features: np.ndarray) -> Dict[str, str]:
    """Return model's predictions."""
    predicted_class = model.predict(features)[0]
    predicted_species = SPECIES[predicted_class]
    class_probabilities = model.predict_proba(features)
    species_probabilities = '|'.join(
        f'{SPECIES[n]}={p}' for n, p in enumerate(class_probabilities[0])
    )
    return {'species_prediction': predicted_species, 'probabilities': species_probabilities}


if __name__ == '__main__':
    model = load(MODEL_PATH)
    print(f'loaded model={model}')
    print(f'starting API server')
    app.run(host='0.0.0.0', port=5000)
"#;

/// `git commit` of everything in `dir` with both dates set to `date`;
/// returns HEAD.
pub fn commit_dated(dir: &Path, date: &str) -> String {
    git(dir, &["add", "-A"]);
    run_ok(
        git_cmd(dir)
            .args(["commit", "-q", "-m", "as of then"])
            .env("GIT_AUTHOR_DATE", date)
            .env("GIT_COMMITTER_DATE", date),
    );
    git(dir, &["rev-parse", "HEAD"])
}

/// A Python 3.10 of this machine (pyenv's, or `python3.10` on PATH): what
/// the model is made with. No test downloads one.
pub fn python310() -> PathBuf {
    let pyenv = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(root) = pyenv
        && let Ok(entries) = std::fs::read_dir(root.join("versions"))
    {
        let mut versions: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("3.10."))
            })
            .collect();
        versions.sort();
        candidates.extend(versions.into_iter().rev().map(|v| v.join("bin/python3")));
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        candidates.push(dir.join("python3.10"));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("a Python 3.10 on this machine (pyenv install 3.10, or python3.10 on PATH)")
}

/// A project `seed-pins` (`extra_pipeline`: more lines of its `pipeline`)
/// whose one batch stage `score` pins [`SEED_PINS`] and runs [`SCORE`]
/// with the seed's kind of model ([`seed_model`]); not yet a repository.
pub fn seed_pins_project(extra_pipeline: &str) -> TestProject {
    let config = yaml(
        "seed-pins",
        "score",
        extra_pipeline,
        &[batch_stage(
            "score",
            "score/score.py",
            300,
            0,
            &format!("    requirements: [{}]\n", SEED_PINS.join(", ")),
        )],
    );
    let project = TestProject::new(&[("bodywork.yaml", &config), ("score/score.py", SCORE)]);
    let trainer = tempfile::tempdir().expect("a temp dir");
    let model = seed_model(trainer.path());
    let copied = std::fs::copy(&model, project.path().join("score/model.joblib"));
    assert!(copied.is_ok(), "the model: {copied:?}");
    project
}

/// The seed tutorial's repository as its `master` stood in May 2022, not
/// yet a repository: its `bodywork.yaml` (tests/projects/
/// bodywork-serve-model-project: Bodywork 3's schema, the `scoring_service`
/// stage, Flask 2.1.2 with no Werkzeug pin, numpy 1.22.3, scikit-learn
/// 1.0.2), [`SEED_SERVICE`] and a model pickled by scikit-learn 1.0.2.
pub fn seed_repository() -> TestProject {
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/projects/bodywork-serve-model-project/bodywork.yaml");
    let config = std::fs::read_to_string(&seed).unwrap_or_else(|e| panic!("{seed:?}: {e}"));
    let project = TestProject::new(&[
        ("bodywork.yaml", &config),
        ("scoring_service/service.py", SEED_SERVICE),
    ]);
    let trainer = tempfile::tempdir().expect("a temp dir");
    let model = seed_model(trainer.path());
    let copied = std::fs::copy(
        &model,
        project
            .path()
            .join("scoring_service/classification_model.joblib"),
    );
    assert!(copied.is_ok(), "the model: {copied:?}");
    project
}

/// The seed tutorial's curl: its path in namespace `ns`, its payload.
pub fn tutorial_curl(ns: &str) -> (String, &'static str) {
    (
        format!(
            "/api/v1/namespaces/{ns}/services/bodywork-serve-model-project--scoring-service/proxy/iris/v1/score"
        ),
        r#"{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}"#,
    )
}

/// Checks an answer to [`tutorial_curl`] is the tutorial's JSON.
pub fn assert_tutorials_answer(code: u16, body: &str, context: &dyn std::fmt::Display) {
    assert_eq!(code, 200, "{body}\n{context}");
    let answer: serde_json::Value = serde_json::from_str(body).expect("JSON");
    assert_eq!(
        answer,
        serde_json::json!({
            "species_prediction": "setosa",
            "probabilities": "setosa=1.0|versicolor=0.0|virginica=0.0",
            "model_info": "DecisionTreeClassifier(class_weight='balanced', random_state=42)"
        }),
        "{context}"
    );
}

/// The model, made as the seed's was: with scikit-learn 1.0.2 (installed
/// as of [`MAY_2022`] with the tests' uv under [`python310`]), pickled
/// into `dir/model.joblib`, which is returned.
fn seed_model(dir: &Path) -> PathBuf {
    let venv = dir.join("venv");
    let uv = super::shared_uv_bin()
        .map(|d| d.join("uv"))
        .expect("the tests' uv");
    let run = |cmd: &mut Command| {
        run_ok(
            cmd.env("UV_CACHE_DIR", super::shared_uv_cache())
                .env("UV_PYTHON_DOWNLOADS", "never"),
        )
    };
    run(Command::new(&uv)
        .args(["venv", "-q", "--python"])
        .arg(python310())
        .arg(&venv));
    run(Command::new(&uv)
        .args(["pip", "install", "-q", "--python"])
        .arg(venv.join("bin/python"))
        .args(["--exclude-newer", MAY_2022])
        .args(SEED_PINS));
    let model = dir.join("model.joblib");
    std::fs::write(dir.join("train.py"), TRAIN).expect("train.py");
    run(Command::new(venv.join("bin/python"))
        .arg(dir.join("train.py"))
        .arg(&model));
    model
}
