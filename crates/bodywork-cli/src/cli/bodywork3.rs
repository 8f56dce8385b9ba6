//! The Bodywork 3 dialect: `create / get / update / delete`
//! verbs over deployments, cron jobs and secret groups, with Bodywork 3's
//! argument order, option names and defaults. Grammar only; each verb is
//! carried out by `commands/bodywork3.rs` on the seed commands' code paths.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{CronPythonArg, PythonArg, ResolveAsOfArg};

#[derive(Debug, Subcommand)]
pub enum CreateCommand {
    /// Deploy a project: run its workflow (namespace: the project's
    /// `pipeline.namespace`, else its name).
    Deployment(DeploymentArgs),
    /// Create a secret in a secrets group.
    Secret(GroupSecretArgs),
    /// Schedule a project's workflow (in the project's own namespace).
    Cronjob(CronArgs),
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Deploy a project again (the same as `create deployment`).
    Deployment(DeploymentArgs),
    /// Replace a secret of a secrets group.
    Secret(GroupSecretArgs),
    /// Replace a cron job (its history starts again).
    Cronjob(CronArgs),
}

#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Deployed services, by deployment.
    #[command(visible_alias = "deployments")]
    Deployment(GetDeploymentArgs),
    /// Secrets of secrets groups (values masked unless --show-values).
    #[command(visible_alias = "secrets")]
    Secret(GetSecretArgs),
    /// Cron jobs; with --history a cron job's runs, with --logs one run's log.
    #[command(visible_alias = "cronjobs")]
    Cronjob(GetCronArgs),
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    /// Remove a deployment's services.
    Deployment(DeleteDeploymentArgs),
    /// Delete a secret of a group, or with only --group the whole group.
    Secret(DeleteSecretArgs),
    /// Delete a cron job and its history.
    Cronjob(DeleteCronArgs),
}

#[derive(Debug, Args)]
pub struct DeploymentArgs {
    /// Git URL (https, ssh, file://) or local directory of the project.
    pub git_url: String,
    /// Branch to deploy (default: the repository's default branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Private SSH key for a private repository.
    #[arg(long, value_name = "KEY_FILE")]
    pub ssh: Option<PathBuf>,
    /// Secrets group whose secrets the stages get (default: the project's
    /// `pipeline.secrets_group`).
    #[arg(long, visible_alias = "secrets-group", value_name = "GROUP")]
    pub group: Option<String>,
    /// Retries of a failed workflow (only with --async, as in Bodywork 3).
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// Hand the workflow to the control plane (the local daemon, a Job in
    /// the cluster) and return at once with the run's name.
    #[arg(long = "async")]
    pub asynchronous: bool,
    /// Name the detached run `async-workflow-NAME` (default:
    /// `async-workflow-N`, N the local run's number, or the time on
    /// Kubernetes).
    #[arg(
        long = "async-job-name",
        value_name = "NAME",
        requires = "asynchronous"
    )]
    pub async_job_name: Option<String>,
    /// Print the plan (Kubernetes: the manifests) without running anything.
    #[arg(long, conflicts_with = "asynchronous")]
    pub dry_run: bool,
    /// After the deploy, watch the project's files until Ctrl-C and deploy
    /// each save (a local directory on the local runtime).
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: PythonArg,
    /// Kubernetes: the image the stages (and with --async the workflow's
    /// Job) run in, instead of the project's. The local runtime runs stages
    /// on this machine: it only checks the image's form.
    #[arg(long = "bodywork-image", value_name = "IMAGE")]
    pub bodywork_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct GroupSecretArgs {
    /// Name of the secret.
    pub name: String,
    /// The secrets group it belongs to.
    #[arg(long, value_name = "GROUP")]
    pub group: String,
    /// KEY=VALUE pairs to store.
    #[arg(long, num_args = 1.., value_name = "KEY=VALUE", required = true)]
    pub data: Vec<String>,
}

#[derive(Debug, Args)]
pub struct GetSecretArgs {
    /// Only this secret (needs --group).
    pub name: Option<String>,
    /// Only this secrets group.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Show the values instead of masking them.
    #[arg(long)]
    pub show_values: bool,
}

#[derive(Debug, Args)]
pub struct DeleteSecretArgs {
    /// The secret to delete (needs --group).
    pub name: Option<String>,
    /// Its secrets group; alone, the whole group is deleted.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetDeploymentArgs {
    /// Only this deployment (a project's name).
    pub name: Option<String>,
    /// Only this service of it.
    pub service: Option<String>,
    /// The namespace to look in (default: the deployment's name).
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
    /// Detached workflow runs instead of deployed services.
    #[arg(long = "async", conflicts_with_all = ["name", "service", "namespace"])]
    pub asynchronous: bool,
    /// The log of this detached run (with --async).
    #[arg(long, value_name = "NAME", requires = "asynchronous")]
    pub logs: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteDeploymentArgs {
    /// The deployment (a project's name), or with --async a detached run.
    pub name: String,
    /// The namespace it is in (default: the deployment's name).
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
    /// Delete the detached run NAME (every attempt, with its log).
    #[arg(long = "async", conflicts_with = "namespace")]
    pub asynchronous: bool,
}

#[derive(Debug, Args)]
pub struct CronArgs {
    /// Git URL (https, ssh, file://) or local directory of the project.
    pub git_url: String,
    /// Branch to deploy (default: the repository's default branch).
    #[arg(long)]
    pub branch: Option<String>,
    /// Standard 5-field cron expression, e.g. "0 * * * *".
    #[arg(long)]
    pub schedule: String,
    /// Name of the cron job.
    #[arg(long)]
    pub name: String,
    /// Retries of a failed run.
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
    /// How many runs to keep in the history (at least 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_limit: u32,
    /// Private SSH key for a private repository: kept as the namespace's
    /// deploy key (the secret ssh-github-private-key), which its runs use.
    #[arg(long, value_name = "KEY_FILE")]
    pub ssh: Option<PathBuf>,
    /// Secrets group whose secrets each run's stages get (default: the
    /// project's `pipeline.secrets_group`).
    #[arg(long, visible_alias = "secrets-group", value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: CronPythonArg,
    /// Kubernetes: the image the cron job's workflow and its stages run in.
    /// The local runtime runs stages on this machine: it only checks the
    /// image's form.
    #[arg(long = "bodywork-image", value_name = "IMAGE")]
    pub bodywork_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct GetCronArgs {
    /// Only this cron job.
    pub name: Option<String>,
    /// The cron job's runs (needs NAME).
    #[arg(long, requires = "name", conflicts_with = "logs")]
    pub history: bool,
    /// The log of this run of the cron job (a job name from --history).
    #[arg(long, value_name = "RUN", requires = "name")]
    pub logs: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteCronArgs {
    /// The cron job to delete.
    pub name: String,
}

/// Bodywork 1.x–2.x: `bodywork deployment ACTION --name N --git-repo-url
/// URL [--git-repo-branch B] [--retries N] [--local]`.
#[derive(Debug, Args)]
pub struct LegacyDeploymentArgs {
    /// What to do.
    #[arg(value_enum)]
    pub action: LegacyAction,
    /// The namespace to deploy into (default: the project's own).
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
    /// The name given to the deployment job.
    #[arg(long, default_value = "")]
    pub name: String,
    /// Git repository URL containing the Bodywork project.
    #[arg(long, default_value = "")]
    pub git_repo_url: String,
    /// Git repository branch to run.
    #[arg(long, default_value = "master")]
    pub git_repo_branch: String,
    /// Number of times to retry a failed workflow job.
    #[arg(long, default_value_t = 2)]
    pub retries: u32,
    /// Run the workflow-controller here, attached (retries inactive).
    #[arg(
        long = "local-workflow-controller",
        visible_alias = "local",
        short = 'L'
    )]
    pub local: bool,
    #[command(flatten)]
    pub resolve: ResolveAsOfArg,
    #[command(flatten)]
    pub python: PythonArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LegacyAction {
    Create,
    Display,
    Logs,
    #[value(name = "delete_job")]
    DeleteJob,
}
