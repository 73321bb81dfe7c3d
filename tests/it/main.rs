//! The integration tests, one binary: the real `polaris` binary and the library's public parts,
//! end to end. One module per area, so a test is named `agent::…`, `cli::…` and so on, and
//! `tests/it/common` is compiled once for all of them.

mod common;

mod agent;
mod bad_input;
mod cli;
mod coordinator;
mod dashboard;
mod inventory;
mod logs;
mod register;
mod relay;
mod tunnel;
mod wire_compat;
