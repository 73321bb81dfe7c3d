//! Several coordinators on one Firestore project (issue 14): two real `polaris server`
//! processes on the shared emulator, one loopback webhook, miners heart-beating to both in turn,
//! and one of the two killed with SIGKILL mid-run.
#![cfg(unix)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{
    self, Backend, Server, TestResult, Webhook, firestore, fixture, history, register, wait_for,
};

/// A heartbeat to the coordinator whose API is `api`; returns the HTTP status.
async fn beat(
    http: &reqwest::Client,
    api: &str,
    id: &str,
    token: &str,
) -> Result<u16, Box<dyn std::error::Error + Send + Sync>> {
    let answer = http
        .post(format!("{api}/heart_beat"))
        .bearer_auth(token)
        .json(&fixture("heartbeat.json", id))
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    Ok(answer.status().as_u16())
}

/// A metric's value in a /metrics text (NaN when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// 32 random bytes as hex: the admin token both replicas share.
fn random_token() -> Result<String, Box<dyn std::error::Error>> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What the heartbeat driver does: which miners beat, whether A still takes heartbeats, and
/// every heartbeat that was not answered 200.
#[derive(Default)]
struct Driver {
    beating: HashSet<usize>,
    a_alive: bool,
    rounds: usize,
    failures: Vec<String>,
}

/// Alerts received, per (miner, kind).
fn alert_counts(hook: &Webhook) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for alert in hook.alerts() {
        let miner = alert["miner_id"].as_str().unwrap_or("").to_owned();
        let kind = alert["kind"].as_str().unwrap_or("").to_owned();
        *counts.entry((miner, kind)).or_insert(0) += 1;
    }
    counts
}

/// `(old_status, new_status)` of each of a miner's status_history rows.
async fn transitions(
    http: &reqwest::Client,
    server: &Server,
    id: &str,
) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    Ok(history(http, server, id)
        .await?
        .iter()
        .map(|row| {
            (
                row["old_status"].as_str().unwrap_or("?").to_owned(),
                row["new_status"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect())
}

/// Two replicas A and B share the miners: a miner registered on one is accepted by the other
/// at once, and heartbeats go to either in turn. Each status transition is recorded once and
/// alerted once across both. When A is killed, B owns all 64 shards within one offline_after,
/// no miner that kept beating goes offline, and the miners that fall silent afterwards go
/// offline once each.
#[tokio::test]
async fn two_replicas_record_each_transition_once_and_one_takes_over_when_the_other_dies()
-> TestResult {
    let Some(emulator) = firestore::shared() else {
        return Ok(());
    };
    let backend = Backend::on_emulator(emulator);
    let offline_after = Duration::from_secs(3);
    let hook = Webhook::start().await?;
    let admin = random_token()?;
    let env = [("POLARIS_ADMIN_TOKEN", admin.as_str())];
    let (home_a, home_b) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let args = |name: &'static str| {
        vec![
            "--offline-after",
            "3s",
            "--alert-webhook",
            hook.url.as_str(),
            "--replica",
            name,
        ]
    };
    let a = Server::start_with(&backend, home_a.path(), &args("a"), &env)?;
    let b = Server::start_with(&backend, home_b.path(), &args("b"), &env)?;
    let http = reqwest::Client::new();

    // Both see two members and the 64 shards are divided between them.
    let divided = wait_for(Duration::from_secs(10), || async {
        let ta = common::metrics(&http, &a).await.ok()?;
        let tb = common::metrics(&http, &b).await.ok()?;
        let members = (
            metric(&ta, "polaris_replica_members"),
            metric(&tb, "polaris_replica_members"),
        );
        let owned = (
            metric(&ta, "polaris_replica_shards_owned"),
            metric(&tb, "polaris_replica_shards_owned"),
        );
        (members == (2.0, 2.0) && owned.0 > 0.0 && owned.1 > 0.0 && owned.0 + owned.1 == 64.0)
            .then_some(owned)
    })
    .await;
    let owned = match divided {
        Some(owned) => owned,
        None => {
            let ta = common::metrics(&http, &a).await?;
            let tb = common::metrics(&http, &b).await?;
            return Err(format!(
                "the shards were not divided between two members within 10 s\nA:\n{ta}\nB:\n{tb}"
            )
            .into());
        }
    };
    println!("shards owned: A {} B {}", owned.0, owned.1);

    // 12 miners, half registered on each; each is accepted by the other replica at once.
    let mut miners = Vec::new();
    for i in 0..12 {
        let (on, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let (id, token) = register(&http, on).await?;
        let status = beat(&http, &other.api, &id, &token)
            .await
            .map_err(|e| e.to_string())?;
        assert_eq!(
            status, 200,
            "a miner registered on one replica refused by the other"
        );
        miners.push((id, token));
    }
    // 0..6 beat throughout; 6, 7 fall silent for good before the kill; 8, 9 fall silent and
    // come back before the kill; 10, 11 fall silent after the kill.
    let steady: Vec<usize> = (0..6).collect();
    let (gone, back, late) = ([6, 7], [8, 9], [10, 11]);

    let driver = Arc::new(Mutex::new(Driver {
        beating: (0..12).collect(),
        a_alive: true,
        ..Driver::default()
    }));
    let beats = {
        let (driver, miners, http) = (Arc::clone(&driver), miners.clone(), http.clone());
        let (api_a, api_b) = (a.api.clone(), b.api.clone());
        tokio::spawn(async move {
            loop {
                let (beating, a_alive, round) = {
                    let Ok(mut d) = driver.lock() else { return };
                    d.rounds += 1;
                    (d.beating.clone(), d.a_alive, d.rounds)
                };
                for (i, (id, token)) in miners.iter().enumerate() {
                    if !beating.contains(&i) {
                        continue;
                    }
                    // Alternating, never sticky: miner i goes to A on every other round.
                    let to_a = a_alive && (i + round) % 2 == 0;
                    let api = if to_a { &api_a } else { &api_b };
                    let outcome = beat(&http, api, id, token).await;
                    if !matches!(outcome, Ok(200)) {
                        let why = match outcome {
                            Ok(status) => status.to_string(),
                            Err(e) => e.to_string(),
                        };
                        let replica = if to_a { "A" } else { "B" };
                        if let Ok(mut d) = driver.lock() {
                            d.failures
                                .push(format!("round {round}: miner {i} to {replica}: {why}"));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(800)).await;
            }
        })
    };
    let set_beating = |which: &[usize], on: bool| {
        if let Ok(mut d) = driver.lock() {
            for i in which {
                if on {
                    d.beating.insert(*i);
                } else {
                    d.beating.remove(i);
                }
            }
        }
    };
    let id_of = |i: usize| miners[i].0.clone();
    let count = |i: usize, kind: &str| {
        alert_counts(&hook)
            .get(&(id_of(i), kind.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    // Two rounds with everyone beating to both replicas.
    wait_for(Duration::from_secs(5), || async {
        driver.lock().ok().filter(|d| d.rounds >= 3).map(|_| ())
    })
    .await
    .ok_or("the heartbeat driver did not run")?;

    // Four fall silent: each goes offline once, alerted once.
    set_beating(&gone, false);
    set_beating(&back, false);
    let silent = gone.iter().chain(&back).copied().collect::<Vec<_>>();
    wait_for(Duration::from_secs(15), || async {
        silent
            .iter()
            .all(|&i| count(i, "miner_offline") >= 1)
            .then_some(())
    })
    .await
    .ok_or_else(|| {
        format!(
            "not all of {silent:?} went offline: {:?}",
            alert_counts(&hook)
        )
    })?;
    // Two come back: one recovery each.
    set_beating(&back, true);
    wait_for(Duration::from_secs(10), || async {
        back.iter()
            .all(|&i| count(i, "miner_recovered") >= 1)
            .then_some(())
    })
    .await
    .ok_or_else(|| format!("{back:?} did not recover: {:?}", alert_counts(&hook)))?;
    for &i in &gone {
        assert_eq!(
            transitions(&http, &b, &id_of(i)).await?,
            [("online".to_owned(), "offline".to_owned())],
            "miner {i}, gone silent, read on B"
        );
    }
    for &i in &back {
        assert_eq!(
            transitions(&http, &a, &id_of(i)).await?,
            [
                ("online".to_owned(), "offline".to_owned()),
                ("offline".to_owned(), "online".to_owned())
            ],
            "miner {i}, back again, read on A"
        );
    }

    // A dies: heartbeats go to B alone from now on (switched first, so none is in flight to A).
    let before_kill = driver.lock().map(|d| d.rounds).unwrap_or(0);
    if let Ok(mut d) = driver.lock() {
        d.a_alive = false;
    }
    wait_for(Duration::from_secs(5), || async {
        driver
            .lock()
            .ok()
            .filter(|d| d.rounds >= before_kill + 2)
            .map(|_| ())
    })
    .await
    .ok_or("the heartbeat driver stalled")?;
    a.kill()?;
    let killed = Instant::now();
    set_beating(&late, false);
    let takeover = wait_for(Duration::from_secs(10), || async {
        let text = common::metrics(&http, &b).await.ok()?;
        (metric(&text, "polaris_replica_shards_owned") == 64.0
            && metric(&text, "polaris_replica_members") == 1.0)
            .then(|| killed.elapsed())
    })
    .await
    .ok_or("B did not take over all 64 shards within 10 s of the kill")?;
    println!("takeover: B owned all 64 shards {takeover:?} after A was killed");
    assert!(
        takeover <= offline_after,
        "B took {takeover:?} to own every shard (offline_after {offline_after:?})"
    );
    let text = common::metrics(&http, &b).await?;
    let holders = text
        .lines()
        .filter(|l| l.starts_with("polaris_shard_holder{") && l.contains("replica=\"b\""))
        .count();
    assert_eq!(holders, 64, "{text}");

    // The two that fell silent after the kill go offline once each, swept by B.
    wait_for(Duration::from_secs(15), || async {
        late.iter()
            .all(|&i| count(i, "miner_offline") >= 1)
            .then_some(())
    })
    .await
    .ok_or_else(|| format!("{late:?} did not go offline: {:?}", alert_counts(&hook)))?;
    // Another offline_after and more for anything that would come twice.
    tokio::time::sleep(offline_after + Duration::from_secs(2)).await;
    beats.abort();

    let failures = driver
        .lock()
        .map(|d| d.failures.clone())
        .unwrap_or_default();
    assert!(
        failures.is_empty(),
        "heartbeats not answered 200: {failures:?}"
    );
    let counts = alert_counts(&hook);
    println!("alerts: {counts:?}");
    for &i in &steady {
        assert_eq!(
            transitions(&http, &b, &id_of(i)).await?,
            [],
            "miner {i} kept beating and must never go offline"
        );
        assert_eq!(count(i, "miner_offline"), 0, "false offline alert for {i}");
    }
    for &i in gone.iter().chain(&late) {
        assert_eq!(
            transitions(&http, &b, &id_of(i)).await?,
            [("online".to_owned(), "offline".to_owned())],
            "miner {i}"
        );
        assert_eq!(count(i, "miner_offline"), 1, "miner {i}: {counts:?}");
        assert_eq!(count(i, "miner_recovered"), 0, "miner {i}: {counts:?}");
    }
    for &i in &back {
        assert_eq!(
            transitions(&http, &b, &id_of(i)).await?.len(),
            2,
            "miner {i}"
        );
        assert_eq!(count(i, "miner_offline"), 1, "miner {i}: {counts:?}");
        assert_eq!(count(i, "miner_recovered"), 1, "miner {i}: {counts:?}");
    }
    assert!(hook.of_kind("mass_silence").is_empty(), "{counts:?}");
    let text = common::metrics(&http, &b).await?;
    println!(
        "B: documents written {}, superseded {}",
        metric(&text, "polaris_store_documents_written_total"),
        metric(&text, "polaris_store_superseded_total")
    );
    assert!(b.stop()?, "B did not stop cleanly");
    Ok(())
}
