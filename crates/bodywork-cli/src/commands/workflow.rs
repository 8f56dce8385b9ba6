//! `bodywork workflow [--namespace NS] REPO [BRANCH]`: run a project's
//! workflow on either runtime, streaming its log live. Ctrl-C cancels the
//! run (the local daemon stops every stage process; on Kubernetes the run's
//! Job is deleted or its Deployment rolled back); a second Ctrl-C leaves at
//! once.

use std::path::PathBuf;

use bodywork_runtime::{AsOf, CancellationToken, RunState, WorkflowRun, WorkflowSubmission};
use bodywork_source::{KeyFile, Source};

use super::connect::with_control;
use super::{checked_optional, dry_run, project_location, watch};
use crate::cli::{GlobalArgs, RuntimeKind, WorkflowArgs};
use crate::output::TerminalLog;
use crate::{CliError, CliResult, Outcome};

/// A workflow as a command asks for it, before any check: what the seed's
/// `workflow` and Bodywork 3's and 1.x's deployment verbs each build.
#[derive(Debug, Clone, Default)]
pub struct Deploy {
    /// The namespace to run in (default: the project's own).
    pub namespace: Option<String>,
    /// Git URL or local directory of the project.
    pub repo: String,
    pub branch: Option<String>,
    /// Private SSH key for a private repository.
    pub ssh: Option<PathBuf>,
    /// Container image stages run in (Kubernetes runtime).
    pub image: Option<String>,
    /// Secrets group copied into the namespace instead of the project's own.
    pub secrets_group: Option<String>,
    /// Print the plan without running anything.
    pub dry_run: bool,
    pub resolve_as_of: Option<AsOf>,
    pub python: Option<String>,
    pub no_python_downloads: bool,
    /// Deploy, then deploy every save of the project's files (`--watch`).
    pub watch: bool,
}

impl From<&WorkflowArgs> for Deploy {
    fn from(args: &WorkflowArgs) -> Deploy {
        Deploy {
            namespace: args.namespace.namespace.clone(),
            repo: args.repo.clone(),
            branch: args.branch.clone(),
            ssh: args.ssh.clone(),
            image: args.image.clone(),
            secrets_group: args.group.clone(),
            dry_run: args.dry_run,
            resolve_as_of: args.resolve.resolve_as_of,
            python: args.python.python.clone(),
            no_python_downloads: args.python.no_python_downloads(),
            watch: args.watch,
        }
    }
}

/// Run the workflow attached (or print its plan, for a dry run).
pub fn run(global: &GlobalArgs, args: &Deploy) -> CliResult {
    if args.watch {
        watch::usable(global, &args.repo, args.dry_run)?;
    }
    let (submission, _env_key) = checked(global, args)?;
    if args.dry_run {
        return dry_run::workflow(global, &submission, args.image.as_deref());
    }
    if args.watch {
        return watch::run(global, submission);
    }
    attached(global, args.image.clone(), submission)
}

/// The workflow handed to the control plane (the local daemon, a Job in
/// the cluster), which runs it and retries it `retries` times while it
/// fails; returns at once, `started` saying the run's name (`name` if
/// given) in the words of the dialect that asked.
pub fn detached(
    global: &GlobalArgs,
    args: &Deploy,
    name: Option<String>,
    retries: u32,
    started: fn(&str),
) -> CliResult {
    let (submission, _env_key) = checked(global, args)?;
    with_control(global, args.image.clone(), async move |cp| {
        let name = cp
            .start_workflow(&submission, name.as_deref(), retries)
            .await?;
        started(&name);
        Ok(Outcome::Success)
    })
}

/// What the user asked for, checked, as the control plane takes it; with
/// the deploy key it holds for the run, if any.
fn checked(
    global: &GlobalArgs,
    args: &Deploy,
) -> Result<(WorkflowSubmission, Option<KeyFile>), CliError> {
    let secrets_group = checked_optional("secrets group", args.secrets_group.as_deref())?;
    let namespace = checked_optional("namespace", args.namespace.as_deref())?;
    if args.image.is_some() && !args.dry_run && global.runtime == RuntimeKind::Local {
        return Err(CliError::usage(
            "--image applies to the Kubernetes runtime; the local runtime runs stages on this machine",
        ));
    }
    let repo = project_location(&args.repo, Outcome::Failure)?;
    let ssh_key = match &args.ssh {
        Some(key) => match std::path::absolute(key) {
            Ok(p) if p.is_file() => Some(p),
            _ => {
                return Err(CliError::usage(format!(
                    "--ssh {}: no such key file",
                    key.display()
                )));
            }
        },
        None => None,
    };
    // No `--ssh`: in a pod (an in-cluster cron job), the namespace's deploy
    // key arrives as BODYWORK_GITHUB_SSH_PRIVATE_KEY; held for the run.
    let env_key = match (&ssh_key, bodywork_source::key_from_env()) {
        (None, Some(key)) if Source::parse(&repo).is_ok_and(|s| s.uses_ssh()) => {
            match KeyFile::write(&std::env::temp_dir().join("bodywork-keys"), &key) {
                Ok(file) => Some(file),
                Err(e) => {
                    return Err(CliError::caused(
                        "cannot write the SSH key",
                        &e,
                        Outcome::Failure,
                    ));
                }
            }
        }
        _ => None,
    };
    let submission = WorkflowSubmission {
        repo,
        branch: args.branch.clone(),
        namespace,
        ssh_key_from_env: ssh_key.is_none() && env_key.is_some(),
        ssh_key: ssh_key.or_else(|| env_key.as_ref().map(|k| k.path().to_path_buf())),
        secrets_group,
        resolve_as_of: args.resolve_as_of,
        python: args.python.clone(),
        no_python_downloads: args.no_python_downloads,
        from_stages: Vec::new(),
        watcher: None,
    };
    Ok((submission, env_key))
}

/// Run it attached: stream its log live; Ctrl-C cancels it.
fn attached(
    global: &GlobalArgs,
    image: Option<String>,
    submission: WorkflowSubmission,
) -> CliResult {
    with_control(global, image, async move |cp| {
        let log = TerminalLog::with_spinner();
        let cancel = CancellationToken::new();
        let run = cp.run_workflow(WorkflowRun {
            submission: &submission,
            log: &log,
            cancel: &cancel,
        });
        let mut run = std::pin::pin!(run);
        loop {
            tokio::select! {
                outcome = &mut run => {
                    // A failed run has said why in its log, as an ERROR line.
                    return Ok(match outcome? {
                        RunState::Succeeded => Outcome::Success,
                        RunState::Failed | RunState::Cancelled | RunState::Running => {
                            Outcome::Failure
                        }
                    });
                }
                _ = tokio::signal::ctrl_c() => {
                    if cancel.is_cancelled() {
                        eprintln!("{}", crate::output::LEAVING_RUN);
                        return Ok(Outcome::Failure);
                    }
                    eprintln!("{}", crate::output::CANCELLING_RUN);
                    cancel.cancel();
                }
            }
        }
    })
}
