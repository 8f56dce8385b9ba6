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
