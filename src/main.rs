//! The `polaris` binary: parse the command line, run the command, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc: cheaper small allocations on the request path than the system allocator, and it
/// returns freed memory to the system instead of holding a burst's high-water mark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = polaris::cli::Cli::parse();
    polaris::cli::run(cli)
}
