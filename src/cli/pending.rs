//! Commands whose issues are still open: their flags are defined (so `--help` shows the surface
//! scripts will use), and running them says so plainly and exits 1.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

/// Tells the user a command is not in this build yet.
pub(super) fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "polaris: {what} is not available in this version yet. `polaris server` is; see `polaris --help`."
    );
    Ok(ExitCode::FAILURE)
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Number of lines to print
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Whose logs
    #[arg(long, value_enum, default_value_t = Process::Polaris)]
    pub process: Process,
    /// The stderr stream instead of stdout
    #[arg(long)]
    pub stderr: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Process {
    Polaris,
    ComputeSubnet,
}

#[derive(Debug, Args)]
pub struct CheckMainArgs {
    /// Follow the process's log
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub target: UpdateTarget,
}

#[derive(Debug, Subcommand)]
pub enum UpdateTarget {
    /// Fetch and fast-forward POLARIS_COMPUTE_REPO into POLARIS_COMPUTE_DIR
    Subnet,
}
