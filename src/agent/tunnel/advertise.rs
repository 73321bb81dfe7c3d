//! What the keeper tells the coordinator: the address renters reach this miner at (on every
//! connection, `POST /network_update`) and the key the tunnel logs in with (for the built-in
//! relay, `POST /miners/{id}/relay_key`). Both need `polaris register` first; both are best
//! effort: a coordinator that is down or old never stops the tunnel.

use std::time::Duration;

use super::Config;
use crate::api::client::{ClientError, CoordinatorClient};
use crate::api::{NetworkInfo, NetworkUpdate, RelayKey};
use crate::register::record::{self, RegistrationRecord};

/// Tries of the address update; the waits between them double from 1 s.
const TRIES: u32 = 4;

fn registration(config: &Config) -> Option<(RegistrationRecord, CoordinatorClient)> {
    let record = match record::load(&config.home) {
        Ok(Some(record)) => record,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(error = %format!("{err:#}"), "cannot read the registration");
            return None;
        }
    };
    let client = CoordinatorClient::new(&config.server_url).ok()?;
    Some((record, client))
}

/// Tells the coordinator our public key; true once it took it (or will never need it).
pub(super) async fn relay_key(config: &Config) -> bool {
    let Some((record, client)) = registration(config) else {
        return false;
    };
    let public_key = match std::fs::read_to_string(config.key_path.with_extension("pub")) {
        Ok(text) => text.trim().to_owned(),
        Err(err) => {
            tracing::warn!(error = %err, "cannot read the agent's public key");
            return false;
        }
    };
    let body = RelayKey { public_key };
    match client
        .set_relay_key(record.token.expose(), &record.miner_id, &body)
        .await
    {
        Ok(_) => true,
        // An older coordinator, or one with no relay: nothing to tell.
        Err(ClientError::Refused { status: 404, .. }) => true,
        Err(err) => {
            tracing::debug!(error = %err, "the coordinator did not take the tunnel's key");
            false
        }
    }
}

/// Tells the coordinator where renters reach us now, retrying a few times.
pub(super) async fn address(config: Config, port: u16, address: String) {
    let Some((record, client)) = registration(&config) else {
        tracing::info!(%address, "not registered: the tunnel's address is not advertised");
        return;
    };
    let body = NetworkUpdate {
        miner_id: record.miner_id.clone(),
        network: NetworkInfo {
            ssh: Some(address.clone()),
            username: Some(config.advertised_user.clone()),
            open_ports: vec![port.to_string()],
            ..NetworkInfo::default()
        },
    };
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=TRIES {
        match client.network_update(record.token.expose(), &body).await {
            Ok(_) => {
                tracing::info!(%address, "advertised the tunnel's address");
                return;
            }
            Err(err) if attempt == TRIES => {
                tracing::warn!(%address, error = %err, "cannot advertise the tunnel's address");
            }
            Err(_) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}
