//! `--dry-run`: the Kubernetes manifests a command would apply, printed
//! without a cluster (`workflow`, `setup-namespace`, `cronjob create`).
//!
//! Must not: talk to a cluster or the daemon. On the local runtime there
//! is nothing to print, and it says so.

use bodywork_kube::host;
use bodywork_kube::{Manifest, control::cron_image, manifests, to_yaml};
use bodywork_runtime::{CronJobSpec, WorkflowSubmission};

use super::connect::block_on;
use crate::cli::{GlobalArgs, RuntimeKind};
use crate::{CliError, CliResult, Outcome};

/// Refuse `--dry-run` on the local runtime.
fn kubernetes_only(global: &GlobalArgs) -> Result<(), CliError> {
    if global.runtime == RuntimeKind::Kubernetes {
        return Ok(());
    }
    Err(CliError::usage("--dry-run prints Kubernetes manifests")
        .with_hint("use it with --runtime kubernetes"))
}

fn print_manifests(manifests: &[Manifest]) -> CliResult {
    match to_yaml(manifests) {
        Ok(yaml) => {
            print!("{yaml}");
            Ok(Outcome::Success)
        }
        Err(e) => Err(CliError::caused(
            "cannot render the manifests as YAML",
            &e,
            Outcome::Failure,
        )),
    }
}

pub fn setup_namespace(global: &GlobalArgs, namespace: &str) -> CliResult {
    kubernetes_only(global)?;
    print_manifests(&manifests::namespace_manifests(namespace))
}

pub fn cronjob(global: &GlobalArgs, spec: &CronJobSpec) -> CliResult {
    kubernetes_only(global)?;
    print_manifests(&[manifests::cronjob_manifest(spec, cron_image().as_deref())])
}

pub fn workflow(
    global: &GlobalArgs,
    submission: &WorkflowSubmission,
    image: Option<&str>,
) -> CliResult {
    kubernetes_only(global)?;
    block_on(async move {
        match host::dry_run(submission, image).await {
            Ok(dry) => {
                for note in &dry.notes {
                    eprintln!("{note}");
                }
                print_manifests(&dry.manifests)
            }
            Err(e) => Err(CliError::workflow(&e)),
        }
    })
}
