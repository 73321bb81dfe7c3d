//! `polaris register`: the registration engine asked through prompts on a terminal, or answered
//! by flags in scripts (a missing answer without a terminal is a usage error, exit 2).

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget};

use crate::api::client::CoordinatorClient;
use crate::config::Settings;
use crate::inventory;
use crate::register::engine::{Answer, Context, Engine, Next, Question, Stop, check_username};
use crate::register::record::{self, Chain, Network};
use crate::register::{display, submit, wallets};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  polaris register                                   ask on the terminal
  polaris register --network standard --username alice --yes
  polaris register --network bittensor --username alice --wallet miner --hotkey default --yes
  polaris register --network commune --username alice --key miner --testnet --yes")]
pub struct RegisterArgs {
    /// Which network to register on
    #[arg(long, value_enum)]
    pub network: Option<Network>,
    /// Username, 3 to 32 of A-Z a-z 0-9 _ -
    #[arg(long)]
    pub username: Option<String>,
    /// Bittensor wallet (coldkey) name under ~/.bittensor/wallets
    #[arg(long)]
    pub wallet: Option<String>,
    /// Bittensor hotkey name of that wallet
    #[arg(long)]
    pub hotkey: Option<String>,
    /// Commune key name under ~/.commune/key
    #[arg(long)]
    pub key: Option<String>,
    /// Use the network's testnet (Bittensor netuid 100, Commune 12) instead of mainnet (49, 33)
    #[arg(long)]
    pub testnet: bool,
    /// The miner's uid on its subnet, if you know it
    #[arg(long)]
    pub uid: Option<u32>,
    /// Answer yes to every confirmation, including replacing an existing registration
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// A choice in a selection list: what is shown and what it stands for.
struct Choice<T> {
    label: String,
    value: T,
}

impl<T> fmt::Display for Choice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// How a question gets its answer.
enum Outcome {
    Answered(Answer),
    /// No flag and no terminal: a usage error.
    Missing(&'static str),
    Cancelled,
}

pub(super) fn run(args: RegisterArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    if let Some(name) = &args.username
        && let Err(why) = check_username(name)
    {
        eprintln!("polaris: error: --username: {why}");
        return Ok(ExitCode::from(2));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let existing = record::load(&settings.home)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let reading = spinner("Reading this machine's hardware…");
    let found = runtime.block_on(inventory::collect(&settings));
    reading.finish_and_clear();
    let found = found?;
    if !found.coordinator.reachable {
        runtime.shutdown_background();
        anyhow::bail!(
            "cannot reach the coordinator at {} ({}): start it with `polaris server`, or set SERVER_URL",
            settings.server_url,
            found.coordinator.error.as_deref().unwrap_or("no answer")
        );
    }
    let user_home = crate::config::user_home().unwrap_or_default();
    let context = Context {
        existing,
        system_info: inventory::to_system_info(&found),
        bittensor_wallets: wallets::bittensor_wallets(&wallets::bittensor_dir(&user_home))?,
        commune_keys: wallets::commune_keys(&wallets::commune_dir(&user_home))?,
    };
    let mut engine = Engine::new(context, args.uid);
    let plan = loop {
        match engine.next() {
            Next::Ready(plan) => break plan,
            Next::Stop(stop) => {
                if let Some(code) = stopped(&stop, &mut engine, interactive, &user_home)? {
                    runtime.shutdown_background();
                    return Ok(code);
                }
            }
            Next::Ask(question) => {
                if question == Question::ConfirmSystemInfo {
                    print!(
                        "{}",
                        display::system_information(&engine.context().system_info)
                    );
                }
                let outcome = match from_flags(&args, &question, interactive) {
                    Some(answer) => Outcome::Answered(answer),
                    None if interactive => ask(&engine, &question)?,
                    None => Outcome::Missing(question.flag()),
                };
                match outcome {
                    Outcome::Answered(answer) => {
                        if let Err(why) = engine.answer(answer) {
                            if !interactive {
                                eprintln!("polaris: error: {why}");
                                runtime.shutdown_background();
                                return Ok(ExitCode::from(2));
                            }
                            eprintln!("{why}");
                        }
                    }
                    Outcome::Missing(flag) => {
                        eprintln!(
                            "polaris: error: {} — pass {flag}: there is no terminal to ask on",
                            question.prompt().trim_end_matches([':', '?'])
                        );
                        runtime.shutdown_background();
                        return Ok(ExitCode::from(2));
                    }
                    Outcome::Cancelled => {
                        println!("Registration cancelled.");
                        runtime.shutdown_background();
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
    };
    if !found.ssh.is_ssh() {
        eprintln!(
            "polaris: warning: no SSH server answers on port {}: validators cannot verify this miner \
             until one does ({}); registering anyway.",
            found.ssh.port,
            ssh_howto()
        );
    }
    let client = CoordinatorClient::new(&settings.server_url)?;
    let sending = spinner(&format!("Registering with {}…", client.base()));
    let saved = runtime.block_on(submit::submit(&client, &plan, &settings.home));
    sending.finish_and_clear();
    runtime.shutdown_background();
    let saved = saved?;
    print!("{}", display::registration_complete(&saved));
    println!(
        "Saved to {} (keep it private: it holds this miner's token).",
        record::path(&settings.home).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The flag's answer to `question`, if the user gave one.
fn from_flags(args: &RegisterArgs, question: &Question, interactive: bool) -> Option<Answer> {
    match question {
        Question::ReplaceExisting { .. } | Question::ConfirmSystemInfo => {
            args.yes.then_some(Answer::Yes(true))
        }
        Question::Network => args.network.map(Answer::Network),
        Question::Username => args.username.clone().map(Answer::Text),
        Question::BittensorWallet => args.wallet.clone().map(Answer::Text),
        Question::BittensorHotkey { .. } => args.hotkey.clone().map(Answer::Text),
        Question::CommuneKey => args.key.clone().map(Answer::Text),
        // Mainnet unless --testnet; a person at a terminal is asked instead.
        Question::Chain { .. } if args.testnet => Some(Answer::Chain(Chain::Testnet)),
        Question::Chain { .. } if !interactive => Some(Answer::Chain(Chain::Mainnet)),
        Question::Chain { .. } => None,
    }
}

/// Asks on the terminal.
fn ask(engine: &Engine, question: &Question) -> anyhow::Result<Outcome> {
    use inquire::{Confirm, InquireError, Select, Text};

    let prompt = question.prompt();
    let context = engine.context();
    let answer = match question {
        Question::ReplaceExisting { miner_id, username } => {
            println!("Existing Registration\nMiner ID: {miner_id}\nUsername: {username}");
            Confirm::new(&prompt)
                .with_default(false)
                .prompt()
                .map(Answer::Yes)
        }
        Question::ConfirmSystemInfo => Confirm::new(&prompt)
            .with_default(true)
            .prompt()
            .map(Answer::Yes),
        Question::Network => {
            let choices = [Network::Bittensor, Network::Commune, Network::Standard]
                .into_iter()
                .map(|n| Choice {
                    label: n.label().to_owned(),
                    value: n,
                })
                .collect();
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Network(c.value))
        }
        Question::Username => Text::new(&prompt)
            .with_help_message("3 to 32 of A-Z a-z 0-9 _ -")
            .prompt()
            .map(Answer::Text),
        Question::BittensorWallet => {
            let choices = context
                .bittensor_wallets
                .iter()
                .map(|w| Choice {
                    label: labelled(&w.name, w.coldkey_ss58.as_deref()),
                    value: w.name.clone(),
                })
                .collect();
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Text(c.value))
        }
        Question::BittensorHotkey { wallet } => {
            let choices = context
                .bittensor_wallets
                .iter()
                .filter(|w| &w.name == wallet)
                .flat_map(|w| &w.hotkeys)
                .map(|h| Choice {
                    label: labelled(&h.name, h.ss58.as_deref()),
                    value: h.name.clone(),
                })
                .collect();
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Text(c.value))
        }
        Question::CommuneKey => {
            let choices = context
                .commune_keys
                .iter()
                .map(|k| Choice {
                    label: labelled(&k.name, k.ss58.as_deref()),
                    value: k.name.clone(),
                })
                .collect();
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Text(c.value))
        }
        Question::Chain { network } => {
            let (main, test) = match network {
                Network::Commune => crate::register::engine::COMMUNE_NETUID,
                _ => crate::register::engine::BITTENSOR_NETUID,
            };
            let choices = vec![
                Choice {
                    label: format!("Mainnet (netuid {main})"),
                    value: Chain::Mainnet,
                },
                Choice {
                    label: format!("Testnet (netuid {test})"),
                    value: Chain::Testnet,
                },
            ];
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Chain(c.value))
        }
    };
    match answer {
        Ok(answer) => Ok(Outcome::Answered(answer)),
        Err(InquireError::OperationCanceled | InquireError::OperationInterrupted) => {
            Ok(Outcome::Cancelled)
        }
        Err(err) => Err(err).context("cannot read the answer from the terminal"),
    }
}

fn labelled(name: &str, ss58: Option<&str>) -> String {
    match ss58 {
        Some(address) => format!("{name}  {address}"),
        None => format!("{name}  (address not readable: encrypted)"),
    }
}

/// Handles a stop: Some(exit code) ends the command; None means the engine can go on (a
/// wallet was just created).
fn stopped(
    stop: &Stop,
    engine: &mut Engine,
    interactive: bool,
    user_home: &Path,
) -> anyhow::Result<Option<ExitCode>> {
    let (what, dir, tool, create) = match stop {
        Stop::KeptExisting => {
            println!("Using existing registration.");
            return Ok(Some(ExitCode::SUCCESS));
        }
        Stop::Declined => {
            println!("Registration cancelled.");
            return Ok(Some(ExitCode::FAILURE));
        }
        Stop::NoBittensorWallet => (
            "Bittensor wallet",
            wallets::bittensor_dir(user_home),
            "btcli",
            vec![
                "wallet",
                "create",
                "--wallet.hotkey",
                "default",
                "--wallet.name",
            ],
        ),
        Stop::NoCommuneKey => (
            "Commune key",
            wallets::commune_dir(user_home),
            "comx",
            vec!["key", "create"],
        ),
    };
    let command = format!("{tool} {} NAME", create.join(" "));
    if interactive && on_path(tool) {
        let make = inquire::Confirm::new(&format!(
            "No {what} found in {}. Create one with `{tool}` now?",
            dir.display()
        ))
        .with_default(true)
        .prompt()
        .unwrap_or(false);
        if make {
            let name = inquire::Text::new("Name:")
                .with_default("miner")
                .prompt()
                .unwrap_or_default();
            // The tool talks to the user directly (mnemonic, password prompts).
            let status = std::process::Command::new(tool)
                .args(&create)
                .arg(&name)
                .status()
                .with_context(|| format!("cannot run {tool}"))?;
            if status.success() {
                engine_reload(engine, user_home)?;
                return Ok(None);
            }
            eprintln!("polaris: error: {tool} failed ({status})");
            return Ok(Some(ExitCode::FAILURE));
        }
    }
    eprintln!(
        "polaris: error: no {what} found in {}. Create one with:\n  {command}\nthen run `polaris register` again.",
        dir.display()
    );
    Ok(Some(ExitCode::FAILURE))
}

fn engine_reload(engine: &mut Engine, user_home: &Path) -> anyhow::Result<()> {
    engine.refresh_wallets(
        wallets::bittensor_wallets(&wallets::bittensor_dir(user_home))?,
        wallets::commune_keys(&wallets::commune_dir(user_home))?,
    );
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// How to turn on an SSH server here.
fn ssh_howto() -> &'static str {
    if cfg!(target_os = "macos") {
        "turn on Remote Login: `sudo systemsetup -setremotelogin on`"
    } else if cfg!(windows) {
        "install OpenSSH Server: `Add-WindowsCapability -Online -Name OpenSSH.Server~~~~0.0.1.0; Start-Service sshd`"
    } else {
        "on Debian/Ubuntu: `sudo apt-get install -y openssh-server && sudo systemctl enable --now ssh`"
    }
}

/// A spinner on stderr when it is a terminal; nothing otherwise.
fn spinner(message: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_message(message.to_owned());
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}
