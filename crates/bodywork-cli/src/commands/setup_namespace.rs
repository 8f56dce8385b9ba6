//! `bodywork setup-namespace NS`: the seed's four `creating ...` lines; and
//! `bodywork delete-namespace NS`, the tutorial's clean-up.

use bodywork_local::protocol::Request;

use super::local;
use crate::Outcome;
use crate::cli::{DeleteNamespaceArgs, SetupNamespaceArgs};
use crate::output;

pub fn run(args: &SetupNamespaceArgs) -> Outcome {
    let namespace = match super::checked_name("namespace", &args.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    if args.dry_run {
        output::report_message(
            "--dry-run prints Kubernetes manifests; use it with --runtime kubernetes",
        );
        return Outcome::Usage;
    }
    local::call(Request::SetupNamespace { namespace }, local::print_lines)
}

pub fn delete(args: &DeleteNamespaceArgs) -> Outcome {
    let namespace = match super::checked_name("namespace", &args.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    local::call(Request::DeleteNamespace { namespace }, local::print_lines)
}
