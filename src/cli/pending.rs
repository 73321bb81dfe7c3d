//! What is still to come (the dashboard) says so plainly and exits 1.

use std::process::ExitCode;

/// Tells the user a command is not in this build yet.
pub(super) fn not_yet(what: &str) -> anyhow::Result<ExitCode> {
    eprintln!(
        "polaris: {what} is not available in this version yet. `polaris server` is; see `polaris --help`."
    );
    Ok(ExitCode::FAILURE)
}
