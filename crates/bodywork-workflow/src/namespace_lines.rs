//! What setting up a namespace says, in the seed's words: in a run's log
//! (the controller sets up or adopts the namespace a run needs) and in
//! `setup-namespace`'s output (the CLI prints these lines), so both say it
//! alike.

use bodywork_runtime::namespace::{
    CONTROLLER_ACCOUNT, NamespaceSetup, STAGES_ACCOUNT, controller_binding_name,
};

/// The seed's four lines of `setup-namespace` (`creating ...`, or `found
/// existing ...` when the namespace existed), then the adoption's line when
/// it was adopted.
pub fn setup_lines(setup: &NamespaceSetup) -> Vec<String> {
    let namespace = &setup.namespace;
    let verb = if setup.existed {
        "found existing"
    } else {
        "creating"
    };
    let mut lines = vec![
        format!("{verb} namespace={namespace}"),
        format!("{verb} service-account={CONTROLLER_ACCOUNT} in namespace={namespace}"),
        format!(
            "{verb} cluster-role-binding={}",
            controller_binding_name(namespace)
        ),
        format!("{verb} service-account={STAGES_ACCOUNT} in namespace={namespace}"),
    ];
    if setup.adopted {
        lines.push(adopted_line(namespace));
    }
    lines
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
        let setup = |existed, adopted| NamespaceSetup {
            namespace: "ns".into(),
            existed,
            adopted,
        };
        assert_eq!(
            setup_lines(&setup(false, false)),
            [
                "creating namespace=ns",
                "creating service-account=bodywork-workflow-controller in namespace=ns",
                "creating cluster-role-binding=bodywork-workflow-controller--ns",
                "creating service-account=bodywork-jobs-and-deployments in namespace=ns",
            ]
        );
        let found = setup_lines(&setup(true, false));
        assert_eq!(found[0], "found existing namespace=ns");
        assert_eq!(found.len(), 4);
        let adopted = setup_lines(&setup(true, true));
        assert_eq!(adopted.len(), 5);
        assert_eq!(adopted[4], adopted_line("ns"));
        assert!(adopted[4].starts_with("namespace=ns was not made by bodywork: adopting it"));
    }
}
