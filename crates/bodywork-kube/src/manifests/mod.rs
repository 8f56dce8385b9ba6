//! The Kubernetes objects bodywork creates, generated from a plan.
//!
//! Owns: every manifest, their names, labels and annotations, the container
//! image choice, and the YAML rendering `--dry-run` prints. This module
//! holds what every family shares ([`Manifest`], [`Target`], the labels and
//! annotations bodywork sets); each family has its own file: `namespace`
//! (Namespace, ServiceAccounts, ClusterRole and its binding), `workloads`
//! (Jobs, Deployments, Services, Ingresses), `secrets`, `cronjobs`,
//! `images` and `security` (every pod's security context).
//!
//! Must not: perform any I/O or talk to a cluster. What is generated here is
//! exactly what the runtime applies, so snapshot tests of these functions
//! are tests of what reaches the cluster.

mod cronjobs;
mod deadlines;
mod images;
mod names;
mod namespace;
mod runs;
mod secrets;
mod security;
mod workloads;

pub use cronjobs::{
    CRONJOB_LABEL, DETACHED_LABEL, DETACHED_TTL_SECONDS, MAX_CRONJOB_NAME, cronjob_group,
    cronjob_manifest, cronjob_python, cronjob_resolve_as_of, detached_job, manual_job,
    run_name_problem,
};
pub use deadlines::{Waits, progress_deadline_seconds};
pub use images::{DEFAULT_IMAGE, LEGACY_IMAGE, pull_policy, resolve_image};
pub use names::{MAX_LABEL, name_problems, service_name_problem};
pub use namespace::{
    BODYWORK3_STAGES_ACCOUNT, DETACHED_ROLE, GROUPS_READER_ROLE, detached_controller_manifests,
    groups_reader_manifests, missing_rules, namespace_manifests, run_stages_as, stages_account,
};
pub use runs::{
    KEPT_RUN_RECORDS, RECORD_HEARTBEAT, RECORD_LOST_AFTER, RUN_LABEL, TRIGGER_ENV, read_run_record,
    rules_allow_records, run_record, run_record_name,
};
pub use secrets::{
    GROUP_LABEL, group_secret_manifest, group_secret_name, name_in_group, secret_manifest,
};
pub use security::IMAGE_UID;
pub use workloads::{PORT_NAME, ingress_path, job, service_manifests, workflow_manifests};

use std::collections::BTreeMap;

use bodywork_plan::WorkflowPlan;
use bodywork_runtime::AsOf;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// Label on everything bodywork creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "bodywork");
/// Label naming a service deployment (its Deployment, Service, pods).
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Label with the project name.
pub const PROJECT_LABEL: &str = "bodywork.ml/project";
/// Label with the stage name.
pub const STAGE_LABEL: &str = "bodywork.ml/stage";
/// Label with the commit deployed.
pub const COMMIT_LABEL: &str = "bodywork.ml/commit";
/// Bodywork 3's label on its Deployments, Services, Ingresses and Jobs,
/// which its `get deployment` selects on; ours carry it too.
pub const BODYWORK3_APP: (&str, &str) = ("app", "bodywork");
/// Bodywork 3's label with the name of the Deployment (or Job).
pub const BODYWORK3_STAGE_LABEL: &str = "stage";
/// Bodywork 3's label with the project (its "deployment name").
pub const BODYWORK3_PROJECT_LABEL: &str = "deployment-name";
/// Bodywork 3's label with the commit deployed.
pub const BODYWORK3_COMMIT_LABEL: &str = "git-commit-hash";
/// Bodywork 3's label with the branch deployed.
pub const BODYWORK3_BRANCH_LABEL: &str = "git-branch";
/// Bodywork 3's annotation on a Deployment with its service's port.
pub const BODYWORK3_PORT_ANNOTATION: &str = "port";
/// Annotation with the repository deployed (labels cannot hold URLs).
pub const REPO_ANNOTATION: &str = "bodywork.ml/repo";
/// Annotation with the branch deployed.
pub const BRANCH_ANNOTATION: &str = "bodywork.ml/branch";
/// Annotation on a Deployment whose service is exposed through an Ingress.
pub const INGRESS_ANNOTATION: &str = "bodywork.ml/ingress";
/// Annotation naming the resource (`PROJECT--STAGE`) whose log header pods use.
pub const RESOURCE_ANNOTATION: &str = "bodywork.ml/resource-name";

/// One object to apply, in the order it must be applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Manifest {
    /// A namespace.
    Namespace(Namespace),
    /// A service account.
    ServiceAccount(ServiceAccount),
    /// The controller's cluster role.
    ClusterRole(ClusterRole),
    /// Binds the controller's cluster role to a namespace's controller account.
    ClusterRoleBinding(ClusterRoleBinding),
    /// The controller's permissions in its namespace.
    Role(Role),
    /// Binds them to the namespace's controller account.
    RoleBinding(RoleBinding),
    /// A secret (from `secret create`).
    Secret(Secret),
    /// A batch stage.
    Job(Job),
    /// A service stage's replicas.
    Deployment(Deployment),
    /// A service stage's stable cluster address.
    Service(Service),
    /// A service stage's path on the cluster's ingress.
    Ingress(Ingress),
    /// A scheduled workflow.
    CronJob(CronJob),
}

impl Manifest {
    /// `Kind/name`, for messages.
    pub fn describe(&self) -> String {
        let (kind, meta) = match self {
            Manifest::Namespace(o) => ("Namespace", &o.metadata),
            Manifest::ServiceAccount(o) => ("ServiceAccount", &o.metadata),
            Manifest::ClusterRole(o) => ("ClusterRole", &o.metadata),
            Manifest::ClusterRoleBinding(o) => ("ClusterRoleBinding", &o.metadata),
            Manifest::Role(o) => ("Role", &o.metadata),
            Manifest::RoleBinding(o) => ("RoleBinding", &o.metadata),
            Manifest::Secret(o) => ("Secret", &o.metadata),
            Manifest::Job(o) => ("Job", &o.metadata),
            Manifest::Deployment(o) => ("Deployment", &o.metadata),
            Manifest::Service(o) => ("Service", &o.metadata),
            Manifest::Ingress(o) => ("Ingress", &o.metadata),
            Manifest::CronJob(o) => ("CronJob", &o.metadata),
        };
        format!("{kind}/{}", meta.name.as_deref().unwrap_or_default())
    }
}

/// Render manifests as one multi-document YAML stream (`---` between documents).
pub fn to_yaml(manifests: &[Manifest]) -> Result<String, serde_norway::Error> {
    let mut out = String::new();
    for m in manifests {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(m)?);
    }
    Ok(out)
}

/// A label value: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric (Kubernetes refuses anything else).
pub fn label_value(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    std::iter::once(MANAGED_BY)
        .chain(pairs.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn meta(name: &str, namespace: Option<&str>, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(String::from),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// What a run deploys, wherever it comes from (a plan or a runtime's run context).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Namespace deployed into.
    pub namespace: &'a str,
    /// Project name (DNS-1123).
    pub project: &'a str,
    /// Repository URL containers fetch.
    pub repo: &'a str,
    /// Branch deployed; `None` for the default branch.
    pub branch: Option<&'a str>,
    /// Commit deployed.
    pub commit: &'a str,
    /// `--resolve-as-of`, passed on to every stage's `bodywork stage`
    /// (without it, a pod resolves as of the commit's date, as the run did).
    pub resolve_as_of: Option<AsOf>,
    /// `--python` and `--no-python-downloads`, passed on to every stage's
    /// `bodywork stage`.
    pub python: PythonFlags<'a>,
}

/// A run's `--python VERSION|PATH` and `--no-python-downloads`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PythonFlags<'a> {
    /// `--python VERSION|PATH`.
    pub python: Option<&'a str>,
    /// `--no-python-downloads`.
    pub no_downloads: bool,
}

impl PythonFlags<'_> {
    /// The flags as a pod, cron job or detached run is given them.
    pub(crate) fn args(self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(python) = self.python {
            args.extend([workloads::PYTHON_OPTION.to_string(), python.to_string()]);
        }
        if self.no_downloads {
            args.push("--no-python-downloads".to_string());
        }
        args
    }
}

impl<'a> Target<'a> {
    /// The target of a plan.
    pub fn of_plan(plan: &'a WorkflowPlan) -> Self {
        Target {
            namespace: &plan.namespace,
            project: &plan.project,
            repo: &plan.repo,
            branch: plan.branch.as_deref(),
            commit: &plan.commit,
            resolve_as_of: None,
            python: PythonFlags::default(),
        }
    }
}

/// A batch stage `p--s` for the manifests' unit tests.
#[cfg(test)]
pub(crate) fn test_batch_stage(
    max_completion_time_seconds: u64,
    retries: u32,
) -> bodywork_plan::StagePlan {
    bodywork_plan::StagePlan {
        stage: "s".into(),
        resource_name: "p--s".into(),
        executable: "s/x.py".into(),
        working_dir: "s".into(),
        notebook: false,
        args: vec![],
        requirements: vec![],
        cpu_request: Some(0.25),
        memory_request_mb: Some(100),
        env: vec![],
        kind: bodywork_plan::StagePlanKind::Batch {
            max_completion_time_seconds,
            retries,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("abc123"), "abc123");
        assert_eq!(label_value("-a b/c-"), "a-b-c");
        assert_eq!(label_value(&"x".repeat(80)).len(), 63);
    }
}
