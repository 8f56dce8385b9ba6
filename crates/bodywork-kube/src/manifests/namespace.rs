//! What `setup-namespace` creates: the Namespace, the controller's
//! ServiceAccount with its permissions, and the ServiceAccount stage
//! containers run under (with no API permissions).
//!
//! The controller's permissions are as narrow as its work (the in-cluster
//! workflows of cron jobs): everything it does to objects, it may do in its
//! own namespace only (a Role and RoleBinding there); the one cluster-scoped
//! thing it needs, reading its Namespace, is its ClusterRole (bound per
//! namespace, the seed's `cluster-role-binding`). Secrets it may read and
//! write (a secrets group is copied into the namespace), and, when it runs
//! cron jobs, read in Bodywork's own namespace, where the groups are kept.
//!
//! Owns: the controller's permissions (the accounts' names come from
//! `bodywork_runtime::namespace`, which words `setup-namespace` for both
//! runtimes). Must not: grant stage containers any access to the API.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{Manifest, labels, meta};

use bodywork_runtime::namespace::{CONTROLLER_ACCOUNT, STAGES_ACCOUNT, controller_binding_name};

/// What `setup-namespace` applies, in order: Namespace, the controller's
/// ServiceAccount, its ClusterRole and ClusterRoleBinding, its Role and
/// RoleBinding in the namespace, and the ServiceAccount stage containers
/// run under.
pub fn namespace_manifests(namespace: &str) -> Vec<Manifest> {
    let binding = controller_binding_name(namespace);
    let controller = || controller_subject(namespace);
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
            subjects: Some(vec![controller()]),
        }),
        Manifest::Role(Role {
            metadata: meta(CONTROLLER_ACCOUNT, Some(namespace), labels(&[])),
            rules: Some(controller_rules()),
        }),
        Manifest::RoleBinding(RoleBinding {
            metadata: meta(CONTROLLER_ACCOUNT, Some(namespace), labels(&[])),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: CONTROLLER_ACCOUNT.into(),
            },
            subjects: Some(vec![controller()]),
        }),
        Manifest::ServiceAccount(stages_account(namespace)),
    ]
}

/// The controller account of `namespace`, as the subject of a binding.
fn controller_subject(namespace: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: CONTROLLER_ACCOUNT.into(),
        namespace: Some(namespace.to_string()),
        ..Subject::default()
    }
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

/// The account Bodywork 3 runs stage pods under (0.x's was
/// [`STAGES_ACCOUNT`]); a namespace that has it runs ours under it too.
pub const BODYWORK3_STAGES_ACCOUNT: &str = "bodywork-stage";

/// Run the pods of a Job's or Deployment's pod spec as `account`.
pub fn run_stages_as(pod: Option<&mut k8s_openapi::api::core::v1::PodSpec>, account: &str) {
    if let Some(pod) = pod {
        pod.service_account_name = Some(account.to_string());
    }
}

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..PolicyRule::default()
    }
}

/// What `wanted` grants that `existing` does not (a ClusterRole of another
/// installation, left as it is), as `verb resource` words; `None` when
/// `existing` grants all of it (`*` included).
pub fn missing_rules(wanted: &ClusterRole, existing: &ClusterRole) -> Option<String> {
    let has = |list: &Option<Vec<String>>, want: &str| {
        list.as_ref()
            .is_some_and(|l| l.iter().any(|x| x == want || x == "*"))
    };
    let mut missing = Vec::new();
    for rule in wanted.rules.iter().flatten() {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    let granted = existing.rules.iter().flatten().any(|r| {
                        has(&r.api_groups, group)
                            && has(&r.resources, resource)
                            && has(&Some(r.verbs.clone()), verb)
                    });
                    if !granted {
                        let qualified = if group.is_empty() {
                            resource.clone()
                        } else {
                            format!("{resource}.{group}")
                        };
                        missing.push(format!("{verb} {qualified}"));
                    }
                }
            }
        }
    }
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// What the in-cluster workflow controller may do cluster-wide: read
/// Namespaces (a run checks that its own exists). Nothing else.
fn controller_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: meta(CONTROLLER_ACCOUNT, None, labels(&[])),
        rules: Some(vec![rule("", &["namespaces"], &["get"])]),
        ..ClusterRole::default()
    }
}

/// The ClusterRole (and ClusterRoleBinding) of the controller of detached
/// runs (Bodywork 3's `create deployment --async`): the account
/// [`CONTROLLER_ACCOUNT`] of Bodywork's own namespace.
pub const DETACHED_ROLE: &str = "bodywork-detached-controller";

/// What detached runs need besides their namespace's own objects: their
/// controller deploys a project into the project's namespace, which it may
/// have to create and set up (`setup-namespace`'s objects) and copy a
/// secrets group into. So it holds, cluster-wide, what a namespace's
/// controller holds in its namespace, plus creating Namespaces, writing
/// Secrets, and creating the RBAC objects of `setup-namespace` (whose rules
/// are a subset of its own: the API server refuses a Role granting more than
/// its creator holds, so this cannot escalate). Applied with Bodywork's own
/// namespace and before each detached run.
pub fn detached_controller_manifests() -> Vec<Manifest> {
    let namespace = bodywork_runtime::groups::GROUPS_NAMESPACE;
    let mut rules: Vec<PolicyRule> = controller_rules()
        .into_iter()
        .filter(|r| r.resources.as_deref() != Some(&["secrets".to_string()][..]))
        .collect();
    rules.extend([
        rule(
            "",
            &["secrets"],
            &["get", "list", "create", "update", "patch", "delete"],
        ),
        rule("", &["namespaces"], &["get", "list", "create", "patch"]),
        rule(
            "rbac.authorization.k8s.io",
            &[
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
            ],
            &["get", "create", "update", "patch"],
        ),
    ]);
    vec![
        Manifest::ClusterRole(ClusterRole {
            metadata: meta(DETACHED_ROLE, None, labels(&[])),
            rules: Some(rules),
            ..ClusterRole::default()
        }),
        Manifest::ClusterRoleBinding(ClusterRoleBinding {
            metadata: meta(DETACHED_ROLE, None, labels(&[])),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: DETACHED_ROLE.into(),
            },
            subjects: Some(vec![controller_subject(namespace)]),
        }),
    ]
}

/// The Role in Bodywork's own namespace that lets a namespace's controller
/// read the secrets groups kept there (a cron run copies its group into its
/// namespace): reading Secrets, nothing else.
pub const GROUPS_READER_ROLE: &str = "bodywork-secrets-groups-reader";

/// What lets the controller of `namespace` read the secrets groups: the
/// Role [`GROUPS_READER_ROLE`] in Bodywork's namespace and a RoleBinding
/// there named as its ClusterRoleBinding (`bodywork-workflow-controller--NS`).
/// Applied with each cron job of `namespace`; removed with the namespace.
pub fn groups_reader_manifests(namespace: &str) -> Vec<Manifest> {
    let groups = bodywork_runtime::groups::GROUPS_NAMESPACE;
    vec![
        Manifest::Role(Role {
            metadata: meta(GROUPS_READER_ROLE, Some(groups), labels(&[])),
            rules: Some(vec![rule("", &["secrets"], &["get", "list"])]),
        }),
        Manifest::RoleBinding(RoleBinding {
            metadata: meta(
                &controller_binding_name(namespace),
                Some(groups),
                labels(&[]),
            ),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: GROUPS_READER_ROLE.into(),
            },
            subjects: Some(vec![controller_subject(namespace)]),
        }),
    ]
}

/// What the in-cluster workflow controller may do in its namespace:
/// exactly what [`crate::KubeRuntime`] calls while it runs a workflow.
fn controller_rules() -> Vec<PolicyRule> {
    const MANAGE: &[&str] = &[
        "get", "list", "watch", "create", "update", "patch", "delete",
    ];
    const READ: &[&str] = &["get", "list", "watch"];
    vec![
        // A run checks the secrets its stages need exist, and copies its
        // secrets group into the namespace (a cron run of a project with one).
        rule(
            "",
            &["secrets"],
            &["get", "list", "create", "update", "patch"],
        ),
        // The account stage pods run under is made sure of by every run.
        rule("", &["serviceaccounts"], &["get", "create", "patch"]),
        rule("", &["services"], MANAGE),
        rule("", &["pods", "pods/log"], READ),
        rule("apps", &["deployments"], MANAGE),
        rule("apps", &["replicasets"], READ),
        rule("batch", &["jobs"], MANAGE),
        rule("batch", &["cronjobs"], READ),
        rule("networking.k8s.io", &["ingresses"], MANAGE),
        // A run's record (`manifests::run_record`), kept by the runs.
        rule("", &["configmaps"], super::runs::RECORD_VERBS),
    ]
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
                "Role/bodywork-workflow-controller",
                "RoleBinding/bodywork-workflow-controller",
                "ServiceAccount/bodywork-jobs-and-deployments",
            ]
        );
        // Cluster-wide, the controller may only read namespaces; secrets it
        // may only read, in its own namespace.
        let Manifest::ClusterRole(c) = &m[2] else {
            panic!("cluster role expected");
        };
        let rules = c.rules.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        let Manifest::Role(r) = &m[4] else {
            panic!("role expected");
        };
        assert_eq!(r.metadata.namespace.as_deref(), Some("scoring-service"));
        let secrets = r
            .rules
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| {
                r.resources
                    .as_ref()
                    .is_some_and(|x| x.contains(&"secrets".to_string()))
            })
            .unwrap();
        // Written only to copy a secrets group in; never deleted.
        assert_eq!(secrets.verbs, ["get", "list", "create", "update", "patch"]);
        let Manifest::ClusterRoleBinding(b) = &m[3] else {
            panic!("binding expected");
        };
        let subject = &b.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some("scoring-service"));
    }

    #[test]
    fn a_foreign_cluster_role_is_enough_when_it_grants_what_ours_would() {
        let ours = controller_cluster_role();
        let theirs = |rules: Vec<PolicyRule>| ClusterRole {
            rules: Some(rules),
            ..ClusterRole::default()
        };
        // Python Bodywork's broader rules.
        let broad = theirs(vec![
            rule("", &["namespaces"], &["get", "list"]),
            rule("apps", &["deployments"], &["get", "list"]),
        ]);
        assert_eq!(missing_rules(&ours, &broad), None);
        assert_eq!(
            missing_rules(&ours, &theirs(vec![rule("*", &["*"], &["*"])])),
            None
        );
        assert_eq!(
            missing_rules(
                &ours,
                &theirs(vec![rule("apps", &["deployments"], &["get"])])
            )
            .as_deref(),
            Some("get namespaces")
        );
    }

    #[test]
    fn a_namespaces_controller_reads_the_groups_and_nothing_else_there() {
        let m = groups_reader_manifests("ml");
        let (Manifest::Role(role), Manifest::RoleBinding(binding)) = (&m[0], &m[1]) else {
            panic!("a Role and a RoleBinding expected");
        };
        let groups = Some(bodywork_runtime::groups::GROUPS_NAMESPACE);
        assert_eq!(role.metadata.namespace.as_deref(), groups);
        assert_eq!(binding.metadata.namespace.as_deref(), groups);
        let rules = role.rules.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["secrets".to_string()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "list"]);
        assert_eq!(
            binding.metadata.name.as_deref(),
            Some("bodywork-workflow-controller--ml")
        );
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            (CONTROLLER_ACCOUNT, Some("ml"))
        );
    }
}
