//! The Bodywork 3 dialect on the local runtime: the commands of
//! public bodywork-ml project READMEs, typed as they are, against local
//! projects shaped like those projects.

use crate::helper::{
    self, SERVE_PY, TestHome, TestProject, args_line, batch_stage, git, shown_time, yaml,
};

/// Writes the values of the environment variables it is given to a file.
const ENV_SCRIPT: &str = r#"
import os, sys
path = sys.argv[1]
with open(path, "w") as f:
    for name in sys.argv[2:]:
        f.write(f"{name}={os.environ.get(name, '<unset>')}\n")
print("wrote", path)
"#;

/// A project shaped like bodywork-ml/bodywork-test-project: its pipeline
/// names the secrets group `testsecrets`, its stage maps two keys of the
/// secret `test-credentials` to environment variables.
fn test_project() -> TestProject {
    let project = TestProject::new(&[("env.py", ENV_SCRIPT)]);
    let out = project.scratch("env.txt");
    let config = yaml(
        "bodywork-test-project",
        "stage_1",
        "  secrets_group: testsecrets\n",
        &[batch_stage(
            "stage_1",
            "env.py",
            60,
            0,
            &format!(
                "{}    secrets:\n      USERNAME: test-credentials\n      PASSWORD: test-credentials\n",
                args_line(&[out.to_str().expect("UTF-8 path"), "USERNAME", "PASSWORD"])
            ),
        )],
    );
    std::fs::write(project.path().join("bodywork.yaml"), config).expect("bodywork.yaml");
    project
}

#[test]
fn a_project_with_a_secrets_group_sees_its_groups_values_and_not_anothers() {
    let home = TestHome::new();
    let project = test_project();
    // As the README of bodywork-ml/bodywork-test-project has it, and one
    // more group holding a secret of the same name.
    home.ok(&[
        "create",
        "secret",
        "test-credentials",
        "--group",
        "testsecrets",
        "--data",
        "USERNAME=alice",
        "PASSWORD=alice123",
    ])
    .expect_output("Created secret=test-credentials in group=testsecrets.");
    home.ok(&[
        "create",
        "secret",
        "test-credentials",
        "--group",
        "prod",
        "--data",
        "USERNAME=bob",
        "PASSWORD=bob456",
    ]);

    let run = home.ok(&["create", "deployment", project.arg()]);
    let seen = std::fs::read_to_string(project.scratch("env.txt")).expect("the stage ran");
    assert_eq!(seen, "USERNAME=alice\nPASSWORD=alice123\n");
    // Bodywork 3's words: before the run, for the secrets copied, and last.
    run.expect_output("Using local workflow controller - retries inactive.")
        .expect_output(
            "INFO - workflow - Replicating k8s secrets from group = testsecrets into \
             namespace = bodywork-test-project",
        );
    assert!(
        run.stdout
            .trim_end()
            .ends_with("INFO - workflow - Deployment successful"),
        "{run}"
    );

    // `--group` names another group: its values instead.
    home.ok(&["create", "deployment", project.arg(), "--group", "prod"]);
    let seen = std::fs::read_to_string(project.scratch("env.txt")).expect("the stage ran");
    assert_eq!(seen, "USERNAME=bob\nPASSWORD=bob456\n");

    // `update secret` replaces the group's values; the next deployment sees them.
    home.ok(&[
        "update",
        "secret",
        "test-credentials",
        "--group",
        "testsecrets",
        "--data",
        "USERNAME=carol",
        "PASSWORD=carol789",
    ])
    .expect_output("Updated secret=test-credentials in group=testsecrets.");
    home.ok(&["update", "deployment", project.arg()]);
    let seen = std::fs::read_to_string(project.scratch("env.txt")).expect("the stage ran");
    assert_eq!(seen, "USERNAME=carol\nPASSWORD=carol789\n");
}

#[test]
fn secret_groups_are_listed_masked_and_deleted_by_name_or_whole() {
    let home = TestHome::new();
    for (group, name, data) in [
        ("dev", "plotly-dash-credentials", "USERNAME=dev-user"),
        ("dev", "db", "URL=postgres://dev"),
        ("prod", "db", "URL=postgres://prod"),
    ] {
        home.ok(&["create", "secret", name, "--group", group, "--data", data]);
    }
    // Created twice is refused; Bodywork 3 says to update it.
    home.run(&[
        "create", "secret", "db", "--group", "dev", "--data", "URL=x",
    ])
    .expect_code(1)
    .expect_output("already exists in group dev");

    let all = home.ok(&["get", "secrets"]);
    assert!(!all.stdout.contains("postgres://"), "values shown:\n{all}");
    assert!(all.stdout.contains("plotly-dash-credentials"), "{all}");
    // The table, its creation times (known from the JSON) written as such.
    let json = home.ok(&["get", "secrets", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
    let mut table = all.stdout.clone();
    for s in doc.as_array().expect("a list") {
        table = table.replace(&shown_time(&s["created"]), "<created>");
    }
    insta::assert_snapshot!("get_secrets_table", table);
    let dev = home.ok(&["get", "secret", "--group", "dev", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&dev.stdout).expect("JSON");
    let names: Vec<&str> = doc
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["db", "plotly-dash-credentials"]);
    assert_eq!(doc[0]["data"]["URL"], "********");
    let shown = home.ok(&["get", "secret", "db", "--group", "prod", "--show-values"]);
    assert!(shown.stdout.contains("postgres://prod"), "{shown}");
    assert!(!shown.stdout.contains("postgres://dev"), "{shown}");
    // A secret named without its group is refused, as Bodywork 3 refuses it.
    home.run(&["get", "secret", "db"])
        .expect_code(2)
        .expect_output("secrets group");
    // One that is not there: said as Bodywork 3 says it, exit 0.
    let missing = home.ok(&["get", "secret", "nope", "--group", "prod"]);
    assert_eq!(missing.stdout, "Cannot find secret=nope.\n", "{missing}");
    let missing = home.ok(&["get", "secret", "nope", "--group", "prod", "-o", "json"]);
    assert_eq!(missing.stdout, "[]\n", "{missing}");
    missing.expect_output("Cannot find secret=nope.");
    home.ok(&[
        "update", "secret", "nope", "--group", "dev", "--data", "A=1",
    ])
    .expect_output("Could not find secret=nope in group=dev.");

    home.ok(&["delete", "secret", "db", "--group", "dev"])
        .expect_output("Deleted secret=db from group=dev.");
    home.ok(&["delete", "secret", "db", "--group", "dev"])
        .expect_output("Could not find secret=db in group=dev.");
    home.ok(&["delete", "secret", "--group", "prod"])
        .expect_output("Deleted secret group=prod.");
    let left = home.ok(&["get", "secrets", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&left.stdout).expect("JSON");
    assert_eq!(doc.as_array().map(Vec::len), Some(1), "{left}");
    home.ok(&["delete", "secret", "--group", "prod"])
        .expect_output("Could not find secret group=prod.");
}

/// A Git repository shaped like bodywork-ml/bodywork-serve-model-project
/// (Bodywork 3's `bodywork.yaml`): one service stage, deployed into the
/// namespace named after the project.
fn serve_model_repo() -> TestProject {
    let config = "version: \"1.1\"\npipeline:\n  name: bodywork-serve-model-project\n  \
                  docker_image: bodyworkml/bodywork-core:latest\n  DAG: scoring-service\nstages:\n  \
                  scoring-service:\n    executable_module_path: serve_model.py\n    service:\n      \
                  max_startup_time_seconds: 30\n      replicas: 1\n      port: 5000\n      ingress: true\n";
    git_repo(&[("bodywork.yaml", config), ("serve_model.py", SERVE_PY)])
}

/// `files` committed on `master` of a new Git repository.
fn git_repo(files: &[(&str, &str)]) -> TestProject {
    let repo = TestProject::new(files);
    git(repo.path(), &["init", "-q", "-b", "master"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-q", "-m", "project"]);
    repo
}

#[test]
fn the_serve_model_readme_commands_deploy_list_and_delete() {
    let home = TestHome::new();
    let repo = serve_model_repo();
    let url = format!("file://{}", repo.path().display());

    // bodywork create deployment https://github.com/bodywork-ml/bodywork-serve-model-project
    let run = home.ok(&["create", "deployment", &url]);
    assert!(
        run.all().contains("namespace=bodywork-serve-model-project"),
        "the project's name is its namespace:\n{run}"
    );

    // bodywork get deployments
    let table = home.ok(&["get", "deployments"]);
    let lines: Vec<&str> = table.stdout.lines().map(str::trim_start).collect();
    let header: Vec<&str> = lines[0].split_whitespace().take(3).collect();
    assert_eq!(
        header,
        ["DEPLOYMENT/SERVICE", "GIT_REPOSITORY_URL", "NAMESPACE"],
        "{table}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("bodywork-serve-model-project/scoring-service"))
        .unwrap_or_else(|| panic!("no row of the deployment:\n{table}"));
    assert!(row.contains(&url), "{table}");

    let one = home.ok(&[
        "get",
        "deployment",
        "bodywork-serve-model-project",
        "scoring-service",
        "-o",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&one.stdout).expect("JSON");
    assert_eq!(doc.as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(doc[0]["namespace"], "bodywork-serve-model-project");
    assert_eq!(doc[0]["available_replicas"], 1);
    // The table, what differs from run to run written as such, one space
    // between columns (their widths follow those values).
    let commit: String = doc[0]["commit"]
        .as_str()
        .expect("a commit")
        .chars()
        .take(12)
        .collect();
    let masked: Vec<String> = table
        .stdout
        .replace(doc[0]["url"].as_str().expect("a URL"), "<service-url>")
        .replace(&url, "<repo>")
        .replace(&commit, "<commit>")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    insta::assert_snapshot!("get_deployments_table", masked.join("\n"));
    // bodywork get deployment NAME SERVICE: its fields, as Bodywork 3 shows them.
    let fields = home.ok(&[
        "get",
        "deployment",
        "bodywork-serve-model-project",
        "scoring-service",
    ]);
    let masked: Vec<String> = fields
        .stdout
        .replace(doc[0]["url"].as_str().expect("a URL"), "<service-url>")
        .replace(&url, "<repo>")
        .replace(doc[0]["commit"].as_str().expect("a commit"), "<commit>")
        .replace(&shown_time(&doc[0]["deployed"]), "<deployed>")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    insta::assert_snapshot!("get_deployment_service_fields", masked.join("\n"));
    home.run(&["get", "deployment", "bodywork-serve-model-project", "nope"])
        .expect_code(1);

    // Update: the same deployment again.
    home.ok(&["update", "deployment", &url, "--branch", "master"]);

    // bodywork delete deployment bodywork-serve-model-project
    let deleted = home.ok(&["delete", "deployment", "bodywork-serve-model-project"]);
    assert_eq!(
        deleted.stdout,
        "Deleted service=scoring-service.\ndeployment=bodywork-serve-model-project deleted.\n",
        "{deleted}"
    );
    home.ok(&["get", "deployments"])
        .expect_output("No deployments found");
    let again = home.run(&["delete", "deployment", "bodywork-serve-model-project"]);
    again
        .expect_code(1)
        .expect_output("deployment bodywork-serve-model-project does not exist");
    assert!(!again.stderr.contains("namespace"), "{again}");
}

/// A Git repository shaped like bodywork-ml/ml-dashboard's pipeline: one
/// batch stage, in the namespace its `pipeline.namespace` names.
fn dashboard_repo() -> TestProject {
    let config = yaml(
        "ml-dashboard",
        "compute-metrics",
        "  namespace: dashboards\n",
        &[batch_stage("compute-metrics", "metrics.py", 60, 0, "")],
    );
    git_repo(&[
        ("bodywork.yaml", &config),
        ("metrics.py", "print('metrics computed')\n"),
    ])
}

#[test]
fn the_dashboard_readme_cronjob_commands_schedule_list_and_delete() {
    let home = TestHome::new();
    let repo = dashboard_repo();
    let url = format!("file://{}", repo.path().display());

    // bodywork create cronjob URL --name=... --schedule=... (a time that
    // does not come during the test: the run is triggered).
    // With a deploy key, as Bodywork 3 keeps it: the namespace's secret.
    let key = repo.scratch("id_ed25519");
    std::fs::write(
        &key,
        "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n",
    )
    .expect("key");
    home.ok(&[
        "create",
        "cronjob",
        &url,
        "--name=daily-metrics",
        "--schedule=0 0 1 1 *",
        &format!("--ssh={}", key.display()),
    ])
    .expect_output("project=ml-dashboard deploys into namespace=dashboards")
    .expect_output("secret=ssh-github-private-key created in namespace=dashboards")
    .expect_output("Created cronjob=daily-metrics.");
    home.ok(&[
        "secret",
        "display",
        "--ns",
        "dashboards",
        "--name",
        "ssh-github-private-key",
        "--show-values",
    ])
    .expect_output("not-a-real-key");
    let listed = home.ok(&["get", "cronjobs", "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(jobs[0]["name"], "daily-metrics", "{listed}");
    assert_eq!(jobs[0]["namespace"], "dashboards", "{listed}");
    assert_eq!(
        jobs[0]["history_limit"], 1,
        "Bodywork 3's default: {listed}"
    );
    assert_eq!(jobs[0]["retries"], 1, "Bodywork 3's default: {listed}");

    home.ok(&[
        "cronjob",
        "trigger",
        "--ns",
        "dashboards",
        "--name",
        "daily-metrics",
    ]);
    let mut history = serde_json::Value::Null;
    helper::wait_for(
        "the triggered run to succeed",
        std::time::Duration::from_secs(120),
        || {
            let run = home.ok(&["get", "cronjob", "daily-metrics", "--history", "-o", "json"]);
            history = serde_json::from_str(&run.stdout).expect("JSON");
            history[0]["succeeded"] == 1
        },
    );
    let job = history[0]["job_name"]
        .as_str()
        .expect("a job name")
        .to_string();
    // bodywork get cronjob NAME --history and get cronjobs, as tables:
    // what differs from run to run written as such.
    let history_table = home.ok(&["get", "cronjob", "daily-metrics", "--history"]);
    history_table.expect_output(&job);
    insta::assert_snapshot!(
        "get_cronjob_history_table",
        masked_table(&history_table.stdout, &[(&job, "<job>")])
    );
    let cronjobs_table = home.ok(&["get", "cronjobs"]);
    insta::assert_snapshot!(
        "get_cronjobs_table",
        masked_table(&cronjobs_table.stdout, &[(&url, "<repo>")])
    );
    home.ok(&["get", "cronjob", "daily-metrics", "--logs", &job])
        .expect_output("metrics computed");

    // bodywork update cronjob: changed in place, its history kept.
    home.ok(&[
        "update",
        "cronjob",
        &url,
        "--name=daily-metrics",
        "--schedule=30 1 * * *",
    ])
    .expect_output("Updated cronjob=daily-metrics.");
    home.ok(&["get", "cronjob", "daily-metrics"])
        .expect_output("30 1 * * *");
    let kept = home.ok(&["get", "cronjob", "daily-metrics", "--history", "-o", "json"]);
    let kept: serde_json::Value = serde_json::from_str(&kept.stdout).expect("JSON");
    assert_eq!(kept[0]["job_name"], job.as_str(), "history kept: {kept}");
    home.ok(&["get", "cronjob", "daily-metrics", "--logs", &job])
        .expect_output("metrics computed");
    // A branch that cannot be fetched now: Bodywork 3 takes it as it is
    // (its runs fail until it is pushed), so a warning, and the cron job
    // updated where it is.
    let later = home.ok(&[
        "update",
        "cronjob",
        &url,
        "--name=daily-metrics",
        "--schedule=30 1 * * *",
        "--branch=not-pushed-yet",
    ]);
    later
        .expect_output("warning: cannot read the project now")
        .expect_output("Updated cronjob=daily-metrics.");
    let listed = home.ok(&["get", "cronjobs", "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    assert_eq!(jobs[0]["branch"], "not-pushed-yet", "{listed}");
    assert_eq!(jobs[0]["namespace"], "dashboards", "{listed}");
    // Nothing to update: said as Bodywork 3 says it, exit 0, nothing written.
    let missing = home.ok(&[
        "update",
        "cronjob",
        &url,
        "--name=weekly-metrics",
        "--schedule=30 1 * * *",
    ]);
    missing.expect_output("Could not find cronjob=weekly-metrics.");
    assert!(!missing.all().contains("Updated"), "{missing}");

    home.ok(&["delete", "cronjob", "daily-metrics"])
        .expect_output("Deleted cronjob=daily-metrics.");
    home.ok(&["delete", "cronjob", "daily-metrics"])
        .expect_output("Could not find cronjob=daily-metrics.");
    let gone = home.run(&["get", "cronjob", "daily-metrics"]);
    gone.expect_code(1).expect_output(
        "error: cron job daily-metrics does not exist\n  hint: see `bodywork get cronjobs`",
    );
}

#[test]
fn bodywork_stage_takes_bodywork_3s_order_beside_the_seeds() {
    let home = TestHome::new();
    let repo = dashboard_repo();
    let url = format!("file://{}", repo.path().display());
    // What Bodywork 3's Jobs and Deployments run: `stage REPO STAGE --branch B`.
    home.ok(&["stage", &url, "compute-metrics", "--branch", "master"])
        .expect_output("metrics computed");
    // The 0.x order, `stage REPO BRANCH STAGE`.
    home.ok(&["stage", &url, "master", "compute-metrics"])
        .expect_output("metrics computed");
    home.run(&["stage", &url, "compute-metrics", "--branch", "nope"])
        .expect_code(1);
}

#[test]
fn bodywork_image_is_checked_as_bodywork_3_checks_it_and_not_used_locally() {
    let home = TestHome::new();
    let repo = dashboard_repo();
    let url = format!("file://{}", repo.path().display());
    let words = "Invalid Docker image specified: not-an-image - cannot be parsed as \
                 DOCKERHUB_USERNAME/IMAGE_NAME:TAG";
    for verb in ["create", "update"] {
        let refused = home.run(&[verb, "deployment", &url, "--bodywork-image", "not-an-image"]);
        refused.expect_code(1).expect_output(words);
        assert!(!refused.all().contains("metrics computed"), "{refused}");
    }
    home.run(&[
        "create",
        "cronjob",
        &url,
        "--name=nightly",
        "--schedule=0 0 1 1 *",
        "--bodywork-image=not-an-image",
    ])
    .expect_code(1)
    .expect_output(words);
    assert_eq!(
        home.ok(&["get", "cronjobs", "-o", "json"]).stdout.trim(),
        "[]"
    );

    // A well-formed one: the local runtime runs stages on this machine.
    home.ok(&[
        "create",
        "deployment",
        &url,
        "--bodywork-image",
        "bodyworkml/bodywork-core:3.0",
    ])
    .expect_output("metrics computed")
    .expect_output("the local runtime runs them on this machine");
    home.ok(&[
        "create",
        "cronjob",
        &url,
        "--name=nightly",
        "--schedule=0 0 1 1 *",
        "--bodywork-image=ghcr.io/bodywork-ml/bodywork-rs:0.1.0",
    ])
    .expect_output("Created cronjob=nightly.");
}

/// A stage that writes its pid, waits for a gate file, prints and exits
/// with the code in `code.txt` next to the gate (0 when there is none).
const GATED_SCRIPT: &str = r#"
import os, pathlib, sys, time
pid_file, gate = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
pid_file.write_text(str(os.getpid()))
while not gate.exists():
    time.sleep(0.05)
code_file = gate.with_name("code.txt")
code = int(code_file.read_text()) if code_file.exists() else 0
print(f"gated stage done, exiting {code}", flush=True)
sys.exit(code)
"#;

/// A Git repository whose one batch stage runs [`GATED_SCRIPT`]; returns
/// it with the pid file and the gate.
fn gated_repo() -> (TestProject, std::path::PathBuf, std::path::PathBuf) {
    let holder = TestProject::new(&[]);
    let (pid, gate) = (holder.scratch("stage.pid"), holder.scratch("gate"));
    let config = yaml(
        "detached-project",
        "gated",
        "",
        &[batch_stage(
            "gated",
            "gated.py",
            120,
            0,
            &args_line(&[pid.to_str().expect("UTF-8"), gate.to_str().expect("UTF-8")]),
        )],
    );
    let repo = git_repo(&[("bodywork.yaml", &config), ("gated.py", GATED_SCRIPT)]);
    std::mem::forget(holder);
    (repo, pid, gate)
}

/// `get deployment --async -o json`.
fn detached_runs(home: &TestHome) -> Vec<serde_json::Value> {
    let run = home.ok(&["get", "deployment", "--async", "-o", "json"]);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{run}"))
}

#[test]
fn a_detached_deployment_returns_while_its_run_goes_on_and_its_log_is_kept() {
    let home = TestHome::new();
    let (repo, pid, gate) = gated_repo();
    let url = format!("file://{}", repo.path().display());

    // Returns while the stage still waits for the gate: the run is the daemon's.
    let started = home.ok(&["create", "deployment", &url, "--async"]);
    started.expect_output("Using asynchronous workflow controller.");
    let name = helper::detached_run_name(&started);
    assert!(!gate.exists());
    let runs = detached_runs(&home);
    assert_eq!(runs.len(), 1, "{runs:?}");
    // Named as Bodywork 3 names its Jobs, after the run's number.
    assert_eq!(format!("async-workflow-{}", runs[0]["id"]), name);
    assert_eq!(runs[0]["status"], "running", "{runs:?}");

    std::fs::write(&gate, "").expect("open the gate");
    helper::wait_for(
        "the detached run to succeed",
        std::time::Duration::from_secs(120),
        || detached_runs(&home)[0]["status"] == "succeeded",
    );
    let log = home.ok(&["get", "deployment", "--async", "--logs", &name]);
    log.expect_output("gated stage done, exiting 0")
        .expect_output("successfully ran workflow for project=detached-project");
    assert!(
        log.stdout.trim_end().ends_with("Deployment successful"),
        "{log}"
    );
    assert!(pid.exists());

    // Named by the user: `async-workflow-NAME`, as in Bodywork 3.
    let named = home.ok(&[
        "create",
        "deployment",
        &url,
        "--async",
        "--async-job-name",
        "nightly",
    ]);
    named.expect_output("Created workflow-job=async-workflow-nightly.");
    helper::wait_for(
        "the named run to succeed",
        std::time::Duration::from_secs(120),
        || {
            detached_runs(&home).iter().any(|r| {
                r["trigger"] == "async:async-workflow-nightly" && r["status"] == "succeeded"
            })
        },
    );
    home.ok(&[
        "get",
        "deployments",
        "--async",
        "--logs=async-workflow-nightly",
    ])
    .expect_output("gated stage done, exiting 0");
    home.ok(&["delete", "deployment", "async-workflow-nightly", "--async"])
        .expect_output("Deleted workflow-job=async-workflow-nightly.");
    let unknown = home.run(&[
        "get",
        "deployments",
        "--async",
        "--logs=async-workflow-nope",
    ]);
    unknown
        .expect_code(1)
        .expect_output("run async-workflow-nope does not exist");
    assert!(!unknown.stderr.contains("namespace"), "{unknown}");

    // Deleted with its log; a second time, there is nothing to delete.
    home.ok(&["delete", "deployment", &name, "--async"])
        .expect_output(&format!("Deleted workflow-job={name}."));
    assert!(detached_runs(&home).is_empty());
    home.ok(&["delete", "deployment", &name, "--async"])
        .expect_output(&format!("Could not find workflow-job={name}."));
}

#[test]
fn a_failing_detached_run_is_retried_and_each_attempt_listed() {
    let home = TestHome::new().with_env("BODYWORK_CRON_SECONDS", "1");
    let (repo, _pid, gate) = gated_repo();
    std::fs::write(gate.with_file_name("code.txt"), "3").expect("exit code");
    std::fs::write(&gate, "").expect("open the gate");
    let url = format!("file://{}", repo.path().display());
    // Bodywork 2's command, as its README has it.
    home.ok(&[
        "deployment",
        "create",
        "--name=my-workflow-job",
        &format!("--git-repo-url={url}"),
        "--git-repo-branch=master",
        "--retries=1",
    ])
    .expect_output("deployment started detached as my-workflow-job");
    helper::wait_for(
        "both attempts to fail",
        std::time::Duration::from_secs(120),
        || {
            let runs = detached_runs(&home);
            runs.len() == 2 && runs.iter().all(|r| r["status"] == "failed")
        },
    );
    for run in detached_runs(&home) {
        assert_eq!(run["trigger"], "async:my-workflow-job", "{run}");
    }
    let commit: String = detached_runs(&home)[0]["commit"]
        .as_str()
        .expect("a commit")
        .chars()
        .take(12)
        .collect();
    let display = home.ok(&["deployment", "display", "--name=my-workflow-job"]);
    display.expect_output("async:my-workflow-job");
    insta::assert_snapshot!(
        "bodywork2_deployment_display_table",
        masked_table(&display.stdout, &[(&url, "<repo>"), (&commit, "<commit>")])
    );
    let listed = home.ok(&["get", "deployment", "--async"]);
    insta::assert_snapshot!(
        "get_deployment_async_table",
        masked_table(&listed.stdout, &[(&url, "<repo>"), (&commit, "<commit>")])
    );
    home.ok(&["deployment", "logs", "--name=my-workflow-job"])
        .expect_output("gated stage done, exiting 3");
    home.ok(&["deployment", "delete_job", "--name=my-workflow-job"])
        .expect_output("deployment job=my-workflow-job deleted");
    assert!(detached_runs(&home).is_empty());
    // Bodywork 2's own refusals.
    home.run(&["deployment", "logs"])
        .expect_code(2)
        .expect_output("please specify --name for the deployment job");
    home.run(&["deployment", "create", "--name=x"])
        .expect_code(2)
        .expect_output("please specify Git repo URL");
}

#[test]
fn a_daemon_killed_during_a_detached_run_leaves_it_failed_and_its_processes_gone() {
    let home = TestHome::new();
    let (repo, pid_file, _gate) = gated_repo();
    let url = format!("file://{}", repo.path().display());
    home.ok(&["create", "deployment", &url, "--async"]);
    helper::wait_for(
        "the stage to start",
        std::time::Duration::from_secs(120),
        || helper::read_pid(&pid_file).is_some(),
    );
    let stage = helper::read_pid(&pid_file).expect("the stage's pid");
    let daemon = home.daemon_pid().expect("the daemon runs");
    helper::kill(daemon, "KILL");
    helper::wait_for(
        "the daemon to die",
        std::time::Duration::from_secs(10),
        || !helper::is_alive(u32::try_from(daemon).expect("a pid")),
    );
    // The next command starts a daemon, which finds the run interrupted.
    let runs = detached_runs(&home);
    assert_eq!(runs[0]["status"], "failed", "{runs:?}");
    helper::wait_for(
        "the stage to be gone",
        std::time::Duration::from_secs(10),
        || !helper::is_alive(stage),
    );
}

#[test]
fn bodywork_2_local_runs_the_workflow_attached() {
    let home = TestHome::new();
    let (repo, _pid, gate) = gated_repo();
    std::fs::write(&gate, "").expect("open the gate");
    let url = format!("file://{}", repo.path().display());
    home.ok(&[
        "deployment",
        "create",
        "--name=local-test",
        &format!("--git-repo-url={url}"),
        "--git-repo-branch=master",
        "--local",
    ])
    .expect_output("testing with local workflow-controller - retries are inactive")
    .expect_output("gated stage done, exiting 0");
    assert!(detached_runs(&home).is_empty());
}

#[test]
fn create_deployment_dry_run_on_kubernetes_plans_the_projects_own_namespace() {
    // No cluster: the plan is made here, as `workflow --dry-run` makes it.
    let home = TestHome::new().with_env("KUBECONFIG", "/nonexistent/kubeconfig");
    let project =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/train-and-serve");
    let project = project.to_str().expect("UTF-8");
    let dry_run = |more: &[&str]| {
        let mut args = vec!["--runtime", "kubernetes", "create", "deployment", project];
        args.extend_from_slice(more);
        args.push("--dry-run");
        home.ok(&args)
    };
    let run = dry_run(&[]);
    assert!(
        run.stdout.contains("namespace: bodywork-train-and-serve"),
        "{run}"
    );
    assert!(!run.stderr.contains("secrets of group"), "{run}");
    // --bodywork-image: the image the stages run in.
    let run = dry_run(&["--bodywork-image", "example/bodywork:1.0"]);
    assert!(run.stdout.contains("image: example/bodywork:1.0"), "{run}");
    // With a group, the plan says it would be copied first.
    dry_run(&["--group", "prod"]).expect_output(
        "the secrets of group=prod (in namespace=bodywork-deployment-jobs) would be copied \
         into namespace=bodywork-train-and-serve",
    );
    assert!(home.daemon_pid().is_none(), "no daemon was started");
}

#[test]
fn version_and_configure_cluster_answer_as_bodywork_3() {
    let home = TestHome::new();
    home.ok(&["version"])
        .expect_output(env!("CARGO_PKG_VERSION"));
    home.ok(&["configure-cluster"])
        .expect_output("creating namespace=bodywork-deployment-jobs");
}

#[test]
fn a_refused_deployment_leaves_the_namespaces_secrets_as_they_were() {
    // Repository A's service holds namespace `shared`, with its secret
    // `creds`. Project B, from another repository, names the same namespace
    // and a secrets group holding its own `creds`: it is refused, and A's
    // secret is not replaced by B's group's first.
    let home = TestHome::new();
    let a = serve_model_repo();
    home.ok(&[
        "workflow",
        "--namespace",
        "shared",
        &format!("file://{}", a.path().display()),
    ]);
    home.ok(&[
        "secret",
        "create",
        "--ns",
        "shared",
        "--name",
        "creds",
        "--data",
        "TOKEN=from-a",
    ]);
    home.ok(&[
        "create",
        "secret",
        "creds",
        "--group",
        "b-group",
        "--data",
        "TOKEN=from-b",
    ]);
    let config = yaml(
        "project-b",
        "stage_1",
        "  namespace: shared\n  secrets_group: b-group\n",
        &[batch_stage(
            "stage_1",
            "env.py",
            60,
            0,
            &format!(
                "{}    secrets:\n      TOKEN: creds\n",
                args_line(&["/dev/null", "TOKEN"])
            ),
        )],
    );
    let b = git_repo(&[
        ("bodywork.yaml", &config),
        ("env.py", ENV_SCRIPT),
        ("serve.py", SERVE_PY),
    ]);
    // B also deploys a service, so it claims the namespace.
    let config_b = config.replace(
        "stages:\n",
        "stages:\n  svc:\n    executable_module_path: serve.py\n    service:\n      max_startup_time_seconds: 30\n      replicas: 1\n      port: 5000\n      ingress: false\n",
    ).replace("DAG: stage_1", "DAG: stage_1 >> svc");
    std::fs::write(b.path().join("bodywork.yaml"), config_b).expect("bodywork.yaml");
    git(b.path(), &["commit", "-q", "-am", "with a service"]);
    home.run(&[
        "create",
        "deployment",
        &format!("file://{}", b.path().display()),
    ])
    .expect_code(1)
    .expect_output("already holds service");
    home.ok(&["secret", "display", "--ns", "shared", "--show-values"])
        .expect_output("from-a");
}

#[test]
fn a_cronjob_created_with_a_group_runs_with_that_groups_secrets() {
    let home = TestHome::new();
    let project = test_project();
    for (group, data) in [
        ("testsecrets", ["USERNAME=alice", "PASSWORD=alice123"]),
        ("prod", ["USERNAME=bob", "PASSWORD=bob456"]),
    ] {
        home.ok(&[
            "create",
            "secret",
            "test-credentials",
            "--group",
            group,
            "--data",
            data[0],
            data[1],
        ]);
    }
    let seen = || std::fs::read_to_string(project.scratch("env.txt")).expect("the stage ran");
    let namespace = "bodywork-test-project";

    // Without --group: the project's own group.
    home.ok(&[
        "create",
        "cronjob",
        project.arg(),
        "--name=plain",
        "--schedule=0 0 1 1 *",
    ])
    .expect_output("project=bodywork-test-project deploys into namespace=bodywork-test-project")
    .expect_output("Created cronjob=plain.");
    helper::trigger_and_wait(&home, namespace, "plain");
    assert_eq!(seen(), "USERNAME=alice\nPASSWORD=alice123\n");

    // With --group: that group's values, in a run the daemon starts.
    home.ok(&[
        "create",
        "cronjob",
        project.arg(),
        "--name=grouped",
        "--schedule=0 0 1 1 *",
        "--group=prod",
    ]);
    let listed = home.ok(&["get", "cronjobs", "-o", "json"]);
    let jobs: serde_json::Value = serde_json::from_str(&listed.stdout).expect("JSON");
    let group_of = |name: &str| {
        jobs.as_array()
            .and_then(|jobs| jobs.iter().find(|j| j["name"] == name))
            .map(|j| j["secrets_group"].clone())
    };
    assert_eq!(group_of("grouped"), Some("prod".into()), "{listed}");
    assert_eq!(group_of("plain"), Some(serde_json::Value::Null), "{listed}");
    helper::trigger_and_wait(&home, namespace, "grouped");
    assert_eq!(seen(), "USERNAME=bob\nPASSWORD=bob456\n");

    // The plain one still gets the project's group (the namespace's copy
    // of prod's secret is replaced before its stage starts).
    helper::trigger_and_wait(&home, namespace, "plain");
    assert_eq!(seen(), "USERNAME=alice\nPASSWORD=alice123\n");

    // `update cronjob` without --group keeps the group it had.
    home.ok(&[
        "update",
        "cronjob",
        project.arg(),
        "--name=grouped",
        "--schedule=30 1 1 1 *",
    ]);
    helper::trigger_and_wait(&home, namespace, "grouped");
    assert_eq!(seen(), "USERNAME=bob\nPASSWORD=bob456\n");

    // What an in-cluster cron job runs (its container's command line).
    home.ok(&["workflow", project.arg(), "--group", "prod"]);
    assert_eq!(seen(), "USERNAME=bob\nPASSWORD=bob456\n");
    home.ok(&["workflow", project.arg()]);
    assert_eq!(seen(), "USERNAME=alice\nPASSWORD=alice123\n");
}

/// A table with `values` replaced by their names, dates and times of day
/// by `<date>` and `<time>`, one space between columns (their widths follow
/// those values).
fn masked_table(table: &str, values: &[(&str, &str)]) -> String {
    let mut text = table.to_string();
    for (value, name) in values {
        text = text.replace(value, name);
    }
    let shaped = |word: &str, shape: &str| {
        word.len() == shape.len()
            && word
                .chars()
                .zip(shape.chars())
                .all(|(c, s)| if s == '9' { c.is_ascii_digit() } else { c == s })
    };
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|w| {
                    if shaped(w, "9999-99-99") {
                        "<date>"
                    } else if shaped(w, "99:99:99") {
                        "<time>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}
