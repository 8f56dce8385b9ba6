//! Entry point: find the project's format under a root and load it.
//!
//! Owns: choosing between `bodywork.yaml` and `bodywork.ini` (or the file
//! given with `--file`), the shared problem sink, and the rule that a project
//! is returned only when no error was found.
//! Must not: interpret either format; `classic` and `yaml` do.

use std::path::{Path, PathBuf};

use crate::files::{self, ReadError};
use crate::model::Project;
use crate::problem::Problem;
use crate::{classic, yaml};

/// How to load a project.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A config file to use instead of looking for `bodywork.yaml` /
    /// `bodywork.ini` in the root (`validate --file`). Relative paths are
    /// taken from the root. The format follows the extension (`.yaml` /
    /// `.yml` or `.ini`), and paths in the file are relative to its directory.
    pub file: Option<PathBuf>,
    /// Also check that every executable exists as a file inside the root.
    pub check_files: bool,
}

/// The outcome of loading: the project when there were no errors, and every
/// problem (errors and warnings) in a stable order.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The project; `Some` exactly when `problems` holds no error.
    pub project: Option<Project>,
    /// Every problem found, the project's main file first, then the stages
    /// in DAG order.
    pub problems: Vec<Problem>,
}

impl Loaded {
    /// Whether any problem is an error.
    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(Problem::is_error)
    }
}

/// The YAML file name looked for in a project root.
pub const YAML_FILE: &str = "bodywork.yaml";
/// The classic file name looked for in a project root.
pub const INI_FILE: &str = "bodywork.ini";

/// Where problems go, tagged with the file they are about.
pub(crate) struct Sink<'a> {
    file: &'a str,
    out: &'a mut Vec<Problem>,
}

impl<'a> Sink<'a> {
    /// Collect problems about `file` into `out`.
    pub fn new(file: &'a str, out: &'a mut Vec<Problem>) -> Self {
        Sink { file, out }
    }

    /// An error at `key`.
    pub fn error(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem::error(self.file, key, message));
    }

    /// A warning at `key`.
    pub fn warning(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.out.push(Problem::warning(self.file, key, message));
    }

    /// An error about the whole file at a line (syntax errors).
    pub fn error_at(&mut self, line: usize, message: impl Into<String>) {
        self.out
            .push(Problem::error(self.file, "", message).at_line(line));
    }

    /// Run a value check; on failure report its message at `key`.
    pub fn check<T>(
        &mut self,
        key: &str,
        raw: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        match f(raw) {
            Ok(v) => Some(v),
            Err(e) => {
                self.error(key, e);
                None
            }
        }
    }

    /// A file-level error (no key).
    pub fn file_error(&mut self, message: impl Into<String>) {
        self.error("", message);
    }
}

/// What the format loaders share: the canonical project directory, the
/// options, and every problem so far.
pub(crate) struct Ctx<'a> {
    /// Canonical directory that paths are relative to.
    pub root: &'a Path,
    /// Check executables on disk.
    pub check_files: bool,
    /// Problems in report order.
    pub problems: Vec<Problem>,
}

impl Ctx<'_> {
    /// Read `file` (relative to the root) as text, or report why not;
    /// `why_needed` is appended to a "file not found" message.
    pub fn read(&mut self, file: &str, why_needed: &str) -> Option<String> {
        match files::read_text(self.root, file) {
            Ok(text) => Some(text),
            Err(ReadError::NotFound) => {
                self.problems.push(Problem::error(
                    file,
                    "",
                    format!("file not found{why_needed}"),
                ));
                None
            }
            Err(ReadError::Unusable(why)) => {
                self.problems.push(Problem::error(file, "", why));
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Classic,
    Yaml,
}

/// Load the project under `root` (or the file in `opts.file`), reporting
/// every problem. Never panics, whatever the files contain.
pub fn load_project(root: &Path, opts: &LoadOptions) -> Loaded {
    let mut problems = Vec::new();
    let (dir, chosen) = match &opts.file {
        Some(file) => {
            let path = root.join(file);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = path
                .parent()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf);
            let kind = kind_of(&name);
            if kind.is_none() {
                problems.push(Problem::error(
                    name.clone(),
                    "",
                    "cannot tell the format: expected a .yaml, .yml or .ini file",
                ));
            }
            (dir, kind.map(|k| (k, name)))
        }
        None => (root.to_path_buf(), None),
    };
    let dir = match std::fs::canonicalize(&dir) {
        Ok(d) if d.is_dir() => d,
        _ => {
            problems.push(Problem::error(
                dir.display().to_string(),
                "",
                "project directory not found",
            ));
            return done(None, problems);
        }
    };
    let chosen = match (&opts.file, chosen) {
        (Some(_), None) => return done(None, problems),
        (Some(_), Some(chosen)) => chosen,
        (None, _) => {
            let yaml = dir.join(YAML_FILE).exists();
            let ini = dir.join(INI_FILE).exists();
            match (yaml, ini) {
                (true, true) => {
                    problems.push(Problem::warning(
                        INI_FILE,
                        "",
                        format!("ignored: {YAML_FILE} is also present and wins"),
                    ));
                    (Kind::Yaml, YAML_FILE.to_owned())
                }
                (true, false) => (Kind::Yaml, YAML_FILE.to_owned()),
                (false, true) => (Kind::Classic, INI_FILE.to_owned()),
                (false, false) => {
                    problems.push(Problem::error(
                        INI_FILE,
                        "",
                        format!("file not found (nor {YAML_FILE}): not a bodywork project"),
                    ));
                    return done(None, problems);
                }
            }
        }
    };
    let mut ctx = Ctx {
        root: &dir,
        check_files: opts.check_files,
        problems,
    };
    let project = match chosen.0 {
        Kind::Classic => classic::load(&mut ctx, &chosen.1),
        Kind::Yaml => yaml::load(&mut ctx, &chosen.1),
    };
    done(project, ctx.problems)
}

fn kind_of(name: &str) -> Option<Kind> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".yaml") || lower.ends_with(".yml") {
        Some(Kind::Yaml)
    } else if lower.ends_with(".ini") {
        Some(Kind::Classic)
    } else {
        None
    }
}

fn done(project: Option<Project>, problems: Vec<Problem>) -> Loaded {
    let ok = !problems.iter().any(Problem::is_error);
    Loaded {
        project: project.filter(|_| ok),
        problems,
    }
}
