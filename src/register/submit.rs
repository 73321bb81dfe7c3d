//! Sending a plan to the coordinator and keeping the result. Local files change only after
//! every call succeeded: a refusal leaves POLARIS_HOME as it was. Every body is checked with
//! the coordinator's own rules before the first call, so a refusal half-way (a miner created,
//! its network details refused) needs a coordinator that disagrees with those rules.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use super::engine::Plan;
use super::record::{self, BittensorFacts, CommuneFacts, RegistrationRecord};
use crate::api::client::CoordinatorClient;
use crate::api::{BittensorRegistration, CommuneRegistration, RegistrationRequest, Validate};
use crate::config::Secret;

/// What the user chose that the coordinator does not know (a uid nobody told us).
const UNKNOWN: &str = "unknown";
/// Stands in for the miner id while the bodies are checked before registering.
const NOT_YET: &str = "not-yet-registered";

fn bittensor_body(b: &BittensorFacts, miner_id: &str) -> BittensorRegistration {
    BittensorRegistration {
        miner_id: miner_id.to_owned(),
        wallet_name: b.wallet_name.clone(),
        hotkey: b
            .hotkey_ss58
            .clone()
            .unwrap_or_else(|| b.hotkey_name.clone()),
        network: b.chain.as_str().to_owned(),
        netuid: b.netuid,
        wallet_address: b.hotkey_ss58.clone().unwrap_or_else(|| UNKNOWN.to_owned()),
        subnet_uid: b.netuid.to_string(),
        coldkey: b
            .coldkey_ss58
            .clone()
            .unwrap_or_else(|| b.wallet_name.clone()),
        miner_uid: b.uid,
    }
}

fn commune_body(c: &CommuneFacts, miner_id: &str) -> CommuneRegistration {
    CommuneRegistration {
        miner_id: miner_id.to_owned(),
        commune_uid: c.uid.map_or_else(|| UNKNOWN.to_owned(), |u| u.to_string()),
        wallet_name: c.key_name.clone(),
        wallet_address: c.ss58.clone().unwrap_or_else(|| UNKNOWN.to_owned()),
        netuid: c.netuid,
    }
}

/// Checks every body the plan will send, as the coordinator will.
pub fn check(plan: &Plan) -> anyhow::Result<()> {
    plan.request
        .validate()
        .map_err(|e| anyhow::anyhow!("the registration cannot be sent: {e}"))?;
    if let Some(b) = &plan.bittensor {
        bittensor_body(b, NOT_YET)
            .validate()
            .map_err(|e| anyhow::anyhow!("the Bittensor details cannot be sent: {e}"))?;
    }
    if let Some(c) = &plan.commune {
        commune_body(c, NOT_YET)
            .validate()
            .map_err(|e| anyhow::anyhow!("the Commune details cannot be sent: {e}"))?;
    }
    Ok(())
}

pub async fn submit(
    client: &CoordinatorClient,
    plan: &Plan,
    home: &Path,
) -> anyhow::Result<RegistrationRecord> {
    check(plan)?;
    // The tunnel's key goes with the registration, so a built-in relay knows it from the start.
    let (key_path, _) = super::ssh_key::ensure(home)?;
    let public_path = key_path.with_extension("pub");
    let public_key = std::fs::read_to_string(&public_path)
        .with_context(|| format!("cannot read {}", public_path.display()))?;
    let request = RegistrationRequest {
        relay_key: Some(public_key.trim().to_owned()),
        ..plan.request.clone()
    };
    let answer = client
        .register(&request)
        .await
        .context("registration failed")?;
    let token = answer.token.clone();
    let half_done = || {
        format!(
            "miner {} was created on the coordinator, but its network details were refused; \
             nothing was saved here",
            answer.miner_id
        )
    };
    if let Some(b) = &plan.bittensor {
        client
            .register_bittensor(&token, &bittensor_body(b, &answer.miner_id))
            .await
            .with_context(half_done)?;
    }
    if let Some(c) = &plan.commune {
        client
            .register_commune(&token, &commune_body(c, &answer.miner_id))
            .await
            .with_context(half_done)?;
    }
    let record = RegistrationRecord {
        miner_id: answer.miner_id,
        token: Secret::new(token),
        username: plan.request.name.clone(),
        network: plan.network,
        server_url: client.base().to_owned(),
        resource_ids: answer.added_resources,
        registered_at: Utc::now(),
        bittensor: plan.bittensor.clone(),
        commune: plan.commune.clone(),
    };
    record::save(home, &record)?;
    Ok(record)
}

/// Saves the settings the plan answered (POLARIS_SSH_ACCESS) in `POLARIS_HOME/.env`, once the
/// registration is saved; returns the file when there was something to save. A failure leaves
/// the registration standing: the message says what to set by hand.
pub fn save_settings(plan: &Plan, home: &Path) -> Result<Option<std::path::PathBuf>, String> {
    let Some(access) = plan.ssh_access else {
        return Ok(None);
    };
    let key = crate::config::keys::SSH_ACCESS;
    crate::config::save_in_home_dotenv(home, &key, access.as_str())
        .map(Some)
        .map_err(|err| {
            format!(
                "registered, but {}={} could not be saved in {}: {err}; set it there yourself",
                key.env,
                access.as_str(),
                home.join(".env").display()
            )
        })
}
