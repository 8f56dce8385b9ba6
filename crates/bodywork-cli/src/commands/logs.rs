//! `bodywork logs --namespace NS NAME [-f]`: the log of a workflow run
//! (NAME is its run number, as `bodywork runs` shows) or the output of a
//! service's replicas (NAME is the service).

use bodywork_local::protocol::Request;

use super::{checked_name, local};
use crate::Outcome;
use crate::cli::LogsArgs;

pub fn run(args: &LogsArgs) -> Outcome {
    let namespace = match checked_name("namespace", &args.namespace.namespace) {
        Ok(ns) => ns,
        Err(o) => return o,
    };
    let follow = args.follow;
    let request = match parse_run(&args.name) {
        Some(run) => Request::RunLogs {
            namespace,
            run,
            follow,
        },
        None => Request::ServiceLogs {
            namespace,
            name: args.name.clone(),
            follow,
        },
    };
    let home = match local::home() {
        Ok(h) => h,
        Err(o) => return o,
    };
    local::block_on(async move {
        let mut conn = match local::connect(&home).await {
            Ok(c) => c,
            Err(o) => return o,
        };
        if let Err(e) = conn.send(&request).await {
            return local::fail(&e);
        }
        local::print_log_lines(&mut conn).await
    })
}

/// `17` or `run-17`.
fn parse_run(name: &str) -> Option<i64> {
    name.strip_prefix("run-")
        .unwrap_or(name)
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_names() {
        assert_eq!(super::parse_run("17"), Some(17));
        assert_eq!(super::parse_run("run-3"), Some(3));
        assert_eq!(super::parse_run("scoring-service"), None);
        assert_eq!(super::parse_run("0"), None);
    }
}
