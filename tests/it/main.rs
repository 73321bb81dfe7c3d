//! The integration tests, one binary: the real `polaris` binary and the library's public parts,
//! end to end. One module per area, so a test is named `agent::…`, `cli::…` and so on, and
//! `tests/it/common` is compiled once for all of them.

// Every test that uses the shared parts runs on Unix only, until the tests run on Windows too
// (issue 13); there, the shared parts are compiled (and checked) but unused.
#[cfg_attr(not(unix), allow(dead_code, unused_imports, unused_macros))]
mod common;

mod agent;
mod bad_input;
mod cli;
mod commands;
mod coordinator;
mod dashboard;
mod inventory;
mod logs;
mod openapi;
mod register;
mod relay;
mod replicas;
mod slow_clients;
mod ssh_keys;
mod store_failures;
mod tunnel;
mod wire_compat;
