//! Commands from the coordinator to a miner: queued by the admin (`polaris miners …` or the
//! HTTP API), delivered in heartbeat answers, carried out by the real agent and reported back;
//! expired when nobody asks for them; kept across a restart of the coordinator. The tests
//! without an agent run on SQLite and on Firestore (`commands::sqlite::…`,
//! `commands::firestore::…`).
// The agent tests' parts (and the agent itself, with its control socket) are Linux-only.
#![cfg(target_os = "linux")]

use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::Agent;
use crate::common::admin_miners as miners;
use crate::common::{self, Backend, Server, TestResult, both_backends};

async fn commands_of(server: &Server, miner_id: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let url = format!("{}/miners/{miner_id}/commands", server.api);
    let (status, body) = common::get(&reqwest::Client::new(), &url, &server.admin_token).await?;
    assert_eq!(status, 200, "{body}");
    Ok(body)
}

/// A heartbeat of `miner_id` with the original's body, plus `command_results` when given (a
/// polaris agent always sends them); returns the HTTP status and the answer.
async fn beat(
    server: &Server,
    miner_id: &str,
    token: &str,
    results: Option<Value>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let mut body = common::fixture("heartbeat.json", miner_id);
    if let Some(results) = results {
        body["command_results"] = results;
    }
    let response = reqwest::Client::new()
        .post(format!("{}/heart_beat", server.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn queue(
    server: &Server,
    miner_id: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let response = reqwest::Client::new()
        .post(format!("{}/miners/{miner_id}/commands", server.api))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn an_admin_restart_restarts_compute_subnet_and_reads_done() -> TestResult {
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    let miner_id = agent.register(&server).await?;
    agent.start()?;
    let before = common::wait_for(Duration::from_secs(15), || async {
        agent.status().ok()?["polaris"]["compute"]["pid"].as_u64()
    })
    .await
    .ok_or("compute_subnet never ran")?;

    let (code, out, err) = miners(&server, &["restart", &miner_id, "--wait", "--json"])?;
    assert_eq!(code, Some(0), "{out}{err}");
    let entry: Value = serde_json::from_str(&out)?;
    assert_eq!(entry["state"], "done", "{entry}");
    assert_eq!(
        entry["command"],
        json!({"action": "restart", "target": "compute_subnet"})
    );
    assert!(
        entry["delivered_at"].is_string() && entry["finished_at"].is_string(),
        "{entry}"
    );

    // Done means it runs again, as a new process.
    let status = agent.status()?;
    let after = status["polaris"]["compute"]["pid"]
        .as_u64()
        .ok_or("no pid")?;
    assert_ne!(after, before, "{status}");
    assert_eq!(status["polaris"]["compute"]["phase"], "running", "{status}");

    // The admin's view says so too, and the agent acted on it once.
    let (code, shown, err) = miners(&server, &["show", &miner_id])?;
    assert_eq!(code, Some(0), "{err}");
    assert!(
        shown.contains("restart") && shown.contains("done"),
        "{shown}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = agent.status()?;
    assert_eq!(
        status["polaris"]["compute"]["pid"].as_u64(),
        Some(after),
        "restarted twice: {status}"
    );
    Ok(())
}

#[tokio::test]
async fn a_key_command_to_a_miner_without_ssh_access_fails_with_the_reason() -> TestResult {
    let (_server_home, server, agent) = Agent::with_coordinator()?;
    let miner_id = agent.register(&server).await?;
    agent.start()?;
    let key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ4LK+ElZZGrX8oCBWCVU6Kaysy/MFFNTMEGbxuQGDQ v@x";
    let (code, out, err) = miners(
        &server,
        &["authorize-key", &miner_id, "--key", key, "--wait"],
    )?;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("failed") && out.contains("POLARIS_SSH_ACCESS=keys"),
        "{out}"
    );
    let list = commands_of(&server, &miner_id).await?;
    assert_eq!(list["commands"][0]["state"], "failed", "{list}");
    assert!(
        list["authorized_keys"].is_null(),
        "nothing reported with access off: {list}"
    );
    Ok(())
}

async fn a_command_nobody_asks_for_expires_and_an_open_one_survives_a_restart(
    backend: Backend,
) -> TestResult {
    let home = tempfile::tempdir()?;
    let server = Server::start_on(&backend, home.path(), &["--command-expiry", "1s"])?;
    let http = reqwest::Client::new();
    let (miner_id, token) = common::register(&http, &server).await?;

    // No agent runs: the restart expires after its second.
    let (code, out, err) = miners(&server, &["restart", &miner_id, "--wait"])?;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("restart: expired"), "{out}");
    let list = commands_of(&server, &miner_id).await?;
    let entry = &list["commands"][0];
    assert_eq!(entry["state"], "expired", "{list}");
    assert!(entry["delivered_at"].is_null(), "{list}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("did not ask for it")),
        "{list}"
    );
    // An expired command is not delivered (`exchange` also skips one past its time before the
    // expiry loop ends it: `server::commands` unit tests).
    let (_, answer) = beat(&server, &miner_id, &token, None).await?;
    assert_eq!(answer["commands"], json!([]), "{answer}");

    // A command queued before a restart of the coordinator is still there after it (each run
    // on a free port of its own).
    drop(server);
    let server = Server::start_on(&backend, home.path(), &[])?;
    let (status, queued) = queue(
        &server,
        &miner_id,
        &server.admin_token,
        &json!({"action": "restart"}),
    )
    .await?;
    assert_eq!(status, 202, "{queued}");
    let id = queued["id"].as_str().ok_or("no id")?.to_owned();
    drop(server);
    let server = Server::start_on(&backend, home.path(), &[])?;
    let list = commands_of(&server, &miner_id).await?;
    assert_eq!(list["commands"][0]["id"], id.as_str(), "{list}");
    assert_eq!(list["commands"][0]["state"], "queued", "{list}");

    // Delivered in each heartbeat answer until a heartbeat reports it.
    for _ in 0..2 {
        let (_, answer) = beat(&server, &miner_id, &token, Some(json!([]))).await?;
        assert_eq!(answer["commands"][0]["id"], id.as_str(), "{answer}");
        assert_eq!(answer["commands"][0]["action"], "restart", "{answer}");
    }
    // The original's body (no command_results: a client that never reports) gets it no more:
    // it would carry out every copy.
    let (_, original) = beat(&server, &miner_id, &token, None).await?;
    assert_eq!(original["commands"], json!([]), "{original}");
    // Another miner cannot report this miner's command.
    let (other_id, other_token) = common::register(&http, &server).await?;
    let results = json!([{"id": id, "outcome": "done"}]);
    let (status, _) = beat(&server, &other_id, &other_token, Some(results)).await?;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let list = commands_of(&server, &miner_id).await?;
    assert_eq!(list["commands"][0]["state"], "delivered", "{list}");
    let results = json!([{"id": id, "outcome": "failed", "reason": "not here"}]);
    let (status, answer) = beat(&server, &miner_id, &token, Some(results)).await?;
    assert_eq!(status, 200);
    assert_eq!(answer["commands"], json!([]), "{answer}");
    let entry = common::wait_for(Duration::from_secs(5), || async {
        let list = commands_of(&server, &miner_id).await.ok()?;
        let entry = list["commands"][0].clone();
        (entry["state"] == "failed").then_some(entry)
    })
    .await
    .ok_or("the report was not recorded")?;
    assert_eq!(entry["reason"], "not here", "{entry}");
    Ok(())
}

async fn commands_are_only_for_the_admin_and_checked_before_they_are_queued(
    backend: Backend,
) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (miner_id, token) = common::register(&http, &server).await?;
    let admin = server.admin_token.clone();
    let cases = [
        (
            token.as_str(),
            miner_id.as_str(),
            json!({"action": "restart"}),
            403,
        ),
        (
            "nope-nope-nope-nope",
            miner_id.as_str(),
            json!({"action": "restart"}),
            401,
        ),
        (admin.as_str(), "nobody", json!({"action": "restart"}), 404),
        (
            admin.as_str(),
            miner_id.as_str(),
            json!({"action": "reboot"}),
            422,
        ),
        (admin.as_str(), miner_id.as_str(), json!({"action": 1}), 422),
        (
            admin.as_str(),
            miner_id.as_str(),
            json!({"action": "revoke_key", "fingerprint": "MD5:00"}),
            422,
        ),
        (
            admin.as_str(),
            miner_id.as_str(),
            json!({"action": "authorize_key", "public_key": "command=\"sh\" ssh-ed25519 AAAA"}),
            422,
        ),
    ];
    for (token, id, body, expected) in cases {
        let (status, answer) = queue(&server, id, token, &body).await?;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    // Nothing was queued by any of them.
    let list = commands_of(&server, &miner_id).await?;
    assert_eq!(list["commands"], json!([]), "{list}");
    // The command line refuses a bad fingerprint before it sends anything.
    let (code, _, err) = miners(&server, &["revoke-key", &miner_id, "SHA1:abc"])?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("fingerprint"), "{err}");
    Ok(())
}

both_backends!(
    a_command_nobody_asks_for_expires_and_an_open_one_survives_a_restart,
    commands_are_only_for_the_admin_and_checked_before_they_are_queued,
);
