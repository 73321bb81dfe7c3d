//! The agent's heartbeat sender against a real coordinator.

mod common;

use std::time::Duration;

use common::{Server, TestResult};
use polaris::agent::heartbeat::{self, Config, State};
use polaris::config::Secret;
use polaris::register::record::{self, Network, RegistrationRecord};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

async fn until(
    state: &mut watch::Receiver<State>,
    what: impl Fn(&State) -> bool,
) -> Result<State, Box<dyn std::error::Error>> {
    let waited = state.wait_for(|s| what(s));
    Ok(tokio::time::timeout(Duration::from_secs(15), waited)
        .await??
        .clone())
}

#[tokio::test]
async fn heartbeats_start_once_registered_and_stop_being_acknowledged_without_a_coordinator()
-> TestResult {
    let server_home = tempfile::tempdir()?;
    let server = Server::start(server_home.path(), &[])?;
    let home = tempfile::tempdir()?;
    let mut config = Config::new(home.path().to_path_buf(), Duration::from_millis(300));
    config.registration_poll = Duration::from_millis(50);
    config.retry_start = Duration::from_millis(20);
    let (tx, mut state) = watch::channel(State::default());
    let cancel = CancellationToken::new();
    let task = tokio::spawn(heartbeat::run(config, tx, None, cancel.clone()));

    // Not registered: it waits quietly.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state.borrow().acknowledged, 0);
    assert_eq!(state.borrow().miner_id, None);

    let http = reqwest::Client::new();
    let (miner_id, token) = common::register(&http, &server).await?;
    record::save(
        home.path(),
        &RegistrationRecord {
            miner_id: miner_id.clone(),
            token: Secret::new(token),
            username: "agent-test".into(),
            network: Network::Standard,
            server_url: server.api.clone(),
            resource_ids: vec![],
            registered_at: chrono::Utc::now(),
            bittensor: None,
            commune: None,
        },
    )?;
    let acknowledged = until(&mut state, |s| s.acknowledged >= 2).await?;
    assert_eq!(acknowledged.miner_id.as_deref(), Some(miner_id.as_str()));
    assert!(acknowledged.last_rtt_ms.is_some_and(|ms| ms > 0.0));
    let statuses: Value = http
        .get(format!("{}/miners/heartbeat_status", server.api))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(statuses[&miner_id]["status"], "online", "{statuses}");

    // The coordinator goes away: failures are counted, the sender keeps going.
    drop(server);
    let failing = until(&mut state, |s| s.failures >= 3).await?;
    let error = failing.last_error.unwrap_or_default();
    assert!(error.contains("unreachable"), "{error}");
    assert!(!task.is_finished(), "never gives up");
    cancel.cancel();
    task.await?;
    Ok(())
}
