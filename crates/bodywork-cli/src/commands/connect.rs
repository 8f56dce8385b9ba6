//! Connecting a command to the runtime it asked for (`--runtime`), and
//! reporting what a runtime says went wrong, the same way for both.
//!
//! Owns: the async runtime a command runs on (started only for commands
//! that need one, so `--version` and `validate` stay instant), the local
//! home, connecting to the cluster, errors with their hints, exit codes.

use std::future::Future;

use bodywork_kube::KubeRuntime;
use bodywork_local::Home;
use bodywork_local::client::LocalControl;
use bodywork_runtime::{ControlPlane, RuntimeError};

use crate::Outcome;
use crate::cli::{GlobalArgs, RuntimeKind};
use crate::output;

/// Run `f` on a fresh single-threaded async runtime.
pub fn block_on<F: Future<Output = Outcome>>(f: F) -> Outcome {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            output::report_message(format!("cannot start the async runtime: {e}"));
            Outcome::Failure
        }
    }
}

/// The local runtime's home (`BODYWORK_HOME`, else `~/.bodywork`).
pub fn home() -> Result<Home, Outcome> {
    Home::from_env().map_err(|e| {
        output::report_message(e);
        Outcome::Usage
    })
}

/// Connect to the runtime of `global` and run `f` against it. `image` is
/// the Kubernetes runtime's `--image` (the local runtime has none).
pub fn with_control<F>(global: &GlobalArgs, image: Option<String>, f: F) -> Outcome
where
    F: AsyncFnOnce(&dyn ControlPlane) -> Result<Outcome, RuntimeError>,
{
    let (kind, context) = (global.runtime, global.context.clone());
    let home = match kind {
        RuntimeKind::Local => match home() {
            Ok(h) => Some(h),
            Err(o) => return o,
        },
        RuntimeKind::Kubernetes => None,
    };
    block_on(async move {
        let control: Box<dyn ControlPlane> = match home {
            Some(home) => Box::new(LocalControl::new(home)),
            None => match KubeRuntime::connect(context.as_deref()).await {
                Ok(rt) => Box::new(rt.with_image(image)),
                Err(e) => return failed(&e),
            },
        };
        match f(control.as_ref()).await {
            Ok(outcome) => outcome,
            Err(e) => failed(&e),
        }
    })
}

/// Run `f` against the local runtime alone (`env`, `daemon --status`).
pub fn with_local<F>(f: F) -> Outcome
where
    F: AsyncFnOnce(&LocalControl) -> Result<Outcome, RuntimeError>,
{
    let home = match home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    block_on(async move {
        match f(&LocalControl::new(home)).await {
            Ok(outcome) => outcome,
            Err(e) => failed(&e),
        }
    })
}

/// Report a runtime's error, with what to do next where that is clear.
pub fn failed(e: &RuntimeError) -> Outcome {
    match hint(e) {
        Some(hint) => output::report_message(format!("{e}{hint}")),
        None => output::report_message(e),
    }
    match e {
        RuntimeError::Unsupported(_) => Outcome::Usage,
        _ => Outcome::Failure,
    }
}

/// Where to look next after a "does not exist".
fn hint(e: &RuntimeError) -> Option<String> {
    let RuntimeError::NotFound {
        kind, namespace, ..
    } = e
    else {
        return None;
    };
    Some(match *kind {
        "namespace" => format!("; create it with `bodywork setup-namespace {namespace}`"),
        "secret" | "service" => {
            format!(" (see `bodywork {kind} display --namespace {namespace}`)")
        }
        "cron job" if namespace.is_empty() => " (see `bodywork get cronjobs`)".to_string(),
        "cron job" => format!(" (see `bodywork cronjob display --namespace {namespace}`)"),
        _ => return None,
    })
}

/// What printing a table or a document came to.
pub fn printed(result: std::io::Result<()>) -> Result<Outcome, RuntimeError> {
    match result {
        Ok(()) => Ok(Outcome::Success),
        Err(e) => {
            output::report_error(&e, None);
            Ok(Outcome::Failure)
        }
    }
}

/// Print lines a runtime returned as they are.
pub fn print_lines(lines: &[String]) -> Outcome {
    for line in lines {
        println!("{line}");
    }
    Outcome::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_says_where_to_look() {
        let missing = |kind| RuntimeError::NotFound {
            kind,
            name: "x".into(),
            namespace: "ns".into(),
        };
        assert_eq!(
            format!(
                "{}{}",
                missing("namespace"),
                hint(&missing("namespace")).unwrap_or_default()
            ),
            "namespace x does not exist; create it with `bodywork setup-namespace ns`"
        );
        assert_eq!(
            format!(
                "{}{}",
                missing("cron job"),
                hint(&missing("cron job")).unwrap_or_default()
            ),
            "cron job x does not exist in namespace ns (see `bodywork cronjob display --namespace ns`)"
        );
        assert!(hint(&RuntimeError::Failed("x".into())).is_none());
    }
}
