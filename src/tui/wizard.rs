//! The Register tab's state: the registration engine (`register::engine`, the same rules the
//! CLI's prompts follow) driven by keys, plus what the screen keeps for each step — the choice
//! highlighted, the username typed — so going back never loses an answer typed before.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::register::engine::{
    Answer, Engine, Next, Plan, Question, Refusal, Stop, check_username, netuid,
};
use crate::register::record::{Chain, Network, RegistrationRecord};
use crate::register::session::{self, BTCLI, COMX, Maker, Prepared};

use super::action::{Effect, Job, JobResult};
use super::keymap::{Command, Context};
use super::widgets::input::TextInput;

/// Where the wizard stands.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Phase {
    /// The first page: what registering does; Enter begins.
    Start,
    /// Reading the hardware and asking the coordinator.
    Preparing,
    PrepareFailed(String),
    Asking(Question),
    /// No wallet or key to offer: the command that makes one.
    Stopped(Stop),
    /// Asking a name for a new wallet or key, before handing the terminal to the tool.
    Creating(&'static Maker),
    /// The tool has the terminal; keys typed meanwhile are not answers.
    External(&'static Maker),
    Review(Box<Plan>),
    Submitting,
    SubmitFailed(String),
    Done(Box<RegistrationRecord>),
    /// Ended without registering (kept the existing one, declined).
    Ended(String),
}

/// One entry of a selection.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Choice {
    pub(crate) label: String,
    pub(crate) detail: Option<String>,
    pub(crate) value: ChoiceValue,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ChoiceValue {
    Answer(Answer),
    Create(&'static Maker),
}

/// What the System Information step and the review show.
#[derive(Debug, Clone, Default)]
pub(crate) struct Facts {
    pub(crate) rows: Vec<(String, String)>,
    pub(crate) warnings: Vec<String>,
    pub(crate) ssh_warning: Option<String>,
    pub(crate) user_home: PathBuf,
    /// btcli and comx on PATH, looked for once (PATH can hold a slow network mount).
    pub(crate) btcli: bool,
    pub(crate) comx: bool,
}

impl Facts {
    pub(crate) fn installed(&self, maker: &Maker) -> bool {
        if std::ptr::eq(maker, &BTCLI) {
            self.btcli
        } else {
            maker == &COMX && self.comx
        }
    }
}

pub(crate) struct Wizard {
    pub(crate) phase: Phase,
    engine: Option<Engine>,
    pub(crate) facts: Facts,
    /// Highlighted entry per question, kept across back and forth.
    choices: HashMap<&'static str, usize>,
    pub(crate) username: TextInput,
    pub(crate) new_name: TextInput,
    /// Scroll of the System Information table.
    pub(crate) scroll: usize,
    /// Why the last answer was refused, shown under the question.
    pub(crate) error: Option<String>,
    pub(crate) server_url: String,
}

fn question_key(question: &Question) -> &'static str {
    match question {
        Question::ReplaceExisting { .. } => "replace",
        Question::ConfirmSystemInfo => "confirm",
        Question::Network => "network",
        Question::Username => "username",
        Question::SshAccess => "ssh_access",
        Question::BittensorWallet => "wallet",
        Question::BittensorHotkey { .. } => "hotkey",
        Question::CommuneKey => "key",
        Question::Chain { .. } => "chain",
    }
}

fn with_address(ss58: Option<&str>) -> Option<String> {
    Some(ss58.map_or_else(|| "(address not readable)".to_owned(), str::to_owned))
}

impl Wizard {
    pub(crate) fn new(server_url: String) -> Self {
        Self {
            phase: Phase::Start,
            engine: None,
            facts: Facts::default(),
            choices: HashMap::new(),
            username: TextInput::new(32),
            new_name: TextInput::with_text(64, "miner"),
            scroll: 0,
            error: None,
            server_url,
        }
    }

    /// The contexts whose keys apply now, innermost first.
    pub(crate) fn contexts(&self) -> Vec<Context> {
        match &self.phase {
            Phase::Asking(Question::Username) | Phase::Creating(_) => {
                vec![Context::Input, Context::Register]
            }
            _ => vec![Context::Register],
        }
    }

    pub(crate) fn is_busy(&self) -> bool {
        matches!(self.phase, Phase::Preparing | Phase::Submitting)
    }

    /// The entries of a selection question.
    pub(crate) fn options(&self, question: &Question) -> Vec<Choice> {
        let Some(engine) = &self.engine else {
            return Vec::new();
        };
        let context = engine.context();
        let answer = |label: &str, detail: Option<String>, a: Answer| Choice {
            label: label.to_owned(),
            detail,
            value: ChoiceValue::Answer(a),
        };
        let mut choices = match question {
            Question::ReplaceExisting { .. } => vec![
                answer(
                    "No, keep the existing registration",
                    None,
                    Answer::Yes(false),
                ),
                answer(
                    "Yes, register this machine anew",
                    Some("the old miner stays listed on the coordinator".into()),
                    Answer::Yes(true),
                ),
            ],
            Question::ConfirmSystemInfo | Question::Username => Vec::new(),
            Question::SshAccess => vec![
                answer(
                    "No, not now",
                    Some("key commands from the coordinator are refused".into()),
                    Answer::Yes(false),
                ),
                answer(
                    "Yes, by key",
                    Some(
                        "the agent keeps their keys in a marked block of SSH_USER's ~/.ssh/authorized_keys (POLARIS_SSH_ACCESS=keys)"
                            .into(),
                    ),
                    Answer::Yes(true),
                ),
            ],
            Question::Network => [Network::Bittensor, Network::Commune, Network::Standard]
                .into_iter()
                .map(|n| {
                    let detail = match n {
                        Network::Bittensor => {
                            "a Bittensor wallet and hotkey (netuid 49, testnet 100)"
                        }
                        Network::Commune => "a Commune key (netuid 33, testnet 12)",
                        Network::Standard => "no chain: this coordinator only",
                    };
                    answer(n.label(), Some(detail.to_owned()), Answer::Network(n))
                })
                .collect(),
            Question::BittensorWallet => context
                .bittensor_wallets
                .iter()
                .map(|w| {
                    answer(
                        &w.name,
                        with_address(w.coldkey_ss58.as_deref()),
                        Answer::Text(w.name.clone()),
                    )
                })
                .collect(),
            Question::BittensorHotkey { wallet } => context
                .bittensor_wallets
                .iter()
                .filter(|w| &w.name == wallet)
                .flat_map(|w| &w.hotkeys)
                .map(|h| {
                    answer(
                        &h.name,
                        with_address(h.ss58.as_deref()),
                        Answer::Text(h.name.clone()),
                    )
                })
                .collect(),
            Question::CommuneKey => context
                .commune_keys
                .iter()
                .map(|k| {
                    answer(
                        &k.name,
                        with_address(k.ss58.as_deref()),
                        Answer::Text(k.name.clone()),
                    )
                })
                .collect(),
            Question::Chain { network } => [Chain::Mainnet, Chain::Testnet]
                .into_iter()
                .map(|chain| {
                    let label = match chain {
                        Chain::Mainnet => "Mainnet",
                        Chain::Testnet => "Testnet",
                    };
                    answer(
                        label,
                        Some(format!("netuid {}", netuid(*network, chain))),
                        Answer::Chain(chain),
                    )
                })
                .collect(),
        };
        let maker = match question {
            Question::BittensorWallet => Some(&BTCLI),
            Question::CommuneKey => Some(&COMX),
            _ => None,
        };
        if let Some(maker) = maker.filter(|m| self.facts.installed(m)) {
            choices.push(Choice {
                label: format!("+ Create a new {} with {}", maker.what, maker.tool),
                detail: None,
                value: ChoiceValue::Create(maker),
            });
        }
        choices
    }

    pub(crate) fn selected(&self, question: &Question) -> usize {
        let len = self.options(question).len();
        self.choices
            .get(question_key(question))
            .copied()
            .unwrap_or(0)
            .min(len.saturating_sub(1))
    }

    /// The username field's live verdict: None while it is fine or empty.
    pub(crate) fn username_problem(&self) -> Option<String> {
        let text = self.username.text().trim();
        (!text.is_empty())
            .then(|| check_username(text).err())
            .flatten()
    }

    /// Moves to whatever the engine asks next.
    fn advance(&mut self) {
        self.error = None;
        let Some(engine) = &self.engine else {
            self.phase = Phase::Start;
            return;
        };
        self.phase = match engine.next() {
            Next::Ask(question) => Phase::Asking(question),
            Next::Stop(Stop::KeptExisting) => {
                Phase::Ended("Using the existing registration.".to_owned())
            }
            Next::Stop(Stop::Declined) => {
                Phase::Ended("Registration cancelled: nothing was sent.".to_owned())
            }
            Next::Stop(stop) => Phase::Stopped(stop),
            Next::Ready(plan) => Phase::Review(plan),
        };
    }

    fn answer(&mut self, answer: Answer) {
        let Some(engine) = self.engine.as_mut() else {
            return;
        };
        match engine.answer(answer) {
            Ok(()) => self.advance(),
            Err(Refusal::Invalid(why)) => self.error = Some(why),
            Err(Refusal::CannotRegister(why)) => self.phase = Phase::PrepareFailed(why),
        }
    }

    fn back(&mut self) {
        match &self.phase {
            Phase::Start | Phase::Preparing | Phase::Submitting => {}
            Phase::PrepareFailed(_) | Phase::Done(_) | Phase::Ended(_) => self.phase = Phase::Start,
            Phase::Creating(_) => self.advance(),
            Phase::External(_) => {}
            Phase::SubmitFailed(_) => self.advance(),
            Phase::Asking(_) | Phase::Stopped(_) | Phase::Review(_) => {
                let undone = self.engine.as_mut().is_some_and(Engine::back);
                if undone {
                    self.advance();
                } else {
                    self.phase = Phase::Start;
                }
            }
        }
    }

    /// A key's command on this tab.
    pub(crate) fn handle(&mut self, command: Command) -> Vec<Effect> {
        if command == Command::Back {
            self.back();
            return Vec::new();
        }
        match self.phase.clone() {
            Phase::Start | Phase::Done(_) | Phase::Ended(_) if command == Command::Select => {
                self.phase = Phase::Preparing;
                return vec![Effect::Spawn(Job::Prepare)];
            }
            Phase::PrepareFailed(_) if matches!(command, Command::Refresh | Command::Select) => {
                self.phase = Phase::Preparing;
                return vec![Effect::Spawn(Job::Prepare)];
            }
            Phase::Asking(Question::Username) => {
                if command == Command::Select {
                    let name = self.username.text().trim().to_owned();
                    self.answer(Answer::Text(name));
                } else {
                    self.username.edit(command);
                }
            }
            Phase::Asking(Question::ConfirmSystemInfo) => match command {
                Command::Select => self.answer(Answer::Yes(true)),
                Command::Decline => self.answer(Answer::Yes(false)),
                Command::Up => self.scroll = self.scroll.saturating_sub(1),
                Command::Down => {
                    self.scroll = (self.scroll + 1).min(self.facts.rows.len().saturating_sub(1))
                }
                Command::PageUp => self.scroll = self.scroll.saturating_sub(10),
                Command::PageDown => {
                    self.scroll = (self.scroll + 10).min(self.facts.rows.len().saturating_sub(1))
                }
                _ => {}
            },
            Phase::Asking(question) => {
                let options = self.options(&question);
                let key = question_key(&question);
                let at = self.selected(&question);
                match command {
                    Command::Up => {
                        self.choices.insert(key, at.saturating_sub(1));
                    }
                    Command::Down => {
                        self.choices
                            .insert(key, (at + 1).min(options.len().saturating_sub(1)));
                    }
                    Command::Select => match options.get(at).map(|c| c.value.clone()) {
                        Some(ChoiceValue::Answer(answer)) => self.answer(answer),
                        Some(ChoiceValue::Create(maker)) => self.phase = Phase::Creating(maker),
                        None => {}
                    },
                    _ => {}
                }
            }
            Phase::Stopped(stop) if command == Command::Create => {
                if let Some((maker, _)) =
                    session::maker_for(&stop, &self.facts.user_home).filter(|(m, _)| m.installed())
                {
                    self.phase = Phase::Creating(maker);
                }
            }
            Phase::Creating(maker) => {
                if command == Command::Select {
                    let name = self.new_name.text().trim().to_owned();
                    // The name becomes an argument of the tool: never an option of it.
                    match check_username(&name) {
                        Ok(()) if !name.starts_with('-') => {
                            self.error = None;
                            self.phase = Phase::External(maker);
                            return vec![Effect::HandOver(maker.command(&name))];
                        }
                        _ => {
                            self.error = Some(
                                "a name has 3 to 32 of A-Z a-z 0-9 _ - and does not start with -"
                                    .to_owned(),
                            )
                        }
                    }
                } else {
                    self.new_name.edit(command);
                }
            }
            Phase::Review(plan) if command == Command::Select => {
                self.phase = Phase::Submitting;
                return vec![Effect::Spawn(Job::Submit(plan))];
            }
            Phase::SubmitFailed(_) if matches!(command, Command::Refresh | Command::Select) => {
                if let Some(Next::Ready(plan)) = self.engine.as_ref().map(Engine::next) {
                    self.phase = Phase::Submitting;
                    return vec![Effect::Spawn(Job::Submit(plan))];
                }
            }
            _ => {}
        }
        Vec::new()
    }

    /// A character typed into the focused field.
    pub(crate) fn type_char(&mut self, c: char) {
        match self.phase {
            Phase::Asking(Question::Username) => {
                self.username.insert(c);
                self.error = None;
            }
            Phase::Creating(_) => self.new_name.insert(c),
            _ => {}
        }
    }

    /// Starts asking, with what the preparation found.
    pub(crate) fn begin(&mut self, context: crate::register::engine::Context, facts: Facts) {
        self.facts = facts;
        self.scroll = 0;
        self.engine = Some(Engine::new(context, None));
        self.advance();
    }

    /// A finished job that concerns the wizard.
    pub(crate) fn on_result(&mut self, result: JobResult) -> Vec<Effect> {
        match result {
            JobResult::Prepared(Ok(prepared)) => {
                let Prepared {
                    inventory,
                    context,
                    warnings,
                    user_home,
                } = *prepared;
                let wire = serde_json::json!({
                    "location": context.system_info.location,
                    "compute_resources": context.system_info.compute_resources,
                });
                let mut rows = Vec::new();
                crate::register::display::flatten(&wire, "", &mut rows);
                let facts = Facts {
                    rows,
                    warnings,
                    ssh_warning: session::ssh_warning(&inventory),
                    user_home,
                    btcli: BTCLI.installed(),
                    comx: COMX.installed(),
                };
                self.begin(context, facts);
            }
            JobResult::Prepared(Err(why)) => self.phase = Phase::PrepareFailed(why),
            JobResult::Submitted(Ok(record)) => {
                self.phase = Phase::Done(record);
                return vec![Effect::PokeCoordinator, Effect::PokeAgent];
            }
            JobResult::Submitted(Err(why)) => self.phase = Phase::SubmitFailed(why),
            JobResult::HandedBack(outcome) => {
                let reloaded = match (&outcome, self.engine.as_mut()) {
                    (Ok(_), Some(engine)) => session::reload_wallets(engine, &self.facts.user_home)
                        .map_err(|e| format!("{e:#}")),
                    (Err(why), _) => Err(why.clone()),
                    (Ok(_), None) => Ok(()),
                };
                self.advance();
                match (reloaded, outcome) {
                    (Err(why), _) => self.error = Some(why),
                    (Ok(()), Ok(false)) => {
                        self.error = Some("the tool did not finish: nothing was created".to_owned())
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        Vec::new()
    }
}
