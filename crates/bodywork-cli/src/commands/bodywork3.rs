//! The Bodywork 3 dialect's verbs (`create / get / update / delete`), each
//! handed to the seed command that does the same thing: a deployment is a
//! `workflow` run (namespace from the project), a secret of a group goes
//! through `secret`'s group functions, a deployment's services through
//! `service`'s.

use std::sync::Mutex;

use bodywork_runtime::{ControlPlane, RuntimeError, WorkflowSubmission, detached_name};

use super::connect::{block_on, with_control};
use super::{checked_name, checked_optional, cronjob, project_location, secret, workflow};
use crate::Outcome;
use crate::cli::{
    CreateCommand, CronArgs, CronjobCommand, CronjobCreateArgs, CronjobDisplayArgs,
    CronjobNameArgs, DeleteCommand, DeploymentArgs, GetCommand, GetCronArgs, GlobalArgs,
    LegacyAction, LegacyDeploymentArgs, NamespaceArg, OptionalNamespaceArg, UpdateCommand,
    WorkflowArgs,
};
use crate::output;

pub fn create(global: &GlobalArgs, command: &CreateCommand) -> Outcome {
    match command {
        CreateCommand::Deployment(args) => deploy(global, args),
        CreateCommand::Secret(args) => secret::put_in_group(global, args, false),
        CreateCommand::Cronjob(args) => schedule(global, args, false),
    }
}

pub fn update(global: &GlobalArgs, command: &UpdateCommand) -> Outcome {
    match command {
        UpdateCommand::Deployment(args) => deploy(global, args),
        UpdateCommand::Secret(args) => secret::put_in_group(global, args, true),
        UpdateCommand::Cronjob(args) => schedule(global, args, true),
    }
}

pub fn get(global: &GlobalArgs, command: &GetCommand) -> Outcome {
    match command {
        GetCommand::Deployment(args) if args.asynchronous => {
            detached_runs(global, args.logs.as_deref(), None)
        }
        GetCommand::Deployment(args) => super::service::display_deployments(global, args),
        GetCommand::Secret(args) => secret::display_groups(global, args),
        GetCommand::Cronjob(args) => get_cronjob(global, args),
    }
}

pub fn delete(global: &GlobalArgs, command: &DeleteCommand) -> Outcome {
    match command {
        DeleteCommand::Deployment(args) if args.asynchronous => delete_detached(global, &args.name),
        DeleteCommand::Deployment(args) => super::service::delete_deployment(global, args),
        DeleteCommand::Secret(args) => secret::delete_in_group(global, args),
        DeleteCommand::Cronjob(args) => cron_command(global, &args.name, CronjobCommand::Delete),
    }
}

/// `create/update deployment REPO [--branch B] [--ssh KEY] [--group G]`:
/// the seed's `workflow REPO [BRANCH]`, into the project's own namespace.
fn deploy(global: &GlobalArgs, args: &DeploymentArgs) -> Outcome {
    let mut group = match checked_optional("secrets group", args.group.as_deref()) {
        Ok(g) => g,
        Err(o) => return o,
    };
    if let (Some(path), false) = (&args.ssh, args.dry_run) {
        match store_deploy_key(global, args, path, group) {
            Ok(g) => group = Some(g),
            Err(o) => return o,
        }
    }
    let workflow = WorkflowArgs {
        namespace: OptionalNamespaceArg { namespace: None },
        repo: args.git_url.clone(),
        branch: args.branch.clone(),
        ssh: args.ssh.clone(),
        image: None,
        group: None,
        dry_run: args.dry_run,
        resolve: args.resolve,
        python: args.python.clone(),
    };
    if args.asynchronous {
        let name = match checked_optional("deployment job", args.async_job_name.as_deref()) {
            Ok(n) => n,
            Err(o) => return o,
        };
        return workflow::detached(global, &workflow, group, name, args.retries);
    }
    workflow::run_with_group(global, &workflow, group)
}

/// `--ssh KEY`: the key kept where Bodywork 3 keeps it, the secret
/// `ssh-git-private-key` of the deployment's secrets group (`--group`, else
/// the project's `pipeline.secrets_group`, else the project's name), which
/// each run copies into the project's namespace, where its stages' pods
/// and its cron runs read it. Returns the group.
fn store_deploy_key(
    global: &GlobalArgs,
    args: &DeploymentArgs,
    path: &std::path::Path,
    group: Option<String>,
) -> Result<String, Outcome> {
    let (path, key) = read_key(path)?;
    let repo = project_location(&args.git_url, Outcome::Usage)?;
    let submission = WorkflowSubmission {
        repo,
        branch: args.branch.clone(),
        ssh_key: Some(path),
        ..WorkflowSubmission::default()
    };
    let plan = plan_project(&submission)?;
    let group = group.or(plan.secrets_group).unwrap_or(plan.project);
    let name = bodywork_source::GIT_SSH_KEY_SECRET;
    let data = [(bodywork_source::GIT_SSH_KEY_VAR.to_string(), key)].into();
    let in_group = group.clone();
    let stored = with_control(global, None, async move |cp| {
        let exists = bodywork_runtime::groups::list(cp, Some(&in_group))
            .await?
            .iter()
            .any(|s| s.name == name);
        bodywork_runtime::groups::put(cp, &in_group, name, data, exists).await?;
        println!("secret={name} stored in group={in_group}: the deployment's stages clone with it");
        Ok(Outcome::Success)
    });
    match stored {
        Outcome::Success => Ok(group),
        other => Err(other),
    }
}

/// The project fetched, loaded and planned here (nothing done), or the
/// outcome of failing to, reported.
fn plan_project(submission: &WorkflowSubmission) -> Result<bodywork_plan::WorkflowPlan, Outcome> {
    let planned = Mutex::new(None);
    let outcome = block_on(async {
        match bodywork_kube::host::plan(submission).await {
            Ok(prepared) => {
                if let Ok(mut slot) = planned.lock() {
                    *slot = Some(prepared.plan);
                }
                Outcome::Success
            }
            Err(e) => {
                output::report_error(&e, None);
                Outcome::Failure
            }
        }
    });
    planned.into_inner().ok().flatten().ok_or(outcome)
}

/// A private key file given with `--ssh`: its absolute path and its text.
fn read_key(path: &std::path::Path) -> Result<(std::path::PathBuf, String), Outcome> {
    match std::fs::read_to_string(path) {
        Ok(key) => Ok((
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            key,
        )),
        Err(e) => {
            output::report_message(format!("--ssh {}: cannot read it: {e}", path.display()));
            Err(Outcome::Usage)
        }
    }
}

/// Detached runs (those named `named` only, when given) in the runs
/// table, or with `logs` the whole log of that run.
fn detached_runs(global: &GlobalArgs, logs: Option<&str>, named: Option<&str>) -> Outcome {
    let (logs, named, format) = (
        logs.map(String::from),
        named.map(String::from),
        global.output,
    );
    with_control(global, None, async move |cp| {
        if let Some(name) = logs {
            cp.detached_logs(&name, &crate::output::TerminalLog::stdout())
                .await?;
            return Ok(Outcome::Success);
        }
        let runs: Vec<_> = cp
            .detached_runs()
            .await?
            .into_iter()
            .filter(|r| named.as_deref().is_none_or(|n| detached_name(r) == n))
            .collect();
        super::connect::printed(super::runs::print_runs(format, &runs))
    })
}

/// Bodywork 1.x–2.x's `deployment create / display / logs / delete_job`:
/// `create` hands the workflow to the control plane (with `--local`, runs
/// it here, attached); the others act on the detached runs.
pub fn legacy_deployment(global: &GlobalArgs, args: &LegacyDeploymentArgs) -> Outcome {
    let name = (!args.name.is_empty()).then(|| args.name.clone());
    match args.action {
        LegacyAction::Create if args.git_repo_url.is_empty() => {
            output::report_message(
                "please specify Git repo URL for the deployment you want to create",
            );
            Outcome::Usage
        }
        LegacyAction::Create => {
            let name = match checked_optional("deployment job", name.as_deref()) {
                Ok(n) => n,
                Err(o) => return o,
            };
            let workflow = WorkflowArgs {
                namespace: OptionalNamespaceArg {
                    namespace: args.namespace.clone(),
                },
                repo: args.git_repo_url.clone(),
                branch: Some(args.git_repo_branch.clone()),
                ssh: None,
                image: None,
                group: None,
                dry_run: false,
                resolve: args.resolve,
                python: args.python.clone(),
            };
            if args.local {
                println!("testing with local workflow-controller - retries are inactive");
                return workflow::run(global, &workflow);
            }
            workflow::detached(global, &workflow, None, name, args.retries)
        }
        _ if name.is_none() => {
            output::report_message("please specify --name for the deployment job");
            Outcome::Usage
        }
        LegacyAction::Display => detached_runs(global, None, name.as_deref()),
        LegacyAction::Logs => detached_runs(global, name.as_deref(), None),
        LegacyAction::DeleteJob => delete_detached(global, &args.name),
    }
}

/// Forget a detached run (every attempt) and its log; refused while it runs.
fn delete_detached(global: &GlobalArgs, name: &str) -> Outcome {
    let name = name.to_string();
    with_control(global, None, async move |cp| {
        cp.delete_detached(&name).await?;
        println!("deployment job={name} deleted");
        Ok(Outcome::Success)
    })
}

/// `create/update cronjob REPO --name N --schedule S ...`: the seed's
/// `cronjob create`, in the project's own namespace (read from the project
/// now); `update` changes the cron job in place, its history kept.
fn schedule(global: &GlobalArgs, args: &CronArgs, update: bool) -> Outcome {
    let name = match checked_name("cron job", &args.name) {
        Ok(n) => n,
        Err(o) => return o,
    };
    if let Err(o) = cronjob::checked_schedule(&args.schedule, None) {
        return o;
    }
    let repo = match project_location(&args.git_url, Outcome::Usage) {
        Ok(repo) => repo,
        Err(o) => return o,
    };
    let key = match args.ssh.as_deref().map(read_key).transpose() {
        Ok(key) => key,
        Err(o) => return o,
    };
    let submission = WorkflowSubmission {
        repo: repo.clone(),
        branch: args.branch.clone(),
        ssh_key: key.as_ref().map(|(path, _)| path.clone()),
        ..WorkflowSubmission::default()
    };
    let mut group = args.group.clone();
    let mut resolve = args.resolve;
    let mut python = args.python.clone();
    let namespace = match plan_project(&submission) {
        Ok(plan) => {
            println!(
                "project={} deploys into namespace={}",
                plan.project, plan.namespace
            );
            plan.namespace
        }
        Err(o) => return o,
    };
    let ready = with_control(global, None, async |cp| {
        if update {
            // Nothing is written for a cron job that is not there.
            let old = match cp.namespace_exists(&namespace).await? {
                true => cp.list_cronjobs(&namespace).await?,
                false => Vec::new(),
            };
            let job =
                old.into_iter()
                    .find(|j| j.name == name)
                    .ok_or_else(|| RuntimeError::NotFound {
                        kind: "cron job",
                        name: name.clone(),
                        namespace: namespace.clone(),
                    })?;
            // Without --group, the group the cron job had; so for the date
            // and the Python.
            group = group.take().or(job.secrets_group);
            resolve.resolve_as_of = resolve.resolve_as_of.or(job.resolve_as_of);
            python.python = python.python.take().or(job.python);
        } else if !cp.namespace_exists(&namespace).await? {
            for line in cp.setup_namespace(&namespace).await? {
                println!("{line}");
            }
        }
        if let Some((_, key)) = key {
            let data = [(bodywork_source::SSH_KEY_VAR.to_string(), key)].into();
            cp.create_secret(&namespace, bodywork_source::SSH_KEY_SECRET, data)
                .await?;
            println!(
                "secret={} created in namespace={namespace}",
                bodywork_source::SSH_KEY_SECRET
            );
        }
        Ok(Outcome::Success)
    });
    if ready != Outcome::Success {
        return ready;
    }
    cronjob::create(
        global,
        &CronjobCreateArgs {
            namespace: NamespaceArg { namespace },
            name,
            schedule: args.schedule.clone(),
            git_repo_url: repo,
            git_repo_branch: args.branch.clone(),
            retries: args.retries,
            history_limit: args.history_limit,
            timezone: None,
            group,
            dry_run: false,
            resolve,
            python,
        },
        update,
    )
}

/// `get cronjob(s) [NAME] [--history] [--logs RUN]`: the seed's `cronjob
/// display / history / logs`, in the namespace the cron job is in.
fn get_cronjob(global: &GlobalArgs, args: &GetCronArgs) -> Outcome {
    let Some(name) = &args.name else {
        return all_cronjobs(global);
    };
    if let Some(run) = &args.logs {
        return cron_command(global, name, |named| {
            CronjobCommand::Logs(CronjobNameArgs {
                name: run.clone(),
                ..named
            })
        });
    }
    if args.history {
        return cron_command(global, name, CronjobCommand::History);
    }
    cron_command(global, name, |named| {
        CronjobCommand::Display(CronjobDisplayArgs {
            namespace: named.namespace,
            name: Some(named.name),
        })
    })
}

/// The cron jobs of every namespace, in the seed's table.
fn all_cronjobs(global: &GlobalArgs) -> Outcome {
    let format = global.output;
    with_control(global, None, async move |cp| {
        let mut jobs = Vec::new();
        for ns in cp.list_namespaces().await? {
            jobs.extend(cp.list_cronjobs(&ns).await?);
        }
        super::connect::printed(cronjob::print_cronjobs(format, &jobs))
    })
}

/// Find the namespace of cron job `name`, then run the seed's command
/// `command` builds for it.
fn cron_command(
    global: &GlobalArgs,
    name: &str,
    command: impl FnOnce(CronjobNameArgs) -> CronjobCommand,
) -> Outcome {
    let name = match checked_name("cron job", name) {
        Ok(n) => n,
        Err(o) => return o,
    };
    let found = Mutex::new(None);
    let outcome = with_control(global, None, async |cp| {
        let ns = cron_namespace(cp, &name).await?;
        if let Ok(mut f) = found.lock() {
            *f = Some(ns);
        }
        Ok(Outcome::Success)
    });
    match found.into_inner().ok().flatten() {
        Some(namespace) if outcome == Outcome::Success => cronjob::run(
            global,
            &command(CronjobNameArgs {
                namespace: NamespaceArg { namespace },
                name,
            }),
        ),
        _ => outcome,
    }
}

/// The one namespace holding a cron job of this name.
async fn cron_namespace(cp: &dyn ControlPlane, name: &str) -> Result<String, RuntimeError> {
    let mut holding = Vec::new();
    for ns in cp.list_namespaces().await? {
        if cp.list_cronjobs(&ns).await?.iter().any(|j| j.name == name) {
            holding.push(ns);
        }
    }
    match holding.len() {
        0 => Err(RuntimeError::NotFound {
            kind: "cron job",
            name: name.to_string(),
            namespace: "any namespace".into(),
        }),
        1 => Ok(holding.remove(0)),
        _ => Err(RuntimeError::Conflict(format!(
            "cron job {name} exists in namespaces {}; use `bodywork cronjob ... --namespace NS`",
            holding.join(", ")
        ))),
    }
}
