//! Walks the shared corpus at `<repo>/tests/corpus/{good,bad}/<case>/` and
//! checks that loading each case (with `check_files: true`) reports exactly
//! the lines in its `expected.txt` (`error: ...` / `warning: ...`).
//! Good cases must load; bad cases must not.
//! Run with `BLESS=1` to rewrite the expected files after reviewing a change.

use std::fs;
use std::path::{Path, PathBuf};

use bodywork_config::{LoadOptions, Problem, load_project};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let tag = if p.is_error() { "error" } else { "warning" };
            format!("{tag}: {p}\n")
        })
        .collect()
}

fn cases(kind: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(corpus().join(kind))
        .unwrap_or_else(|e| panic!("corpus/{kind}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// A readable line diff: `-` expected, `+` got.
fn diff(expected: &str, got: &str) -> String {
    let e: Vec<&str> = expected.lines().collect();
    let g: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for line in &e {
        if !g.contains(line) {
            out.push_str(&format!("  - {line}\n"));
        }
    }
    for line in &g {
        if !e.contains(line) {
            out.push_str(&format!("  + {line}\n"));
        }
    }
    if out.is_empty() {
        out.push_str("  (same lines, different order)\n");
        for line in &g {
            out.push_str(&format!("    {line}\n"));
        }
    }
    out
}

fn run(kind: &str, must_load: bool) -> usize {
    let bless = std::env::var_os("BLESS").is_some();
    let opts = LoadOptions {
        file: None,
        check_files: true,
    };
    let mut failures = Vec::new();
    let all = cases(kind);
    for case in &all {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let loaded = load_project(case, &opts);
        let got = render(&loaded.problems);
        let expected_path = case.join("expected.txt");
        if bless {
            fs::write(&expected_path, &got).unwrap();
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{kind}/{name}: problems differ\n{}",
                diff(&expected, &got)
            ));
        }
        if loaded.project.is_some() != must_load {
            failures.push(format!(
                "{kind}/{name}: project {} (expected it {})",
                if loaded.project.is_some() {
                    "loaded"
                } else {
                    "did not load"
                },
                if must_load { "to load" } else { "not to load" }
            ));
        }
        if loaded.project.is_some() == loaded.problems.iter().any(Problem::is_error) {
            failures.push(format!(
                "{kind}/{name}: project must be Some exactly when there is no error"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    all.len()
}

#[test]
fn good_cases_load_with_exactly_their_warnings() {
    assert!(run("good", true) >= 2);
}

#[test]
fn bad_cases_report_exactly_their_problems() {
    assert!(run("bad", false) >= 30);
}
