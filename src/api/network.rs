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
    #[schema(
        pattern = r"^(ssh://([A-Za-z0-9._~-]+@)?[A-Za-z0-9.-]+(:([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?)?$"
    )]
    #[serde(default, deserialize_with = "address_or_none")]
    pub ssh: Option<String>,
    #[serde(default)]
    pub username: Option<String>,
    #[schema(inline, value_type = Vec<String>, pattern = r"^0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$")]
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
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$"
    )]
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
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$"
    )]
    pub miner_id: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub wallet_name: String,
    /// Hotkey ss58 address (or the hotkey's name when unknown).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub hotkey: String,
    /// `mainnet` or `testnet`.
    #[schema(pattern = r"^(mainnet|testnet)$")]
    pub network: String,
    #[schema(maximum = 65535)]
    pub netuid: u32,
    pub wallet_address: String,
    pub subnet_uid: String,
    /// Coldkey ss58 address (or the wallet name when unknown).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub coldkey: String,
    #[schema(maximum = 4294967295_u64, format = Int64)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub miner_uid: Option<u32>,
}

impl Validate for BittensorRegistration {
    fn validate(&self) -> Result<(), FieldError> {
        validate::identifier("miner_id", &self.miner_id)?;
        validate::text("wallet_name", &self.wallet_name, 128)?;
        validate::text("hotkey", &self.hotkey, 128)?;
        validate::text("coldkey", &self.coldkey, 128)?;
        netuid(self.netuid)?;
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
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[A-Za-z0-9_.:-]{1,128}$"
    )]
    pub miner_id: String,
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub commune_uid: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub wallet_name: String,
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$"
    )]
    pub wallet_address: String,
    #[schema(maximum = 65535)]
    pub netuid: u32,
}

impl Validate for CommuneRegistration {
    fn validate(&self) -> Result<(), FieldError> {
        validate::identifier("miner_id", &self.miner_id)?;
        validate::text("commune_uid", &self.commune_uid, 32)?;
        netuid(self.netuid)?;
        validate::text("wallet_name", &self.wallet_name, 128)?;
        validate::text("wallet_address", &self.wallet_address, 128)
    }
}

/// A subnet's uid is a u16 on chain (Bittensor's and Commune's alike).
fn netuid(value: u32) -> Result<(), FieldError> {
    if value > u32::from(u16::MAX) {
        return Err(fail(
            "netuid",
            format!("expected a subnet uid from 0 to 65535, got {value}"),
        ));
    }
    Ok(())
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
