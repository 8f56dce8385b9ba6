//! The Kubernetes runtime: the same projects and commands on a real
//! cluster.
//!
//! Owns: the manifests bodywork generates (`manifests`, pure, no I/O), the
//! conditions it waits for (`wait`, pure), the readable errors (`errors`),
//! [`KubeRuntime`], which implements [`bodywork_runtime::Runtime`] with
//! kube-rs, and `host`, which runs a workflow or a `--dry-run` from the CLI.
//! Must not: print anything itself (everything goes to the run's log or is
//! returned), or hold state outside the cluster.
//!
//! Layers, as in kube-rs itself: `manifests` and `wait` can be used and
//! tested without a cluster; `runtime` and `podlogs` act.

#![warn(missing_docs)]

pub mod control;
pub mod errors;
pub mod host;
pub mod manifests;
mod podlogs;
mod retry;
mod runtime;
pub mod wait;

pub use manifests::{DEFAULT_IMAGE, Manifest, to_yaml};
pub use runtime::{FIELD_MANAGER, KubeRuntime};
