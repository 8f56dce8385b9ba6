//! `bodywork workflow [--namespace NS] REPO [BRANCH]`: hand the run to the
//! daemon and stream its log live. Ctrl-C cancels the run (the daemon stops
//! every stage process and records the run as cancelled); a second Ctrl-C
//! leaves at once.

use bodywork_local::protocol::{Request, Response, WorkflowSubmission};
use bodywork_runtime::{Level, LogRenderer};
use bodywork_source::Source;

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

async fn stream(conn: &mut bodywork_local::client::Connection) -> Outcome {
    let style = Style::stdout();
    let paint = move |level: Level| match level {
        Level::Error => style.error(level.as_str()),
        Level::Warning => style.warning(level.as_str()),
        Level::Debug => style.dim(level.as_str()),
        Level::Info => level.as_str().to_string(),
    };
    let mut renderer = LogRenderer::default();
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
                for line in renderer.render(&event, &paint) {
                    println!("{line}");
                }
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
