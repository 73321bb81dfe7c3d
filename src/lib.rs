//! Polaris: one binary for compute providers ("miners") and the coordinator they talk to.
//!
//! # Layout
//! - [`agent`]: the agent daemon: heartbeats, the compute_subnet supervisor, the SSH tunnel
//!   keeper, the control socket, PID files, rotating logs.
//! - [`cli`]: the command tree (clap) and one module per command; `main.rs` only calls [`cli::run`].
//! - [`config`]: settings layered as flag > environment > `.env` > `polaris.toml` > default.
//! - [`telemetry`]: tracing into rotating files under `POLARIS_HOME/logs`.
//! - [`api`]: the wire contract (serde types compatible with the original Python tool's bodies).
//! - [`inventory`]: the machine's hardware facts (CPU, memory, disks, GPUs, network, location),
//!   the disk benchmark and the self-test gates: what registration sends.
//! - [`register`]: the registration engine (a state machine both faces drive), wallets and
//!   keys, submission and `registration.json`.
//! - [`server`]: `polaris server`, the coordinator: HTTP routes, auth, the in-memory heartbeat
//!   registry with its deadline index, the health check, the rules that turn a status change
//!   into writes and an alert, and alerts.
//! - `splice`: an SSH channel joined to a TCP socket, for the tunnel keeper and the built-in
//!   relay alike.
//! - [`store`]: persistence behind a trait; the embedded SQLite store and its batching writer.
//! - [`tui`]: the dashboard (`polaris` on a terminal), a client of the agent and the coordinator.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod files;
pub mod inventory;
pub mod register;
pub mod server;
mod splice;
pub mod store;
pub mod telemetry;
#[doc(hidden)]
pub mod testing;
pub mod tui;
