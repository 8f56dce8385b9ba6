//! `bodywork completions SHELL`: print a completion script to stdout.

use clap::CommandFactory;

use crate::Outcome;
use crate::cli::{Cli, CompletionsArgs};

pub fn run(args: &CompletionsArgs) -> Outcome {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "bodywork", &mut std::io::stdout());
    Outcome::Success
}
