//! Hostile project configs against the real daemon: a
//! `bodywork.yaml` nested 100,000 deep or a `config.ini` with 100,000
//! sections is refused with one line naming the limit, found before the
//! file is parsed, while the daemon keeps answering other requests.
//!
//! Must not: assert timings (`bench/hostile_config.py` measures them); the
//! waits below are generous limits only.

use std::thread;
use std::time::Duration;

use crate::helper::{TestHome, TestProject, batch_stage, wait_for, yaml};

const LIMIT: Duration = Duration::from_secs(120);
const DEEP: usize = 100_000;

/// A valid project whose `bodywork.yaml` has `extra` nested `DEEP` deep.
fn deep_yaml_project() -> TestProject {
    let mut text = yaml("hostile", "a", "", &[batch_stage("a", "a.py", 30, 0, "")]);
    text.push_str("extra: ");
    text.push_str(&"[".repeat(DEEP));
    text.push_str(&"]".repeat(DEEP));
    text.push('\n');
    TestProject::new(&[("bodywork.yaml", &text), ("a.py", "print('stage-a-ran')\n")])
}

#[test]
fn deep_yaml_is_one_line_error_while_the_daemon_keeps_answering() {
    let home = TestHome::new();
    home.namespace("hostile");
    let projects = [deep_yaml_project(), deep_yaml_project()];
    let line = projects[0].path().join("bodywork.yaml");
    let line = std::fs::read_to_string(line).unwrap().lines().count();
    let runs: Vec<_> = projects
        .iter()
        .map(|p| home.spawn(&["workflow", "--namespace", "hostile", p.arg()]))
        .collect();
    // `runs` answers all along, and sees both runs fail.
    wait_for("both hostile runs to fail", LIMIT, || {
        let listed = home.runs_json("hostile");
        thread::sleep(Duration::from_millis(50));
        listed.len() == 2 && listed.iter().all(|r| r["status"] == "failed")
    });
    let column = "extra: ".len() + 64;
    let expected = format!(
        "ERROR - workflow - workflow failed: the project is not valid:\n  bodywork.yaml:{line}: invalid YAML: nesting deeper than 64 levels (column {column})"
    );
    for run in runs {
        let run = run.finish(LIMIT);
        run.expect_code(1).expect_output(&expected);
        assert!(!run.all().contains("stage-a-ran"), "{run}");
        assert!(!run.all().contains("recursion limit"), "{run}");
    }
    home.ok(&["runs", "--namespace", "hostile"]);
}

#[test]
fn a_config_ini_with_many_sections_is_one_line_error() {
    let home = TestHome::new();
    let mut config = String::from("[default]\nSTAGE_TYPE=batch\nEXECUTABLE_SCRIPT=a.py\n");
    config.extend((0..DEEP).map(|i| format!("[x{i}]\n")));
    let project = TestProject::new(&[
        (
            "bodywork.ini",
            "[default]\nPROJECT_NAME=hostile\nDOCKER_IMAGE=img\n[workflow]\nDAG=a\n",
        ),
        ("a/config.ini", &config),
        ("a/a.py", "print('stage-a-ran')\n"),
        ("a/requirements.txt", ""),
    ]);
    let run = home
        .spawn(&["workflow", "--namespace", "hostile", project.arg()])
        .finish(LIMIT);
    run.expect_code(1).expect_output(
        "the project is not valid:\n  a/config.ini:67: invalid INI: more than 64 sections",
    );
    assert!(!run.all().contains("stage-a-ran"), "{run}");
}
