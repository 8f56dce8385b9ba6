//! Hostile configs: nesting, size and section counts past the limits are one
//! problem each, found before the file is parsed; a config just under the
//! limits still loads.

use std::fs;
use std::path::Path;

use bodywork_config::{
    LoadOptions, Loaded, MAX_CONFIG_BYTES, MAX_INI_SECTIONS, MAX_YAML_DEPTH, MAX_YAML_EXPANDED,
    load_project,
};

const STAGE: &str = "stages:\n  s:\n    executable_module_path: s.py\n    batch: {max_completion_time_seconds: 5, retries: 0}\n";

fn load_yaml(yaml: &str) -> Loaded {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("s.py"), "print('hi')\n").unwrap();
    fs::write(dir.path().join("bodywork.yaml"), yaml).unwrap();
    load(dir.path())
}

fn load(root: &Path) -> Loaded {
    load_project(
        root,
        &LoadOptions {
            file: None,
            check_files: true,
        },
    )
}

/// A valid project with `extra` (an unknown key, so a warning) set to `value`.
fn project_with(value: &str) -> String {
    format!("version: \"1.1\"\npipeline:\n  name: deep\n  DAG: s\n{STAGE}extra: {value}\n")
}

fn rendered(loaded: &Loaded) -> Vec<String> {
    loaded.problems.iter().map(ToString::to_string).collect()
}

fn one_error(loaded: &Loaded) -> String {
    let problems = rendered(loaded);
    assert!(loaded.project.is_none(), "{problems:?}");
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems[0].clone()
}

const DEEP: usize = 100_000;

#[test]
fn deep_flow_sequences_are_refused_at_the_limit() {
    let loaded = load_yaml(&project_with(&format!(
        "{}{}",
        "[".repeat(DEEP),
        "]".repeat(DEEP)
    )));
    // `extra: ` is line 9; the top mapping is one level, so the 64th `[`
    // (column 7 + 64) is the 65th level.
    assert_eq!(
        one_error(&loaded),
        "bodywork.yaml:9: invalid YAML: nesting deeper than 64 levels (column 71)"
    );
}

#[test]
fn deep_flow_mappings_are_refused() {
    let loaded = load_yaml(&project_with(&format!(
        "{}x{}",
        "{a: ".repeat(DEEP),
        "}".repeat(DEEP)
    )));
    assert_eq!(
        one_error(&loaded),
        "bodywork.yaml:9: invalid YAML: nesting deeper than 64 levels (column 260)"
    );
}

#[test]
fn deep_compact_block_sequences_are_refused() {
    let yaml = format!("{}{}x\n", project_with(""), "- ".repeat(DEEP));
    assert_eq!(
        one_error(&load_yaml(&yaml)),
        "bodywork.yaml:10: invalid YAML: nesting deeper than 64 levels (column 127)"
    );
}

#[test]
fn deep_mixes_of_block_and_flow_are_refused() {
    let yaml = project_with(&format!("\n{}[{{a: [", "- ".repeat(40)));
    let deep_mix = format!("{}{}", yaml.trim_end(), "{b: [".repeat(DEEP));
    assert!(
        one_error(&load_yaml(&deep_mix)).contains("nesting deeper than 64 levels"),
        "{deep_mix:.200}"
    );
    // Block mappings, one a line, each more indented.
    let mut nested = String::from("\n");
    for i in 0..70 {
        nested.push_str(&format!("{}k{i}:\n", " ".repeat(i + 2)));
    }
    assert_eq!(
        one_error(&load_yaml(&project_with(&nested))),
        "bodywork.yaml:73: invalid YAML: nesting deeper than 64 levels (column 66)"
    );
}

#[test]
fn a_config_just_under_the_limits_loads() {
    // One level for the top mapping, 63 for the flow sequences: 64.
    let depth = MAX_YAML_DEPTH - 1;
    let mut yaml = project_with(&format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    // And padded with a comment to just under the size limit.
    let size = usize::try_from(MAX_CONFIG_BYTES).unwrap();
    yaml.push('#');
    yaml.push_str(&"x".repeat(size - yaml.len() - 1));
    yaml.push('\n');
    assert_eq!(yaml.len(), size);
    let loaded = load_yaml(&yaml);
    assert!(loaded.project.is_some(), "{:?}", rendered(&loaded));
    assert_eq!(
        rendered(&loaded),
        ["bodywork.yaml: extra -> unknown key (ignored)"]
    );
    // One level more is refused.
    let depth = MAX_YAML_DEPTH;
    let loaded = load_yaml(&project_with(&format!(
        "{}{}",
        "[".repeat(depth),
        "]".repeat(depth)
    )));
    assert!(one_error(&loaded).contains("nesting deeper than 64 levels"));
}

#[test]
fn a_config_ini_with_many_sections_is_one_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(
        root.join("bodywork.ini"),
        "[default]\nPROJECT_NAME=p\nDOCKER_IMAGE=img\n[workflow]\nDAG=s\n",
    )
    .unwrap();
    fs::create_dir(root.join("s")).unwrap();
    fs::write(root.join("s/s.py"), "print('hi')\n").unwrap();
    fs::write(root.join("s/requirements.txt"), "").unwrap();
    let mut config = String::from("[default]\nSTAGE_TYPE=batch\nEXECUTABLE_SCRIPT=s.py\n");
    config.extend((0..DEEP).map(|i| format!("[x{i}]\n")));
    fs::write(root.join("s/config.ini"), config).unwrap();
    assert_eq!(
        one_error(&load(root)),
        format!(
            "s/config.ini:{}: invalid INI: more than {MAX_INI_SECTIONS} sections",
            3 + MAX_INI_SECTIONS
        )
    );
}

/// The alias bomb: one 900 KB string anchored and aliased 5,000 times in a
/// list, a 920 KB file under the size cap, 4.5 GB once expanded.
#[test]
fn an_alias_bomb_is_refused_before_it_is_expanded() {
    let mut yaml = project_with(&format!("&big \"{}\"", "x".repeat(900_000)));
    yaml.push_str("bomb:\n");
    for _ in 0..5_000 {
        yaml.push_str("  - *big\n");
    }
    assert!((yaml.len() as u64) < MAX_CONFIG_BYTES);
    assert_eq!(
        one_error(&load_yaml(&yaml)),
        "bodywork.yaml: invalid YAML: its aliases expand to more than 8 MiB"
    );
    assert_eq!(MAX_YAML_EXPANDED, 8 << 20);
}

#[test]
fn anchors_shared_between_stages_still_load() {
    let yaml = "version: \"1.1\"\npipeline:\n  name: shared\n  DAG: s >> t\nbatch: &b {max_completion_time_seconds: 5, retries: 0}\nstages:\n  s:\n    executable_module_path: s.py\n    batch: *b\n  t:\n    executable_module_path: s.py\n    batch: *b\n";
    let loaded = load_yaml(yaml);
    assert!(loaded.project.is_some(), "{:?}", rendered(&loaded));
}
