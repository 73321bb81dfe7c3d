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
pub struct RegisterArgs {
    /// Which network to register on
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// Username, 3 to 32 of A-Z a-z 0-9 _ -
    #[arg(long)]
    pub username: Option<String>,
    /// Bittensor wallet name
    #[arg(long)]
    pub wallet: Option<String>,
    /// Bittensor hotkey name
    #[arg(long)]
    pub hotkey: Option<String>,
    /// Commune key name
    #[arg(long)]
    pub key: Option<String>,
    /// Use the network's testnet
    #[arg(long)]
    pub testnet: bool,
    /// Answer yes to every confirmation (for scripts)
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Network {
    Standard,
    Bittensor,
    Commune,
}

#[derive(Debug, Args)]
pub struct ViewComputeArgs {
    /// Miner id (default: the one in POLARIS_HOME/registration.json)
    #[arg(long)]
    pub miner_id: Option<String>,
    /// Print JSON instead of tables
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
