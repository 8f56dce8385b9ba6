//! Each commit's requirements resolved as of the commit,
//! through the real binary, its daemon, uv and PyPI.
//!
//! An old project deploys unmodified: a service pinning `flask==2.1.2` and
//! nothing else, committed in May 2022, starts and answers (resolved as of
//! today, Werkzeug 3 breaks Flask 2.1.2 at import). The same commit
//! deployed twice reuses its environment with an identical lock;
//! `--resolve-as-of now` gives another lock; the flag and
//! `BODYWORK_RESOLVE_AS_OF` reach workflows, `bodywork stage` and cron
//! jobs; uncommitted changes resolve as of now.
//!
//! Must not: sleep on a clock (every wait polls a condition with a
//! deadline), or leave a process running (each home stops its daemon).

use std::time::Duration;

use crate::helper::old_pins::{
    FLASK_SERVICE, MAY_2022, SCORED, assert_tutorials_answer, commit_dated, seed_pins_project,
    seed_repository, tutorial_curl,
};
use crate::helper::{self, TestHome, TestProject, batch_stage, git, http, wait_for, yaml};

/// A git repository on branch `master` holding `files`, committed on `date`.
fn repo(files: &[(&str, &str)], date: &str) -> (TestProject, String, String) {
    let project = TestProject::new(files);
    git(project.path(), &["init", "-q", "-b", "master"]);
    let commit = commit_dated(project.path(), date);
    let url = format!("file://{}", project.path().display());
    (project, url, commit)
}

fn envs(home: &TestHome) -> Vec<serde_json::Value> {
    let listed = home.ok(&["env", "list", "-o", "json"]);
    serde_json::from_str(&listed.stdout).expect("env list -o json")
}

fn lock(env: &serde_json::Value) -> Vec<String> {
    env["lock"]
        .as_array()
        .unwrap_or_else(|| panic!("no lock: {env}"))
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_string())
        .collect()
}

fn version_of<'a>(lock: &'a [String], package: &str) -> Option<&'a str> {
    lock.iter()
        .find_map(|p| p.strip_prefix(&format!("{package}==")))
}

#[test]
fn an_old_flask_service_deploys_unmodified_and_redeploys_with_the_same_lock() {
    let home = TestHome::new();
    let ns = "old-flask";
    let project_yaml = "version: \"1.1\"\npipeline:\n  name: old-flask\n  docker_image: bodyworkml/bodywork-core:latest\n  DAG: hello\n\
         stages:\n  hello:\n    executable_module_path: hello/service.py\n    requirements: [flask==2.1.2]\n\
         \x20   service: {max_startup_time_seconds: 120, replicas: 1, port: 5000, ingress: false}\n";
    let (_project, url, commit) = repo(
        &[
            ("bodywork.yaml", project_yaml),
            ("hello/service.py", FLASK_SERVICE),
        ],
        MAY_2022,
    );
    home.ok(&["setup-namespace", ns]);
    let first = home.ok(&["workflow", "--namespace", ns, &url, "master"]);
    first.expect_output(&format!(
        "stage=hello resolves its requirements as of {MAY_2022} (the committer date of commit {})",
        &commit[..7]
    ));
    first.expect_output("(built ");
    first.expect_output("environment lock for stage=hello: ");
    let path = format!("/api/v1/namespaces/{ns}/services/hello/proxy/");
    let mut answer = None;
    wait_for("the service to answer", Duration::from_secs(30), || {
        answer = http(&home.gateway(), "GET", &path, None).ok();
        answer.as_ref().is_some_and(|(code, _)| *code == 200)
    });
    let (_, body) = answer.expect("an answer");
    assert_eq!(body.trim(), "flask 2.1.2 werkzeug 2.1.2", "{first}");

    let listed = envs(&home);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let env = &listed[0];
    assert_eq!(env["resolved_as_of"], MAY_2022);
    assert_eq!(env["requirements"], serde_json::json!(["flask==2.1.2"]));
    let first_lock = lock(env);
    assert_eq!(version_of(&first_lock, "flask"), Some("2.1.2"));
    assert_eq!(version_of(&first_lock, "werkzeug"), Some("2.1.2"));
    let key = env["key"].as_str().unwrap().to_string();

    // The same commit again: the environment is reused at once, same lock.
    let second = home.ok(&["workflow", "--namespace", ns, &url, "master"]);
    second.expect_output(&format!("(reused {key})"));
    second.expect_output(&format!(
        "environment lock for stage=hello: {}",
        first_lock.join(" ")
    ));
    let shown = home.ok(&["env", "show", &key[..8], "-o", "json"]);
    let shown: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["key"], key.as_str());
    assert_eq!(lock(&shown), first_lock);
    assert_eq!(envs(&home).len(), 1);
    let table = home.ok(&["env", "show", &key]);
    for needle in [
        "resolved_as_of".to_string(),
        MAY_2022.to_string(),
        "werkzeug==2.1.2".to_string(),
    ] {
        table.expect_output(&needle);
    }
    let list_table = home.ok(&["env", "list"]);
    list_table.expect_output("RESOLVED AS OF");
    list_table.expect_output("werkzeug==2.1.2");

    // As of now, the same commit gets today's Werkzeug, which Flask 2.1.2
    // cannot import: another environment, another lock.
    let now = home.run(&[
        "stage",
        &url,
        "master",
        "hello",
        "--commit",
        &commit,
        "--resolve-as-of",
        "now",
    ]);
    assert_ne!(now.code, Some(0), "{now}");
    now.expect_output("stage=hello resolves its requirements as of now (--resolve-as-of)");
    now.expect_output("url_quote");
    let listed = envs(&home);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let today = listed
        .iter()
        .find(|e| e["key"] != key.as_str())
        .expect("a second environment");
    assert_eq!(today["resolved_as_of"], "now");
    let today_lock = lock(today);
    assert_ne!(today_lock, first_lock);
    let werkzeug = version_of(&today_lock, "werkzeug").expect("werkzeug");
    assert!(werkzeug.starts_with('3'), "{today_lock:?}");
    // The service deployed as of its commit still answers.
    let (code, body) = http(&home.gateway(), "GET", &path, None).unwrap();
    assert_eq!((code, body.trim()), (200, "flask 2.1.2 werkzeug 2.1.2"));
}

/// The seed tutorial's repository as its `master` stood in May 2022: its
/// `bodywork.yaml` (tests/projects/bodywork-serve-model-project: Bodywork
/// 3's schema, the `scoring_service` stage, its requirements pinned as the
/// seed's were: Flask 2.1.2 with no Werkzeug pin, numpy 1.22.3, which has
/// no wheel for Python 3.11 or later), the tutorial's `service.py` written
/// for Flask 2.1 and a model pickled by scikit-learn 1.0.2, committed on
/// 2022-05-20. A clone of it deploys with the tutorial's commands as
/// written, unmodified, and answers the tutorial's curl with its JSON.
#[test]
fn a_clone_of_the_seed_repository_of_may_2022_deploys_unmodified_and_answers_the_tutorials_curl() {
    let project = seed_repository();
    git(project.path(), &["init", "-q", "-b", "master"]);
    commit_dated(project.path(), MAY_2022);
    let url = format!("file://{}", project.path().display());

    // $ bodywork setup-namespace scoring-service
    // $ bodywork workflow --namespace=scoring-service URL master
    let home = TestHome::new();
    home.ok(&["setup-namespace", "scoring-service"]);
    let run = home.ok(&["workflow", "--namespace=scoring-service", &url, "master"]);
    run.expect_output(&format!("resolves its requirements as of {MAY_2022}"));
    let listed = envs(&home);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let locked = lock(&listed[0]);
    for (package, version) in [
        ("flask", "2.1.2"),
        ("werkzeug", "2.1.2"),
        ("numpy", "1.22.3"),
        ("scikit-learn", "1.0.2"),
    ] {
        assert_eq!(
            version_of(&locked, package),
            Some(version),
            "{locked:?}\n{run}"
        );
    }

    // $ curl http://localhost:8001/api/v1/namespaces/scoring-service/services/
    //   bodywork-serve-model-project--scoring-service/proxy/iris/v1/score ...
    let (path, payload) = tutorial_curl("scoring-service");
    let (code, body) = http(&home.gateway(), "POST", &path, Some(payload)).expect("an answer");
    assert_tutorials_answer(code, &body, &run);
    // Bodywork 3's name for it, the stage's, serves as well.
    let path = path.replace(
        "bodywork-serve-model-project--scoring-service",
        "scoring-service",
    );
    let (code, body) = http(&home.gateway(), "POST", &path, Some(payload)).expect("an answer");
    assert_tutorials_answer(code, &body, &run);
    home.ok(&["delete-namespace", "scoring-service"]);
}

/// What the stdlib-only fixture's lock says of pip: 22.x as of May 2022.
fn pip_of(run: &helper::Run) -> String {
    let line = run
        .stdout
        .lines()
        .find(|l| l.contains("environment lock for stage=check: "))
        .unwrap_or_else(|| panic!("no lock line:\n{run}"));
    line.split_whitespace()
        .find_map(|p| p.strip_prefix("pip=="))
        .unwrap_or_else(|| panic!("no pip in {line}"))
        .to_string()
}

#[test]
fn the_date_can_be_overridden_and_uncommitted_changes_resolve_as_of_now() {
    let home = TestHome::new();
    let ns = "as-of";
    let project_yaml = yaml(
        "as-of",
        "check",
        "",
        &[batch_stage("check", "check/main.py", 60, 0, "")],
    );
    let (project, url, commit) = repo(
        &[
            ("bodywork.yaml", &project_yaml),
            ("check/main.py", "print('checked')\n"),
        ],
        MAY_2022,
    );
    home.ok(&["setup-namespace", ns]);
    let dated = home.ok(&["workflow", "--namespace", ns, &url, "master"]);
    dated.expect_output(&format!(
        "resolving requirements as of {MAY_2022} (the committer date of commit {})",
        &commit[..7]
    ));
    assert!(pip_of(&dated).starts_with("22."), "{dated}");

    let now = home.ok(&[
        "workflow",
        "--namespace",
        ns,
        &url,
        "master",
        "--resolve-as-of",
        "now",
    ]);
    now.expect_output("stage=check resolves its requirements as of now (--resolve-as-of)");
    assert!(!pip_of(&now).starts_with("22."), "{now}");

    let by_env = TestHome::cmd(&home, &["workflow", "--namespace", ns, &url, "master"])
        .env("BODYWORK_RESOLVE_AS_OF", "2023-01-01")
        .output()
        .expect("bodywork runs");
    let out = String::from_utf8_lossy(&by_env.stdout);
    assert!(by_env.status.success(), "{out}");
    assert!(
        out.contains("as of 2023-01-01T23:59:59Z (--resolve-as-of)"),
        "{out}"
    );
    let bad = home.run(&[
        "workflow",
        "--namespace",
        ns,
        &url,
        "--resolve-as-of",
        "soon",
    ]);
    bad.expect_code(2).expect_output("RFC 3339");

    // A cron job keeps its date for each of its runs.
    home.ok(&[
        "cronjob",
        "create",
        "--ns",
        ns,
        "--name",
        "nightly",
        "--schedule",
        "0 0 1 1 *",
        "--git-repo-url",
        &url,
        "--git-repo-branch",
        "master",
        "--resolve-as-of",
        "2021-06-01",
    ]);
    let job = helper::trigger_and_wait(&home, ns, "nightly");
    let log = home
        .ok(&["cronjob", "logs", "--ns", ns, "--name", &job])
        .stdout;
    assert!(
        log.contains("as of 2021-06-01T23:59:59Z (--resolve-as-of)"),
        "{log}"
    );

    // A local work tree with uncommitted changes: as of now.
    std::fs::write(project.path().join("check/main.py"), "print('edited')\n").unwrap();
    let dirty = home.ok(&["workflow", "--namespace", ns, project.arg()]);
    dirty.expect_output(
        "stage=check resolves its requirements as of now (the project has uncommitted changes)",
    );
    // Committed, the same directory resolves as of its commit again.
    commit_dated(project.path(), "2022-06-01T00:00:00Z");
    let clean = home.ok(&["workflow", "--namespace", ns, project.arg()]);
    clean.expect_output("stage=check resolves its requirements as of 2022-06-01T00:00:00Z");
}

/// The seed's pins (numpy 1.22.3 has no wheels for
/// Python 3.11 and later) get a Python that installs them from wheels,
/// chosen among the machine's own, and the stage scores with a model
/// pickled by scikit-learn 1.0.2. `--python` asks for a version instead.
#[test]
fn pins_without_wheels_for_the_default_python_get_one_that_has_them() {
    // The model, made as the seed's was: with scikit-learn 1.0.2.
    let project = seed_pins_project("");
    let home = TestHome::new();
    let ns = "seed-pins";
    git(project.path(), &["init", "-q", "-b", "master"]);
    let commit = commit_dated(project.path(), MAY_2022);
    let url = format!("file://{}", project.path().display());
    home.ok(&["setup-namespace", ns]);
    let deployed = home.ok(&["workflow", "--namespace", ns, &url, "master"]);
    deployed.expect_output(SCORED);
    let chosen = deployed
        .stdout
        .lines()
        .find(|l| l.contains("stage score: ") && l.contains(" has no wheel for Python "))
        .unwrap_or_else(|| panic!("no line says which Python was chosen:\n{deployed}"));
    assert!(chosen.contains("numpy==1.22.3"), "{chosen}");
    assert!(chosen.contains("; using Python 3.10."), "{chosen}");
    let listed = envs(&home);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert!(
        listed[0]["python_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.10.")),
        "{listed:?}"
    );
    // Again: the same environment, no choosing.
    let again = home.ok(&["workflow", "--namespace", ns, &url, "master"]);
    again.expect_output("(reused ");
    assert!(!again.stdout.contains("has no wheel"), "{again}");

    // Asked for explicitly: that version, found among the machine's.
    let asked = home.ok(&[
        "stage", &url, "master", "score", "--commit", &commit, "--python", "3.10",
    ]);
    asked.expect_output("scored setosa");
    assert!(!asked.all().contains("has no wheel"), "{asked}");
    let missing = home.run(&[
        "stage", &url, "master", "score", "--commit", &commit, "--python", "3.99",
    ]);
    assert_ne!(missing.code, Some(0), "{missing}");
    missing.expect_output("no Python 3.99 was found on this machine (interpreters found: ");
    missing.expect_output("3.10.");
}

/// Prints the Python a stage runs under.
const WHICH_PYTHON: &str = "import platform\nprint('python', platform.python_version())\n";

/// A cron job keeps its `--python` for every run, as it keeps its
/// `--resolve-as-of`; Bodywork 3's `update cronjob` keeps it when not
/// given again, and changes it when given.
#[test]
fn a_cron_job_keeps_its_python_for_every_run() {
    let home = TestHome::new();
    let ns = "cron-python";
    let project_yaml = yaml(
        ns,
        "which",
        "",
        &[batch_stage("which", "which/main.py", 120, 0, "")],
    );
    let (_project, url, _) = repo(
        &[
            ("bodywork.yaml", &project_yaml),
            ("which/main.py", WHICH_PYTHON),
        ],
        MAY_2022,
    );
    let python_of = |job: &str| -> String {
        let log = home
            .ok(&["cronjob", "logs", "--ns", ns, "--name", job])
            .stdout;
        log.lines()
            .find_map(|l| l.trim().strip_prefix("python "))
            .unwrap_or_else(|| panic!("no Python in the run's log:\n{log}"))
            .to_string()
    };
    let kept = || -> serde_json::Value {
        let listed = home.ok(&["get", "cronjobs", "-o", "json"]);
        let jobs: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
        jobs[0]["python"].clone()
    };
    let schedule = |verb: &str, more: &[&str]| {
        let mut args = vec![
            verb,
            "cronjob",
            url.as_str(),
            "--name=nightly",
            "--schedule=0 0 1 1 *",
            "--branch=master",
        ];
        args.extend(more);
        home.ok(&args);
    };

    // Each run, by `cronjob trigger`: the Python its stage ran under.
    let run = || python_of(&helper::trigger_and_wait(&home, ns, "nightly"));
    schedule("create", &["--python", "3.10"]);
    assert_eq!(kept(), "3.10");
    let first = run();
    assert!(first.starts_with("3.10."), "{first}");

    // Not given again: kept.
    schedule("update", &[]);
    assert_eq!(kept(), "3.10");
    assert_eq!(run(), first);

    // Given: changed, for the runs after.
    schedule("update", &["--python", "3.9"]);
    assert_eq!(kept(), "3.9");
    let third = run();
    assert!(third.starts_with("3.9."), "{third}");
}

/// A uv that downloads nothing: it records each call, with
/// `UV_PYTHON_DOWNLOADS` and `UV_PYTHON_INSTALL_DIR`, in `calls` beside
/// it; numpy==1.22.3 resolves from wheels only for Python 3.99 (which no
/// machine has), which is what it lists as a download; `python install`
/// fails (nothing is downloaded), and so does everything else.
const RECORDING_UV: &str = r#"#!/bin/sh
echo "UV_PYTHON_DOWNLOADS=$UV_PYTHON_DOWNLOADS UV_PYTHON_INSTALL_DIR=$UV_PYTHON_INSTALL_DIR $*" >> "$(dirname "$0")/calls"
case "$1 $2" in
"pip compile")
  case " $* " in *" --python-version 3.99 "*) echo "numpy==1.22.3"; exit 0 ;; esac
  echo "  cause: Because numpy==1.22.3 has no usable wheels and you require numpy==1.22.3, we can conclude that your requirements are unsatisfiable." >&2
  exit 1 ;;
"python list")
  echo '[{"version":"3.99.1","implementation":"cpython","variant":"default"}]'
  exit 0 ;;
esac
echo "error: not in this test: $*" >&2
exit 2
"#;

/// When no Python on the machine installs the pins from
/// wheels, uv is asked to download the newest that does, into the home's
/// tools directory, and only then; `--no-python-downloads` (on `workflow`,
/// `stage`, ...) and `BODYWORK_PYTHON_DOWNLOADS=never` keep it from it,
/// through the daemon and a direct stage alike. Every other uv command runs
/// with `UV_PYTHON_DOWNLOADS=never`. A recording `uv` stands in: nothing is
/// downloaded.
#[test]
fn uv_downloads_a_python_only_when_none_fits_and_the_flag_allows() {
    use std::os::unix::fs::PermissionsExt;
    let fake = tempfile::tempdir().unwrap();
    let uv = fake.path().join("uv");
    std::fs::write(&uv, RECORDING_UV).unwrap();
    std::fs::set_permissions(&uv, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(fake.path().to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .unwrap();
    let project_yaml = yaml(
        "downloads",
        "score",
        "",
        &[batch_stage(
            "score",
            "score/score.py",
            60,
            0,
            "    requirements: [numpy==1.22.3]\n",
        )],
    );
    // (Never run: the fake uv builds nothing.)
    let score = "import numpy\n";
    let (_project, url, _) = repo(
        &[("bodywork.yaml", &project_yaml), ("score/score.py", score)],
        MAY_2022,
    );
    let calls = || -> Vec<String> {
        let text = std::fs::read_to_string(fake.path().join("calls")).unwrap_or_default();
        std::fs::remove_file(fake.path().join("calls")).ok();
        text.lines().map(str::to_owned).collect()
    };
    let downloads = |calls: &[String]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.contains(" python install "))
            .cloned()
            .collect()
    };

    // A home with the fake uv first on PATH, downloads as `downloads`
    // says, that ran the workflow once (which the fake uv fails).
    let deployed = |downloads: &str| {
        let home = TestHome::new()
            .with_env("PATH", path.to_str().unwrap())
            .with_env("BODYWORK_PYTHON_DOWNLOADS", downloads);
        home.ok(&["setup-namespace", "downloads"]);
        let run = home.run(&["workflow", "--namespace", "downloads", &url, "master"]);
        (home, run)
    };

    // Allowed: the workflow's daemon asks uv for 3.99, into the tools dir.
    let (home, run) = deployed("automatic");
    assert_ne!(run.code, Some(0), "the fake uv builds nothing: {run}");
    let made = calls();
    let tools = home.root().join("tools/python");
    assert_eq!(
        downloads(&made),
        [format!(
            "UV_PYTHON_DOWNLOADS= UV_PYTHON_INSTALL_DIR={} python install --no-bin 3.99",
            tools.display()
        )],
        "{made:#?}"
    );
    let others: Vec<_> = made
        .iter()
        .filter(|c| !c.contains(" python install "))
        .collect();
    assert!(others.len() > 2, "{made:#?}");
    for call in others {
        assert!(call.starts_with("UV_PYTHON_DOWNLOADS=never "), "{call}");
    }
    run.expect_output("uv could not download Python 3.99");

    // Off: neither listed nor downloaded, and the log says why.
    let off = home.run(&["stage", &url, "master", "score", "--no-python-downloads"]);
    assert_ne!(off.code, Some(0), "{off}");
    let made = calls();
    assert!(downloads(&made).is_empty(), "{made:#?}");
    assert!(
        !made.iter().any(|c| c.contains(" python list")),
        "{made:#?}"
    );
    assert!(
        off.all().contains(
            "and uv's download of a Python is off (--no-python-downloads, \
             BODYWORK_PYTHON_DOWNLOADS=never); building from source"
        ),
        "{off}"
    );
    // The variable alone, through the daemon.
    let (_never, run) = deployed("never");
    assert_ne!(run.code, Some(0), "{run}");
    assert!(downloads(&calls()).is_empty());
    run.expect_output("uv's download of a Python is off");
}
