//! `polaris miners …`: the fleet as the coordinator's admin sees it (SERVER_URL with
//! POLARIS_ADMIN_TOKEN): every miner's liveness, one miner in full, and commands to a miner
//! (`restart`, and SSH keys for miners that opted in with `POLARIS_SSH_ACCESS=keys`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use comfy_table::{Table, presets};

use crate::api::client::CoordinatorClient;
use crate::api::{
    Command, CommandEntry, CommandList, CommandQueued, CommandState, Pod, RestartTarget, Validate,
};
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct MinersArgs {
    #[command(subcommand)]
    pub action: MinersAction,
}

#[derive(Debug, Subcommand)]
pub enum MinersAction {
    /// Every miner with its liveness and verification
    List(JsonFlag),
    /// One miner: its pod, liveness, recent commands and the SSH keys its agent reported
    Show(MinerFlag),
    /// Restart the miner's compute_subnet (delivered with its next heartbeat)
    Restart(CommandFlags),
    /// Let an SSH public key log in to the miner as its SSH_USER (the miner must run with
    /// POLARIS_SSH_ACCESS=keys)
    AuthorizeKey(AuthorizeKeyArgs),
    /// Remove an SSH key authorized before, by its fingerprint (`ssh-keygen -lf key.pub`)
    RevokeKey(RevokeKeyArgs),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MinerFlag {
    /// The miner's id
    pub id: String,
    /// Print JSON instead of tables
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CommandFlags {
    /// The miner's id
    pub id: String,
    /// Wait until the miner reports the command done or failed, or it expires (exit 1 unless
    /// done)
    #[arg(long)]
    pub wait: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AuthorizeKeyArgs {
    #[command(flatten)]
    pub command: CommandFlags,
    /// The public key: a file such as ~/.ssh/id_ed25519.pub, or the key line itself
    #[arg(long, value_name = "FILE|LINE")]
    pub key: String,
    /// Who the key belongs to, shown beside its fingerprint
    #[arg(long)]
    pub comment: Option<String>,
    /// Remove the key again after this long, e.g. 2h or 7d (sshd refuses it from then on)
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
}

#[derive(Debug, Args)]
pub struct RevokeKeyArgs {
    #[command(flatten)]
    pub command: CommandFlags,
    /// The key's fingerprint, SHA256:… as `ssh-keygen -lf` prints it
    pub fingerprint: String,
}

/// How often `--wait` looks at the command's state.
const POLL: Duration = Duration::from_millis(500);

pub(super) fn run(args: MinersArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    // Checked before anything is sent: a usage error changes nothing.
    let command = match &args.action {
        MinersAction::List(_) | MinersAction::Show(_) => None,
        MinersAction::Restart(_) => Some(Command::Restart {
            target: RestartTarget::ComputeSubnet,
        }),
        MinersAction::AuthorizeKey(a) => match authorize_command(a) {
            Ok(command) => Some(command),
            Err(why) => return usage(&why),
        },
        MinersAction::RevokeKey(a) => Some(Command::RevokeKey {
            fingerprint: a.fingerprint.clone(),
        }),
    };
    if let Some(Err(why)) = command.as_ref().map(Validate::validate) {
        return usage(&why.to_string());
    }
    let id = match &args.action {
        MinersAction::List(_) => None,
        MinersAction::Show(a) => Some(&a.id),
        MinersAction::Restart(a) => Some(&a.id),
        MinersAction::AuthorizeKey(a) => Some(&a.command.id),
        MinersAction::RevokeKey(a) => Some(&a.command.id),
    };
    if let Some(Err(why)) = id.map(|id| crate::api::identifier("miner id", id)) {
        return usage(&why.to_string());
    }
    let token = admin_token(&settings)?;
    let client = CoordinatorClient::new(&settings.server_url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        match (args.action, command) {
            (MinersAction::List(flags), _) => list(&client, &token, flags.json).await,
            (MinersAction::Show(flags), _) => show(&client, &token, &flags.id, flags.json).await,
            (MinersAction::Restart(flags), Some(command))
            | (
                MinersAction::AuthorizeKey(AuthorizeKeyArgs { command: flags, .. }),
                Some(command),
            )
            | (MinersAction::RevokeKey(RevokeKeyArgs { command: flags, .. }), Some(command)) => {
                send(&client, &token, &flags, command).await
            }
            (_, None) => Ok(ExitCode::FAILURE),
        }
    })
}

fn usage(why: &str) -> anyhow::Result<ExitCode> {
    eprintln!("polaris: error: {why}");
    Ok(ExitCode::from(2))
}

/// POLARIS_ADMIN_TOKEN, else the token file a coordinator on this machine keeps in
/// POLARIS_HOME (the standalone set-up).
fn admin_token(settings: &Settings) -> anyhow::Result<String> {
    if let Some(token) = &settings.server.admin_token {
        return Ok(token.expose().to_owned());
    }
    match crate::server::auth::read_admin_token(&settings.home)? {
        Some(token) => Ok(token),
        None => anyhow::bail!(
            "the miners commands need the coordinator's admin token: set POLARIS_ADMIN_TOKEN (`polaris server` keeps it in its POLARIS_HOME/admin_token)"
        ),
    }
}

fn authorize_command(args: &AuthorizeKeyArgs) -> Result<Command, String> {
    // A file when there is one by that name (`ssh-keys/v.pub` too), else the key line itself.
    let path = crate::config::expand_tilde(&args.key);
    let line = if path.is_file() {
        std::fs::read_to_string(&path)
            .map_err(|err| format!("--key: cannot read {}: {err}", path.display()))?
            .trim()
            .to_owned()
    } else if args.key.contains(' ') {
        args.key.trim().to_owned()
    } else {
        return Err(format!(
            "--key: no file {} (give a .pub file or the key line itself)",
            path.display()
        ));
    };
    let expires_at = args
        .expires_in
        .as_deref()
        .map(|text| {
            let wait = humantime::parse_duration(text).map_err(|_| {
                format!("--expires-in: expected a duration like 2h or 7d, got {text:?}")
            })?;
            chrono::TimeDelta::from_std(wait)
                .ok()
                .and_then(|wait| Utc::now().checked_add_signed(wait))
                .ok_or_else(|| format!("--expires-in: {text:?} is too long"))
        })
        .transpose()?;
    Ok(Command::AuthorizeKey {
        public_key: line,
        comment: args.comment.clone(),
        expires_at,
    })
}

async fn list(client: &CoordinatorClient, token: &str, json: bool) -> anyhow::Result<ExitCode> {
    let mut miners = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = client
            .miners(token, after.as_deref())
            .await
            .context("cannot list the miners")?;
        miners.extend(page.miners);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&miners)?);
        return Ok(ExitCode::SUCCESS);
    }
    if miners.is_empty() {
        println!("No miners are registered with {}.", client.base());
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "ID",
        "Name",
        "Heartbeat",
        "Last seen",
        "Verification",
        "GPUs",
    ]);
    let now = Utc::now();
    for pod in &miners {
        table.add_row(vec![
            pod.id.clone(),
            pod.name.clone(),
            liveness(pod),
            pod.last_seen
                .map_or_else(|| "never".to_owned(), |at| ago(now, at)),
            pod.status.as_str().to_owned(),
            gpu_count(pod).to_string(),
        ]);
    }
    println!("{table}");
    match miners.len() {
        1 => println!("1 miner"),
        n => println!("{n} miners"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(
    client: &CoordinatorClient,
    token: &str,
    id: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let pod = client
        .miner(token, id)
        .await
        .with_context(|| format!("cannot fetch miner {id}"))?;
    let commands = client
        .commands(token, id)
        .await
        .with_context(|| format!("cannot fetch the commands of miner {id}"))?;
    if json {
        let both = serde_json::json!({"miner": pod, "commands": commands});
        println!("{}", serde_json::to_string_pretty(&both)?);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", super::view_compute::render(&pod));
    print!("{}", render_commands(&commands, Utc::now()));
    Ok(ExitCode::SUCCESS)
}

async fn send(
    client: &CoordinatorClient,
    token: &str,
    flags: &CommandFlags,
    command: Command,
) -> anyhow::Result<ExitCode> {
    let action = command.action();
    let queued: CommandQueued = client
        .queue_command(token, &flags.id, &command)
        .await
        .with_context(|| format!("cannot queue {action} for miner {}", flags.id))?;
    if !flags.wait {
        if flags.json {
            println!("{}", serde_json::to_string_pretty(&queued)?);
        } else {
            println!(
                "{action} queued for miner {} (command {}): it goes out with the miner's next heartbeat, and expires at {} unless reported",
                flags.id,
                queued.id,
                queued.expires_at.format("%Y-%m-%d %H:%M:%S UTC")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !flags.json {
        println!(
            "{action} queued (command {}); waiting for the miner to report it…",
            queued.id
        );
    }
    let entry = wait_for_end(client, token, &flags.id, &queued.id).await?;
    if flags.json {
        println!("{}", serde_json::to_string_pretty(&entry)?);
    } else {
        match entry.state {
            CommandState::Done => println!("{action}: done"),
            state => println!(
                "{action}: {}{}",
                state.as_str(),
                entry
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        }
    }
    Ok(if entry.state == CommandState::Done {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Looks at the command until it has ended (done, failed, expired).
async fn wait_for_end(
    client: &CoordinatorClient,
    token: &str,
    miner_id: &str,
    command_id: &str,
) -> anyhow::Result<CommandEntry> {
    loop {
        let list = client
            .commands(token, miner_id)
            .await
            .with_context(|| format!("cannot read the commands of miner {miner_id}"))?;
        let entry = list
            .commands
            .into_iter()
            .find(|c| c.id == command_id)
            .with_context(|| format!("command {command_id} is no longer listed"))?;
        if !entry.state.is_open() {
            return Ok(entry);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn liveness(pod: &Pod) -> String {
    let status = pod.heartbeat_status.as_deref().unwrap_or("never seen");
    if pod.legacy {
        format!("{status} (legacy client)")
    } else {
        status.to_owned()
    }
}

fn gpu_count(pod: &Pod) -> usize {
    pod.compute_resources
        .iter()
        .filter(|r| r.resource_type.eq_ignore_ascii_case("gpu"))
        .count()
}

/// `12 s ago`, `3 min ago`, `2 h ago`, `4 d ago`.
fn ago(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let secs = (now - at).num_seconds().max(0);
    match secs {
        0..60 => format!("{secs} s ago"),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

fn render_commands(list: &CommandList, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    match &list.authorized_keys {
        None => out.push_str("SSH keys: not reported (the miner runs without POLARIS_SSH_ACCESS=keys, or has not sent a heartbeat since the coordinator started)\n"),
        Some(keys) if keys.is_empty() => out.push_str("SSH keys: none authorized\n"),
        Some(keys) => {
            let mut table = Table::new();
            table.load_preset(presets::UTF8_FULL_CONDENSED);
            table.set_header(vec!["Fingerprint", "Comment", "Expires"]);
            for key in keys {
                table.add_row(vec![
                    key.fingerprint.clone(),
                    key.comment.clone().unwrap_or_default(),
                    key.expires_at
                        .map_or_else(|| "never".to_owned(), |at| at.format("%Y-%m-%d %H:%M UTC").to_string()),
                ]);
            }
            out.push_str(&format!("SSH keys\n{table}\n"));
        }
    }
    if list.commands.is_empty() {
        out.push_str("No commands sent to this miner.\n");
        return out;
    }
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(vec!["Command", "Action", "State", "Queued", "Reason"]);
    for entry in &list.commands {
        table.add_row(vec![
            entry.id.clone(),
            entry.command.action().to_owned(),
            entry.state.as_str().to_owned(),
            ago(now, entry.created_at),
            entry.reason.clone().unwrap_or_default(),
        ]);
    }
    out.push_str(&format!("Commands (newest first)\n{table}\n"));
    out
}
