//! A namespace as bodywork sets it up: the seed's objects of a namespace
//! (its two service accounts and the controller's cluster role binding),
//! which the Kubernetes runtime creates and the local runtime stands in
//! for; and what setting one up or deleting one did, as data (the run log
//! and the CLI word it).
//!
//! Must not: create or delete anything (each runtime does), or word
//! anything.

use serde::{Deserialize, Serialize};

use crate::RuntimeError;

/// Runs the workflow controller (in-cluster cron jobs) and may manage the namespace.
pub const CONTROLLER_ACCOUNT: &str = "bodywork-workflow-controller";
/// Runs stage containers; it has no API permissions at all.
pub const STAGES_ACCOUNT: &str = "bodywork-jobs-and-deployments";

/// `bodywork-workflow-controller--NS`.
pub fn controller_binding_name(namespace: &str) -> String {
    format!("{CONTROLLER_ACCOUNT}--{namespace}")
}

/// What [`crate::Resources::setup_namespace`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSetup {
    pub namespace: String,
    /// It existed already (its objects were found, or added); else it was
    /// created with them.
    pub existed: bool,
    /// It existed, made by someone else, and was adopted as it is: what
    /// runs need was added to it (Kubernetes).
    pub adopted: bool,
}

/// What [`crate::Resources::delete_namespace`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceDeletion {
    pub namespace: String,
    pub outcome: NamespaceGone,
    /// The controller's cluster role binding
    /// ([`controller_binding_name`]), which is not in the namespace, was
    /// deleted too.
    pub binding_deleted: bool,
}

/// What became of the namespace itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NamespaceGone {
    /// Deleted, with what it held.
    Deleted {
        /// Its services, by name.
        services: Vec<String>,
        secrets: usize,
        cron_jobs: usize,
        /// The workflow runs deleted with their logs, where the runtime
        /// records runs (local).
        runs: Option<usize>,
    },
    /// Being deleted, still terminating after `waited_secs` (Kubernetes
    /// finishes it in the background); `watch_error`: why watching it
    /// failed, if it did.
    Terminating {
        waited_secs: u64,
        watch_error: Option<RuntimeError>,
    },
    /// There was no such namespace (only its binding was left).
    Absent,
}
