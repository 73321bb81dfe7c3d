//! The registration flow as a state machine with no terminal code: it says which question
//! comes next, checks each answer, and ends in a plan to submit. `polaris register` (prompts
//! or flags) and the dashboard's wizard drive the same engine.

use crate::api::{RegistrationRequest, SystemInventory, Validate};
use crate::config::SshAccess;

use super::record::{BittensorFacts, Chain, CommuneFacts, Network, RegistrationRecord};
use super::wallets::{BittensorWallet, CommuneKey};

/// The subnet a network's miners serve (original-polaris.md §4.5; Bittensor mainnet 49 is the
/// one validators use). Standard registration has none.
pub fn netuid(network: Network, chain: Chain) -> u32 {
    match (network, chain) {
        (Network::Bittensor, Chain::Mainnet) => 49,
        (Network::Bittensor, Chain::Testnet) => 100,
        (Network::Commune, Chain::Mainnet) => 33,
        (Network::Commune, Chain::Testnet) => 12,
        (Network::Standard, _) => 0,
    }
}

/// What the engine knows before asking anything.
#[derive(Debug, Clone)]
pub struct Context {
    pub existing: Option<RegistrationRecord>,
    pub system_info: SystemInventory,
    pub bittensor_wallets: Vec<BittensorWallet>,
    pub commune_keys: Vec<CommuneKey>,
    /// POLARIS_SSH_ACCESS, when a setting already says it (then it is not asked).
    pub ssh_access: Option<SshAccess>,
}

/// The next thing to ask.
#[derive(Debug, Clone, PartialEq)]
pub enum Question {
    /// A registration exists: replace it? (default: no)
    ReplaceExisting {
        miner_id: String,
        username: String,
    },
    /// The facts to send, shown before they go (default: yes).
    ConfirmSystemInfo,
    Network,
    Username,
    /// Let validators in with keys the coordinator sends (POLARIS_SSH_ACCESS)? (default: no)
    SshAccess,
    BittensorWallet,
    BittensorHotkey {
        wallet: String,
    },
    CommuneKey,
    Chain {
        network: Network,
    },
}

impl Question {
    /// The prompt, as the original worded it where it had one.
    pub fn prompt(&self) -> String {
        match self {
            Self::ReplaceExisting { .. } => {
                "Do you want to proceed with a new registration?".to_owned()
            }
            Self::ConfirmSystemInfo => "Do you want to proceed with registration?".to_owned(),
            Self::Network => "Select registration type:".to_owned(),
            Self::Username => "Enter your desired username:".to_owned(),
            Self::SshAccess => {
                "Let validators log in over SSH with keys the coordinator sends?".to_owned()
            }
            Self::BittensorWallet => "Select a wallet (coldkey):".to_owned(),
            Self::BittensorHotkey { wallet } => format!("Select a hotkey of {wallet}:"),
            Self::CommuneKey => "Select a Commune key:".to_owned(),
            Self::Chain { .. } => "Select the network:".to_owned(),
        }
    }

    /// The flag that answers it without a terminal.
    pub fn flag(&self) -> &'static str {
        match self {
            Self::ReplaceExisting { .. } | Self::ConfirmSystemInfo => "--yes",
            Self::Network => "--network",
            Self::Username => "--username",
            Self::SshAccess => "--ssh-access",
            Self::BittensorWallet => "--wallet",
            Self::BittensorHotkey { .. } => "--hotkey",
            Self::CommuneKey => "--key",
            Self::Chain { .. } => "--testnet",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Yes(bool),
    Network(Network),
    Text(String),
    Chain(Chain),
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The answer is wrong; another answer can do (a usage error in scripts).
    Invalid(String),
    /// Nothing the user answers can fix it (the machine's facts cannot be sent).
    CannotRegister(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Invalid(why) | Self::CannotRegister(why) => f.write_str(why),
        }
    }
}

impl From<String> for Refusal {
    fn from(why: String) -> Self {
        Self::Invalid(why)
    }
}

/// Where the flow stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Ask(Question),
    /// Ended without registering; the reason is for the user.
    Stop(Stop),
    Ready(Box<Plan>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    KeptExisting,
    Declined,
    NoBittensorWallet,
    NoCommuneKey,
}

/// What to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub network: Network,
    pub request: RegistrationRequest,
    pub bittensor: Option<BittensorFacts>,
    pub commune: Option<CommuneFacts>,
    /// POLARIS_SSH_ACCESS as answered, to save with the registration; None when a setting
    /// already said it.
    pub ssh_access: Option<SshAccess>,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Answers {
    replace: Option<bool>,
    confirmed: Option<bool>,
    network: Option<Network>,
    username: Option<String>,
    ssh_access: Option<bool>,
    wallet: Option<String>,
    hotkey: Option<String>,
    key: Option<String>,
    chain: Option<Chain>,
}

pub struct Engine {
    context: Context,
    answers: Answers,
    /// Every accepted answer in order, so `back` can rebuild the answers without the last one.
    history: Vec<Answer>,
    /// The miner's uid on its subnet, when the user knows it (`--uid`).
    uid: Option<u32>,
}

/// Usernames: 3 to 32 of `A-Z a-z 0-9 _ -`.
pub fn check_username(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !(3..=32).contains(&name.chars().count()) {
        Err(format!(
            "a username has 3 to 32 characters; {name:?} has {}",
            name.chars().count()
        ))
    } else if !ok_chars {
        Err(format!(
            "a username may hold only letters, digits, _ and -; {name:?} does not"
        ))
    } else {
        Ok(())
    }
}

/// Checks the facts about to be sent as the coordinator will (RAM like `15.68GB`, storage type
/// and capacity, CPU and GPU specs), so a bad inventory is caught when it is confirmed, before
/// anything is sent.
pub fn check_system_info(info: &SystemInventory) -> Result<(), String> {
    let probe = RegistrationRequest {
        name: "check".to_owned(),
        location: info.location.clone(),
        description: None,
        compute_resources: info.compute_resources.clone(),
        registration_type: None,
        relay_key: None,
    };
    probe
        .validate()
        .map_err(|e| format!("this machine's system information cannot be sent: {e}"))
}

impl Engine {
    pub fn new(context: Context, uid: Option<u32>) -> Self {
        Self {
            context,
            answers: Answers::default(),
            history: Vec::new(),
            uid,
        }
    }

    /// How many accepted answers stand.
    pub fn answered(&self) -> usize {
        self.history.len()
    }

    /// Undoes the last accepted answer, so the flow asks that question again; false when
    /// nothing was answered.
    ///
    /// The answers are rebuilt by replaying all but the last onto fresh ones, so each
    /// question is asked again exactly as `next` derives it (never a stale copy). A replayed
    /// answer that is now refused (the wallets changed after `refresh_wallets`) ends the
    /// replay there. If the flow then stands where it stood before (the undone answer no
    /// longer counted, a wallet having vanished), the one before is undone too: a face's
    /// "back" key must always move the flow.
    pub fn back(&mut self) -> bool {
        if self.history.is_empty() {
            return false;
        }
        let before = self.next();
        while let Some(_undone) = self.history.pop() {
            let replay = std::mem::take(&mut self.history);
            self.answers = Answers::default();
            for answer in replay {
                if self.apply(answer.clone()).is_err() {
                    break;
                }
                self.history.push(answer);
            }
            if self.next() != before {
                break;
            }
        }
        true
    }

    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Re-reads the wallets and keys (after the user created one with btcli or comx).
    pub fn refresh_wallets(&mut self, bittensor: Vec<BittensorWallet>, commune: Vec<CommuneKey>) {
        self.context.bittensor_wallets = bittensor;
        self.context.commune_keys = commune;
    }

    pub fn next(&self) -> Next {
        let a = &self.answers;
        if let Some(existing) = &self.context.existing {
            match a.replace {
                None => {
                    return Next::Ask(Question::ReplaceExisting {
                        miner_id: existing.miner_id.clone(),
                        username: existing.username.clone(),
                    });
                }
                Some(false) => return Next::Stop(Stop::KeptExisting),
                Some(true) => {}
            }
        }
        match a.confirmed {
            None => return Next::Ask(Question::ConfirmSystemInfo),
            Some(false) => return Next::Stop(Stop::Declined),
            Some(true) => {}
        }
        let Some(network) = a.network else {
            return Next::Ask(Question::Network);
        };
        let Some(username) = &a.username else {
            return Next::Ask(Question::Username);
        };
        let ssh_access = match (self.context.ssh_access, a.ssh_access) {
            (Some(_), _) => None,
            (None, None) => return Next::Ask(Question::SshAccess),
            (None, Some(true)) => Some(SshAccess::Keys),
            (None, Some(false)) => Some(SshAccess::Off),
        };
        let (bittensor, commune) = match network {
            Network::Standard => (None, None),
            Network::Bittensor => {
                let wallets = &self.context.bittensor_wallets;
                if wallets.is_empty() {
                    return Next::Stop(Stop::NoBittensorWallet);
                }
                let Some(wallet) = wallets.iter().find(|w| a.wallet.as_ref() == Some(&w.name))
                else {
                    return Next::Ask(Question::BittensorWallet);
                };
                let Some(hotkey) = wallet
                    .hotkeys
                    .iter()
                    .find(|h| a.hotkey.as_ref() == Some(&h.name))
                else {
                    return Next::Ask(Question::BittensorHotkey {
                        wallet: wallet.name.clone(),
                    });
                };
                let Some(chain) = a.chain else {
                    return Next::Ask(Question::Chain { network });
                };
                let facts = BittensorFacts {
                    wallet_name: wallet.name.clone(),
                    coldkey_ss58: wallet.coldkey_ss58.clone(),
                    hotkey_name: hotkey.name.clone(),
                    hotkey_ss58: hotkey.ss58.clone(),
                    chain,
                    netuid: netuid(network, chain),
                    uid: self.uid,
                };
                (Some(facts), None)
            }
            Network::Commune => {
                let keys = &self.context.commune_keys;
                if keys.is_empty() {
                    return Next::Stop(Stop::NoCommuneKey);
                }
                let Some(key) = keys.iter().find(|k| a.key.as_ref() == Some(&k.name)) else {
                    return Next::Ask(Question::CommuneKey);
                };
                let Some(chain) = a.chain else {
                    return Next::Ask(Question::Chain { network });
                };
                let facts = CommuneFacts {
                    key_name: key.name.clone(),
                    ss58: key.ss58.clone(),
                    chain,
                    netuid: netuid(network, chain),
                    uid: self.uid,
                };
                (None, Some(facts))
            }
        };
        let info = &self.context.system_info;
        let request = RegistrationRequest {
            name: username.clone(),
            location: info.location.clone(),
            description: Some(format!(
                "{} registered via the Polaris CLI",
                network.label()
            )),
            compute_resources: info.compute_resources.clone(),
            registration_type: Some(network.registration_type().to_owned()),
            relay_key: None,
        };
        Next::Ready(Box::new(Plan {
            network,
            request,
            bittensor,
            commune,
            ssh_access,
        }))
    }

    /// Answers the question `next` asked; a bad answer is refused with the reason and
    /// changes nothing.
    pub fn answer(&mut self, answer: Answer) -> Result<(), Refusal> {
        self.apply(answer.clone())?;
        self.history.push(answer);
        Ok(())
    }

    /// Checks and records one answer, without touching the history.
    fn apply(&mut self, answer: Answer) -> Result<(), Refusal> {
        let Next::Ask(question) = self.next() else {
            return Err(Refusal::Invalid("nothing is being asked".to_owned()));
        };
        let a = &mut self.answers;
        match (question, answer) {
            (Question::ReplaceExisting { .. }, Answer::Yes(yes)) => a.replace = Some(yes),
            (Question::ConfirmSystemInfo, Answer::Yes(yes)) => {
                if yes {
                    check_system_info(&self.context.system_info)
                        .map_err(Refusal::CannotRegister)?;
                }
                a.confirmed = Some(yes);
            }
            (Question::Network, Answer::Network(network)) => a.network = Some(network),
            (Question::SshAccess, Answer::Yes(yes)) => a.ssh_access = Some(yes),
            (Question::Username, Answer::Text(name)) => {
                let name = name.trim().to_owned();
                check_username(&name)?;
                a.username = Some(name);
            }
            (Question::BittensorWallet, Answer::Text(name)) => {
                let wallet = self
                    .context
                    .bittensor_wallets
                    .iter()
                    .find(|w| w.name == name)
                    .ok_or_else(|| {
                        format!(
                            "no wallet {name:?} in ~/.bittensor/wallets (found: {})",
                            names(self.context.bittensor_wallets.iter().map(|w| &w.name))
                        )
                    })?;
                if wallet.hotkeys.is_empty() {
                    return Err(Refusal::Invalid(format!(
                        "wallet {name:?} has no hotkey: create one with \
                         `btcli wallet new_hotkey --wallet.name {name} --wallet.hotkey default`"
                    )));
                }
                a.wallet = Some(name);
            }
            (Question::BittensorHotkey { wallet }, Answer::Text(name)) => {
                let hotkeys = self
                    .context
                    .bittensor_wallets
                    .iter()
                    .find(|w| w.name == wallet)
                    .map(|w| w.hotkeys.as_slice())
                    .unwrap_or_default();
                if !hotkeys.iter().any(|h| h.name == name) {
                    return Err(Refusal::Invalid(format!(
                        "wallet {wallet:?} has no hotkey {name:?} (found: {})",
                        names(hotkeys.iter().map(|h| &h.name))
                    )));
                }
                a.hotkey = Some(name);
            }
            (Question::CommuneKey, Answer::Text(name)) => {
                if !self.context.commune_keys.iter().any(|k| k.name == name) {
                    return Err(Refusal::Invalid(format!(
                        "no key {name:?} in ~/.commune/key (found: {})",
                        names(self.context.commune_keys.iter().map(|k| &k.name))
                    )));
                }
                a.key = Some(name);
            }
            (Question::Chain { .. }, Answer::Chain(chain)) => a.chain = Some(chain),
            (question, answer) => {
                return Err(Refusal::Invalid(format!(
                    "{answer:?} does not answer {question:?}"
                )));
            }
        }
        Ok(())
    }
}

fn names<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<&str> = names.map(String::as_str).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::register::wallets::Hotkey;

    fn system_info() -> SystemInventory {
        serde_json::from_value(serde_json::json!({
            "location": "Lisbon, PT",
            "compute_resources": [{
                "id": "r1", "resource_type": "CPU", "ram": "15.68GB",
                "storage": {"type": "SSD", "capacity": "467.91GB"},
                "cpu_specs": {"total_cpus": 8, "online_cpus": "0-7"}
            }]
        }))
        .expect("valid system info")
    }

    fn context() -> Context {
        Context {
            existing: None,
            system_info: system_info(),
            bittensor_wallets: vec![BittensorWallet {
                name: "miner".into(),
                coldkey_ss58: Some("5DxvopyTBNpoBdAQ7nKNqKNkkL7Map7LptJYuD4JCCXfyjbu".into()),
                hotkeys: vec![Hotkey {
                    name: "default".into(),
                    ss58: Some("5GbQQkrZxQWM5DTANdNGvKrWfaPMXXfQMN88Xo6JQymqUngd".into()),
                }],
            }],
            commune_keys: vec![CommuneKey {
                name: "miner".into(),
                ss58: None,
            }],
            // Set already, so the flows below are not asked about it (see the SSH test).
            ssh_access: Some(SshAccess::Off),
        }
    }

    fn ask(engine: &Engine) -> Question {
        match engine.next() {
            Next::Ask(q) => q,
            other => panic!("expected a question, got {other:?}"),
        }
    }

    #[test]
    fn ssh_access_is_asked_after_the_username_unless_a_setting_says_it() -> Result<(), Refusal> {
        let unset = Context {
            ssh_access: None,
            ..context()
        };
        let mut engine = Engine::new(unset, None);
        engine.answer(Answer::Yes(true))?;
        engine.answer(Answer::Network(Network::Standard))?;
        engine.answer(Answer::Text("alice_01".into()))?;
        assert_eq!(ask(&engine), Question::SshAccess);
        engine.answer(Answer::Yes(true))?;
        let Next::Ready(plan) = engine.next() else {
            panic!("expected a plan");
        };
        assert_eq!(
            plan.ssh_access,
            Some(SshAccess::Keys),
            "saved with the registration"
        );
        let mut engine = Engine::new(context(), None);
        engine.answer(Answer::Yes(true))?;
        engine.answer(Answer::Network(Network::Standard))?;
        engine.answer(Answer::Text("alice_01".into()))?;
        let Next::Ready(plan) = engine.next() else {
            panic!("a setting answers it: no question");
        };
        assert_eq!(plan.ssh_access, None, "nothing to save over the setting");
        Ok(())
    }

    #[test]
    fn a_bittensor_run_asks_in_order_and_plans_testnet() -> Result<(), Refusal> {
        let mut engine = Engine::new(context(), Some(7));
        assert_eq!(ask(&engine), Question::ConfirmSystemInfo);
        engine.answer(Answer::Yes(true))?;
        assert_eq!(ask(&engine), Question::Network);
        engine.answer(Answer::Network(Network::Bittensor))?;
        assert_eq!(ask(&engine), Question::Username);
        assert!(engine.answer(Answer::Text("a b".into())).is_err());
        assert!(engine.answer(Answer::Text("ab".into())).is_err());
        assert_eq!(
            ask(&engine),
            Question::Username,
            "a refused answer changes nothing"
        );
        engine.answer(Answer::Text("alice_01".into()))?;
        assert_eq!(ask(&engine), Question::BittensorWallet);
        let err = engine
            .answer(Answer::Text("nope".into()))
            .expect_err("unknown wallet");
        assert!(err.to_string().contains("found: miner"), "{err}");
        engine.answer(Answer::Text("miner".into()))?;
        engine.answer(Answer::Text("default".into()))?;
        assert_eq!(
            ask(&engine),
            Question::Chain {
                network: Network::Bittensor
            }
        );
        engine.answer(Answer::Chain(Chain::Testnet))?;
        let Next::Ready(plan) = engine.next() else {
            panic!("expected a plan");
        };
        let facts = plan.bittensor.expect("bittensor facts");
        assert_eq!((facts.netuid, facts.uid), (100, Some(7)));
        assert_eq!(plan.request.name, "alice_01");
        assert_eq!(plan.request.registration_type.as_deref(), Some("bittensor"));
        Ok(())
    }

    #[test]
    fn an_existing_registration_is_kept_unless_replaced() -> Result<(), Refusal> {
        let mut ctx = context();
        ctx.existing = Some(RegistrationRecord {
            miner_id: "m1".into(),
            token: crate::config::Secret::new("t"),
            username: "old".into(),
            network: Network::Standard,
            server_url: "http://127.0.0.1:8420/api/v1".into(),
            resource_ids: vec![],
            registered_at: chrono::Utc::now(),
            bittensor: None,
            commune: None,
        });
        let mut keep = Engine::new(ctx.clone(), None);
        assert!(matches!(ask(&keep), Question::ReplaceExisting { .. }));
        keep.answer(Answer::Yes(false))?;
        assert_eq!(keep.next(), Next::Stop(Stop::KeptExisting));
        let mut replace = Engine::new(ctx, None);
        replace.answer(Answer::Yes(true))?;
        assert_eq!(ask(&replace), Question::ConfirmSystemInfo);
        Ok(())
    }

    #[test]
    fn missing_wallets_stop_and_standard_needs_no_chain() -> Result<(), Refusal> {
        let mut ctx = context();
        ctx.bittensor_wallets.clear();
        let mut engine = Engine::new(ctx.clone(), None);
        engine.answer(Answer::Yes(true))?;
        engine.answer(Answer::Network(Network::Bittensor))?;
        engine.answer(Answer::Text("alice".into()))?;
        assert_eq!(engine.next(), Next::Stop(Stop::NoBittensorWallet));

        let mut standard = Engine::new(ctx, None);
        standard.answer(Answer::Yes(true))?;
        standard.answer(Answer::Network(Network::Standard))?;
        standard.answer(Answer::Text("alice".into()))?;
        assert!(matches!(standard.next(), Next::Ready(_)));
        Ok(())
    }

    #[test]
    fn bad_system_info_is_refused_at_confirmation() {
        let mut ctx = context();
        ctx.system_info.compute_resources[0].ram = "16 gigs".into();
        let mut engine = Engine::new(ctx, None);
        let err = engine
            .answer(Answer::Yes(true))
            .expect_err("bad RAM format");
        assert!(matches!(err, Refusal::CannotRegister(_)), "{err:?}");
        assert!(err.to_string().contains("ram"), "{err}");
    }

    /// The questions of a whole Bittensor run, answered; returns the engine and what each
    /// answer was given to.
    fn answered_bittensor_run() -> Result<(Engine, Vec<Question>), Refusal> {
        let mut engine = Engine::new(context(), None);
        let answers = [
            Answer::Yes(true),
            Answer::Network(Network::Bittensor),
            Answer::Text("alice".into()),
            Answer::Text("miner".into()),
            Answer::Text("default".into()),
            Answer::Chain(Chain::Mainnet),
        ];
        let mut asked = Vec::new();
        for answer in answers {
            asked.push(ask(&engine));
            engine.answer(answer)?;
        }
        Ok((engine, asked))
    }

    #[test]
    fn back_walks_a_bittensor_run_back_to_the_first_question() -> Result<(), Refusal> {
        let (mut engine, asked) = answered_bittensor_run()?;
        assert!(matches!(engine.next(), Next::Ready(_)));
        assert_eq!(engine.answered(), asked.len());
        for (left, question) in asked.iter().enumerate().rev() {
            assert!(engine.back());
            assert_eq!(&ask(&engine), question);
            assert_eq!(engine.answered(), left);
        }
        assert!(!engine.back(), "nothing left to undo");
        assert_eq!(ask(&engine), Question::ConfirmSystemInfo);
        // Going forward again works from the first question.
        engine.answer(Answer::Yes(true))?;
        assert_eq!(ask(&engine), Question::Network);
        Ok(())
    }

    #[test]
    fn back_at_the_start_changes_nothing() {
        let mut engine = Engine::new(context(), None);
        assert!(!engine.back());
        assert_eq!(engine.answered(), 0);
        assert_eq!(ask(&engine), Question::ConfirmSystemInfo);
    }

    #[test]
    fn back_after_a_refused_answer_undoes_the_accepted_one_before() -> Result<(), Refusal> {
        let mut engine = Engine::new(context(), None);
        engine.answer(Answer::Yes(true))?;
        engine.answer(Answer::Network(Network::Commune))?;
        assert!(engine.answer(Answer::Text("x".into())).is_err());
        assert_eq!(engine.answered(), 2, "a refused answer is not counted");
        assert!(engine.back());
        assert_eq!(ask(&engine), Question::Network);
        engine.answer(Answer::Network(Network::Standard))?;
        engine.answer(Answer::Text("alice".into()))?;
        let Next::Ready(plan) = engine.next() else {
            panic!("expected a plan");
        };
        assert_eq!(plan.network, Network::Standard);
        Ok(())
    }

    #[test]
    fn back_after_a_stop_asks_the_question_that_led_there() -> Result<(), Refusal> {
        let mut ctx = context();
        ctx.commune_keys.clear();
        let mut engine = Engine::new(ctx, None);
        engine.answer(Answer::Yes(true))?;
        engine.answer(Answer::Network(Network::Commune))?;
        engine.answer(Answer::Text("alice".into()))?;
        assert_eq!(engine.next(), Next::Stop(Stop::NoCommuneKey));
        assert!(engine.back());
        assert_eq!(ask(&engine), Question::Username);
        Ok(())
    }

    #[test]
    fn back_after_the_wallets_changed_stops_replaying_at_the_refused_answer() -> Result<(), Refusal>
    {
        let (mut engine, _) = answered_bittensor_run()?;
        // The chosen wallet is gone; another one appeared.
        let mut other = engine.context().bittensor_wallets[0].clone();
        other.name = "spare".into();
        engine.refresh_wallets(vec![other], Vec::new());
        assert_eq!(ask(&engine), Question::BittensorWallet);
        // Undoing the chain replays the wallet answer, now refused, which ends the replay at
        // the wallet question: where the user already stood. So the username is undone too,
        // and the user sees the question before the one on screen.
        assert!(engine.back());
        assert_eq!(engine.answered(), 2);
        assert_eq!(
            ask(&engine),
            Question::Username,
            "back always moves the flow"
        );
        Ok(())
    }
}
