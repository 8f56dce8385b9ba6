//! What a loaded project contains, the `--file` option, JSON output and the
//! rendering of a project with many problems.

use std::fs;
use std::path::{Path, PathBuf};

use bodywork_config::{Format, LoadOptions, LogLevel, StageKind, load_project};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

fn checked() -> LoadOptions {
    LoadOptions {
        file: None,
        check_files: true,
    }
}

#[test]
fn seed_project_loads_as_written_in_the_tutorial() {
    let loaded = load_project(&corpus().join("good/seed-serve-model"), &checked());
    let project = loaded.project.expect("seed project loads");
    assert!(loaded.problems.is_empty());
    assert_eq!(project.format, Format::Classic);
    assert_eq!(project.name, "bodywork-serve-model-project");
    assert_eq!(project.docker_image, "bodyworkml/bodywork-core:latest");
    assert_eq!(project.log_level, LogLevel::Info);
    assert_eq!(project.dag.steps, vec![vec!["scoring-service".to_owned()]]);
    let stage = &project.stages["scoring-service"];
    assert_eq!(
        stage.executable,
        PathBuf::from("scoring-service/service.py")
    );
    assert_eq!(stage.cpu_request, Some(0.25));
    assert_eq!(stage.memory_request_mb, Some(100));
    assert_eq!(
        stage.requirements,
        [
            "Flask==1.1.2",
            "joblib==0.17.0",
            "numpy==1.19.4",
            "scikit-learn==0.23.2"
        ]
    );
    let StageKind::Service(service) = &stage.kind else {
        panic!("scoring-service is a service: {:?}", stage.kind)
    };
    assert_eq!(
        (
            service.replicas,
            service.port,
            service.max_startup_time_seconds
        ),
        (2, 5000, 30)
    );
    assert!(!service.ingress);
    // The seed's curl URL uses this name.
    assert_eq!(
        project.service_name("scoring-service"),
        "bodywork-serve-model-project--scoring-service"
    );
    assert_eq!(project.namespace(None), None);
    assert_eq!(
        project.namespace(Some("scoring-service")).as_deref(),
        Some("scoring-service")
    );
}

#[test]
fn bodywork3_pipeline_loads_every_field() {
    let loaded = load_project(&corpus().join("good/yaml-bodywork3-pipeline"), &checked());
    let project = loaded.project.expect("pipeline loads");
    assert_eq!(
        project.format,
        Format::Yaml {
            schema: "1.1".to_owned()
        }
    );
    assert_eq!(project.docker_image, "bodyworkml/bodywork-core:3.0");
    assert_eq!(project.run_on_failure.as_deref(), Some("on_fail"));
    assert_eq!(project.secrets_group.as_deref(), Some("dev"));
    assert_eq!(project.namespace(None).as_deref(), Some("ml-pipeline"));
    assert_eq!(project.stages.len(), 3);
    let train = &project.stages["stage_1_train_model"];
    assert_eq!(train.args, ["--epochs", "3"]);
    assert_eq!(train.requirements, ["boto3==1.21.14", "joblib"]);
    assert_eq!(train.secrets["DB_PASSWORD"], "db-credentials");
    assert!(
        matches!(&train.kind, StageKind::Batch(b) if b.retries == 2 && b.max_completion_time_seconds == 30)
    );
    let serve = &project.stages["stage_2_scoring_service"];
    assert!(
        matches!(&serve.kind, StageKind::Service(s) if s.ingress && s.port == 5000 && s.replicas == 2)
    );
    assert_eq!(
        project.service_name("stage_2_scoring_service"),
        "stage-2-scoring-service"
    );
    assert_eq!(
        project.resource_name("stage_2_scoring_service"),
        "bodywork-ml-pipeline-project--stage-2-scoring-service"
    );
    let on_fail = &project.stages["on_fail"];
    assert_eq!(on_fail.executable, PathBuf::from("on_fail/notify.ipynb"));
    assert_eq!(on_fail.cpu_request, None);
}

#[test]
fn classic_project_resolves_paths_and_options() {
    let project = load_project(&corpus().join("good/classic-parallel-steps"), &checked())
        .project
        .expect("loads");
    assert_eq!(project.name, "ml_pipeline");
    assert_eq!(project.log_level, LogLevel::Debug);
    assert_eq!(project.dag.steps.len(), 3);
    assert_eq!(project.dag.steps[1], ["train_svm", "train_rf"]);
    assert_eq!(
        project.stages["prepare"].executable,
        PathBuf::from("common/prepare.py")
    );
    assert!(project.stages["prepare"].requirements.is_empty());
    assert_eq!(
        project.stages["train_svm"].requirements,
        ["scikit-learn>=1.0"]
    );
    let secrets = &project.stages["train_svm"].secrets;
    assert_eq!(secrets["DB_PASSWORD"], "db-credentials");
    assert_eq!(secrets["DB_USER"], "db-credentials");
    assert!(matches!(&project.stages["serve"].kind, StageKind::Service(s) if s.ingress));
    assert!(!project.stages.contains_key("not_in_dag"));
}

#[test]
fn file_option_picks_the_format_by_extension() {
    let corpus = corpus();
    let yaml = LoadOptions {
        file: Some(PathBuf::from("good/yaml-schema-1.0/bodywork.yaml")),
        check_files: true,
    };
    let loaded = load_project(&corpus, &yaml);
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    assert_eq!(
        loaded.project.map(|p| p.format),
        Some(Format::Yaml {
            schema: "1.0".to_owned()
        })
    );

    // A classic file under another name, paths relative to its directory.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("deploy");
    fs::create_dir_all(sub.join("stage-1")).unwrap();
    fs::write(
        sub.join("prod.ini"),
        "[default]\nPROJECT_NAME=p\nDOCKER_IMAGE=i\n[workflow]\nDAG=stage-1\n",
    )
    .unwrap();
    fs::write(
        sub.join("stage-1/config.ini"),
        "[default]\nSTAGE_TYPE=batch\nEXECUTABLE_SCRIPT=run.py\nCPU_REQUEST=1\nMEMORY_REQUEST_MB=1\n[batch]\nMAX_COMPLETION_TIME_SECONDS=1\nRETRIES=0\n",
    )
    .unwrap();
    fs::write(sub.join("stage-1/requirements.txt"), "").unwrap();
    let opts = LoadOptions {
        file: Some(PathBuf::from("deploy/prod.ini")),
        check_files: true,
    };
    let loaded = load_project(dir.path(), &opts);
    let rendered: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            "stage-1/config.ini: [default] EXECUTABLE_SCRIPT -> file not found (found \"stage-1/run.py\")"
        ]
    );
    // Without --check-files the missing script is not looked for.
    let loaded = load_project(
        dir.path(),
        &LoadOptions {
            check_files: false,
            ..opts
        },
    );
    assert!(loaded.problems.is_empty());
    assert_eq!(loaded.project.map(|p| p.stages.len()), Some(1));

    let unknown = LoadOptions {
        file: Some(PathBuf::from("deploy/prod.toml")),
        check_files: false,
    };
    let loaded = load_project(dir.path(), &unknown);
    assert!(loaded.project.is_none());
    assert_eq!(
        loaded.problems[0].to_string(),
        "prod.toml: cannot tell the format: expected a .yaml, .yml or .ini file"
    );
}

#[test]
fn missing_root_is_a_problem_not_a_panic() {
    let loaded = load_project(Path::new("/nonexistent/bodywork/project"), &checked());
    assert!(loaded.project.is_none());
    assert_eq!(loaded.problems.len(), 1);
    assert!(
        loaded.problems[0]
            .to_string()
            .ends_with("project directory not found")
    );
}

#[test]
fn project_serialises_for_json_output() {
    let project = load_project(&corpus().join("good/seed-serve-model"), &checked())
        .project
        .expect("loads");
    let json = serde_json::to_value(&project).unwrap();
    assert_eq!(json["format"], "classic");
    assert_eq!(json["log_level"], "INFO");
    assert_eq!(json["dag"]["steps"][0][0], "scoring-service");
    let stage = &json["stages"]["scoring-service"];
    assert_eq!(stage["executable"], "scoring-service/service.py");
    assert_eq!(stage["kind"]["service"]["port"], 5000);
    let problem = serde_json::to_value(
        &load_project(&corpus().join("bad/classic-bad-port"), &checked()).problems[0],
    )
    .unwrap();
    assert_eq!(problem["severity"], "error");
    assert_eq!(problem["key"], "[service] PORT");
}

#[test]
fn many_problems_render_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(
        root.join("bodywork.ini"),
        "[default]\nPROJECT_NAME=My_Project\n[workflow]\nDAG=prepare >> train, train >> serve >>\n[logging]\nLOG_LEVEL=chatty\n",
    )
    .unwrap();
    fs::create_dir_all(root.join("prepare")).unwrap();
    fs::write(
        root.join("prepare/config.ini"),
        "[default]\nSTAGE_TYPE=Foo\nEXECUTABLE_SCRIPT=../../x.sh\nCPU_REQUEST=-1\n[batch]\nRETRIES=\"3\"\nMAX_COMPLETION_TIME_SECONDS=soon\n",
    )
    .unwrap();
    fs::write(root.join("prepare/requirements.txt"), "numpy\n--pre\n").unwrap();
    fs::create_dir_all(root.join("serve")).unwrap();
    fs::write(
        root.join("serve/config.ini"),
        "[default]\nSTAGE_TYPE=service\nEXECUTABLE_SCRIPT=serve.py\nCPU_REQUEST=1\nMEMORY_REQUEST_MB=1\n[service]\nPORT=http\nREPLICAS=2\nMAX_STARTUP_TIME_SECONDS=5\n[secrets]\nTOKEN=api_token\n",
    )
    .unwrap();
    let loaded = load_project(root, &checked());
    let rendered: String = loaded.problems.iter().map(|p| format!("{p}\n")).collect();
    insta::assert_snapshot!(rendered);
}

#[test]
fn a_nul_byte_in_args_is_a_validation_error_not_a_failed_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("s.py"), "print('hi')\n").unwrap();
    fs::write(
        root.join("bodywork.yaml"),
        "version: \"1.1\"\npipeline:\n  name: nul\n  DAG: s\nstages:\n  s:\n    executable_module_path: s.py\n    args: [\"ok\", \"a\\0b\"]\n    batch: {max_completion_time_seconds: 5, retries: 0}\n",
    )
    .unwrap();
    let loaded = load_project(root, &checked());
    let rendered: Vec<String> = loaded.problems.iter().map(|p| p.to_string()).collect();
    assert!(loaded.project.is_none(), "{rendered:?}");
    assert!(
        rendered
            .iter()
            .any(|p| p.contains("stages.s.args[1]") && p.contains("NUL")),
        "{rendered:?}"
    );
}
