//! What `polaris status --json` prints: a contract with the scripts that read it, kept apart
//! from the control socket's protocol although it carries the agent's [`Snapshot`] inside.
//!
//! Its shape is pinned by a snapshot test (`agent::contracts`): a change to it, or to anything
//! it carries, is an API change (the README documents the fields), not a refactor.

use serde::Serialize;

use super::control::Snapshot;
use super::usage::Usage;

/// The body of `polaris status --json`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport<'a> {
    /// The running agent's snapshot, as the control socket gave it; null when it is not running.
    pub polaris: Option<&'a Snapshot>,
    /// compute_subnet is configured: by the running agent, or else by this shell's settings.
    pub compute_subnet_configured: bool,
    /// CPU and memory of compute_subnet's process tree, while it runs.
    pub compute_subnet_usage: Option<Usage>,
    /// Nothing in `problems`: `status` exits 0.
    pub healthy: bool,
    /// Why `status` is not healthy (and exits 3), one short sentence each.
    pub problems: &'a [String],
}

impl StatusReport<'_> {
    /// The report as printed: pretty JSON with every object's keys in alphabetical order (through
    /// a `serde_json::Value`), as `status --json` has always printed it.
    pub fn to_json(&self) -> serde_json::Result<String> {
        Ok(format!("{:#}", serde_json::to_value(self)?))
    }
}
