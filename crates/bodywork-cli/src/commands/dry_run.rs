//! `--dry-run`: the Kubernetes manifests a command would apply, printed
//! without a cluster (`workflow`, `setup-namespace`, `cronjob create`).
//!
//! Must not: talk to a cluster or the daemon. On the local runtime there
//! is nothing to print, and it says so.

use bodywork_kube::host;
use bodywork_kube::{Manifest, control::cron_image, manifests, to_yaml};
use bodywork_runtime::{CronJobSpec, WorkflowSubmission};

use super::connect::block_on;
use crate::Outcome;
use crate::cli::{GlobalArgs, RuntimeKind};
use crate::output;

/// Refuse `--dry-run` on the local runtime.
fn kubernetes_only(global: &GlobalArgs) -> Result<(), Outcome> {
    if global.runtime == RuntimeKind::Kubernetes {
        return Ok(());
    }
    output::report_message(
        "--dry-run prints Kubernetes manifests; use it with --runtime kubernetes",
    );
    Err(Outcome::Usage)
}

fn print_manifests(manifests: &[Manifest]) -> Outcome {
    match to_yaml(manifests) {
        Ok(yaml) => {
            print!("{yaml}");
            Outcome::Success
        }
        Err(e) => {
            output::report_message(format!("cannot render the manifests as YAML: {e}"));
            Outcome::Failure
        }
    }
}

pub fn setup_namespace(global: &GlobalArgs, namespace: &str) -> Outcome {
    if let Err(o) = kubernetes_only(global) {
        return o;
    }
    print_manifests(&manifests::namespace_manifests(namespace))
}

pub fn cronjob(global: &GlobalArgs, spec: &CronJobSpec) -> Outcome {
    if let Err(o) = kubernetes_only(global) {
        return o;
    }
    print_manifests(&[manifests::cronjob_manifest(spec, cron_image().as_deref())])
}

pub fn workflow(
    global: &GlobalArgs,
    submission: &WorkflowSubmission,
    image: Option<&str>,
) -> Outcome {
    if let Err(o) = kubernetes_only(global) {
        return o;
    }
    block_on(async move {
        match host::dry_run(submission, image).await {
            Ok(dry) => {
                for note in &dry.notes {
                    eprintln!("{note}");
                }
                print_manifests(&dry.manifests)
            }
            Err(e) => {
                output::report_error(&e, None);
                Outcome::Failure
            }
        }
    })
}
