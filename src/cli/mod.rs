//! The command line: one `Cli` parsed by clap, one module per command.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error (clap's own errors use 2 as well).

mod agent;
mod completions;
mod inventory;
mod logs;
mod miners;
mod register;
mod server;
mod update;
mod view_compute;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Polaris: rent out your GPUs and CPUs to decentralized compute networks.
///
/// Run `polaris` on a terminal for the dashboard, `polaris --daemon` for the headless agent, or
/// one of the commands below. Settings come from flags, the environment, `.env` (in the working
/// directory and in POLARIS_HOME) and POLARIS_HOME/polaris.toml, in that order; see
/// `.env.example` for every name.
#[derive(Debug, Parser)]
#[command(
    name = "polaris",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Run the agent in the foreground without a screen (for systemd and servers).
    #[arg(long, global = false)]
    pub daemon: bool,

    /// Where Polaris keeps its files [env: POLARIS_HOME] [default: ~/.polaris]
    #[arg(long, global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the agent and compute_subnet in the background
    Start,
    /// Stop compute_subnet and the agent
    Stop,
    /// Show whether the agent and compute_subnet run (exit 3 when something configured is down)
    Status(agent::StatusArgs),
    /// Register this machine with the coordinator
    Register(register::RegisterArgs),
    /// Show this miner's pod and compute resources as the coordinator lists them
    ViewCompute(view_compute::ViewComputeArgs),
    /// Print or follow the agent's and compute_subnet's logs
    Logs(logs::LogsArgs),
    /// Show the compute_subnet process and where its logs are
    CheckMain(agent::CheckMainArgs),
    /// Update the compute_subnet repository and restart it if it was running
    Update(update::UpdateArgs),
    /// Show the hardware facts registration would send (CPU, RAM, GPUs, disks, network)
    Inventory(inventory::InventoryArgs),
    /// Run the coordinator: registration, heartbeats, health check, alerts
    Server(server::ServerArgs),
    /// The coordinator's fleet, for its admin: list miners, show one, send it commands
    /// (SERVER_URL, POLARIS_ADMIN_TOKEN)
    Miners(miners::MinersArgs),
    /// Print shell completions (e.g. `polaris completions bash > /etc/bash_completion.d/polaris`)
    Completions(completions::CompletionsArgs),
    /// Open the dashboard (what `polaris` alone does on a terminal; the original's `monitor`)
    Monitor,
}

/// Runs the parsed command line and maps the outcome to an exit code.
pub fn run(cli: Cli) -> ExitCode {
    let outcome = match cli.command {
        Some(Command::Server(args)) => server::run(args, cli.home),
        Some(Command::Miners(args)) => miners::run(args, cli.home),
        Some(Command::Completions(args)) => completions::run(&args),
        Some(Command::Start) => agent::start(cli.home),
        Some(Command::Stop) => agent::stop(cli.home),
        Some(Command::Status(args)) => agent::status(args, cli.home),
        Some(Command::Register(args)) => register::run(args, cli.home),
        Some(Command::ViewCompute(args)) => view_compute::run(args, cli.home),
        Some(Command::Logs(args)) => logs::run(args, cli.home),
        Some(Command::CheckMain(args)) => agent::check_main(args, cli.home),
        Some(Command::Update(args)) => update::run(args, cli.home),
        Some(Command::Inventory(args)) => inventory::run(args, cli.home),
        None if cli.daemon => agent::daemon(cli.home),
        Some(Command::Monitor) => dashboard(cli.home),
        None if std::io::stdout().is_terminal() => dashboard(cli.home),
        None => {
            // Not a terminal and no command: a script called us wrongly.
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("polaris: error: {err:#}");
            if is_bad_flag(&err) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A flag's value that does not parse is a usage error (exit 2), as clap's own are; a bad
/// value in the environment or a file is a failure to fix there (exit 1).
fn is_bad_flag(err: &anyhow::Error) -> bool {
    use crate::config::{ConfigError, Origin};
    err.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<ConfigError>(),
            Some(ConfigError::Invalid {
                origin: Origin::Flag,
                ..
            })
        )
    })
}

/// The dashboard needs a terminal on both ends: keys in, screen out.
fn dashboard(home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        eprintln!(
            "polaris: error: the dashboard needs a terminal; for scripts use `polaris status`, `polaris logs` or `polaris --daemon`"
        );
        return Ok(ExitCode::from(2));
    }
    // The idle dashboard, like the agent, need not hold mimalloc's eagerly committed arena.
    #[cfg(unix)]
    agent::with_lazy_allocator()?;
    let settings = crate::config::Settings::load(home, &[])?;
    let log_lines = settings.dashboard_log_lines;
    crate::tui::run(settings, log_lines)
}

/// One line on stdout for a long-running command (`--daemon`, `server`), where a closed stdout
/// (`| head`, a stopped journal) must not end the process the way `println!` would.
pub(crate) fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_seed_command_parses() {
        for args in [
            &["polaris", "start"][..],
            &["polaris", "stop"],
            &["polaris", "status", "--json"],
            &["polaris", "register"],
            &["polaris", "view-compute", "--json"],
            &["polaris", "logs", "-n", "5", "-f"],
            &["polaris", "check-main"],
            &["polaris", "update", "subnet"],
            &["polaris", "inventory", "--json"],
            &["polaris", "server", "--offline-after", "2s"],
            &["polaris", "miners", "restart", "abc", "--wait"],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
