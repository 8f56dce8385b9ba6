//! What `setup-namespace` and `delete-namespace` print: what the runtime
//! did, in the seed's words. A namespace's setup is worded as a run's log
//! words it (`bodywork_workflow::namespace_lines`).

use bodywork_runtime::namespace::{
    NamespaceDeletion, NamespaceGone, NamespaceSetup, controller_binding_name,
};

/// `creating namespace=NS` and the rest of the seed's lines.
pub fn setup_lines(setup: &NamespaceSetup) -> Vec<String> {
    bodywork_workflow::namespace_lines::setup_lines(setup)
}

/// One line per thing deleted: the namespace's services, then its secrets
/// and cron jobs (and workflow runs, where the runtime records them), the
/// namespace, then the controller's binding.
pub fn deletion_lines(deletion: &NamespaceDeletion) -> Vec<String> {
    let namespace = &deletion.namespace;
    let mut lines = Vec::new();
    match &deletion.outcome {
        NamespaceGone::Deleted {
            services,
            secrets,
            cron_jobs,
            runs,
        } => {
            lines.extend(
                services
                    .iter()
                    .map(|name| format!("deleted service={name} in namespace={namespace}")),
            );
            lines.push(format!(
                "deleted {secrets} secret(s) and {cron_jobs} cron job(s) in namespace={namespace}"
            ));
            if let Some(runs) = runs {
                lines.push(format!(
                    "deleted {runs} workflow run(s) with their logs in namespace={namespace}"
                ));
            }
            lines.push(format!("deleted namespace={namespace}"));
        }
        NamespaceGone::Terminating {
            waited_secs,
            watch_error,
        } => {
            let watch = watch_error
                .as_ref()
                .map(|e| format!("; watching it failed: {e}"))
                .unwrap_or_default();
            lines.push(format!(
                "deleting namespace={namespace}: still terminating after {waited_secs} s; \
                 Kubernetes finishes it in the background{watch}"
            ));
        }
        NamespaceGone::Absent => {}
    }
    if deletion.binding_deleted {
        lines.push(format!(
            "deleted cluster-role-binding={}",
            controller_binding_name(namespace)
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use bodywork_runtime::RuntimeError;

    use super::*;

    fn deletion(outcome: NamespaceGone, binding_deleted: bool) -> NamespaceDeletion {
        NamespaceDeletion {
            namespace: "ns".into(),
            outcome,
            binding_deleted,
        }
    }

    #[test]
    fn a_deleted_namespace_reads_as_it_did() {
        let local = NamespaceGone::Deleted {
            services: vec!["a".into()],
            secrets: 1,
            cron_jobs: 0,
            runs: Some(2),
        };
        assert_eq!(
            deletion_lines(&deletion(local, true)),
            [
                "deleted service=a in namespace=ns",
                "deleted 1 secret(s) and 0 cron job(s) in namespace=ns",
                "deleted 2 workflow run(s) with their logs in namespace=ns",
                "deleted namespace=ns",
                "deleted cluster-role-binding=bodywork-workflow-controller--ns",
            ]
        );
        let cluster = NamespaceGone::Deleted {
            services: vec![],
            secrets: 0,
            cron_jobs: 1,
            runs: None,
        };
        assert_eq!(
            deletion_lines(&deletion(cluster, false)),
            [
                "deleted 0 secret(s) and 1 cron job(s) in namespace=ns",
                "deleted namespace=ns",
            ]
        );
    }

    #[test]
    fn a_namespace_still_terminating_says_so() {
        let slow = NamespaceGone::Terminating {
            waited_secs: 60,
            watch_error: None,
        };
        assert_eq!(
            deletion_lines(&deletion(slow, true)),
            [
                "deleting namespace=ns: still terminating after 60 s; Kubernetes finishes it \
                 in the background",
                "deleted cluster-role-binding=bodywork-workflow-controller--ns",
            ]
        );
        let broken = NamespaceGone::Terminating {
            waited_secs: 60,
            watch_error: Some(RuntimeError::unavailable("gone")),
        };
        assert!(
            deletion_lines(&deletion(broken, false))[0]
                .ends_with("background; watching it failed: gone")
        );
        assert!(deletion_lines(&deletion(NamespaceGone::Absent, false)).is_empty());
    }
}
