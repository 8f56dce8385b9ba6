//! Secrets: what `secret create` applies, and the secret a namespace may
//! hold with the SSH key for private repositories.
//!
//! Owns: the Secret manifest and the SSH secret's names. Must not: read or
//! log secret values.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};

use super::{Manifest, labels, meta};

// The secret holding the SSH key for private repositories, and its key
// holding the private key, which is also the variable a pod gets it as
// (`bodywork stage` and `bodywork workflow` read it).
use bodywork_source::{SSH_KEY_SECRET, SSH_KEY_VAR};

/// The pod's deploy key variables, each from its secret when the namespace
/// has it (optional: public repositories need none): ours (0.x's)
/// `BODYWORK_GITHUB_SSH_PRIVATE_KEY` from `ssh-github-private-key`, and
/// Bodywork 3's `BODYWORK_GIT_SSH_PRIVATE_KEY` from `ssh-git-private-key`.
pub fn ssh_key_env() -> [EnvVar; 2] {
    [
        (SSH_KEY_SECRET, SSH_KEY_VAR),
        (
            bodywork_source::GIT_SSH_KEY_SECRET,
            bodywork_source::GIT_SSH_KEY_VAR,
        ),
    ]
    .map(|(secret, key)| EnvVar {
        name: key.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
}

/// The label Bodywork 3 gives a secrets group's secrets: `group=GROUP`.
pub const GROUP_LABEL: &str = "group";

/// The secret a group's secret `name` is kept as in Bodywork's namespace,
/// as Bodywork 3 names it: `GROUP-NAME`.
pub fn group_secret_name(group: &str, name: &str) -> String {
    format!("{group}-{name}")
}

/// The name inside its group of the secret `stored`, labelled
/// `group=GROUP`: what follows `GROUP-` (Bodywork 3's rule), else all of it.
pub fn name_in_group<'a>(stored: &'a str, group: &str) -> &'a str {
    stored
        .strip_prefix(group)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|n| !n.is_empty())
        .unwrap_or(stored)
}

/// A secret `secret create` applies; values are stored as given.
pub fn secret_manifest(namespace: &str, name: &str, data: &BTreeMap<String, String>) -> Manifest {
    labelled_secret(namespace, name, data, &[])
}

/// A secret of group `group`, as Bodywork 3 keeps it in its namespace:
/// named `GROUP-NAME`, labelled `group=GROUP`.
pub fn group_secret_manifest(group: &str, name: &str, data: &BTreeMap<String, String>) -> Manifest {
    labelled_secret(
        bodywork_runtime::groups::GROUPS_NAMESPACE,
        &group_secret_name(group, name),
        data,
        &[(GROUP_LABEL, group)],
    )
}

fn labelled_secret(
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, String>,
    extra: &[(&str, &str)],
) -> Manifest {
    Manifest::Secret(Secret {
        metadata: meta(name, Some(namespace), labels(extra)),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_secrets_are_named_and_labelled_as_bodywork_3_names_them() {
        let data = BTreeMap::from([("K".to_string(), "v".to_string())]);
        let Manifest::Secret(s) = group_secret_manifest("dev-eu", "creds", &data) else {
            panic!("a Secret");
        };
        assert_eq!(s.metadata.name.as_deref(), Some("dev-eu-creds"));
        assert_eq!(
            s.metadata.namespace.as_deref(),
            Some("bodywork-deployment-jobs")
        );
        let labels = s.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("group").map(String::as_str), Some("dev-eu"));
        // The group, from the label, tells where the name starts.
        assert_eq!(name_in_group("dev-eu-creds", "dev-eu"), "creds");
        assert_eq!(name_in_group("dev-eu-creds", "dev"), "eu-creds");
        assert_eq!(name_in_group("odd", "dev"), "odd");
        assert_eq!(name_in_group("dev-", "dev"), "dev-");
    }
}
