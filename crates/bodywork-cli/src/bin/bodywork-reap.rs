//! `bodywork-reap __reap [--log FILE --log-part BYTES] -- PROGRAM ARGS...`
//! (or `--wait`, the command on stdin; or `--adopt PID [--adopt-fd FD]`):
//! the per-stage reaper (`bodywork_stage::reaper`) as a program of its own,
//! installed beside `bodywork`. It does what `bodywork __reap` does, but
//! links only the reaper: every local stage and replica starts under it,
//! and loading the whole `bodywork` binary for that cost a stage about 3
//! ms. The daemon runs it when it is there (`reaper_for`), else
//! `bodywork __reap`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match bodywork_stage::reaper::main() {
        Some(code) => code,
        None => {
            eprintln!(
                "bodywork-reap: the per-stage reaper of bodywork, started by bodywork itself\nusage: bodywork-reap {} {}",
                bodywork_stage::reaper::SUBCOMMAND,
                bodywork_stage::reaper::USAGE_ARGS
            );
            ExitCode::from(2)
        }
    }
}
