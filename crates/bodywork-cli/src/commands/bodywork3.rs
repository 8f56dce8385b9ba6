//! The Bodywork 3 dialect's verbs (`create / get / update / delete`), each
//! handed to the seed command that does the same thing: a deployment is a
//! `workflow` run (namespace from the project), a secret of a group goes
//! through `secret`'s group functions, a deployment's services through
//! `service`'s.

use super::{checked_optional, secret, workflow};
use crate::Outcome;
use crate::cli::{
    CreateCommand, DeleteCommand, DeploymentArgs, GetCommand, GlobalArgs, OptionalNamespaceArg,
    UpdateCommand, WorkflowArgs,
};

pub fn create(global: &GlobalArgs, command: &CreateCommand) -> Outcome {
    match command {
        CreateCommand::Deployment(args) => deploy(global, args),
        CreateCommand::Secret(args) => secret::put_in_group(global, args, false),
    }
}

pub fn update(global: &GlobalArgs, command: &UpdateCommand) -> Outcome {
    match command {
        UpdateCommand::Deployment(args) => deploy(global, args),
        UpdateCommand::Secret(args) => secret::put_in_group(global, args, true),
    }
}

pub fn get(global: &GlobalArgs, command: &GetCommand) -> Outcome {
    match command {
        GetCommand::Deployment(args) => super::service::display_deployments(global, args),
        GetCommand::Secret(args) => secret::display_groups(global, args),
    }
}

pub fn delete(global: &GlobalArgs, command: &DeleteCommand) -> Outcome {
    match command {
        DeleteCommand::Deployment(args) => super::service::delete_deployment(global, args),
        DeleteCommand::Secret(args) => secret::delete_in_group(global, args),
    }
}

/// `create/update deployment REPO [--branch B] [--ssh KEY] [--group G]`:
/// the seed's `workflow REPO [BRANCH]`, into the project's own namespace.
fn deploy(global: &GlobalArgs, args: &DeploymentArgs) -> Outcome {
    let group = match checked_optional("secrets group", args.group.as_deref()) {
        Ok(g) => g,
        Err(o) => return o,
    };
    let workflow = WorkflowArgs {
        namespace: OptionalNamespaceArg { namespace: None },
        repo: args.git_url.clone(),
        branch: args.branch.clone(),
        ssh: args.ssh.clone(),
        image: None,
        dry_run: false,
    };
    workflow::run_with_group(global, &workflow, group)
}
