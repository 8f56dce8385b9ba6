//! What `setup-namespace` and `delete-namespace` say, worded once for both
//! runtimes: the seed's objects of a namespace (its two service accounts
//! and the controller's cluster role binding), which the Kubernetes runtime
//! creates and the local runtime stands in for.
//!
//! Must not: create or delete anything (each runtime does, then words what
//! it did with these).

/// Runs the workflow controller (in-cluster cron jobs) and may manage the namespace.
pub const CONTROLLER_ACCOUNT: &str = "bodywork-workflow-controller";
/// Runs stage containers; it has no API permissions at all.
pub const STAGES_ACCOUNT: &str = "bodywork-jobs-and-deployments";

/// `bodywork-workflow-controller--NS`.
pub fn controller_binding_name(namespace: &str) -> String {
    format!("{CONTROLLER_ACCOUNT}--{namespace}")
}

/// The seed's four lines of `setup-namespace`: `creating ...`, or `found
/// existing ...` when the namespace `existed`.
pub fn setup_lines(namespace: &str, existed: bool) -> Vec<String> {
    let verb = if existed {
        "found existing"
    } else {
        "creating"
    };
    vec![
        format!("{verb} namespace={namespace}"),
        format!("{verb} service-account={CONTROLLER_ACCOUNT} in namespace={namespace}"),
        format!(
            "{verb} cluster-role-binding={}",
            controller_binding_name(namespace)
        ),
        format!("{verb} service-account={STAGES_ACCOUNT} in namespace={namespace}"),
    ]
}

/// `delete-namespace`: what the namespace held, before the namespace itself
/// ([`deleted_lines`]): one line per service, then the secrets and cron jobs.
pub fn deleted_contents(
    namespace: &str,
    services: &[String],
    secrets: usize,
    cron_jobs: usize,
) -> Vec<String> {
    let mut lines: Vec<String> = services
        .iter()
        .map(|name| format!("deleted service={name} in namespace={namespace}"))
        .collect();
    lines.push(format!(
        "deleted {secrets} secret(s) and {cron_jobs} cron job(s) in namespace={namespace}"
    ));
    lines
}

/// `delete-namespace`: the namespace, then the controller's binding (which
/// is not in the namespace).
pub fn deleted_lines(namespace: &str) -> [String; 2] {
    [
        format!("deleted namespace={namespace}"),
        format!(
            "deleted cluster-role-binding={}",
            controller_binding_name(namespace)
        ),
    ]
}

/// The one line a run says when it adopts a namespace bodywork did not make.
pub fn adopted_line(namespace: &str) -> String {
    format!(
        "namespace={namespace} was not made by bodywork: adopting it as it is, \
         with service-account={CONTROLLER_ACCOUNT} and its role bindings, and \
         service-account={STAGES_ACCOUNT} added"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_lines() {
        assert_eq!(
            setup_lines("ns", false),
            [
                "creating namespace=ns",
                "creating service-account=bodywork-workflow-controller in namespace=ns",
                "creating cluster-role-binding=bodywork-workflow-controller--ns",
                "creating service-account=bodywork-jobs-and-deployments in namespace=ns",
            ]
        );
        assert_eq!(setup_lines("ns", true)[0], "found existing namespace=ns");
        assert_eq!(
            deleted_contents("ns", &["a".into()], 1, 0),
            [
                "deleted service=a in namespace=ns",
                "deleted 1 secret(s) and 0 cron job(s) in namespace=ns",
            ]
        );
    }
}
