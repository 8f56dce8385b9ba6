//! What `setup-namespace` creates: the Namespace, the controller's
//! ServiceAccount, its ClusterRole and ClusterRoleBinding, and the
//! ServiceAccount stage containers run under (with no API permissions).
//!
//! Owns: the controller's permissions (the accounts' names come from
//! `bodywork_runtime::namespace`, which words `setup-namespace` for both
//! runtimes). Must not: grant stage containers any access to the API.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

use super::{Manifest, labels, meta};

pub use bodywork_runtime::namespace::{
    CONTROLLER_ACCOUNT, STAGES_ACCOUNT, controller_binding_name,
};

/// What `setup-namespace` applies, in order: Namespace, the controller's
/// ServiceAccount, its ClusterRole and ClusterRoleBinding, and the
/// ServiceAccount stage containers run under.
pub fn namespace_manifests(namespace: &str) -> Vec<Manifest> {
    let binding = controller_binding_name(namespace);
    vec![
        Manifest::Namespace(Namespace {
            metadata: meta(namespace, None, labels(&[])),
            ..Namespace::default()
        }),
        Manifest::ServiceAccount(ServiceAccount {
            metadata: meta(CONTROLLER_ACCOUNT, Some(namespace), labels(&[])),
            ..ServiceAccount::default()
        }),
        Manifest::ClusterRole(controller_cluster_role()),
        Manifest::ClusterRoleBinding(ClusterRoleBinding {
            metadata: meta(&binding, None, labels(&[])),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: CONTROLLER_ACCOUNT.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: CONTROLLER_ACCOUNT.into(),
                namespace: Some(namespace.to_string()),
                ..Subject::default()
            }]),
        }),
        Manifest::ServiceAccount(stages_account(namespace)),
    ]
}

/// The ServiceAccount stage containers run under. Pods naming an account
/// that does not exist are refused, so every run makes sure it is there
/// (a namespace made with kubectl has none).
pub fn stages_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(STAGES_ACCOUNT, Some(namespace), labels(&[])),
        // Stages never call the API; do not hand them a token.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// What the in-cluster workflow controller may do: exactly what
/// [`crate::KubeRuntime`] calls.
fn controller_cluster_role() -> ClusterRole {
    let rule = |group: &str, resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    };
    const ALL: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    ClusterRole {
        metadata: meta(CONTROLLER_ACCOUNT, None, labels(&[])),
        rules: Some(vec![
            rule(
                "",
                &["namespaces"],
                &["get", "list", "watch", "create", "patch"],
            ),
            rule("", &["secrets", "services", "serviceaccounts"], ALL),
            rule("", &["pods", "pods/log"], &["get", "list", "watch"]),
            rule("apps", &["deployments"], ALL),
            rule("apps", &["replicasets"], &["get", "list", "watch"]),
            rule("batch", &["jobs", "cronjobs"], ALL),
            rule("networking.k8s.io", &["ingresses"], ALL),
        ]),
        ..ClusterRole::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_namespace_objects_bind_the_controller_of_that_namespace() {
        let m = namespace_manifests("scoring-service");
        let kinds: Vec<String> = m.iter().map(Manifest::describe).collect();
        assert_eq!(
            kinds,
            [
                "Namespace/scoring-service",
                "ServiceAccount/bodywork-workflow-controller",
                "ClusterRole/bodywork-workflow-controller",
                "ClusterRoleBinding/bodywork-workflow-controller--scoring-service",
                "ServiceAccount/bodywork-jobs-and-deployments",
            ]
        );
        let Manifest::ClusterRoleBinding(b) = &m[3] else {
            panic!("binding expected");
        };
        let subject = &b.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some("scoring-service"));
    }
}
