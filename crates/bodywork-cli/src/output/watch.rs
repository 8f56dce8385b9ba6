//! What `workflow --watch` says between runs: what a save runs again, one
//! status line per change, a configuration that is not deployed and why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bodywork_config::{Problem, Severity};

use super::color::Style;

/// A service as a change left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicas {
    pub service: String,
    pub available: u32,
    pub wanted: u32,
    /// Requests to it that failed during the change.
    pub failed: Failed,
}

/// The requests to a service that failed for their clients during a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The runtime does not count them (Kubernetes).
    NotCounted,
    Counted(u64),
    /// Counting began again during the change (the daemon restarted): how
    /// many failed, before and while it was down, is not known.
    Unknown,
}

/// How one change (the first deploy, or a burst of saves) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Every stage run succeeded: the services it rolled out, and the
    /// batch stages it ran.
    Done {
        services: Vec<Replicas>,
        batch: Vec<String>,
    },
    /// A stage failed (or the run could not start): why, as the run
    /// recorded it, and the last lines of what the new replicas printed.
    Failed {
        why: Option<String>,
        last_lines: Vec<(String, Vec<String>)>,
    },
    /// Stopped by Ctrl-C.
    Cancelled,
}

/// One change, for its status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The files saved (relative to the project); none for the first deploy.
    pub saved: Vec<PathBuf>,
    /// From the save (or the start) to the end.
    pub elapsed: Duration,
    pub ended: Ended,
}

/// `saved a.py`, `saved a.py, b.py and 3 more files`, or `deploy` (the
/// first deploy).
fn what_was_saved(saved: &[PathBuf]) -> String {
    const SHOWN: usize = 2;
    let names: Vec<String> = saved
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    match saved.len() {
        0 => "deploy".to_string(),
        n if n <= SHOWN => format!("saved {}", names.join(", ")),
        n => format!("saved {} and {} more files", names.join(", "), n - SHOWN),
    }
}

/// The status line of a change (and, for a failure, the lines that say
/// why): `saved serve/service.py → serving in 0.74 s (2/2 replicas)`.
pub fn status(change: &Change, style: Style) -> String {
    let saved = what_was_saved(&change.saved);
    let secs = change.elapsed.as_secs_f64();
    match &change.ended {
        Ended::Done { services, batch } if services.is_empty() => {
            format!(
                "{saved} → {} in {secs:.2} s",
                style.ok(&format!("ran {}", batch.join(", ")))
            )
        }
        Ended::Done { services, .. } => {
            let replicas: Vec<String> = match services.as_slice() {
                [one] => vec![format!("{}/{} replicas", one.available, one.wanted)],
                many => many
                    .iter()
                    .map(|s| format!("{} {}/{}", s.service, s.available, s.wanted))
                    .collect(),
            };
            let counted: Vec<u64> = services
                .iter()
                .filter_map(|s| match s.failed {
                    Failed::Counted(n) => Some(n),
                    Failed::NotCounted | Failed::Unknown => None,
                })
                .collect();
            let unknown = services.iter().any(|s| s.failed == Failed::Unknown);
            let failed = match counted.iter().sum::<u64>() {
                _ if unknown => format!(
                    ", {}",
                    style.error("failed requests unknown: the daemon restarted meanwhile")
                ),
                _ if counted.is_empty() => String::new(),
                1 => format!(", {}", style.error("1 failed request")),
                0 => ", 0 failed requests".to_string(),
                n => format!(", {}", style.error(&format!("{n} failed requests"))),
            };
            format!(
                "{saved} → {} in {secs:.2} s ({}{failed})",
                style.ok("serving"),
                replicas.join(", ")
            )
        }
        Ended::Failed { why, last_lines } => {
            let mut out = format!(
                "{saved} → {} after {secs:.2} s: {}",
                style.error("failed"),
                why.as_deref().unwrap_or("see the log above")
            );
            for (source, lines) in last_lines {
                out.push_str(&format!("\n  last lines of {source}:"));
                for line in lines {
                    out.push_str(&format!("\n    {line}"));
                }
            }
            out
        }
        Ended::Cancelled => format!("{saved} → cancelled after {secs:.2} s"),
    }
}

/// Said before a run: `re-running train and what follows: serve`.
/// `from` empty: the whole workflow.
pub fn rerunning(from: &[String], following: &[String]) -> String {
    match (from, following) {
        ([], _) => "re-running the whole workflow".to_string(),
        (from, []) => format!("re-running {}", from.join(", ")),
        (from, following) => format!(
            "re-running {} and what follows: {}",
            from.join(", "),
            following.join(", ")
        ),
    }
}

/// A burst of saves whose configuration changes nothing the workflow runs.
pub fn nothing_to_run(saved: &[PathBuf]) -> String {
    format!(
        "{} → nothing the workflow runs has changed",
        what_was_saved(saved)
    )
}

/// A configuration that is not valid: every problem, and that nothing was
/// changed.
pub fn not_deployed(saved: &[PathBuf], problems: &[Problem], style: Style) -> String {
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let mut out = format!(
        "{} → {}: the project is not valid ({errors} error{}); nothing was changed",
        what_was_saved(saved),
        style.error("not deployed"),
        if errors == 1 { "" } else { "s" }
    );
    for p in problems {
        let label = match p.severity {
            Severity::Error => style.error("error:"),
            Severity::Warning => style.warning("warning:"),
        };
        out.push_str(&format!("\n  {label} {p}"));
    }
    out
}

/// After the first deploy.
pub fn watching(root: &Path) -> String {
    format!("watching {} for changes (Ctrl-C to stop)", root.display())
}

/// A save that arrives while a run is going.
pub const SUPERSEDED: &str = "saved again: cancelling the run in progress";

/// Ctrl-C while no run is going, or once the run it cancelled has ended.
pub const STOPPED: &str = "stopped watching; the last good version keeps serving";

#[cfg(test)]
mod tests {
    use super::*;

    fn change(saved: &[&str], ended: Ended) -> Change {
        Change {
            saved: saved.iter().map(PathBuf::from).collect(),
            elapsed: Duration::from_millis(740),
            ended,
        }
    }

    #[test]
    fn one_status_line_per_change() {
        let plain = Style { on: false };
        let served = Ended::Done {
            services: vec![Replicas {
                service: "scoring".into(),
                available: 2,
                wanted: 2,
                failed: Failed::Counted(0),
            }],
            batch: vec![],
        };
        assert_eq!(
            status(
                &change(&["scoring_service/service.py"], served.clone()),
                plain
            ),
            "saved scoring_service/service.py → serving in 0.74 s (2/2 replicas, 0 failed requests)"
        );
        let uncounted = Ended::Done {
            services: vec![
                Replicas {
                    service: "a".into(),
                    available: 1,
                    wanted: 1,
                    failed: Failed::Counted(1),
                },
                Replicas {
                    service: "b".into(),
                    available: 2,
                    wanted: 2,
                    failed: Failed::NotCounted,
                },
            ],
            batch: vec![],
        };
        assert_eq!(
            status(&change(&["x.py"], uncounted.clone()), plain),
            "saved x.py → serving in 0.74 s (a 1/1, b 2/2, 1 failed request)"
        );
        let Ended::Done { mut services, .. } = uncounted else {
            unreachable!()
        };
        services[1].failed = Failed::Unknown;
        let restarted = Ended::Done {
            services,
            batch: vec![],
        };
        assert_eq!(
            status(&change(&["x.py"], restarted), plain),
            "saved x.py → serving in 0.74 s (a 1/1, b 2/2, failed requests unknown: the daemon restarted meanwhile)"
        );
        assert_eq!(
            status(&change(&[], served), plain),
            "deploy → serving in 0.74 s (2/2 replicas, 0 failed requests)"
        );
        let ran = Ended::Done {
            services: vec![],
            batch: vec!["train".into(), "report".into()],
        };
        assert_eq!(
            status(&change(&["a.py", "b.py", "c.py", "d.py"], ran), plain),
            "saved a.py, b.py and 2 more files → ran train, report in 0.74 s"
        );
        let failed = Ended::Failed {
            why: Some("stage serve failed: it crashed".into()),
            last_lines: vec![("demo--serve/1".into(), vec!["Traceback".into()])],
        };
        assert_eq!(
            status(&change(&["serve/app.py"], failed), plain),
            "saved serve/app.py → failed after 0.74 s: stage serve failed: it crashed\n  last \
             lines of demo--serve/1:\n    Traceback"
        );
    }

    #[test]
    fn a_configuration_not_valid_says_every_problem() {
        let problems = [
            Problem::error(
                "bodywork.yaml",
                "stages.svc.service.replicas",
                "must be a whole number",
            ),
            Problem::warning("bodywork.yaml", "pipeline.docker_image", "is ignored"),
        ];
        let text = not_deployed(
            &[PathBuf::from("bodywork.yaml")],
            &problems,
            Style { on: false },
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "saved bodywork.yaml → not deployed: the project is not valid (1 error); nothing \
             was changed"
        );
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].starts_with("  error: bodywork.yaml: stages.svc.service.replicas"));
        assert!(lines[2].starts_with("  warning: "), "{text}");
    }

    #[test]
    fn what_a_save_runs_again_is_said_before() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            rerunning(&s(&["stage-1"]), &s(&["stage-2", "stage-3"])),
            "re-running stage-1 and what follows: stage-2, stage-3"
        );
        assert_eq!(rerunning(&s(&["serve"]), &[]), "re-running serve");
        assert_eq!(rerunning(&[], &[]), "re-running the whole workflow");
    }
}
