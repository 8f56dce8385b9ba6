//! The one error type of this crate, written for the person who runs the
//! stage: each variant says what was being done and what went wrong, in one
//! or a few lines (an installer's own error lines are quoted verbatim).
//!
//! This module only describes failures; it must not decide recovery (the
//! fall-back from uv to pip lives in the cache).

use std::io;
use std::path::PathBuf;

/// Why an environment could not be provided, listed or pruned.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The interpreter could not be started at all.
    #[error(
        "Python interpreter `{}` was not found; install Python 3 or point the stage at an existing interpreter",
        python.display()
    )]
    PythonNotFound {
        /// The interpreter as requested (`python3` when none was given).
        python: PathBuf,
    },
    /// The interpreter started but did not answer the identity probe.
    #[error("could not query Python interpreter `{}`: {detail}", python.display())]
    PythonProbe {
        /// The interpreter as requested.
        python: PathBuf,
        /// What went wrong, including the interpreter's own last error line.
        detail: String,
    },
    /// Creating the bare virtual environment failed.
    #[error("{}", quoted(&format!("creating the Python environment {} with {installer} failed", dir.display()), lines))]
    CreateVenv {
        /// The environment directory.
        dir: PathBuf,
        /// The tool that failed (`uv` or `python -m venv`).
        installer: String,
        /// The tool's last error lines.
        lines: Vec<String>,
    },
    /// Installing the requirements failed (unknown package, resolution
    /// conflict, build failure, network...).
    #[error("{}", quoted(&format!("installing requirements ({}) with {installer} failed", requirements.join(", ")), lines))]
    Install {
        /// The normalised requirements that were being installed.
        requirements: Vec<String>,
        /// The installer that failed (`uv` or `pip`).
        installer: String,
        /// The installer's last (up to 20) error lines, trimmed.
        lines: Vec<String>,
    },
    /// A package has no wheel for any interpreter found, and building it
    /// from source under the default one failed too.
    #[error("{0}")]
    NoWheels(Box<NoWheels>),
    /// A Python version was asked for and no interpreter found has it.
    #[error(
        "no Python {wanted} was found on this machine (interpreters found: {}); install one (pyenv install {wanted}, uv python install {wanted}) or ask for another",
        list_or_none(found)
    )]
    PythonVersionNotFound {
        /// The version asked for.
        wanted: String,
        /// Every interpreter found, `X.Y.Z (path)`.
        found: Vec<String>,
    },
    /// `BODYWORK_PYENV_INSTALLER=uv` was set but uv could not be found or
    /// bootstrapped.
    #[error("uv was requested (BODYWORK_PYENV_INSTALLER=uv) but is not available: {reason}")]
    InstallerUnavailable {
        /// Why uv is unavailable.
        reason: String,
    },
    /// `BODYWORK_PYENV_INSTALLER` holds something other than `uv` or `pip`.
    #[error("BODYWORK_PYENV_INSTALLER is `{0}`; expected `uv`, `pip` or unset")]
    InvalidInstallerChoice(String),
    /// The environment was built but its interpreter does not work.
    #[error("the Python environment {} was built but does not work: {detail}", dir.display())]
    Broken {
        /// The environment directory.
        dir: PathBuf,
        /// What the check found.
        detail: String,
    },
    /// A file-system operation on the cache failed.
    #[error("could not {action} {}: {cause}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
}

impl EnvError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        EnvError::Io {
            action,
            path: path.into(),
            cause: source,
        }
    }
}

/// What [`EnvError::NoWheels`] says: the package, the versions tried, the
/// interpreters found and the installer's lines.
#[derive(Debug)]
pub struct NoWheels {
    /// The package uv named (`numpy==1.22.3`), or `a requirement`.
    pub package: String,
    /// The Python versions tried, default first.
    pub tried: Vec<String>,
    /// Every interpreter found, `X.Y.Z (path)`.
    pub found: Vec<String>,
    /// Why no Python was downloaded: downloads off, none fits, or the
    /// download failed.
    pub downloads: String,
    /// `X.Y.Z` of the default interpreter, built under at last.
    pub default: String,
    /// The normalised requirements.
    pub requirements: Vec<String>,
    /// The installer's last error lines.
    pub lines: Vec<String>,
}

impl std::fmt::Display for NoWheels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&quoted(
            &format!(
                "{} has no wheel for any Python found (tried {}; interpreters found: {}), {}, and installing the requirements ({}) under Python {} with source builds failed",
                self.package,
                self.tried.join(", "),
                list_or_none(&self.found),
                self.downloads,
                self.requirements.join(", "),
                self.default
            ),
            &self.lines,
        ))
    }
}

/// The items, comma-separated, or `none`.
fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// `headline:` followed by the tool's lines, indented.
fn quoted(headline: &str, lines: &[String]) -> String {
    if lines.is_empty() {
        return format!("{headline} (the tool printed no error output)");
    }
    let mut out = format!("{headline}:");
    for line in lines {
        out.push_str("\n  ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_error_quotes_the_installer_lines() {
        let err = EnvError::Install {
            requirements: vec!["no-such-pkg==1.0".into(), "six".into()],
            installer: "uv".into(),
            lines: vec![
                "error: No solution found when resolving dependencies".into(),
                "cause: Because no-such-pkg was not found".into(),
            ],
        };
        assert_eq!(
            err.to_string(),
            "installing requirements (no-such-pkg==1.0, six) with uv failed:\n  \
             error: No solution found when resolving dependencies\n  \
             cause: Because no-such-pkg was not found"
        );
    }

    #[test]
    fn without_wheels_anywhere_the_package_the_versions_and_the_interpreters_are_named() {
        let err = EnvError::NoWheels(Box::new(NoWheels {
            package: "numpy==1.22.3".into(),
            tried: vec!["3.11.7".into(), "3.13.0".into()],
            found: vec![
                "3.13.0 (/p/3.13.0/bin/python3.13)".into(),
                "3.11.7 (/p/3.11.7/bin/python3.11)".into(),
            ],
            downloads: "uv's download of a Python is off (--no-python-downloads)".into(),
            default: "3.11.7".into(),
            requirements: vec!["numpy==1.22.3".into()],
            lines: vec!["error: Failed to build `numpy==1.22.3`".into()],
        }));
        assert_eq!(
            err.to_string(),
            "numpy==1.22.3 has no wheel for any Python found (tried 3.11.7, 3.13.0; \
             interpreters found: 3.13.0 (/p/3.13.0/bin/python3.13), 3.11.7 (/p/3.11.7/bin/python3.11)), \
             uv's download of a Python is off (--no-python-downloads), \
             and installing the requirements (numpy==1.22.3) under Python 3.11.7 with source builds failed:\n  \
             error: Failed to build `numpy==1.22.3`"
        );
        let missing = EnvError::PythonVersionNotFound {
            wanted: "3.99".into(),
            found: vec![],
        };
        assert!(
            missing
                .to_string()
                .starts_with("no Python 3.99 was found on this machine (interpreters found: none)"),
            "{missing}"
        );
    }

    #[test]
    fn empty_tool_output_is_said_explicitly() {
        let err = EnvError::CreateVenv {
            dir: PathBuf::from("/h/envs/k"),
            installer: "uv".into(),
            lines: vec![],
        };
        assert_eq!(
            err.to_string(),
            "creating the Python environment /h/envs/k with uv failed (the tool printed no error output)"
        );
    }
}
