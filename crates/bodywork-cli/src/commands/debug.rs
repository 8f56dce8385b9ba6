//! `bodywork debug SECONDS`: sleep, so a container can be inspected.

use crate::Outcome;
use crate::cli::DebugArgs;

pub fn run(args: &DebugArgs) -> Outcome {
    tracing::info!(target: "debug", "sleeping for {} seconds", args.seconds);
    std::thread::sleep(std::time::Duration::from_secs(args.seconds));
    Outcome::Success
}
