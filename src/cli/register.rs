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
use crate::register::engine::{Answer, Engine, Next, Question, Refusal, Stop, check_username};
use crate::register::record::{self, Chain, Network};
use crate::register::session::{self, BTCLI, COMX, Maker};
use crate::register::{display, submit};

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
    /// Whether validators may log in with SSH keys the coordinator sends (saved as
    /// POLARIS_SSH_ACCESS in POLARIS_HOME/.env; asked when not set; off without a terminal)
    #[arg(long, value_enum, value_name = "keys|off")]
    pub ssh_access: Option<crate::config::SshAccess>,
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

/// Exit status of a usage error (a missing or wrong answer in a script).
const USAGE: u8 = 2;
/// Exit status after Ctrl-C or Esc at a prompt, as shells report SIGINT.
const CANCELLED: u8 = 130;

/// The async runtime, shut down without waiting when dropped: a probe stuck in the kernel past
/// its time limit must not hold the command at exit, whichever way it returns.
struct Runtime(Option<tokio::runtime::Runtime>);

impl Runtime {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> anyhow::Result<F::Output> {
        let runtime = self.0.as_ref().context("the async runtime is gone")?;
        Ok(runtime.block_on(future))
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Flags that belong to one network only: naming them with another is a usage error, not
/// something to ignore quietly.
fn check_flag_combinations(args: &RegisterArgs) -> Result<(), String> {
    let bittensor_only = [
        ("--wallet", args.wallet.is_some()),
        ("--hotkey", args.hotkey.is_some()),
    ];
    let commune_only = [("--key", args.key.is_some())];
    let chain_only = [("--testnet", args.testnet), ("--uid", args.uid.is_some())];
    let misplaced = |flags: &[(&'static str, bool)], allowed: &[Network]| {
        args.network.filter(|n| !allowed.contains(n)).and_then(|n| {
            flags
                .iter()
                .find(|(_, set)| *set)
                .map(|(flag, _)| (*flag, n))
        })
    };
    let found = misplaced(&bittensor_only, &[Network::Bittensor])
        .or_else(|| misplaced(&commune_only, &[Network::Commune]))
        .or_else(|| misplaced(&chain_only, &[Network::Bittensor, Network::Commune]));
    match found {
        Some((flag, network)) => Err(format!(
            "{flag} does not apply to --network {}",
            network
                .registration_type()
                .replace("independent", "standard")
        )),
        None => Ok(()),
    }
}

pub(super) fn run(args: RegisterArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    let usage_error = |why: &str| {
        eprintln!("polaris: error: {why}");
        Ok(ExitCode::from(USAGE))
    };
    if let Some(name) = &args.username
        && let Err(why) = check_username(name)
    {
        return usage_error(&format!("--username: {why}"));
    }
    if let Err(why) = check_flag_combinations(&args) {
        return usage_error(&why);
    }
    // inquire draws its prompts on stderr and reads the keyboard from stdin.
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    // Without a terminal, every flag that is always needed is named at once, before the
    // hardware is read and its table printed (the wallet flags depend on what is found).
    let missing = missing_flags(&args);
    if !interactive && !missing.is_empty() {
        return usage_error(&format!(
            "pass {}: there is no terminal to ask on",
            join_and(&missing)
        ));
    }
    let runtime = Runtime::new()?;
    let reading = spinner("Reading this machine's hardware…");
    let prepared = runtime.block_on(session::prepare(&settings))?;
    reading.finish_and_clear();
    let session::Prepared {
        inventory: found,
        context,
        warnings,
        user_home,
    } = prepared?;
    for warning in &warnings {
        // `polaris inventory` reports a failed location lookup; here it has never been shown.
        if found.location.warning.as_ref() != Some(warning) {
            eprintln!("polaris: warning: {warning}");
        }
    }
    let mut engine = Engine::new(context, args.uid);
    let mut plan = loop {
        let question = match engine.next() {
            Next::Ready(plan) => break plan,
            Next::Stop(stop) => match stopped(&stop, &mut engine, interactive, &user_home)? {
                Some(code) => return Ok(code),
                None => continue,
            },
            Next::Ask(question) => question,
        };
        match &question {
            Question::ConfirmSystemInfo => print!(
                "{}",
                display::system_information(&engine.context().system_info)
            ),
            Question::ReplaceExisting { miner_id, username } => {
                println!("Existing Registration\nMiner ID: {miner_id}\nUsername: {username}");
            }
            _ => {}
        }
        // A flag's answer is final: asking again would get the same answer.
        let (answer, from_flag) = match from_flags(&args, &question, interactive) {
            Some(answer) => (answer, true),
            None if interactive => match ask(&engine, &question)? {
                Some(Answer::Text(choice)) if choice == CREATE_NEW => {
                    let maker = match question {
                        Question::CommuneKey => &COMX,
                        _ => &BTCLI,
                    };
                    if create_with(maker)?.is_some() {
                        session::reload_wallets(&mut engine, &user_home)?;
                    }
                    continue;
                }
                Some(answer) => (answer, false),
                None => {
                    println!("Registration cancelled.");
                    return Ok(ExitCode::from(CANCELLED));
                }
            },
            None => {
                return usage_error(&format!(
                    "{} — pass {}: there is no terminal to ask on",
                    question.prompt().trim_end_matches([':', '?']),
                    question.flag()
                ));
            }
        };
        if matches!(question, Question::ReplaceExisting { .. }) && answer == Answer::Yes(true) {
            println!("Replacing that registration (its miner stays listed on the coordinator).");
        }
        match engine.answer(answer) {
            Ok(()) => {}
            Err(Refusal::CannotRegister(why)) => anyhow::bail!(why),
            Err(Refusal::Invalid(why)) if from_flag => return usage_error(&why),
            Err(Refusal::Invalid(why)) => eprintln!("{why}"),
        }
    };
    // Off by default (a script, --yes) is not a choice to write down: POLARIS_HOME/.env is
    // changed only by an answer or by --ssh-access.
    match args.ssh_access {
        // The flag is the user's word, also over a setting that said otherwise.
        Some(access) => plan.ssh_access = Some(access),
        None if !interactive || args.yes => plan.ssh_access = None,
        None => {}
    }
    submit::check(&plan)?;
    if let Some(warning) = session::ssh_warning(&found) {
        eprintln!("polaris: warning: {warning}");
    }
    let client = CoordinatorClient::new(&settings.server_url)?;
    let sending = spinner(&format!("Registering with {}…", client.base()));
    let saved = runtime.block_on(submit::submit(&client, &plan, &settings.home))?;
    sending.finish_and_clear();
    let saved = saved?;
    print!("{}", display::registration_complete(&saved));
    println!(
        "Saved to {} (keep it private: it holds this miner's token).",
        record::path(&settings.home).display()
    );
    match (
        submit::save_settings(&plan, &settings.home),
        plan.ssh_access,
    ) {
        (Ok(Some(path)), Some(access)) => println!(
            "SSH access by key: {} (POLARIS_SSH_ACCESS, saved in {}; the agent takes it at its next start)",
            access.as_str(),
            path.display()
        ),
        (Ok(_), _) => {}
        (Err(why), _) => eprintln!("polaris: warning: {why}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The flags a scripted registration always needs and was not given.
fn missing_flags(args: &RegisterArgs) -> Vec<&'static str> {
    let mut missing = vec![];
    if args.network.is_none() {
        missing.push("--network");
    }
    if args.username.is_none() {
        missing.push("--username");
    }
    if !args.yes {
        missing.push("--yes");
    }
    missing
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The flag's answer to `question`, if the user gave one.
fn from_flags(args: &RegisterArgs, question: &Question, interactive: bool) -> Option<Answer> {
    match question {
        Question::ReplaceExisting { .. } | Question::ConfirmSystemInfo => {
            args.yes.then_some(Answer::Yes(true))
        }
        Question::Network => args.network.map(Answer::Network),
        Question::Username => args.username.clone().map(Answer::Text),
        // Off unless asked for: a script (or --yes) never opens the machine by default.
        Question::SshAccess => match args.ssh_access {
            Some(access) => Some(Answer::Yes(access == crate::config::SshAccess::Keys)),
            None if !interactive || args.yes => Some(Answer::Yes(false)),
            None => None,
        },
        Question::BittensorWallet => args.wallet.clone().map(Answer::Text),
        Question::BittensorHotkey { .. } => args.hotkey.clone().map(Answer::Text),
        Question::CommuneKey => args.key.clone().map(Answer::Text),
        // Mainnet unless --testnet; a person at a terminal is asked, unless --yes said to go on.
        Question::Chain { .. } if args.testnet => Some(Answer::Chain(Chain::Testnet)),
        Question::Chain { .. } if !interactive || args.yes => Some(Answer::Chain(Chain::Mainnet)),
        Question::Chain { .. } => None,
    }
}

/// Asks on the terminal; None when the user cancels (Esc or Ctrl-C).
fn ask(engine: &Engine, question: &Question) -> anyhow::Result<Option<Answer>> {
    use inquire::{Confirm, Select, Text};

    let prompt = question.prompt();
    let context = engine.context();
    let answer = match question {
        // The registration itself was printed with the question (terminal or not).
        Question::ReplaceExisting { .. } => Confirm::new(&prompt)
            .with_default(false)
            .prompt()
            .map(Answer::Yes),
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
        Question::SshAccess => Confirm::new(&prompt)
            .with_default(false)
            .with_help_message(
                "the agent then keeps their keys in a marked block of SSH_USER's ~/.ssh/authorized_keys; no password is ever shared (POLARIS_SSH_ACCESS=keys)",
            )
            .prompt()
            .map(Answer::Yes),
        Question::BittensorWallet => {
            let mut choices: Vec<Choice<String>> = context
                .bittensor_wallets
                .iter()
                .map(|w| Choice {
                    label: labelled(&w.name, w.coldkey_ss58.as_deref()),
                    value: w.name.clone(),
                })
                .collect();
            offer_creation(&mut choices, &BTCLI);
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
            let mut choices: Vec<Choice<String>> = context
                .commune_keys
                .iter()
                .map(|k| Choice {
                    label: labelled(&k.name, k.ss58.as_deref()),
                    value: k.name.clone(),
                })
                .collect();
            offer_creation(&mut choices, &COMX);
            Select::new(&prompt, choices)
                .prompt()
                .map(|c| Answer::Text(c.value))
        }
        Question::Chain { network } => {
            let main = crate::register::engine::netuid(*network, Chain::Mainnet);
            let test = crate::register::engine::netuid(*network, Chain::Testnet);
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
    cancelled_is_none(answer)
}

/// A prompt's answer; Esc and Ctrl-C are None, other failures are errors.
fn cancelled_is_none<T>(answer: Result<T, inquire::InquireError>) -> anyhow::Result<Option<T>> {
    use inquire::InquireError;
    match answer {
        Ok(answer) => Ok(Some(answer)),
        Err(InquireError::OperationCanceled | InquireError::OperationInterrupted) => Ok(None),
        Err(err) => Err(err).context("cannot read the answer from the terminal"),
    }
}

/// Adds "create a new one" to a selection when the tool is installed.
fn offer_creation(choices: &mut Vec<Choice<String>>, maker: &Maker) {
    if maker.installed() {
        choices.push(Choice {
            label: format!("+ Create a new {} with {}", maker.what, maker.tool),
            value: CREATE_NEW.to_owned(),
        });
    }
}

fn labelled(name: &str, ss58: Option<&str>) -> String {
    match ss58 {
        Some(address) => format!("{name}  {address}"),
        None => format!("{name}  (address not readable)"),
    }
}

/// The selection entry that creates a new wallet or key instead of picking one.
const CREATE_NEW: &str = "\0create";

/// Asks for a name and runs the tool on the terminal; Ok(true) when it made one.
fn create_with(maker: &Maker) -> anyhow::Result<Option<bool>> {
    let name = cancelled_is_none(inquire::Text::new("Name:").with_default("miner").prompt())?;
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Ok(None);
    };
    // The tool talks to the user directly (mnemonic, password prompts).
    let status = maker
        .command(&name)
        .status()
        .with_context(|| format!("cannot run {}", maker.tool))?;
    if !status.success() {
        eprintln!("polaris: {} failed ({status})", maker.tool);
    }
    Ok(Some(status.success()))
}

/// Handles a stop: Some(exit code) ends the command; None means the engine can go on (a
/// wallet was just created).
fn stopped(
    stop: &Stop,
    engine: &mut Engine,
    interactive: bool,
    user_home: &Path,
) -> anyhow::Result<Option<ExitCode>> {
    let Some((maker, dir)) = session::maker_for(stop, user_home) else {
        return Ok(Some(match stop {
            Stop::KeptExisting => {
                println!("Using existing registration.");
                ExitCode::SUCCESS
            }
            _ => {
                println!("Registration cancelled.");
                ExitCode::FAILURE
            }
        }));
    };
    if interactive && maker.installed() {
        let make = cancelled_is_none(
            inquire::Confirm::new(&format!(
                "No {} found in {}. Create one with `{}` now?",
                maker.what,
                dir.display(),
                maker.tool
            ))
            .with_default(true)
            .prompt(),
        )?;
        match make {
            None => {
                println!("Registration cancelled.");
                return Ok(Some(ExitCode::from(CANCELLED)));
            }
            Some(true) => match create_with(maker)? {
                None => {
                    println!("Registration cancelled.");
                    return Ok(Some(ExitCode::from(CANCELLED)));
                }
                Some(true) => {
                    session::reload_wallets(engine, user_home)?;
                    return Ok(None);
                }
                Some(false) => return Ok(Some(ExitCode::FAILURE)),
            },
            Some(false) => {}
        }
    }
    eprintln!(
        "polaris: error: no {} found in {}. Create one with:\n  {}\nthen run `polaris register` again.",
        maker.what,
        dir.display(),
        maker.hint()
    );
    Ok(Some(ExitCode::FAILURE))
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
