//! Sending a plan to the coordinator and keeping the result. Local files change only after
//! every call succeeded: a refusal leaves POLARIS_HOME as it was.

use std::path::Path;

use anyhow::Context;
use chrono::Utc;

use super::engine::Plan;
use super::record::{self, RegistrationRecord};
use crate::api::client::CoordinatorClient;
use crate::api::{BittensorRegistration, CommuneRegistration};
use crate::config::Secret;

/// What the user chose that the coordinator does not know (a uid nobody told us).
const UNKNOWN: &str = "unknown";

pub async fn submit(
    client: &CoordinatorClient,
    plan: &Plan,
    home: &Path,
) -> anyhow::Result<RegistrationRecord> {
    let answer = client
        .register(&plan.request)
        .await
        .context("registration failed")?;
    let token = answer.token.clone();
    if let Some(b) = &plan.bittensor {
        let body = BittensorRegistration {
            miner_id: answer.miner_id.clone(),
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
        };
        client
            .register_bittensor(&token, &body)
            .await
            .with_context(|| {
                format!(
                    "miner {} was registered, but its Bittensor details were refused",
                    answer.miner_id
                )
            })?;
    }
    if let Some(c) = &plan.commune {
        let body = CommuneRegistration {
            miner_id: answer.miner_id.clone(),
            commune_uid: c.uid.map_or_else(|| UNKNOWN.to_owned(), |u| u.to_string()),
            wallet_name: c.key_name.clone(),
            wallet_address: c.ss58.clone().unwrap_or_else(|| UNKNOWN.to_owned()),
            netuid: c.netuid,
        };
        client
            .register_commune(&token, &body)
            .await
            .with_context(|| {
                format!(
                    "miner {} was registered, but its Commune details were refused",
                    answer.miner_id
                )
            })?;
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
    super::ssh_key::ensure(home)?;
    record::save(home, &record)?;
    Ok(record)
}
