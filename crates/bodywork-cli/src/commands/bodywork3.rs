//! The Bodywork 3 dialect's verbs (`create / get / update / delete`), each
//! handed to the seed command that does the same thing: a deployment is a
//! `workflow` run (namespace from the project), a secret of a group goes
//! through `secret`'s group functions, a deployment's services through
//! `service`'s.

use bodywork_config::schedule::Schedule;
use bodywork_runtime::{
    ControlPlane, CronJobSpec, CronJobSummary, DETACHED_PREFIX, ObjectKind, RuntimeError,
    WorkflowSubmission, detached_name,
};

use super::connect::{block_on, with_control};
use super::workflow::Deploy;
use super::{
    bodywork3_missing, checked_name, checked_optional, cronjob, project_location, secret, workflow,
};
use crate::cli::{
    CreateCommand, CronArgs, DeleteCommand, DeploymentArgs, GetCommand, GetCronArgs, GlobalArgs,
    LegacyAction, LegacyDeploymentArgs, RuntimeKind, UpdateCommand,
};
use crate::output;
use crate::{CliError, CliResult, Outcome};

pub fn create(global: &GlobalArgs, command: &CreateCommand) -> CliResult {
    match command {
        CreateCommand::Deployment(args) => deploy(global, args),
        CreateCommand::Secret(args) => secret::put_in_group(global, args, false),
        CreateCommand::Cronjob(args) => schedule(global, args, false),
    }
}

pub fn update(global: &GlobalArgs, command: &UpdateCommand) -> CliResult {
    match command {
        UpdateCommand::Deployment(args) => deploy(global, args),
        UpdateCommand::Secret(args) => secret::put_in_group(global, args, true),
        UpdateCommand::Cronjob(args) => schedule(global, args, true),
    }
}

pub fn get(global: &GlobalArgs, command: &GetCommand) -> CliResult {
    match command {
        GetCommand::Deployment(args) if args.asynchronous => {
            detached_runs(global, args.logs.as_deref(), None)
        }
        GetCommand::Deployment(args) => super::service::display_deployments(global, args),
        GetCommand::Secret(args) => secret::display_groups(global, args),
        GetCommand::Cronjob(args) => get_cronjob(global, args),
    }
}

pub fn delete(global: &GlobalArgs, command: &DeleteCommand) -> CliResult {
    match command {
        DeleteCommand::Deployment(args) if args.asynchronous => {
            delete_detached(global, &args.name, true)
        }
        DeleteCommand::Deployment(args) => super::service::delete_deployment(global, args),
        DeleteCommand::Secret(args) => secret::delete_in_group(global, args),
        DeleteCommand::Cronjob(args) => delete_cronjob(global, &args.name),
    }
}

/// `create/update deployment REPO [--branch B] [--ssh KEY] [--group G]`:
/// the seed's `workflow REPO [BRANCH]`, into the project's own namespace.
fn deploy(global: &GlobalArgs, args: &DeploymentArgs) -> CliResult {
    if args.watch {
        if args.asynchronous {
            return Err(super::watch::not_detached());
        }
        super::watch::usable(global, &args.git_url, args.dry_run)?;
    }
    let mut group = checked_optional("secrets group", args.group.as_deref())?;
    let image = stage_image(global, args.bodywork_image.as_deref())?;
    if let (Some(path), false) = (&args.ssh, args.dry_run) {
        group = Some(store_deploy_key(global, args, path, group)?);
    }
    let workflow = Deploy {
        repo: args.git_url.clone(),
        branch: args.branch.clone(),
        ssh: args.ssh.clone(),
        image,
        secrets_group: group,
        dry_run: args.dry_run,
        resolve_as_of: args.resolve.resolve_as_of,
        python: args.python.python.clone(),
        no_python_downloads: args.python.no_python_downloads(),
        watch: args.watch,
        ..Deploy::default()
    };
    if args.asynchronous {
        let name = checked_optional("deployment job", args.async_job_name.as_deref())?;
        // Named as Bodywork 3 names it; Bodywork 3's words.
        let name = name.map(|n| format!("{DETACHED_PREFIX}{n}"));
        println!("Using asynchronous workflow controller.");
        return workflow::detached(global, &workflow, name, args.retries, |name| {
            println!("Created workflow-job={name}.");
        });
    }
    if !args.dry_run {
        println!("Using local workflow controller - retries inactive.");
    }
    workflow::run(global, &workflow)
}

/// Bodywork 3's `--bodywork-image`, a malformed one refused in its words
/// (exit 1): on Kubernetes the image stages run in; the local runtime runs
/// stages on this machine, so there it is checked and not used.
fn stage_image(global: &GlobalArgs, image: Option<&str>) -> Result<Option<String>, CliError> {
    let Some(image) = image else {
        return Ok(None);
    };
    if !is_image_reference(image) {
        return Err(CliError::failure(format!(
            "Invalid Docker image specified: {image} - cannot be parsed as \
             DOCKERHUB_USERNAME/IMAGE_NAME:TAG"
        )));
    }
    match global.runtime {
        RuntimeKind::Kubernetes => Ok(Some(image.to_string())),
        RuntimeKind::Local => {
            eprintln!(
                "note: --bodywork-image is the image stages run in on Kubernetes; the local \
                 runtime runs them on this machine"
            );
            Ok(None)
        }
    }
}

/// Whether `image` names an image as Bodywork 3 asks, `USER/IMAGE[:TAG]`
/// (Docker Hub's), or as Docker reads the same under a registry,
/// `HOST[:PORT]/PATH/IMAGE[:TAG]`, either with an optional `@DIGEST`.
fn is_image_reference(image: &str) -> bool {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    let digest_ok = digest.is_none_or(|d| {
        d.split_once(':').is_some_and(|(algorithm, hex)| {
            !algorithm.is_empty()
                && algorithm
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        })
    });
    // A tag follows the last `:` after the last `/` (a registry's port
    // comes before it).
    let last = rest.rfind('/').unwrap_or(0);
    let (name, tag) = match rest[last..].find(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    };
    let tag_ok = tag.is_none_or(|t| {
        (1..=128).contains(&t.len())
            && !t.starts_with(['.', '-'])
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    });
    let parts: Vec<&str> = name.split('/').collect();
    let path = match parts.as_slice() {
        [host, path @ ..] if host.contains(['.', ':']) || *host == "localhost" => {
            if !is_registry_host(host) {
                return false;
            }
            path
        }
        path => path,
    };
    digest_ok
        && tag_ok
        && parts.len() >= 2
        && !path.is_empty()
        && path.iter().all(|p| is_path_component(p))
}

/// `HOST[:PORT]`: DNS labels separated by dots, then a port number.
fn is_registry_host(host: &str) -> bool {
    let (name, port) = match host.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && name.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// A repository path component: lowercase letters and digits, separated
/// by one `.`, one or two `_`, or dashes.
fn is_path_component(part: &str) -> bool {
    let starts_and_ends =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !starts_and_ends(part.chars().next()) || !starts_and_ends(part.chars().last()) {
        return false;
    }
    part.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        .all(|sep| matches!(sep, "" | "." | "_" | "__") || sep.chars().all(|c| c == '-'))
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
) -> Result<String, CliError> {
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
    with_control(global, None, async move |cp| {
        let exists = bodywork_runtime::groups::list(cp, Some(&in_group))
            .await?
            .iter()
            .any(|s| s.name == name);
        bodywork_runtime::groups::put(cp, &in_group, name, data, exists).await?;
        println!("secret={name} stored in group={in_group}: the deployment's stages clone with it");
        Ok(())
    })?;
    Ok(group)
}

/// The project fetched, loaded and planned here (nothing done), or why not.
fn plan_project(submission: &WorkflowSubmission) -> Result<bodywork_plan::WorkflowPlan, CliError> {
    block_on(async {
        match bodywork_kube::host::plan(submission).await {
            Ok(prepared) => Ok(prepared.plan),
            Err(e) => Err(CliError::workflow(&e)),
        }
    })
}

/// A private key file given with `--ssh`: its absolute path and its text.
fn read_key(path: &std::path::Path) -> Result<(std::path::PathBuf, String), CliError> {
    match std::fs::read_to_string(path) {
        Ok(key) => Ok((
            std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
            key,
        )),
        Err(e) => Err(CliError::caused(
            format!("--ssh {}: cannot read it", path.display()),
            &e,
            Outcome::Usage,
        )),
    }
}

/// Detached runs (those named `named` only, when given) in the runs
/// table, or with `logs` the whole log of that run.
fn detached_runs(global: &GlobalArgs, logs: Option<&str>, named: Option<&str>) -> CliResult {
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
pub fn legacy_deployment(global: &GlobalArgs, args: &LegacyDeploymentArgs) -> CliResult {
    let name = (!args.name.is_empty()).then(|| args.name.clone());
    match args.action {
        LegacyAction::Create if args.git_repo_url.is_empty() => Err(CliError::usage(
            "please specify Git repo URL for the deployment you want to create",
        )),
        LegacyAction::Create => {
            let name = checked_optional("deployment job", name.as_deref())?;
            let workflow = Deploy {
                namespace: args.namespace.clone(),
                repo: args.git_repo_url.clone(),
                branch: Some(args.git_repo_branch.clone()),
                resolve_as_of: args.resolve.resolve_as_of,
                python: args.python.python.clone(),
                no_python_downloads: args.python.no_python_downloads(),
                ..Deploy::default()
            };
            if args.local {
                println!("testing with local workflow-controller - retries are inactive");
                return workflow::run(global, &workflow);
            }
            workflow::detached(global, &workflow, name, args.retries, |name| {
                println!(
                    "deployment started detached as {name} (see `bodywork get deployment --async --logs {name}`)"
                );
            })
        }
        _ if name.is_none() => Err(CliError::usage(
            "please specify --name for the deployment job",
        )),
        LegacyAction::Display => detached_runs(global, None, name.as_deref()),
        LegacyAction::Logs => detached_runs(global, name.as_deref(), None),
        LegacyAction::DeleteJob => delete_detached(global, &args.name, false),
    }
}

/// Forget a detached run (every attempt) and its log; refused while it
/// runs. In Bodywork 3's words with `bodywork3` (one not there said so,
/// exit 0), else in Bodywork 2's.
fn delete_detached(global: &GlobalArgs, name: &str, bodywork3: bool) -> CliResult {
    let name = name.to_string();
    with_control(global, None, async move |cp| {
        let deleted = cp.delete_detached(&name).await;
        if !bodywork3 {
            deleted?;
            println!("deployment job={name} deleted");
        } else if bodywork3_missing(deleted, || format!("Could not find workflow-job={name}."))?
            .is_some()
        {
            println!("Deleted workflow-job={name}.");
        }
        Ok(Outcome::Success)
    })
}

/// Bodywork 3's `delete cronjob NAME`, in whichever namespace it is.
fn delete_cronjob(global: &GlobalArgs, name: &str) -> CliResult {
    let name = checked_name("cron job", name)?;
    with_control(global, None, async move |cp| {
        let found = cron_namespace(cp, &name).await;
        if let Some(namespace) =
            bodywork3_missing(found, || format!("Could not find cronjob={name}."))?
        {
            cp.delete_cronjob(&namespace, &name).await?;
            println!("Deleted cronjob={name}.");
        }
        Ok(Outcome::Success)
    })
}

/// `create/update cronjob REPO --name N --schedule S ...`: the seed's
/// `cronjob create`, in the project's own namespace (read from the project
/// now); `update` changes the cron job in place, its history kept. A
/// project that cannot be read now (a branch not pushed yet) is a warning
/// for `update`, as Bodywork 3 takes it as it is and fails at run time.
fn schedule(global: &GlobalArgs, args: &CronArgs, update: bool) -> CliResult {
    let name = checked_name("cron job", &args.name)?;
    cronjob::checked_schedule(&args.schedule, None)?;
    let image = stage_image(global, args.bodywork_image.as_deref())?;
    let repo = project_location(&args.git_url, Outcome::Usage)?;
    let key = args.ssh.as_deref().map(read_key).transpose()?;
    let submission = WorkflowSubmission {
        repo: repo.clone(),
        branch: args.branch.clone(),
        ssh_key: key.as_ref().map(|(path, _)| path.clone()),
        ..WorkflowSubmission::default()
    };
    let planned = match plan_project(&submission) {
        Ok(plan) => {
            println!(
                "project={} deploys into namespace={}",
                plan.project, plan.namespace
            );
            Some(plan.namespace)
        }
        Err(e) if update => {
            output::report_warning(format!(
                "cannot read the project now ({}); cronjob={name} is updated all the same, \
                 and its runs fail until it can be read",
                e.message()
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let ready = with_control(global, None, async |cp| {
        let (namespace, group, resolve, python) = if update {
            let Some(job) = existing_cronjob(cp, planned.as_deref(), &name).await? else {
                println!("Could not find cronjob={name}.");
                return Ok(None);
            };
            // Without --group, the group the cron job had; so for the date
            // and the Python.
            let resolve = args.resolve.resolve_as_of.or(job.resolve_as_of);
            let python = args.python.python.clone().or(job.python);
            let group = args.group.clone().or(job.secrets_group);
            (job.namespace, group, resolve, python)
        } else {
            let Some(namespace) = planned.clone() else {
                return Err(CliError::failure("the project's namespace is not known"));
            };
            if !cp.namespace_exists(&namespace).await? {
                let setup = cp.setup_namespace(&namespace).await?;
                super::connect::print_lines(&crate::output::namespace::setup_lines(&setup));
            }
            (
                namespace,
                args.group.clone(),
                args.resolve.resolve_as_of,
                args.python.python.clone(),
            )
        };
        if let Some((_, key)) = &key {
            let data = [(bodywork_source::SSH_KEY_VAR.to_string(), key.clone())].into();
            cp.create_secret(&namespace, bodywork_source::SSH_KEY_SECRET, data)
                .await?;
            println!(
                "secret={} created in namespace={namespace}",
                bodywork_source::SSH_KEY_SECRET
            );
        }
        Ok(Some((namespace, group, resolve, python)))
    })?;
    let Some((namespace, group, resolve, python)) = ready else {
        return Ok(Outcome::Success);
    };
    cronjob::create(
        global,
        CronJobSpec {
            namespace,
            name,
            schedule: args.schedule.clone(),
            timezone: None,
            repo,
            branch: args.branch.clone(),
            retries: args.retries,
            history_limit: args.history_limit,
            secrets_group: group,
            resolve_as_of: resolve,
            python,
        },
        false,
        update,
        image,
        |spec: &CronJobSpec, _: &Schedule, update: bool| {
            let done = if update { "Updated" } else { "Created" };
            format!("{done} cronjob={}.", spec.name)
        },
    )
}

/// Cron job `name`, in `namespace` or else wherever it is; `None` when
/// there is none.
async fn existing_cronjob(
    cp: &dyn ControlPlane,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<CronJobSummary>, RuntimeError> {
    let namespace = match namespace {
        Some(ns) => ns.to_string(),
        None => match cron_namespace(cp, name).await {
            Err(RuntimeError::NotFound { .. }) => return Ok(None),
            found => found?,
        },
    };
    if !cp.namespace_exists(&namespace).await? {
        return Ok(None);
    }
    Ok(cp
        .list_cronjobs(&namespace)
        .await?
        .into_iter()
        .find(|j| j.name == name))
}

/// `get cronjob(s) [NAME] [--history] [--logs RUN]`: the seed's `cronjob
/// display / history / logs`, in the namespace the cron job is in.
fn get_cronjob(global: &GlobalArgs, args: &GetCronArgs) -> CliResult {
    let Some(name) = &args.name else {
        return all_cronjobs(global);
    };
    let name = checked_name("cron job", name)?;
    let namespace = with_control(
        global,
        None,
        async |cp| Ok(cron_namespace(cp, &name).await?),
    )?;
    if let Some(run) = &args.logs {
        return cronjob::logs(global, &namespace, run);
    }
    if args.history {
        return cronjob::history(global, &namespace, &name);
    }
    cronjob::display(global, &namespace, Some(name))
}

/// The cron jobs of every namespace, in the seed's table.
fn all_cronjobs(global: &GlobalArgs) -> CliResult {
    let format = global.output;
    with_control(global, None, async move |cp| {
        let mut jobs = Vec::new();
        for ns in cp.list_namespaces().await? {
            jobs.extend(cp.list_cronjobs(&ns).await?);
        }
        super::connect::printed(cronjob::print_cronjobs(format, &jobs))
    })
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
            kind: ObjectKind::CronJob,
            name: name.to_string(),
            namespace: String::new(),
        }),
        1 => Ok(holding.remove(0)),
        _ => Err(RuntimeError::conflict(format!(
            "cron job {name} exists in namespaces {}",
            holding.join(", ")
        ))
        .with_hint("use `bodywork cronjob ... --namespace NS`")),
    }
}

#[cfg(test)]
mod tests {
    use super::is_image_reference;

    #[test]
    fn images_read_as_bodywork_3_and_docker_read_them() {
        for good in [
            "bodyworkml/bodywork-core",
            "bodyworkml/bodywork-core:3.0",
            "bodyworkml/bodywork-core:latest",
            "ghcr.io/bodywork-ml/bodywork-rs:0.1.0",
            "localhost:5000/team/stage-image:v1.2_rc-3",
            "registry.example.com/a/b/c",
            "my__org/my.image-x@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_image_reference(good), "{good}");
        }
        for bad in [
            "",
            "not-an-image",
            "bodywork-core:3.0",
            "bodyworkml/bodywork-core:3.0:1",
            "BodyworkML/core",
            "bodyworkml//core",
            "bodyworkml/core:",
            "bodyworkml/core:-x",
            "bodyworkml/core name",
            "bodyworkml/-core",
            "bodyworkml/core@sha256:12",
            "localhost:port/x/y",
        ] {
            assert!(!is_image_reference(bad), "{bad}");
        }
    }
}
