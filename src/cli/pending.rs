//! Commands whose issues are still open: their flags are defined (so `--help` shows the surface
//! scripts will use), and running them says so plainly and exits 1.

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Tells the user a command is not in this build yet.
pub(super) fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "polaris: {what} is not available in this version yet. `polaris server` is; see `polaris --help`."
    );
    Ok(ExitCode::FAILURE)
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
