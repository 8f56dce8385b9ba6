//! `bw`: the short alias of `bodywork`, built from the same code.
fn main() -> std::process::ExitCode {
    bodywork_cli::main()
}
