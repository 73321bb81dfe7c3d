//! `POST /network_update`, `/bittensor/register` and `/commune/register` bodies.

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validate::{self, FieldError, Validate, fail};

/// How validators reach the miner over SSH.
///
/// The original also sent `password` here in plaintext. It is still accepted so old clients keep
/// working, but it is discarded while parsing: never kept, stored or sent on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkInfo {
    #[serde(default)]
    pub internal_ip: Option<String>,
    /// `ssh://user@host:port`. The original's `ssh://None@None:None` (what it sends when its
    /// SSH settings are missing) reads as none, at registration and in updates alike.
    #[serde(default, deserialize_with = "address_or_none")]
    pub ssh: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub open_ports: Vec<String>,
    #[serde(default, rename = "password", skip_serializing)]
    #[schema(ignore)]
    pub(crate) discarded_password: Option<IgnoredAny>,
}

/// The original formats Python's `None` into the URL for each SSH setting it lacks.
fn is_python_none_address(address: &str) -> bool {
    address
        .strip_prefix("ssh://")
        .is_some_and(|rest| rest.split(['@', ':']).any(|part| part == "None"))
}

fn address_or_none<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let address = Option::<String>::deserialize(deserializer)?;
    Ok(address.filter(|a| !is_python_none_address(a)))
}

impl NetworkInfo {
    /// The same checks wherever network facts arrive (registration, `network_update`).
    pub(super) fn check(&self, at: &str) -> Result<(), FieldError> {
        if let Some(ssh) = &self.ssh
            && !ssh.is_empty()
        {
            let url = reqwest::Url::parse(ssh).ok();
            if url.as_ref().is_some_and(|u| u.password().is_some()) {
                return Err(fail(
                    format_args!("{at}.ssh"),
                    "must not carry a password: validators log in with keys",
                ));
            }
            let ok = url.is_some_and(|u| u.scheme() == "ssh" && u.host().is_some());
            if !ok {
                return Err(fail(
                    format_args!("{at}.ssh"),
                    format!("expected ssh://user@host:port, got {ssh:?}"),
                ));
            }
        }
        for (i, port) in self.open_ports.iter().enumerate() {
            if port.parse::<u16>().is_err() {
                return Err(fail(
                    format_args!("{at}.open_ports[{i}]"),
                    format!("expected a port number, got {port:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// Body of `POST /network_update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NetworkUpdate {
    pub miner_id: String,
    pub network: NetworkInfo,
}

impl Validate for NetworkUpdate {
    fn validate(&self) -> Result<(), FieldError> {
        validate::identifier("miner_id", &self.miner_id)?;
        self.network.check("network")
    }
}

/// Body of `POST /bittensor/register` (original §4.5.2 step 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BittensorRegistration {
    pub miner_id: String,
    pub wallet_name: String,
    /// Hotkey ss58 address (or the hotkey's name when unknown).
    pub hotkey: String,
    /// `mainnet` or `testnet`.
    pub network: String,
    pub netuid: u32,
    pub wallet_address: String,
    pub subnet_uid: String,
    /// Coldkey ss58 address (or the wallet name when unknown).
    pub coldkey: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miner_uid: Option<u32>,
}

impl Validate for BittensorRegistration {
    fn validate(&self) -> Result<(), FieldError> {
        validate::identifier("miner_id", &self.miner_id)?;
        validate::text("wallet_name", &self.wallet_name, 128)?;
        validate::text("hotkey", &self.hotkey, 128)?;
        validate::text("coldkey", &self.coldkey, 128)?;
        if self.network != "mainnet" && self.network != "testnet" {
            return Err(fail(
                "network",
                format!(
                    "expected \"mainnet\" or \"testnet\", got {:?}",
                    self.network
                ),
            ));
        }
        Ok(())
    }
}

/// Body of `POST /commune/register` (original §4.5.3 step 7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommuneRegistration {
    pub miner_id: String,
    pub commune_uid: String,
    pub wallet_name: String,
    pub wallet_address: String,
    pub netuid: u32,
}

impl Validate for CommuneRegistration {
    fn validate(&self) -> Result<(), FieldError> {
        validate::identifier("miner_id", &self.miner_id)?;
        validate::text("commune_uid", &self.commune_uid, 32)?;
        validate::text("wallet_name", &self.wallet_name, 128)?;
        validate::text("wallet_address", &self.wallet_address, 128)
    }
}

/// The answer to the network and wallet updates: `{"status": "success", "message": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SimpleResponse {
    pub status: String,
    pub message: String,
}

impl SimpleResponse {
    pub fn success(message: impl Into<String>) -> Self {
        Self {
            status: "success".into(),
            message: message.into(),
        }
    }
}
