//! `bw`: the short alias of `bodywork`. It replaces itself (`exec`) with the
//! `bodywork` beside it, with the same arguments, so the program, its exit
//! status, signals and terminal are `bodywork`'s own. It uses nothing but
//! the standard library: the release build links the whole program once,
//! for `bodywork`, and this in a moment. (An install may as well make `bw`
//! a symlink to `bodywork`, as the image does.)

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

/// What a shell answers for a command it cannot run.
const CANNOT_RUN: u8 = 127;

fn main() -> ExitCode {
    let bodywork = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("bodywork"),
        Err(e) => {
            eprintln!("bw: cannot tell where bw is, so where bodywork is: {e}");
            return ExitCode::from(CANNOT_RUN);
        }
    };
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "bw".into());
    let error = Command::new(&bodywork).arg0(arg0).args(args).exec();
    eprintln!(
        "bw: cannot run {}: {error} (bw runs the bodywork installed beside it)",
        bodywork.display()
    );
    ExitCode::from(CANNOT_RUN)
}
