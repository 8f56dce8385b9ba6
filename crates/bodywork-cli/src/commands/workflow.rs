//! `bodywork workflow [--namespace NS] REPO [BRANCH]`: hand the run to the
//! daemon and stream its log live. Ctrl-C cancels the run (the daemon stops
//! every stage process and records the run as cancelled); a second Ctrl-C
//! leaves at once.

use std::io::IsTerminal;
use std::time::Duration;

use bodywork_local::protocol::{Request, Response, WorkflowSubmission};
use bodywork_runtime::{Level, LogEvent, LogRenderer};
use bodywork_source::Source;
use indicatif::ProgressBar;

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::WorkflowArgs;
use crate::output::{self, color::Style};

pub fn run(args: &WorkflowArgs) -> Outcome {
    if args.dry_run {
        output::report_message(
            "--dry-run prints Kubernetes manifests; use it with --runtime kubernetes",
        );
        return Outcome::Usage;
    }
    if args.image.is_some() {
        output::report_message(
            "--image applies to the Kubernetes runtime; the local runtime runs stages on this machine",
        );
        return Outcome::Usage;
    }
    let namespace = match args
        .namespace
        .namespace
        .as_deref()
        .map(|ns| checked_name("namespace", ns))
        .transpose()
    {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    // The daemon has another working directory: send local paths absolute.
    let repo = match Source::parse(&args.repo) {
        Ok(Source::LocalDir(dir)) => dir.display().to_string(),
        Ok(Source::Git(url)) => url,
        Err(e) => {
            output::report_error(&e, None);
            return Outcome::Failure;
        }
    };
    let ssh_key = match &args.ssh {
        Some(key) => match std::path::absolute(key) {
            Ok(p) if p.is_file() => Some(p.display().to_string()),
            _ => {
                output::report_message(format!("--ssh {}: no such key file", key.display()));
                return Outcome::Usage;
            }
        },
        None => None,
    };
    let submission = WorkflowSubmission {
        repo,
        branch: args.branch.clone(),
        namespace,
        ssh_key,
    };
    let home = match local::home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    local::block_on(async move {
        let mut conn = match local::connect(&home).await {
            Ok(c) => c,
            Err(o) => return o,
        };
        if let Err(e) = conn.send(&Request::RunWorkflow(submission)).await {
            return local::fail(&e);
        }
        stream(&mut conn).await
    })
}

/// A spinner on stderr while the run waits on a Python environment build
/// (log events of the `environment` logger), cleared by the next event of
/// anything else. Only on a terminal.
struct EnvSpinner {
    enabled: bool,
    bar: Option<ProgressBar>,
}

impl EnvSpinner {
    fn new(enabled: bool) -> EnvSpinner {
        EnvSpinner { enabled, bar: None }
    }

    fn follow(&mut self, event: &LogEvent) {
        match event {
            LogEvent::Log {
                logger, message, ..
            } if self.enabled
                && logger == "environment"
                && !message.starts_with("environment ready") =>
            {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new_spinner();
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar
                });
                bar.set_message(format!("building the Python environment: {message}"));
            }
            _ => {
                if let Some(bar) = self.bar.take() {
                    bar.finish_and_clear();
                }
            }
        }
    }

    /// Print without the spinner getting in the way.
    fn suspend(&self, print: impl FnOnce()) {
        match &self.bar {
            Some(bar) => bar.suspend(print),
            None => print(),
        }
    }
}

async fn stream(conn: &mut bodywork_local::client::Connection) -> Outcome {
    let style = Style::stdout();
    let paint = move |level: Level| match level {
        Level::Error => style.error(level.as_str()),
        Level::Warning => style.warning(level.as_str()),
        Level::Debug => style.dim(level.as_str()),
        Level::Info => level.as_str().to_string(),
    };
    let mut renderer = LogRenderer::default();
    let mut spinner = EnvSpinner::new(std::io::stderr().is_terminal());
    let mut interrupted = false;
    let mut outcome = Outcome::Failure;
    loop {
        let frame = tokio::select! {
            frame = conn.next() => frame,
            _ = tokio::signal::ctrl_c() => {
                if interrupted {
                    eprintln!("leaving; the daemon stops the run");
                    return Outcome::Failure;
                }
                interrupted = true;
                eprintln!("cancelling the run (Ctrl-C again to leave at once)");
                let _ = conn.send(&Request::Cancel).await;
                continue;
            }
        };
        match frame {
            Ok(Response::RunStarted { run }) => {
                tracing::debug!(target: "workflow", "run {run} started");
            }
            Ok(Response::Event(event)) => {
                spinner.follow(&event);
                let lines = renderer.render(&event, &paint);
                spinner.suspend(|| {
                    for line in lines {
                        println!("{line}");
                    }
                });
            }
            Ok(Response::RunFinished { status, .. }) => {
                outcome = if status == "succeeded" {
                    Outcome::Success
                } else {
                    Outcome::Failure
                };
            }
            Ok(Response::End) => return outcome,
            Ok(Response::Error { message }) => {
                output::report_message(message);
                return Outcome::Failure;
            }
            Ok(other) => return local::unexpected(other),
            Err(e) => return local::fail(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(logger: &str, message: &str) -> LogEvent {
        LogEvent::log(Level::Info, logger, message)
    }

    #[test]
    fn the_spinner_follows_environment_builds_only() {
        let mut spinner = EnvSpinner::new(true);
        spinner.follow(&event("workflow", "running batch stage=a"));
        assert!(spinner.bar.is_none());
        spinner.follow(&event("environment", "Resolved 5 packages in 10ms"));
        let message = spinner.bar.as_ref().map(ProgressBar::message);
        assert_eq!(
            message.as_deref(),
            Some("building the Python environment: Resolved 5 packages in 10ms")
        );
        spinner.follow(&event("environment", "environment ready in 3.1s"));
        assert!(spinner.bar.is_none());
        spinner.follow(&event("environment", "Installed 5 packages"));
        spinner.follow(&LogEvent::Stage {
            source: "p--a".into(),
            line: "hello".into(),
        });
        assert!(spinner.bar.is_none());
    }

    #[test]
    fn no_spinner_off_a_terminal() {
        let mut spinner = EnvSpinner::new(false);
        spinner.follow(&event("environment", "Resolved 5 packages in 10ms"));
        assert!(spinner.bar.is_none());
        let mut printed = false;
        spinner.suspend(|| printed = true);
        assert!(printed);
    }
}
