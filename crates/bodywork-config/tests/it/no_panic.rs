//! Whatever bytes the config files hold, loading returns (with problems)
//! instead of panicking: arbitrary bytes, and "almost valid" text made by
//! mutating good files.

use std::fs;
use std::path::Path;

use bodywork_config::{LoadOptions, load_project};
use proptest::prelude::*;

const BODYWORK_INI: &str = "[default]\nPROJECT_NAME=\"proj\"\nDOCKER_IMAGE=\"img:latest\"\n\n[workflow]\nDAG=stage-1 >> stage-2\n\n[logging]\nLOG_LEVEL=INFO\n";
const CONFIG_INI: &str = "[default]\nSTAGE_TYPE=\"service\"\nEXECUTABLE_SCRIPT=\"main.py\"\nCPU_REQUEST=0.25\nMEMORY_REQUEST_MB=100\n\n[service]\nMAX_STARTUP_TIME_SECONDS=30\nREPLICAS=2\nPORT=5000\nINGRESS=True\n\n[secrets]\nDB_PASSWORD=db-credentials\n";
const BODYWORK_YAML: &str = "version: \"1.1\"\npipeline:\n  name: p\n  DAG: stage-1\n  run_on_failure: stage-2\nstages:\n  stage-1:\n    executable_module_path: stage-1/main.py\n    args: [\"--x\", 1]\n    requirements: [numpy]\n    secrets: {A: b}\n    service: {max_startup_time_seconds: 5, replicas: 1, port: 80, ingress: true}\n  stage-2:\n    executable_module_path: stage-1/main.py\n    batch: {max_completion_time_seconds: 5, retries: 0}\nlogging:\n  log_level: INFO\n";

/// Which file of the project gets the fuzzed content.
#[derive(Debug, Clone, Copy)]
enum Target {
    BodyworkIni,
    ConfigIni,
    BodyworkYaml,
}

fn write_project(root: &Path, target: Target, content: &[u8]) {
    fs::create_dir_all(root.join("stage-1")).unwrap();
    fs::write(root.join("stage-1/main.py"), "print(1)\n").unwrap();
    fs::write(root.join("stage-1/requirements.txt"), "numpy\n").unwrap();
    match target {
        Target::BodyworkIni => {
            fs::write(root.join("bodywork.ini"), content).unwrap();
            fs::write(root.join("stage-1/config.ini"), CONFIG_INI).unwrap();
        }
        Target::ConfigIni => {
            fs::write(root.join("bodywork.ini"), BODYWORK_INI).unwrap();
            fs::write(root.join("stage-1/config.ini"), content).unwrap();
        }
        Target::BodyworkYaml => fs::write(root.join("bodywork.yaml"), content).unwrap(),
    }
}

fn load(target: Target, content: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), target, content);
    let loaded = load_project(
        dir.path(),
        &LoadOptions {
            file: None,
            check_files: true,
        },
    );
    // The one invariant that holds for any input.
    assert_eq!(
        loaded.project.is_some(),
        !loaded.problems.iter().any(|p| p.is_error())
    );
    for p in &loaded.problems {
        assert!(!p.to_string().contains('\n'), "one line per problem: {p:?}");
    }
}

/// Edits applied to a good file: insert a character, delete a range, or
/// duplicate a line, at positions taken modulo the text length.
fn mutate(base: &str, edits: &[(u8, usize, usize, char)]) -> String {
    let mut chars: Vec<char> = base.chars().collect();
    for &(op, a, b, c) in edits {
        let len = chars.len().max(1);
        match op % 3 {
            0 => chars.insert(a % (chars.len() + 1), c),
            1 => {
                let start = a % len;
                let end = (start + b % 8).min(chars.len());
                if start < end {
                    chars.drain(start..end);
                }
            }
            _ => {
                let text: String = chars.iter().collect();
                let lines: Vec<&str> = text.lines().collect();
                if !lines.is_empty() {
                    let i = a % lines.len();
                    let mut out = lines[..=i].join("\n");
                    out.push('\n');
                    out.push_str(&lines[i..].join("\n"));
                    chars = out.chars().collect();
                }
            }
        }
    }
    chars.into_iter().collect()
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, usize, char)>> {
    let interesting = prop_oneof![
        Just('['),
        Just(']'),
        Just('='),
        Just(':'),
        Just('"'),
        Just('\''),
        Just('\n'),
        Just('\\'),
        Just('#'),
        Just('-'),
        Just('>'),
        Just(','),
        Just('{'),
        Just('&'),
        Just('*'),
        Just(' '),
        any::<char>(),
    ];
    prop::collection::vec(
        (any::<u8>(), any::<usize>(), any::<usize>(), interesting),
        1..8,
    )
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(256)
    })]

    #[test]
    fn arbitrary_bytes_in_bodywork_ini(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(Target::BodyworkIni, &bytes);
    }

    #[test]
    fn arbitrary_bytes_in_config_ini(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(Target::ConfigIni, &bytes);
    }

    #[test]
    fn arbitrary_bytes_in_bodywork_yaml(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(Target::BodyworkYaml, &bytes);
    }

    #[test]
    fn mutated_bodywork_ini(e in edits()) {
        load(Target::BodyworkIni, mutate(BODYWORK_INI, &e).as_bytes());
    }

    #[test]
    fn mutated_config_ini(e in edits()) {
        load(Target::ConfigIni, mutate(CONFIG_INI, &e).as_bytes());
    }

    #[test]
    fn mutated_bodywork_yaml(e in edits()) {
        load(Target::BodyworkYaml, mutate(BODYWORK_YAML, &e).as_bytes());
    }
}

#[test]
fn the_unmutated_files_load() {
    for (target, text) in [
        (Target::BodyworkIni, BODYWORK_INI),
        (Target::BodyworkYaml, BODYWORK_YAML),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_project(dir.path(), target, text.as_bytes());
        if let Target::BodyworkIni = target {
            // stage-2 for the classic DAG
            fs::create_dir_all(dir.path().join("stage-2")).unwrap();
            fs::write(
                dir.path().join("stage-2/config.ini"),
                CONFIG_INI.replace("main.py", "../stage-1/main.py"),
            )
            .unwrap();
            fs::write(dir.path().join("stage-2/requirements.txt"), "").unwrap();
        }
        let loaded = load_project(
            dir.path(),
            &LoadOptions {
                file: None,
                check_files: true,
            },
        );
        assert!(
            loaded.problems.is_empty(),
            "{target:?}: {:?}",
            loaded.problems
        );
        assert!(loaded.project.is_some());
    }
}
