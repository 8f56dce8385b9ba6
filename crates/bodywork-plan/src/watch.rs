//! What saved files mean for a watched project (`workflow --watch`):
//! which paths are noise (Git's own files, editor temp files, Python's
//! caches), which stages a file belongs to, and what part of the workflow
//! a batch of saves runs again.
//!
//! Pure: relative paths and loaded projects in, decisions out; the CLI
//! watches the files and reads the `.gitignore`.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use bodywork_config::{INI_FILE, Project, YAML_FILE};

/// Whether a path (relative to the project root) is never worth a run:
/// anything under `.git/` or `__pycache__/`, compiled Python, and the
/// temp files editors write beside the file they save.
pub fn is_noise(rel: &Path) -> bool {
    let in_noisy_dir = rel.components().any(|c| match c {
        Component::Normal(part) => part == ".git" || part == "__pycache__",
        _ => false,
    });
    in_noisy_dir
        || rel
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_editor_temp)
}

/// An editor's temp or backup file name: Vim's swap files (`.x.swp`,
/// `.x.swx`) and its write test `4913`, backups (`x~`), Emacs' lock files
/// (`.#x`), `*.tmp`, and compiled Python (`*.pyc`).
pub fn is_editor_temp(name: &str) -> bool {
    name == "4913"
        || name.ends_with('~')
        || name.starts_with(".#")
        || [".swp", ".swx", ".tmp", ".pyc"]
            .iter()
            .any(|ext| name.ends_with(ext))
}

/// Whether a path is the project's main configuration file.
pub fn is_config(rel: &Path) -> bool {
    rel == Path::new(YAML_FILE) || rel == Path::new(INI_FILE)
}

/// The stages of `project`'s DAG a file belongs to: those whose script's
/// directory holds it (or whose script it is, for a script at the root).
/// Empty when it is outside every stage's directory: then it may be used
/// by any of them.
pub fn owners(project: &Project, rel: &Path) -> BTreeSet<String> {
    project
        .dag
        .stages()
        .filter(|name| {
            project.stages.get(*name).is_some_and(|stage| {
                let dir = stage.executable.parent().unwrap_or(Path::new(""));
                if dir.as_os_str().is_empty() {
                    rel == stage.executable
                } else {
                    rel.starts_with(dir)
                }
            })
        })
        .map(str::to_string)
        .collect()
}

/// What a batch of saves runs again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rerun {
    /// Nothing the workflow uses changed.
    Nothing,
    /// These stages (in DAG order) and every step after the first of them.
    From(Vec<String>),
    /// The whole workflow.
    Everything,
}

/// What to run again after saves: `old` is the project as last deployed
/// (`None` when no deploy has succeeded, or its configuration was not
/// valid), `new` as it is now (valid), `saved` the paths saved (noise
/// already left out). A stage whose configuration changed counts as
/// saved; any other change of the configuration (the DAG, the project's
/// name or namespace, ...) and a file outside every stage's directory run
/// the whole workflow.
pub fn rerun<'a>(
    old: Option<&Project>,
    new: &Project,
    saved: impl IntoIterator<Item = &'a Path>,
) -> Rerun {
    let Some(old) = old else {
        return Rerun::Everything;
    };
    let beyond_stages = |p: &Project| Project {
        stages: Default::default(),
        ..p.clone()
    };
    if beyond_stages(old) != beyond_stages(new) {
        return Rerun::Everything;
    }
    let mut changed: BTreeSet<String> = new
        .dag
        .stages()
        .filter(|name| old.stages.get(*name) != new.stages.get(*name))
        .map(str::to_string)
        .collect();
    for rel in saved {
        if is_config(rel) {
            continue;
        }
        let of = owners(new, rel);
        if of.is_empty() {
            return Rerun::Everything;
        }
        changed.extend(of);
    }
    if changed.is_empty() {
        return Rerun::Nothing;
    }
    Rerun::From(
        new.dag
            .stages()
            .filter(|s| changed.contains(*s))
            .map(str::to_string)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use bodywork_config::{BatchConfig, Dag, Format, LogLevel, ServiceConfig, Stage, StageKind};

    use super::*;

    fn stage(name: &str, exe: &str, service: bool) -> (String, Stage) {
        let kind = if service {
            StageKind::Service(ServiceConfig {
                max_startup_time_seconds: 30,
                replicas: 2,
                port: 5000,
                ingress: false,
            })
        } else {
            StageKind::Batch(BatchConfig {
                max_completion_time_seconds: 30,
                retries: 0,
            })
        };
        (
            name.to_string(),
            Stage {
                name: name.into(),
                executable: exe.into(),
                args: Vec::new(),
                requirements: Vec::new(),
                cpu_request: None,
                memory_request_mb: None,
                secrets: BTreeMap::new(),
                kind,
            },
        )
    }

    /// `prepare` then `train` (batch), then `serve` (a service); `main.py`
    /// at the root is `tidy`'s, not in the DAG.
    fn project() -> Project {
        Project {
            format: Format::Yaml {
                schema: "1.1".into(),
            },
            name: "demo".into(),
            docker_image: "img".into(),
            dag: Dag {
                steps: vec![
                    vec!["prepare".into()],
                    vec!["train".into()],
                    vec!["serve".into()],
                ],
            },
            stages: BTreeMap::from([
                stage("prepare", "prepare.py", false),
                stage("train", "train/train.py", false),
                stage("serve", "serve/api/service.py", true),
                stage("tidy", "tidy/main.py", false),
            ]),
            run_on_failure: None,
            namespace: None,
            secrets_group: None,
            log_level: LogLevel::Info,
        }
    }

    fn owned(rel: &str) -> Vec<String> {
        owners(&project(), Path::new(rel)).into_iter().collect()
    }

    #[test]
    fn a_file_belongs_to_the_stages_whose_directory_holds_it() {
        assert_eq!(owned("serve/api/service.py"), ["serve"]);
        assert_eq!(owned("serve/api/model/weights.pkl"), ["serve"]);
        assert_eq!(owned("train/train.py"), ["train"]);
        // A script at the root owns only itself.
        assert_eq!(owned("prepare.py"), ["prepare"]);
        // Outside every DAG stage's directory: nobody's (so everybody's).
        assert!(owned("README.md").is_empty());
        assert!(owned("serve/shared.py").is_empty());
        assert!(owned("tidy/main.py").is_empty());
        assert!(owned("trainer/x.py").is_empty());
    }

    #[test]
    fn git_caches_and_editor_temp_files_are_noise() {
        for noise in [
            ".git/index",
            "sub/.git/HEAD",
            "train/__pycache__/train.cpython-311.pyc",
            "train/.train.py.swp",
            "train/.train.py.swx",
            "train/train.py~",
            "train/.#train.py",
            "train/4913",
            "train/save.tmp",
        ] {
            assert!(is_noise(Path::new(noise)), "{noise}");
        }
        for real in [
            "train/train.py",
            "bodywork.yaml",
            ".gitignore",
            "train/swp.py",
            "train/49130",
            "notes.tmp.md",
        ] {
            assert!(!is_noise(Path::new(real)), "{real}");
        }
    }

    fn paths(rel: &[&str]) -> Vec<PathBuf> {
        rel.iter().map(PathBuf::from).collect()
    }

    fn rerun_of(old: Option<&Project>, new: &Project, rel: &[&str]) -> Rerun {
        let saved = paths(rel);
        rerun(old, new, saved.iter().map(PathBuf::as_path))
    }

    #[test]
    fn saved_code_reruns_its_stages_from_the_first_in_dag_order() {
        let p = project();
        assert_eq!(
            rerun_of(Some(&p), &p, &["serve/api/service.py"]),
            Rerun::From(vec!["serve".into()])
        );
        assert_eq!(
            rerun_of(Some(&p), &p, &["serve/api/x.py", "train/train.py"]),
            Rerun::From(vec!["train".into(), "serve".into()])
        );
        assert_eq!(
            rerun_of(Some(&p), &p, &["train/train.py", "README.md"]),
            Rerun::Everything
        );
        // No deploy succeeded yet: everything.
        assert_eq!(rerun_of(None, &p, &["train/train.py"]), Rerun::Everything);
    }

    #[test]
    fn a_new_configuration_reruns_what_it_changed() {
        let old = project();
        // Saved but the same: nothing to do.
        assert_eq!(
            rerun_of(Some(&old), &old, &["bodywork.yaml"]),
            Rerun::Nothing
        );
        // One stage's requirements: that stage and what follows.
        let mut new = old.clone();
        if let Some(train) = new.stages.get_mut("train") {
            train.requirements = vec!["numpy==2.3.0".into()];
        }
        assert_eq!(
            rerun_of(Some(&old), &new, &["bodywork.yaml"]),
            Rerun::From(vec!["train".into()])
        );
        // A stage outside the DAG: nothing the workflow runs.
        let mut new = old.clone();
        if let Some(tidy) = new.stages.get_mut("tidy") {
            tidy.args = vec!["--all".into()];
        }
        assert_eq!(
            rerun_of(Some(&old), &new, &["bodywork.yaml"]),
            Rerun::Nothing
        );
        // The DAG: everything.
        let mut new = old.clone();
        new.dag.steps.pop();
        assert_eq!(
            rerun_of(Some(&old), &new, &["bodywork.yaml"]),
            Rerun::Everything
        );
    }
}
