//! `POLARIS_HOME/registration.json` (mode 0600): what later commands need from a registration —
//! the miner id, its token, the network and the wallet facts. The original kept only the id
//! and username (and, for Commune, nothing at all).

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::Secret;

/// Which network the miner serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A plain coordinator, no chain.
    Standard,
    Bittensor,
    Commune,
}

impl Network {
    pub fn label(self) -> &'static str {
        match self {
            Self::Standard => "Standard Registration",
            Self::Bittensor => "Bittensor Network",
            Self::Commune => "Commune Network",
        }
    }

    /// The original's `registration_type` word.
    pub fn registration_type(self) -> &'static str {
        match self {
            Self::Standard => "independent",
            Self::Bittensor => "bittensor",
            Self::Commune => "commune",
        }
    }
}

/// Mainnet or testnet of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Chain {
    Mainnet,
    Testnet,
}

impl Chain {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mainnet => "mainnet",
            Self::Testnet => "testnet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BittensorFacts {
    pub wallet_name: String,
    pub coldkey_ss58: Option<String>,
    pub hotkey_name: String,
    pub hotkey_ss58: Option<String>,
    pub chain: Chain,
    pub netuid: u32,
    /// The miner's uid on the subnet, when given (`--uid`).
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommuneFacts {
    pub key_name: String,
    pub ss58: Option<String>,
    pub chain: Chain,
    pub netuid: u32,
    pub uid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub miner_id: String,
    /// Bearer token for heartbeats and updates; the coordinator keeps only its hash.
    #[serde(serialize_with = "expose", deserialize_with = "conceal")]
    pub token: Secret,
    pub username: String,
    pub network: Network,
    /// The coordinator that holds this registration.
    pub server_url: String,
    pub resource_ids: Vec<String>,
    pub registered_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bittensor: Option<BittensorFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<CommuneFacts>,
}

fn expose<S: Serializer>(secret: &Secret, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose())
}

fn conceal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Secret, D::Error> {
    String::deserialize(deserializer).map(Secret::new)
}

pub fn path(home: &Path) -> PathBuf {
    home.join("registration.json")
}

/// The saved registration; None when there is none. A damaged file is an error that says
/// what to do, never silently treated as "not registered".
pub fn load(home: &Path) -> anyhow::Result<Option<RegistrationRecord>> {
    let path = path(home);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    let record = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is damaged: restore it, or run `polaris register` again to replace it",
            path.display()
        )
    })?;
    Ok(Some(record))
}

/// Where [`save`] keeps a damaged registration.json it replaces.
pub fn damaged_copy_path(home: &Path) -> PathBuf {
    home.join("registration.json.damaged")
}

/// Writes the record (atomically, readable by its owner only). A damaged file in its place is
/// not lost: it is moved to [`damaged_copy_path`] first, for the user to look at.
pub fn save(home: &Path, record: &RegistrationRecord) -> anyhow::Result<()> {
    let path = path(home);
    if path.exists() && load(home).is_err() {
        let copy = damaged_copy_path(home);
        std::fs::rename(&path, &copy).with_context(|| {
            format!(
                "cannot move the damaged {} to {}",
                path.display(),
                copy.display()
            )
        })?;
    }
    let json = serde_json::to_vec_pretty(record)?;
    crate::files::write_private_atomically(&path, &json)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_and_a_damaged_one_is_an_error() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        assert!(load(home.path())?.is_none());
        let record = RegistrationRecord {
            miner_id: "m1".into(),
            token: Secret::new("t0k3n"),
            username: "alice".into(),
            network: Network::Commune,
            server_url: "http://127.0.0.1:8420/api/v1".into(),
            resource_ids: vec!["r1".into()],
            registered_at: Utc::now(),
            bittensor: None,
            commune: Some(CommuneFacts {
                key_name: "miner".into(),
                ss58: None,
                chain: Chain::Testnet,
                netuid: 12,
                uid: None,
            }),
        };
        save(home.path(), &record)?;
        assert_eq!(load(home.path())?, Some(record.clone()));
        assert!(
            !format!("{record:?}").contains("t0k3n"),
            "Debug hides the token"
        );
        std::fs::write(path(home.path()), "{")?;
        let err = load(home.path()).expect_err("damaged");
        assert!(format!("{err:#}").contains("is damaged"), "{err:#}");
        // Registering again replaces it, and the damaged bytes are kept beside it.
        save(home.path(), &record)?;
        assert_eq!(load(home.path())?, Some(record.clone()));
        assert_eq!(
            std::fs::read_to_string(damaged_copy_path(home.path()))?,
            "{"
        );
        Ok(())
    }
}
