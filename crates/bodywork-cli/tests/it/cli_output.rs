//! Snapshot tests of the CLI's own output: help, version, completions and
//! `validate` over the examples and the shared corpus. Paths are filtered
//! so the snapshots hold on any machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helper;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Run `bodywork ARGS` from the workspace root; returns (exit code, stdout, stderr).
fn bodywork(args: &[&str]) -> (i32, String, String) {
    run(env!("CARGO_BIN_EXE_bodywork"), args)
}

/// Runs `exe` as [`bodywork`] runs bodywork.
fn run(exe: &str, args: &[&str]) -> (i32, String, String) {
    run_with(exe, args, &[])
}

/// Runs `exe` as [`bodywork`] runs bodywork, with `env` set too.
fn run_with(exe: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(exe)
        .args(args)
        .current_dir(workspace())
        .env("BODYWORK_HOME", home.path())
        .env("NO_COLOR", "1")
        .env_remove("BODYWORK_RUNTIME")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn transcript(args: &[&str]) -> String {
    transcript_with(args, &[])
}

/// [`transcript`] with `env` set too.
fn transcript_with(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, stdout, stderr) = run_with(env!("CARGO_BIN_EXE_bodywork"), args, env);
    shown(args, code, &stdout, &stderr)
}

fn shown(args: &[&str], code: i32, stdout: &str, stderr: &str) -> String {
    format!(
        "$ bodywork {}\nexit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}",
        args.join(" ")
    )
}

#[test]
fn version_names_the_binary_and_version() {
    let (code, stdout, _) = bodywork(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(stdout, format!("bodywork {}\n", env!("CARGO_PKG_VERSION")));
}

/// `bw` runs the `bodywork` beside it: same output, same exit status, for
/// good commands and a bad one; alone, it says what it could not run.
#[test]
fn bw_is_the_same_program() {
    let bw = env!("CARGO_BIN_EXE_bw");
    // (Usage lines name the program as it was called, as before. Nothing
    // here starts a daemon: the home is a throwaway directory.)
    for args in [
        &["--version"][..],
        &["no-such-command"],
        &["validate", "examples/serve-model"],
    ] {
        let (code, stdout, stderr) = bodywork(args);
        let stderr = stderr.replace("Usage: bodywork ", "Usage: bw ");
        assert_eq!(run(bw, args), (code, stdout, stderr), "bw {args:?}");
    }
    let (code, _, stderr) = run(bw, &["no-such-command"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("Usage: bw [OPTIONS]"), "{stderr}");

    let alone = tempfile::tempdir().unwrap();
    let copy = alone.path().join("bw");
    std::fs::copy(bw, &copy).unwrap();
    let (code, stdout, stderr) = run(copy.to_str().unwrap(), &["--version"]);
    assert_eq!(code, 127);
    assert_eq!(stdout, "");
    let expected = format!(
        "bw: cannot run {}: ",
        alone.path().join("bodywork").display()
    );
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(
        stderr.contains("(bw runs the bodywork installed beside it)"),
        "{stderr}"
    );
}

#[test]
fn help_snapshot() {
    insta::assert_snapshot!("help", transcript(&["--help"]));
    insta::assert_snapshot!("workflow_help", transcript(&["workflow", "--help"]));
}

#[test]
fn bodywork3_help_snapshots() {
    for args in [
        &["create", "--help"][..],
        &["get", "--help"],
        &["update", "--help"],
        &["delete", "--help"],
        &["create", "deployment", "--help"],
        &["create", "secret", "--help"],
        &["get", "deployments", "--help"],
        &["get", "secrets", "--help"],
        &["delete", "secret", "--help"],
        &["create", "cronjob", "--help"],
        &["get", "cronjobs", "--help"],
        &["delete", "deployment", "--help"],
        &["deployment", "--help"],
    ] {
        insta::assert_snapshot!(
            format!("bodywork3_{}", args[..args.len() - 1].join("_")),
            transcript(args)
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    let (code, _, stderr) = bodywork(&["workflow"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("REPO"), "{stderr}");
    let (code, _, _) = bodywork(&["no-such-command"]);
    assert_eq!(code, 2);
}

#[test]
fn completions_are_generated() {
    let (code, stdout, _) = bodywork(&["completions", "bash"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("_bodywork()"),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
    assert!(stdout.contains("setup-namespace"));
}

#[test]
fn validate_examples() {
    for example in ["serve-model", "train-and-serve", "pipeline"] {
        let dir = format!("examples/{example}");
        let (code, stdout, stderr) = bodywork(&["validate", "--check-files", &dir]);
        assert_eq!(code, 0, "{example}: {stdout}{stderr}");
        insta::assert_snapshot!(format!("validate_example_{example}"), stdout);
    }
}

#[test]
fn validate_reports_every_problem_of_bad_projects() {
    let corpus = workspace().join("tests/corpus/bad");
    let mut cases: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    cases.sort();
    assert!(cases.len() >= 30, "corpus has {} bad cases", cases.len());
    let mut all = String::new();
    for case in cases {
        let dir = format!("tests/corpus/bad/{}", case.to_string_lossy());
        let (code, stdout, stderr) = bodywork(&["validate", "--check-files", &dir]);
        assert_eq!(code, 1, "{dir} must be invalid:\n{stdout}");
        assert!(stderr.is_empty(), "{dir}: nothing on stderr, got {stderr}");
        // The CLI prints exactly the corpus's expected lines, then a summary.
        let expected =
            std::fs::read_to_string(workspace().join(&dir).join("expected.txt")).unwrap();
        let (problems, summary) = stdout
            .rsplit_once('\n')
            .map(|(a, _)| a.rsplit_once('\n').unwrap_or(("", a)))
            .unwrap();
        let problems = if problems.is_empty() {
            String::new()
        } else {
            format!("{problems}\n")
        };
        assert_eq!(problems, expected, "{dir}");
        assert!(
            summary.starts_with(&format!("{dir}: invalid (")),
            "{dir}: {summary}"
        );
        all.push_str(&format!(
            "$ bodywork validate --check-files {dir}\n{stdout}\n"
        ));
    }
    insta::assert_snapshot!("validate_bad_corpus", all);
}

#[test]
fn validate_json() {
    insta::assert_snapshot!(
        "validate_json_bad",
        transcript(&[
            "validate",
            "-o",
            "json",
            "tests/corpus/bad/classic-wrong-types"
        ])
    );
    let (code, stdout, _) = bodywork(&["validate", "-o", "json", "examples/serve-model"]);
    assert_eq!(code, 0);
    insta::assert_snapshot!("validate_json_serve_model", stdout);
}

#[test]
fn validate_missing_directory_is_one_clear_line() {
    insta::assert_snapshot!(
        "validate_missing_dir",
        transcript(&["validate", "no/such/dir"])
    );
}

/// `--watch` with what it cannot watch, refused before anything runs.
#[test]
fn watch_usage_errors_snapshot() {
    let url = "https://github.com/bodywork-ml/bodywork-serve-model-project";
    let cases: [(&str, &[&str]); 5] = [
        ("git_url", &["workflow", "--watch", url, "master"]),
        (
            "on_kubernetes",
            &[
                "--runtime",
                "kubernetes",
                "workflow",
                "--watch",
                "examples/serve-model",
            ],
        ),
        (
            "dry_run",
            &["workflow", "--watch", "--dry-run", "examples/serve-model"],
        ),
        (
            "bodywork3_git_url",
            &["create", "deployment", url, "--watch"],
        ),
        (
            "bodywork3_async",
            &[
                "create",
                "deployment",
                "examples/serve-model",
                "--watch",
                "--async",
            ],
        ),
    ];
    for (name, args) in cases {
        insta::assert_snapshot!(format!("error_watch_{name}"), transcript(args));
    }
}

/// A snapshot's name, the arguments, and the environment to add.
type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);

/// The failures a user meets most that need neither a daemon nor a
/// cluster, as they read them: `error: MESSAGE`, then a `Caused by:` line
/// per cause, then a `hint:` line per hint, once.
#[test]
fn common_errors_are_rendered_once_with_causes_and_hints() {
    let scratch = tempfile::tempdir().unwrap();
    // A cluster no one answers for: a closed port of this machine.
    let kubeconfig = scratch.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: nowhere\n  cluster:\n    \
         server: https://127.0.0.1:9\ncontexts:\n- name: nowhere\n  context:\n    \
         cluster: nowhere\n    user: nobody\ncurrent-context: nowhere\nusers:\n- name: nobody\n  \
         user:\n    token: x\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    let cases: [Case; 6] = [
        (
            "daemon_cannot_start",
            &["secret", "display", "--namespace", "ns"],
            &[("BODYWORK_HOME", "/dev/null/home")],
        ),
        (
            "cluster_unreachable",
            &[
                "--runtime",
                "kubernetes",
                "secret",
                "display",
                "--namespace",
                "ns",
            ],
            &[("KUBECONFIG", kubeconfig)],
        ),
        (
            "local_command_on_kubernetes",
            &["--runtime", "kubernetes", "env", "list"],
            &[],
        ),
        (
            "invalid_project",
            &[
                "--runtime",
                "kubernetes",
                "workflow",
                "--dry-run",
                "tests/corpus/bad/classic-bad-port",
            ],
            &[],
        ),
        (
            "git_clone_failed",
            &[
                "--runtime",
                "kubernetes",
                "workflow",
                "--dry-run",
                "file:///nonexistent/repo.git",
            ],
            &[],
        ),
        (
            "invalid_name",
            &[
                "secret",
                "create",
                "--namespace",
                "Bad_NS",
                "--name",
                "x",
                "--data",
                "A=b",
            ],
            &[],
        ),
    ];
    for (name, args, env) in cases {
        insta::assert_snapshot!(format!("error_{name}"), transcript_with(args, env));
    }
}

/// The failures a user meets most from the local daemon, as they read
/// them (the same words come from a cluster).
#[test]
fn runtime_errors_are_rendered_once_with_their_hints() {
    let home = helper::TestHome::new();
    home.ok(&["setup-namespace", "ns"]);
    home.ok(&["create", "secret", "creds", "--group", "g", "--data", "K=V"]);
    let cases: [(&str, &[&str]); 5] = [
        ("namespace_not_found", &["delete-namespace", "nope"]),
        (
            "secret_not_found",
            &["secret", "delete", "--namespace", "ns", "--name", "nope"],
        ),
        ("deployment_not_found", &["delete", "deployment", "nope"]),
        (
            "cronjob_not_found",
            &["cronjob", "trigger", "--namespace", "ns", "--name", "nope"],
        ),
        (
            "conflict",
            &["create", "secret", "creds", "--group", "g", "--data", "K=V"],
        ),
    ];
    for (name, args) in cases {
        let run = home.run(args);
        let code = run.code.unwrap_or(-1);
        insta::assert_snapshot!(
            format!("error_{name}"),
            shown(args, code, &run.stdout, &run.stderr)
        );
    }
}

/// A stage that fails: the run's log says why at its end (the log is what
/// `bodywork workflow` prints), and the command exits 1 with nothing more
/// to say on stderr.
#[test]
fn a_failed_stage_is_said_at_the_end_of_the_run_log() {
    let home = helper::TestHome::new();
    let project = helper::TestProject::new(&[
        (
            "bodywork.yaml",
            &helper::yaml(
                "fails",
                "boom",
                "",
                &[helper::batch_stage("boom", "boom.py", 30, 0, "")],
            ),
        ),
        ("boom.py", "import sys\nprint('exploding')\nsys.exit(3)\n"),
    ]);
    let run = home.run(&["workflow", "--namespace", "fails", project.arg()]);
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("failed"))
        .collect();
    let shown = format!(
        "exit: {}\n--- stdout (its errors)\n{}\n--- stderr\n{}",
        run.code.unwrap_or(-1),
        errors.join("\n"),
        run.stderr
    );
    insta::with_settings!({filters => vec![(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3}", "TIME")]}, {
        insta::assert_snapshot!("error_stage_failed", shown);
    });
}
