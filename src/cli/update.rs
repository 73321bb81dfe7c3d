//! `polaris update subnet`: clone POLARIS_COMPUTE_REPO into POLARIS_COMPUTE_DIR, or fetch and
//! fast-forward it (`agent::subnet_update` does the git work and refuses local changes), print
//! what happened, then restart compute_subnet if it was running.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::agent::control::{self, Request, Response};
use crate::agent::subnet_update::{self, UpdateOutcome, short};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub target: UpdateTarget,
}

#[derive(Debug, Subcommand)]
pub enum UpdateTarget {
    /// Clone or fast-forward POLARIS_COMPUTE_REPO into POLARIS_COMPUTE_DIR, then restart
    /// compute_subnet if it runs (local changes are refused, never lost)
    Subnet,
}

pub(super) fn run(args: UpdateArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let UpdateTarget::Subnet = args.target;
    let settings = Settings::load(home, &[])?;
    let (Some(repo), Some(dir)) = (&settings.compute.repo, &settings.compute.dir) else {
        eprintln!(
            "polaris: error: set POLARIS_COMPUTE_REPO (the git URL) and POLARIS_COMPUTE_DIR (where it lives) first"
        );
        return Ok(ExitCode::from(2));
    };
    println!("Updating Polaris Subnet Repository...");
    // The outcome line says what happened; the steps are quick enough not to need their own.
    match subnet_update::update(repo, dir, &mut |_| {})? {
        UpdateOutcome::Cloned { repo, dir } => println!("Cloned {repo} into {}.", dir.display()),
        UpdateOutcome::AlreadyUpToDate { commit } => {
            println!("Already up to date ({}).", short(&commit));
        }
        UpdateOutcome::Updated { from, to } => {
            println!("Updated {} → {}.", short(&from), short(&to))
        }
    }
    restart_if_running(&settings.home)?;
    println!("Update completed successfully.");
    Ok(ExitCode::SUCCESS)
}

/// Asks a running agent to restart compute_subnet, if it runs it.
fn restart_if_running(home: &Path) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let socket = control::socket_path(home);
    let running = match runtime.block_on(control::ask(&socket, Request::Status)) {
        Ok(Response::Status(snapshot)) => snapshot.compute.and_then(|c| c.pid).is_some(),
        _ => false,
    };
    if running {
        match runtime.block_on(control::ask(&socket, Request::RestartCompute)) {
            Ok(Response::Done { .. }) => println!("compute_subnet restarted."),
            Ok(Response::Refused { message }) => {
                println!("compute_subnet was not restarted: {message}");
            }
            // A catch-all: the control socket may learn new answers.
            Ok(_) => println!(
                "compute_subnet was not restarted: the agent gave an answer that is not about a \
                 restart; restart it with `polaris stop` and `polaris start`"
            ),
            // Only the error's words: its type belongs to the control socket.
            Err(err) => println!("compute_subnet was not restarted: {err}"),
        }
    }
    Ok(())
}
