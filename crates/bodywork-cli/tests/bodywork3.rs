//! The Bodywork 3 dialect (SPEC §8) on the local runtime: the commands of
//! public bodywork-ml project READMEs, typed as they are, against local
//! projects shaped like those projects.

mod common;

use common::{SERVE_PY, TestHome, TestProject, args_line, batch_stage, git, yaml};

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
    .expect_output("secret=test-credentials created in group=testsecrets");
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

    home.ok(&["create", "deployment", project.arg()]);
    let seen = std::fs::read_to_string(project.scratch("env.txt")).expect("the stage ran");
    assert_eq!(seen, "USERNAME=alice\nPASSWORD=alice123\n");

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
    ]);
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
        let created = s["created"].as_str().expect("a time");
        table = table.replace(created, "<created>");
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

    home.ok(&["delete", "secret", "db", "--group", "dev"])
        .expect_output("secret=db deleted from group=dev");
    home.ok(&["delete", "secret", "--group", "prod"])
        .expect_output("secrets group=prod deleted: db");
    let left = home.ok(&["get", "secrets", "-o", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&left.stdout).expect("JSON");
    assert_eq!(doc.as_array().map(Vec::len), Some(1), "{left}");
    home.run(&["delete", "secret", "--group", "prod"])
        .expect_code(1);
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
    home.run(&["get", "deployment", "bodywork-serve-model-project", "nope"])
        .expect_code(1);

    // Update: the same deployment again.
    home.ok(&["update", "deployment", &url, "--branch", "master"]);

    // bodywork delete deployment bodywork-serve-model-project
    home.ok(&["delete", "deployment", "bodywork-serve-model-project"])
        .expect_output("deployment=bodywork-serve-model-project deleted");
    home.ok(&["get", "deployments"])
        .expect_output("No deployments found");
    home.run(&["delete", "deployment", "bodywork-serve-model-project"])
        .expect_code(1);
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
    home.ok(&[
        "create",
        "cronjob",
        &url,
        "--name=daily-metrics",
        "--schedule=0 0 1 1 *",
    ])
    .expect_output("project=ml-dashboard deploys into namespace=dashboards")
    .expect_output("cronjob=daily-metrics created in namespace=dashboards");
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
    common::wait_for(
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
    // bodywork get cronjob NAME --history, as a table
    home.ok(&["get", "cronjob", "daily-metrics", "--history"])
        .expect_output(&job);
    home.ok(&["get", "cronjob", "daily-metrics", "--logs", &job])
        .expect_output("metrics computed");

    home.ok(&[
        "update",
        "cronjob",
        &url,
        "--name=daily-metrics",
        "--schedule=30 1 * * *",
    ]);
    home.ok(&["get", "cronjob", "daily-metrics"])
        .expect_output("30 1 * * *");

    home.ok(&["delete", "cronjob", "daily-metrics"])
        .expect_output("cronjob=daily-metrics deleted from namespace=dashboards");
    home.run(&["get", "cronjob", "daily-metrics"])
        .expect_code(1);
}
