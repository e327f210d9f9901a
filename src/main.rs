use std::process::ExitCode;

fn main() -> ExitCode {
    hookrelay::cli::run()
}
