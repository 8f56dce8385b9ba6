//! The Bodywork 3 dialect (SPEC §8): `create / get / update / delete`
//! verbs over deployments, cron jobs and secret groups, with Bodywork 3's
//! argument order, option names and defaults. Grammar only; each verb is
//! carried out by `commands/bodywork3.rs` on the seed commands' code paths.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
    /// Retries of a failed workflow (Bodywork 3: only with --async).
    #[arg(long, default_value_t = 1)]
    pub retries: u32,
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
}

#[derive(Debug, Args)]
pub struct DeleteDeploymentArgs {
    /// The deployment (a project's name).
    pub name: String,
    /// The namespace it is in (default: the deployment's name).
    #[arg(long = "namespace", visible_alias = "ns", value_name = "NS")]
    pub namespace: Option<String>,
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
