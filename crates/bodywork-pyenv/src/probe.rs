//! Asking a Python interpreter who it is: `sys.version`, the real path of
//! `sys.executable` and `X.Y.Z`. The answer identifies the interpreter in
//! the environment key, and the real executable is what environments are
//! built from (so a `pyenv` shim or a symlink cannot change under a key).
//!
//! This module runs the interpreter once per call; it must not cache (the
//! cache keeps probes in memory, per `EnvCache`) and must not build anything.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::EnvError;

/// `-I -S`: isolated from `PYTHON*` variables and user site, no `site` import
/// (faster, and the answer cannot depend on installed packages).
const PROBE_SCRIPT: &str = "import os, sys\n\
print(sys.version.replace('\\n', ' '))\n\
print(os.path.realpath(sys.executable))\n\
print('%d.%d.%d' % sys.version_info[:3])\n";

/// What the interpreter said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Interpreter {
    /// `sys.version`, on one line.
    pub version: String,
    /// Real path of `sys.executable`.
    pub executable: PathBuf,
    /// `X.Y.Z`.
    pub version_triple: String,
}

impl Interpreter {
    /// The interpreter's part of the environment key.
    pub(crate) fn identity(&self) -> String {
        format!("{}\n{}", self.version, self.executable.display())
    }
}

/// Run `python` and parse its answer.
pub(crate) fn probe(python: &Path) -> Result<Interpreter, EnvError> {
    let output = Command::new(python)
        .args(["-I", "-S", "-c", PROBE_SCRIPT])
        .stdin(Stdio::null())
        .output()
        .map_err(|err| match err.kind() {
            io::ErrorKind::NotFound => EnvError::PythonNotFound {
                python: python.to_owned(),
            },
            _ => EnvError::PythonProbe {
                python: python.to_owned(),
                detail: err.to_string(),
            },
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no error output")
            .trim()
            .to_owned();
        return Err(EnvError::PythonProbe {
            python: python.to_owned(),
            detail: format!("it exited with {}: {last}", output.status),
        });
    }
    parse(&String::from_utf8_lossy(&output.stdout)).ok_or_else(|| EnvError::PythonProbe {
        python: python.to_owned(),
        detail: "unexpected answer; is it a Python 3 interpreter?".to_owned(),
    })
}

fn parse(stdout: &str) -> Option<Interpreter> {
    let mut lines = stdout.lines().map(str::trim);
    let version = lines.next().filter(|l| !l.is_empty())?.to_owned();
    let executable = PathBuf::from(lines.next().filter(|l| l.starts_with('/'))?);
    let version_triple = lines.next()?.to_owned();
    let mut parts = version_triple.split('.');
    let major: u32 = parts.next()?.parse().ok()?;
    (major == 3 && parts.count() == 2).then_some(Interpreter {
        version,
        executable,
        version_triple,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_probe_answer() {
        let got =
            parse("3.11.7 (main, Jan  1 2024) [GCC 12]\n/usr/bin/python3.11\n3.11.7\n").unwrap();
        assert_eq!(got.executable, PathBuf::from("/usr/bin/python3.11"));
        assert_eq!(got.version_triple, "3.11.7");
        assert_eq!(
            got.identity(),
            "3.11.7 (main, Jan  1 2024) [GCC 12]\n/usr/bin/python3.11"
        );
    }

    #[test]
    fn rejects_python2_and_garbage() {
        assert_eq!(
            parse("2.7.18 (default)\n/usr/bin/python2.7\n2.7.18\n"),
            None
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("3.11.7\nrelative/python\n3.11.7\n"), None);
    }

    #[test]
    fn missing_interpreter_is_a_clear_error() {
        let err = probe(Path::new("/nonexistent/bodywork-python3")).unwrap_err();
        assert!(matches!(err, EnvError::PythonNotFound { .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/bodywork-python3"));
    }
}
