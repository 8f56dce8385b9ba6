//! Installs that need PyPI: a real tiny package and a nonexistent one, and
//! what Bodywork's container gave every stage. Kept few; uv and its package
//! cache are shared between tests and runs.

mod common;

use bodywork_pyenv::{EnvError, EnvRequest, InstallerPreference};
use common::{Recorder, cache, new_home, python_says};

#[test]
fn installs_a_real_package_with_uv_and_shares_it() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Uv);
    let events = Recorder::default();
    let env = cache
        .ensure(
            &EnvRequest {
                python: None,
                requirements: vec!["SIX == 1.16.0  # tiny".into()],
            },
            &mut events.callback(),
        )
        .unwrap();
    assert!(!env.reused);
    assert!(env.site_packages.join("six.py").is_file());
    assert_eq!(
        python_says(&env.python, "import six; print(six.__version__)"),
        "1.16.0"
    );
    // uv's own output was streamed.
    let lines = events.installing_lines();
    assert!(lines.iter().any(|l| l.contains("six==1.16.0")), "{lines:?}");

    let again = cache
        .ensure(
            &EnvRequest {
                python: None,
                requirements: vec!["six==1.16.0".into()],
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(again.reused);
    assert_eq!(again.key, env.key);
    assert_eq!(cache.list().unwrap()[0].requirements, vec!["six==1.16.0"]);
}

fn nonexistent_package_error(preference: InstallerPreference) -> EnvError {
    let home = new_home();
    let cache = cache(&home, preference);
    let err = cache
        .ensure(
            &EnvRequest {
                python: None,
                requirements: vec!["no-such-package-bodywork-test==1.0".into()],
            },
            &mut |_| {},
        )
        .unwrap_err();
    // Nothing half-built is left behind, and nothing is listed.
    assert!(cache.list().unwrap().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(cache.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    err
}

#[test]
fn nonexistent_package_with_uv_quotes_uv() {
    let err = nonexistent_package_error(InstallerPreference::Uv);
    let EnvError::Install {
        requirements,
        installer,
        lines,
    } = &err
    else {
        panic!("expected an install error, got {err:?}");
    };
    assert_eq!(installer, "uv");
    assert_eq!(requirements, &["no-such-package-bodywork-test==1.0"]);
    assert!(lines.len() <= 20);
    let message = err.to_string();
    eprintln!("{message}");
    assert!(
        message.starts_with(
            "installing requirements (no-such-package-bodywork-test==1.0) with uv failed:"
        ),
        "{message}"
    );
    // uv's own words, e.g. "No solution found when resolving dependencies".
    assert!(message.contains("No solution found"), "{message}");
    assert!(
        !message.contains("Using Python"),
        "uv's preamble is noise: {message}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("no-such-package-bodywork-test")),
        "{lines:?}"
    );
}

#[test]
fn nonexistent_package_with_pip_quotes_pip() {
    let err = nonexistent_package_error(InstallerPreference::Pip);
    let EnvError::Install {
        installer, lines, ..
    } = &err
    else {
        panic!("expected an install error, got {err:?}");
    };
    assert_eq!(installer, "pip");
    // pip's own words: "ERROR: No matching distribution found for ...".
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("ERROR:") && l.contains("no-such-package-bodywork-test")),
        "{lines:?}"
    );
    eprintln!("{err}");
    assert!(err.to_string().contains("with pip failed:"));
}

/// An environment looks like Bodywork's container image to the stage: pip,
/// wheel and a setuptools that still provides `pkg_resources`, with either
/// installer, and without a word about them in the requirements.
#[test]
fn environments_have_what_bodyworks_container_had() {
    for preference in [InstallerPreference::Uv, InstallerPreference::Pip] {
        let home = new_home();
        let env = cache(&home, preference)
            .ensure(&EnvRequest::default(), &mut |_| {})
            .unwrap();
        let said = python_says(
            &env.python,
            "import setuptools, pkg_resources, wheel, pip\n\
             print(pkg_resources.get_distribution('pip').project_name, int(setuptools.__version__.split('.')[0]) < 82)",
        );
        assert_eq!(said, "pip True", "{preference:?}");
    }
}

/// A stage that pins one of them gets its own pin, not ours.
#[test]
fn a_pinned_base_package_is_the_stage_s_own() {
    let home = new_home();
    let env = cache(&home, InstallerPreference::Uv)
        .ensure(
            &EnvRequest {
                python: None,
                requirements: vec!["setuptools==80.9.0".into()],
            },
            &mut |_| {},
        )
        .unwrap();
    let said = python_says(
        &env.python,
        "import setuptools, wheel, pip; print(setuptools.__version__)",
    );
    assert_eq!(said, "80.9.0");
}
