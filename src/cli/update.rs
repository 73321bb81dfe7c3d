//! `polaris update subnet`: clone POLARIS_COMPUTE_REPO into POLARIS_COMPUTE_DIR, or fetch and
//! fast-forward it, then restart compute_subnet if it was running.
//!
//! Local changes are refused, not stashed: the original stashed them silently, and a miner's
//! hand fixes vanished on the next update. The message says how to keep or drop them.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::agent::control::{self, Request, Response};
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

/// Runs git with its output captured; a failure carries git's own words.
fn git(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    let output = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .context("cannot run git: is it installed?")?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }
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
    let empty = std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none());
    if empty {
        let target = dir.to_string_lossy();
        git(None, &["clone", "--quiet", repo, &target])?;
        println!("Cloned {repo} into {}.", dir.display());
    } else {
        if git(Some(dir), &["rev-parse", "--is-inside-work-tree"]).is_err() {
            anyhow::bail!(
                "{} exists but is not a git checkout: move it away, or point POLARIS_COMPUTE_DIR elsewhere",
                dir.display()
            );
        }
        let changes = git(
            Some(dir),
            &["status", "--porcelain", "--untracked-files=no"],
        )?;
        if !changes.trim().is_empty() {
            anyhow::bail!(
                "{} has local changes; nothing was updated. Keep them with `git -C {0} stash` \
                 (and `git stash pop` after), or drop them with `git -C {0} checkout -- .`",
                dir.display()
            );
        }
        let before = git(Some(dir), &["rev-parse", "HEAD"])?;
        git(Some(dir), &["fetch", "--quiet", "origin"])?;
        git(Some(dir), &["merge", "--ff-only", "--quiet", "@{upstream}"]).map_err(|e| {
            e.context("cannot fast-forward: the checkout has commits origin does not have")
        })?;
        let after = git(Some(dir), &["rev-parse", "HEAD"])?;
        if before == after {
            println!("Already up to date ({}).", short(&after));
        } else {
            println!("Updated {} → {}.", short(&before), short(&after));
        }
    }
    restart_if_running(&settings.home)?;
    println!("Update completed successfully.");
    Ok(ExitCode::SUCCESS)
}

fn short(commit: &str) -> &str {
    commit.trim().get(..10).unwrap_or(commit.trim())
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
            Ok(other) => println!("compute_subnet was not restarted: {other:?}"),
            Err(err) => println!("compute_subnet was not restarted: {err}"),
        }
    }
    Ok(())
}
