//! Installs that need PyPI: a real tiny package and a nonexistent one. Kept
//! few; uv and its package cache are shared between tests and runs.

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
