//! The `polaris` binary: parse the command line, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = polaris::cli::Cli::parse();
    polaris::cli::run(cli)
}
