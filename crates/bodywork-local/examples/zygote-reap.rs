//! The reaper as a program (`zygote-reap __reap ...`), for this crate's
//! tests of the zygote, whose forks exec it; `bodywork-reap` is the one
//! installed.

fn main() -> std::process::ExitCode {
    bodywork_stage::reaper::main().unwrap_or(std::process::ExitCode::from(2))
}
