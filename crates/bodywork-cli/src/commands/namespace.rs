//! `bodywork setup-namespace NS`: the seed's four `creating ...` lines; and
//! `bodywork delete-namespace NS`, the tutorial's clean-up.

use super::connect::{print_lines, with_control};
use super::{checked_name, dry_run};
use crate::CliResult;
use crate::cli::{DeleteNamespaceArgs, GlobalArgs, SetupNamespaceArgs};
use crate::output::namespace::{deletion_lines, setup_lines};

pub fn setup(global: &GlobalArgs, args: &SetupNamespaceArgs) -> CliResult {
    let namespace = checked_name("namespace", &args.namespace)?;
    if args.dry_run {
        return dry_run::setup_namespace(global, &namespace);
    }
    with_control(global, None, async move |cp| {
        Ok(print_lines(&setup_lines(
            &cp.setup_namespace(&namespace).await?,
        )))
    })
}

pub fn delete(global: &GlobalArgs, args: &DeleteNamespaceArgs) -> CliResult {
    let namespace = checked_name("namespace", &args.namespace)?;
    with_control(global, None, async move |cp| {
        Ok(print_lines(&deletion_lines(
            &cp.delete_namespace(&namespace).await?,
        )))
    })
}
