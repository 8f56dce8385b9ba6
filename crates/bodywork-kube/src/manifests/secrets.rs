//! Secrets: what `secret create` applies, and the secret a namespace may
//! hold with the SSH key for private repositories.
//!
//! Owns: the Secret manifest and the SSH secret's names. Must not: read or
//! log secret values.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, Secret, SecretKeySelector};

use super::{Manifest, labels, meta};

/// The secret holding the SSH key for private repositories (SPEC §2).
pub use bodywork_source::SSH_KEY_SECRET as SSH_SECRET;
/// The key of [`SSH_SECRET`] holding the private key, and the variable a
/// pod gets it as (`bodywork stage` and `bodywork workflow` read it).
pub use bodywork_source::SSH_KEY_VAR as SSH_SECRET_KEY;

/// The pod's `BODYWORK_GITHUB_SSH_PRIVATE_KEY`, from the namespace's
/// `ssh-github-private-key` secret when it has one (optional: public
/// repositories need none).
pub fn ssh_key_env() -> EnvVar {
    EnvVar {
        name: SSH_SECRET_KEY.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: SSH_SECRET.into(),
                key: SSH_SECRET_KEY.into(),
                optional: Some(true),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// A secret `secret create` applies; values are stored as given.
pub fn secret_manifest(namespace: &str, name: &str, data: &BTreeMap<String, String>) -> Manifest {
    Manifest::Secret(Secret {
        metadata: meta(name, Some(namespace), labels(&[])),
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    })
}
