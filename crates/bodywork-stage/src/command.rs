//! The command line of a stage: `python -u SCRIPT ARGS...` in the
//! directory of the executable, or the headless notebook runner for an
//! `.ipynb`. The same on every runtime; pure apart from writing the
//! notebook runner once.
//!
//! Must not: decide the environment variables (see [`crate::env`]) or run
//! anything.

use std::path::Path;

use bodywork_plan::StagePlan;

use crate::notebook;
use crate::process::StageCommand;

/// Why a stage has no command line.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The plan's executable has no file name (a bug in the plan).
    #[error("stage {0} has no executable file name")]
    NoFileName(String),
    /// The notebook runner could not be written into the tools directory.
    #[error("cannot write the notebook runner: {0}")]
    NotebookRunner(std::io::Error),
}

/// What runs `stage` from the checkout at `checkout` with the Python
/// interpreter `python`: `python -u SCRIPT ARGS...`, or `python RUNNER
/// NOTEBOOK ARGS...` (the runner is written into `tools_dir`). `env` is the
/// complete environment of the process.
pub fn command(
    stage: &StagePlan,
    checkout: &Path,
    python: &Path,
    tools_dir: &Path,
    env: Vec<(String, String)>,
) -> Result<StageCommand, CommandError> {
    let script = stage
        .executable
        .file_name()
        .ok_or_else(|| CommandError::NoFileName(stage.stage.clone()))?;
    let mut args = Vec::new();
    if stage.notebook {
        let runner = notebook::install(tools_dir).map_err(CommandError::NotebookRunner)?;
        args.push(runner.into_os_string());
    } else {
        args.push("-u".into());
    }
    args.push(script.to_os_string());
    args.extend(stage.args.iter().map(Into::into));
    Ok(StageCommand {
        program: python.to_path_buf(),
        args,
        cwd: checkout.join(&stage.working_dir),
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn stage(executable: &str, notebook: bool) -> StagePlan {
        StagePlan {
            executable: executable.into(),
            notebook,
            ..crate::fixtures::stage(vec![])
        }
    }

    #[test]
    fn scripts_run_unbuffered_from_their_directory_with_their_args() {
        let tools = tempfile::tempdir().unwrap();
        let cmd = command(
            &stage("s/main.py", false),
            Path::new("/co"),
            Path::new("/envs/k/bin/python"),
            tools.path(),
            vec![("A".into(), "1".into())],
        )
        .unwrap();
        assert_eq!(cmd.program, Path::new("/envs/k/bin/python"));
        assert_eq!(
            cmd.args,
            ["-u", "main.py", "a b", "--x"].map(OsString::from)
        );
        assert_eq!(cmd.cwd, Path::new("/co/s"));
        assert_eq!(cmd.env, [("A".to_string(), "1".to_string())]);
        // Nothing is written for a script.
        assert_eq!(std::fs::read_dir(tools.path()).unwrap().count(), 0);
    }

    #[test]
    fn notebooks_run_through_the_runner() {
        let tools = tempfile::tempdir().unwrap();
        let cmd = command(
            &stage("s/nb.ipynb", true),
            Path::new("/co"),
            Path::new("python"),
            tools.path(),
            vec![],
        )
        .unwrap();
        let runner = tools.path().join("run_notebook.py");
        assert!(runner.is_file());
        assert_eq!(cmd.args[0], runner.into_os_string());
        assert_eq!(
            cmd.args[1..],
            ["nb.ipynb", "a b", "--x"].map(OsString::from)
        );
    }

    #[test]
    fn an_executable_without_a_file_name_is_an_error() {
        let err = command(
            &stage("", false),
            Path::new("/co"),
            Path::new("python"),
            Path::new("/nonexistent"),
            vec![],
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "stage s has no executable file name");
    }
}
