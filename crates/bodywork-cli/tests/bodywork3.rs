//! The Bodywork 3 dialect (SPEC §8) on the local runtime: the commands of
//! public bodywork-ml project READMEs, typed as they are, against local
//! projects shaped like those projects.

mod common;

use common::{TestHome, TestProject, args_line, batch_stage, yaml};

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
