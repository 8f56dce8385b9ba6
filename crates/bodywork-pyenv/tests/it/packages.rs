//! Installs that need PyPI: a real tiny package and a nonexistent one, and
//! what Bodywork's container gave every stage. Kept few; uv and its package
//! cache are shared between tests and runs.

use crate::helper::{Recorder, cache, new_home, python_says};
use bodywork_pyenv::{EnvError, EnvRequest, InstallerPreference};

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
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
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
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
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
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
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
                exclude_newer: None,
                python_version: None,
                python_downloads: false,
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

/// Resolution as of a date. `six` unpinned was 1.16.0 on
/// 2022-05-20 (1.17.0 came out in December 2024); the base packages are
/// those of that day too. The lock records every distribution and the date;
/// the same request reuses the environment with the same lock, and the
/// same requirements as of now are another environment with another lock.
fn resolves_as_of_a_date(preference: InstallerPreference) {
    let home = new_home();
    let cache = cache(&home, preference);
    let dated = EnvRequest {
        python: None,
        requirements: vec!["six".into()],
        exclude_newer: Some("2022-05-20T12:00:00Z".into()),
        python_version: None,
        python_downloads: false,
    };
    let env = cache.ensure(&dated, &mut |_| {}).unwrap();
    assert!(!env.reused);
    assert_eq!(
        python_says(&env.python, "import six; print(six.__version__)"),
        "1.16.0",
        "{preference:?}"
    );
    assert_eq!(
        env.lock.exclude_newer.as_deref(),
        Some("2022-05-20T12:00:00Z")
    );
    assert_eq!(env.lock.note, None);
    let packages = env.lock.packages.clone().expect("a lock");
    assert!(
        packages.contains(&"six==1.16.0".to_string()),
        "{packages:?}"
    );
    // pip 22.1.1 was the newest pip on that day.
    let pip = packages.iter().find(|p| p.starts_with("pip==")).unwrap();
    assert!(pip.starts_with("pip==22."), "{packages:?}");
    let python_version = python_says(
        &env.python,
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    );
    assert_eq!(env.lock.python_version, python_version);

    let again = cache.ensure(&dated, &mut |_| {}).unwrap();
    assert!(again.reused);
    assert_eq!(again.key, env.key);
    assert_eq!(again.lock, env.lock);
    let listed = cache.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].lock, env.lock);

    let now = cache
        .ensure(
            &EnvRequest {
                exclude_newer: None,
                ..dated.clone()
            },
            &mut |_| {},
        )
        .unwrap();
    assert!(!now.reused);
    assert_ne!(now.key, env.key);
    assert_eq!(now.lock.exclude_newer, None);
    let now_packages = now.lock.packages.clone().unwrap();
    assert!(
        now_packages
            .iter()
            .any(|p| p.starts_with("six==") && p != "six==1.16.0"),
        "{now_packages:?}"
    );
}

#[test]
fn uv_resolves_as_of_a_date_and_records_the_lock() {
    resolves_as_of_a_date(InstallerPreference::Uv);
}

/// pip has `--uploaded-prior-to` from pip 26 on: the environment's pip
/// (3.11's ensurepip gives 23.2) is upgraded first.
#[test]
fn pip_resolves_as_of_a_date_and_records_the_lock() {
    resolves_as_of_a_date(InstallerPreference::Pip);
}

/// A Python the pins support, without uv: numpy 1.22.3 has no wheels for Python
/// 3.11 and later (the default `python3` here), so pip's dry runs choose
/// the machine's 3.10 (pyenv's), which builds the environment from wheels,
/// as of the seed's date; the log line is uv's.
#[test]
fn pip_chooses_a_python_the_pins_have_wheels_for() {
    let home = new_home();
    let cache = cache(&home, InstallerPreference::Pip);
    let default = python_says(
        std::path::Path::new("python3"),
        "import sys; print('%d.%d' % sys.version_info[:2])",
    );
    let found: Vec<String> = cache.interpreters().into_iter().map(|(v, _)| v).collect();
    let minor: u32 = default
        .strip_prefix("3.")
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        minor >= 11,
        "this test needs python3 of 3.11 or later, not {default}"
    );
    assert!(
        found.iter().any(|v| v.starts_with("3.10.")),
        "this test needs a Python 3.10 (pyenv install 3.10): found {found:?}"
    );
    let events = Recorder::default();
    let env = cache
        .ensure(
            &EnvRequest {
                requirements: vec!["numpy==1.22.3".into()],
                exclude_newer: Some("2022-05-20T12:00:00Z".into()),
                ..EnvRequest::default()
            },
            &mut events.callback(),
        )
        .unwrap();
    assert!(env.lock.python_version.starts_with("3.10."), "{env:?}");
    let chosen: Vec<_> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            bodywork_pyenv::EnvEvent::PythonChosen(line) => Some(line),
            _ => None,
        })
        .collect();
    assert_eq!(
        chosen,
        [format!(
            "numpy==1.22.3 has no wheel for Python {default}; using Python {}",
            env.lock.python_version
        )]
    );
    assert_eq!(
        python_says(&env.python, "import numpy; print(numpy.__version__)"),
        "1.22.3"
    );
    let packages = env.lock.packages.clone().unwrap();
    assert!(
        packages.contains(&"numpy==1.22.3".to_owned()),
        "{packages:?}"
    );
    assert_eq!(cache.list().unwrap()[0].installer, "pip");
}
