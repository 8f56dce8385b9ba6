//! The reaper as a program (`reap __reap ...`), for this crate's tests of
//! it as a process of its own; `bodywork-reap` is the one installed.

fn main() -> std::process::ExitCode {
    bodywork_stage::reaper::main().unwrap_or(std::process::ExitCode::from(2))
}
