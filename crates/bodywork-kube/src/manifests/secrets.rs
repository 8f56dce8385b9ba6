//! Secrets: what `secret create` applies, and the secret a namespace may
//! hold with the SSH key for private repositories.
//!
//! Owns: the Secret manifest and the SSH secret's names. Must not: read or
//! log secret values.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;

use super::{Manifest, labels, meta};

/// The secret holding the SSH key for private repositories (SPEC §2).
pub const SSH_SECRET: &str = "ssh-github-private-key";
/// The key of [`SSH_SECRET`] holding the private key.
pub const SSH_SECRET_KEY: &str = "BODYWORK_GITHUB_SSH_PRIVATE_KEY";

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
