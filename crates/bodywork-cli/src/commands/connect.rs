//! Connecting a command to the runtime it asked for (`--runtime`); what a
//! runtime says went wrong comes back as a [`CliError`], the same for both.
//!
//! Owns: the async runtime a command runs on (started only for commands
//! that need one, so `--version` and `validate` stay instant), the local
//! home, connecting to the cluster.

use std::future::Future;

use bodywork_kube::KubeRuntime;
use bodywork_local::Home;
use bodywork_local::client::LocalControl;
use bodywork_runtime::ControlPlane;

use crate::cli::{GlobalArgs, RuntimeKind};
use crate::{CliError, CliResult, Outcome};

/// Run `f` on a fresh single-threaded async runtime.
pub fn block_on<T, F: Future<Output = CliResult<T>>>(f: F) -> CliResult<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::caused("cannot start the async runtime", &e, Outcome::Failure))?
        .block_on(f)
}

/// The local runtime's home (`BODYWORK_HOME`, else `~/.bodywork`).
pub fn home() -> Result<Home, CliError> {
    Home::from_env().map_err(|problem| CliError::Problem {
        problem,
        outcome: Outcome::Usage,
    })
}

/// Connect to the runtime of `global` and run `f` against it. `image` is
/// the Kubernetes runtime's `--image` (the local runtime has none).
pub fn with_control<T, F>(global: &GlobalArgs, image: Option<String>, f: F) -> CliResult<T>
where
    F: AsyncFnOnce(&dyn ControlPlane) -> CliResult<T>,
{
    let (kind, context) = (global.runtime, global.context.clone());
    let home = match kind {
        RuntimeKind::Local => Some(home()?),
        RuntimeKind::Kubernetes => None,
    };
    block_on(async move {
        let control: Box<dyn ControlPlane> = match home {
            Some(home) => Box::new(LocalControl::new(home)),
            None => Box::new(
                KubeRuntime::connect(context.as_deref())
                    .await?
                    .with_image(image),
            ),
        };
        f(control.as_ref()).await
    })
}

/// Run `f` against the local runtime alone (`env`, `daemon --status`).
pub fn with_local<T, F>(f: F) -> CliResult<T>
where
    F: AsyncFnOnce(&LocalControl) -> CliResult<T>,
{
    let home = home()?;
    block_on(async move { f(&LocalControl::new(home)).await })
}

/// What printing a table or a document came to.
pub fn printed(result: std::io::Result<()>) -> CliResult {
    match result {
        Ok(()) => Ok(Outcome::Success),
        Err(e) => Err(CliError::error(&e, Outcome::Failure)),
    }
}

/// Print lines a runtime returned as they are.
pub fn print_lines(lines: &[String]) -> Outcome {
    for line in lines {
        println!("{line}");
    }
    Outcome::Success
}
