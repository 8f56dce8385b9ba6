fn main() -> std::process::ExitCode {
    bodywork_cli::main()
}
