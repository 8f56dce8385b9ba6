//! An error as the user reads it, rendered in this one place: `error:
//! MESSAGE`, then a `Caused by:` line per cause, then a `hint:` line per
//! hint. Never a Rust debug dump.

use bodywork_runtime::{ObjectKind, RuntimeError};

use super::color::Style;
use crate::CliError;

/// Print `e` on stderr.
pub fn report(e: &CliError) {
    eprint!("{}", render_error(e, Style::stderr()));
}

/// `e` as the lines [`report`] prints.
pub fn render_error(e: &CliError, style: Style) -> String {
    let (message, causes, hints) = match e {
        CliError::Runtime(e) => {
            let mut hints = e.hints().to_vec();
            hints.extend(not_found_hint(e));
            (e.message(), e.causes().to_vec(), hints)
        }
        CliError::Problem { problem, .. } => (
            problem.message.clone(),
            problem.causes.clone(),
            problem.hints.clone(),
        ),
    };
    let mut out = format!("{} {message}\n", style.error("error:"));
    for cause in causes {
        out.push_str(&format!("  Caused by: {cause}\n"));
    }
    for hint in hints {
        out.push_str(&format!("  {} {hint}\n", style.hint("hint:")));
    }
    out
}

/// Where to look next after a "does not exist".
fn not_found_hint(e: &RuntimeError) -> Option<String> {
    let RuntimeError::NotFound {
        kind, namespace, ..
    } = e
    else {
        return None;
    };
    Some(match kind {
        ObjectKind::Namespace => format!("create it with `bodywork setup-namespace {namespace}`"),
        ObjectKind::Secret | ObjectKind::Service => {
            format!("see `bodywork {kind} display --namespace {namespace}`")
        }
        ObjectKind::CronJob if namespace.is_empty() => "see `bodywork get cronjobs`".to_string(),
        ObjectKind::CronJob => format!("see `bodywork cronjob display --namespace {namespace}`"),
        ObjectKind::Deployment => "see `bodywork get deployments`".to_string(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Style = Style { on: false };

    #[test]
    fn not_found_says_where_to_look() {
        let missing = |kind| {
            CliError::Runtime(RuntimeError::NotFound {
                kind,
                name: "x".into(),
                namespace: "ns".into(),
            })
        };
        assert_eq!(
            render_error(&missing(ObjectKind::Namespace), PLAIN),
            "error: namespace x does not exist\n  hint: create it with `bodywork setup-namespace ns`\n"
        );
        assert_eq!(
            render_error(&missing(ObjectKind::CronJob), PLAIN),
            "error: cron job x does not exist in namespace ns\n  \
             hint: see `bodywork cronjob display --namespace ns`\n"
        );
        assert_eq!(
            render_error(&CliError::from(RuntimeError::failed("x")), PLAIN),
            "error: x\n"
        );
    }

    #[test]
    fn causes_then_hints_each_on_its_own_line() {
        let e = RuntimeError::unavailable("no cluster")
            .with_cause("connection refused")
            .with_hint("start one");
        assert_eq!(
            render_error(&e.into(), PLAIN),
            "error: no cluster\n  Caused by: connection refused\n  hint: start one\n"
        );
    }
}
