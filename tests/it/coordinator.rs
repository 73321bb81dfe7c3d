//! The coordinator end to end: the real binary over HTTP, with the original tool's bodies.
//!
//! One suite, two stores: each test is an `async fn NAME(backend: Backend)`, run as
//! `coordinator::sqlite::NAME` and `coordinator::firestore::NAME` (a project of its own on the
//! shared Firestore emulator; skipped loudly when this run has none). What only one store has
//! (SQLite's database file) is checked for that store alone.
#![cfg(unix)]

use std::time::{Duration, Instant};

use crate::common::{
    self, Backend, Server, TestResult, Webhook, both_backends, fixture, get, heartbeat, history,
    register, wait_for,
};
use serde_json::Value;

async fn status_of(http: &reqwest::Client, server: &Server, id: &str) -> Option<String> {
    let url = format!("{}/miners/heartbeat_status", server.api);
    let (_, body) = get(http, &url, &server.admin_token).await.ok()?;
    body[id]["status"].as_str().map(str::to_owned)
}

async fn silence_goes_offline_once_recovers_once_and_survives_a_restart(
    backend: Backend,
) -> TestResult {
    let home = tempfile::tempdir()?;
    let hook = Webhook::start().await?;
    let args = [
        "--offline-after",
        "2s",
        "--alert-webhook",
        hook.url.as_str(),
    ];
    let server = Server::start_on(&backend, home.path(), &args)?;
    let http = reqwest::Client::new();

    // Register with the original body: the answer carries the id, the resources and a token.
    let response = http
        .post(format!("{}/miners/", server.api))
        .json(&fixture("registration.json", ""))
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await?;
    let id = body["miner_id"].as_str().ok_or("miner_id")?.to_owned();
    let token = body["token"].as_str().ok_or("token")?.to_owned();
    assert_eq!(id.len(), 20);
    assert_eq!(
        body["added_resources"],
        serde_json::json!(["3f1c2a9e-5b7d-4c1e-9a2f-6d8e0b4c7a15"])
    );
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));

    // The original heartbeat body with the token: 200 and the server's time.
    let response = http
        .post(format!("{}/heart_beat", server.api))
        .bearer_auth(&token)
        .json(&fixture("heartbeat.json", &id))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let beat: Value = response.json().await?;
    let last_seen_text = beat["last_seen"].as_str().ok_or("last_seen")?;
    let last_seen = chrono::DateTime::parse_from_rfc3339(last_seen_text)?;
    assert!(
        (chrono::Utc::now() - last_seen.to_utc())
            .num_seconds()
            .abs()
            < 5
    );
    assert_eq!(beat["status"], "success");
    assert_eq!(beat["commands"], serde_json::json!([]));
    // Taken after the answer arrived, so a little after the server stamped the heartbeat.
    let silent_since = Instant::now();
    assert_eq!(
        status_of(&http, &server, &id).await.as_deref(),
        Some("online")
    );

    // Silence: offline within 3 s, with exactly one history row and one alert.
    let offline = wait_for(Duration::from_secs(4), || async {
        (status_of(&http, &server, &id).await.as_deref() == Some("offline")).then(Instant::now)
    })
    .await
    .ok_or("never went offline")?;
    let detected_after = offline - silent_since;
    assert!(
        detected_after <= Duration::from_secs(3),
        "offline after {detected_after:?}"
    );
    assert!(
        detected_after >= Duration::from_millis(1900),
        "offline too early: {detected_after:?}"
    );
    wait_for(Duration::from_secs(5), || async {
        (!hook.of_kind("miner_offline").is_empty()).then_some(())
    })
    .await
    .ok_or("no offline alert")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rows = history(&http, &server, &id).await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["old_status"], "online");
    assert_eq!(rows[0]["new_status"], "offline");
    let offline_alerts = hook.of_kind("miner_offline");
    assert_eq!(offline_alerts.len(), 1, "{offline_alerts:?}");
    assert_eq!(offline_alerts[0]["miner_id"], id.as_str());
    assert!(
        offline_alerts[0]["text"]
            .as_str()
            .is_some_and(|t| t.contains(&id))
    );

    // A heartbeat again: online, one recovery alert, a second history row.
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    assert_eq!(
        status_of(&http, &server, &id).await.as_deref(),
        Some("online")
    );
    wait_for(Duration::from_secs(5), || async {
        (!hook.of_kind("miner_recovered").is_empty()).then_some(())
    })
    .await
    .ok_or("no recovery alert")?;
    let rows = history(&http, &server, &id).await?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        (
            rows[1]["old_status"].as_str(),
            rows[1]["new_status"].as_str()
        ),
        (Some("offline"), Some("online"))
    );
    assert_eq!(hook.of_kind("miner_recovered").len(), 1);
    assert_eq!(hook.of_kind("miner_offline").len(), 1);

    // Restart while the miner is silent for longer than offline_after: it keeps its record and
    // history, and gets a fresh grace period instead of an instant offline. The terminal saw
    // one line per alert and one at the stop.
    let (clean, printed) = server.stop_with_output()?;
    assert!(clean, "the server did not exit cleanly on SIGTERM");
    let alerts: Vec<&String> = printed
        .iter()
        .filter(|l| l.starts_with("alert: "))
        .collect();
    assert_eq!(alerts.len(), 2, "{printed:?}");
    assert!(alerts.iter().all(|l| l.contains(&id)), "{printed:?}");
    assert_eq!(
        printed.last().map(String::as_str),
        Some("polaris server stopped"),
        "{printed:?}"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let server = Server::start_on(&backend, home.path(), &args)?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let status = status_of(&http, &server, &id).await;
    assert!(
        matches!(status.as_deref(), Some("online" | "degraded")),
        "{status:?} during the grace period"
    );
    assert_eq!(history(&http, &server, &id).await?.len(), 2);
    assert_eq!(
        hook.of_kind("miner_offline").len(),
        1,
        "no alert during the grace period"
    );
    let (code, pod) = get(&http, &format!("{}/miners/{id}", server.api), &token).await?;
    assert_eq!(code, 200);
    assert_eq!(pod["name"], "kato");
    assert_eq!(pod["compute_resources"][0]["ram"], "15.68GB");
    // The same token still works after the restart.
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    assert!(server.stop()?);
    Ok(())
}

async fn mass_silence_holds_transitions_and_sends_one_aggregate_alert(
    backend: Backend,
) -> TestResult {
    let home = tempfile::tempdir()?;
    let hook = Webhook::start().await?;
    let server = Server::start_on(
        &backend,
        home.path(),
        &["--offline-after", "2s", "--alert-webhook", &hook.url],
    )?;
    let http = reqwest::Client::new();
    let mut miners = Vec::new();
    for _ in 0..10 {
        miners.push(register(&http, &server).await?);
    }
    for (id, token) in &miners {
        assert_eq!(heartbeat(&http, &server, id, token).await?, 200);
    }
    // Everyone goes silent at once: one aggregate alert, nobody marked offline.
    wait_for(Duration::from_secs(5), || async {
        (!hook.of_kind("mass_silence").is_empty()).then_some(())
    })
    .await
    .ok_or("no mass-silence alert")?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.of_kind("mass_silence").len(), 1);
    assert!(
        hook.of_kind("miner_offline").is_empty(),
        "{:?}",
        hook.alerts()
    );
    for (id, _) in &miners {
        assert!(history(&http, &server, id).await?.is_empty());
    }
    // Nine come back; the guard lifts and the one still silent goes offline alone.
    for (id, token) in &miners[1..] {
        assert_eq!(heartbeat(&http, &server, id, token).await?, 200);
    }
    wait_for(Duration::from_secs(5), || async {
        (hook.of_kind("miner_offline").len() == 1).then_some(())
    })
    .await
    .ok_or("the silent miner never went offline")?;
    assert_eq!(hook.of_kind("mass_silence_ended").len(), 1);
    assert_eq!(
        hook.of_kind("miner_offline")[0]["miner_id"],
        miners[0].0.as_str()
    );
    assert!(server.stop()?);
    Ok(())
}

/// Lets a miner go offline with `webhook` as the alert target, so a delivery is under way, then
/// checks that 20 heartbeats are still answered at once: the webhook's retries and 5-s timeouts
/// must never reach the heartbeat path. Returns the stopped server's /metrics text.
async fn heartbeats_while_alerting(
    backend: &Backend,
    webhook: &str,
) -> Result<String, Box<dyn std::error::Error>> {
    let home = tempfile::tempdir()?;
    let server = Server::start_on(
        backend,
        home.path(),
        &["--offline-after", "1s", "--alert-webhook", webhook],
    )?;
    let http = reqwest::Client::new();
    let (id, token) = register(&http, &server).await?;
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(2),
        "20 heartbeats took {elapsed:?}"
    );
    let metrics = common::metrics(&http, &server).await?;
    assert!(metric(&metrics, "polaris_heartbeats_received_total") >= 21.0);
    assert!(server.stop()?, "unclean exit");
    Ok(metrics)
}

async fn a_dead_webhook_never_slows_heartbeats(backend: Backend) -> TestResult {
    // A port nobody listens on: every delivery fails at once and is retried in the background.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/hook", dead.local_addr()?);
    drop(dead);
    let metrics = heartbeats_while_alerting(&backend, &url).await?;
    assert!(
        metric(&metrics, "polaris_alert_failures_total") >= 1.0,
        "{metrics}"
    );
    Ok(())
}

async fn a_webhook_that_never_answers_never_slows_heartbeats(backend: Backend) -> TestResult {
    // Accepts connections and never answers: every delivery waits for its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", silent.local_addr()?);
    let hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    heartbeats_while_alerting(&backend, &url).await?;
    hold.abort();
    Ok(())
}

async fn sigterm_commits_queued_writes_before_exiting(backend: Backend) -> TestResult {
    let (home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (id, token) = register(&http, &server).await?;
    // The first heartbeat's state write is queued, not yet committed, when the stop arrives.
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    assert!(server.stop()?, "unclean exit");
    let server = Server::start_on(&backend, home.path(), &[])?;
    let (code, pod) = get(&http, &format!("{}/miners/{id}", server.api), &token).await?;
    assert_eq!(code, 200);
    assert!(
        pod["last_seen"].is_string(),
        "the heartbeat was lost: {pod}"
    );
    assert_eq!(pod["heartbeat_status"], "online");
    assert!(server.stop()?);
    Ok(())
}

/// What the coordinator writes is its owner's alone, whatever POLARIS_HOME's own mode: the logs
/// folder 0700; the database, its WAL and shared memory, the log files and the admin token
/// 0600 (they were 0644 and 0755). An admin token file others can read is refused, with the
/// chmod to run (issue 11, finding 5).
async fn the_coordinators_files_are_private_and_a_readable_token_is_refused(
    backend: Backend,
) -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let home = tempfile::tempdir()?;
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755))?;
    let server = Server::start_on(&backend, home.path(), &[])?;
    let http = reqwest::Client::new();
    let (id, token) = register(&http, &server).await?;
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    let mode = common::mode;
    let files = common::files_under(home.path());
    let named = |name: &str| files.iter().any(|f| f.ends_with(name));
    assert!(named("admin_token"), "{files:?}");
    if backend.is_sqlite() {
        assert!(
            named("polaris.db") && named("polaris.db-wal") && named("polaris.db-shm"),
            "{files:?}"
        );
    } else {
        assert!(
            !named("polaris.db"),
            "Firestore needs no database file: {files:?}"
        );
    }
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(home.path().join("logs"))),
        "{files:?}"
    );
    let open_to_others = common::open_to_others(&files);
    assert!(open_to_others.is_empty(), "{open_to_others:?}");
    assert_eq!(mode(&home.path().join("logs")), 0o700);
    assert!(server.stop()?);

    let token_file = home.path().join("admin_token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644))?;
    let mut refused = common::polaris(home.path());
    refused.args(["server", "--listen", "127.0.0.1:0"]);
    backend.apply(&mut refused);
    let refused = refused.output()?;
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains(&format!("run `chmod 600 {}`", token_file.display())),
        "{said}"
    );
    let admin_token = std::fs::read_to_string(&token_file)?;
    assert!(
        !said.contains(admin_token.trim()),
        "never the token: {said}"
    );
    Ok(())
}

/// Refused heartbeats are counted in `/metrics` by reason and logged once per miner and reason:
/// the original's miners, which never send the token they were given, show up instead of
/// going silent (issue 11).
async fn refused_heartbeats_are_counted_by_reason_and_logged_once_per_miner(
    backend: Backend,
) -> TestResult {
    let (home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (a, token_a) = register(&http, &server).await?;
    let (b, _) = register(&http, &server).await?;
    // The original's exact request: its body and User-Agent, and no token.
    for _ in 0..3 {
        let answer = http
            .post(format!("{}/heart_beat", server.api))
            .header("User-Agent", "PolarisHeartbeat/1.0")
            .json(&fixture("heartbeat.json", &a))
            .send()
            .await?;
        assert_eq!(answer.status().as_u16(), 401);
    }
    assert_eq!(
        heartbeat(&http, &server, &a, "0123456789abcdef0123456789abcdef").await?,
        401
    );
    assert_eq!(heartbeat(&http, &server, &b, &token_a).await?, 403);
    assert_eq!(
        heartbeat(&http, &server, "NoSuchMiner", &token_a).await?,
        404
    );
    assert_eq!(heartbeat(&http, &server, &a, &token_a).await?, 200);
    let text = common::metrics(&http, &server).await?;
    for (reason, n) in [
        ("missing_token", 3.0),
        ("unknown_token", 1.0),
        ("wrong_token", 1.0),
        ("unknown_miner", 1.0),
        ("bad_body", 0.0),
    ] {
        let name = format!("polaris_heartbeats_refused_total{{reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &name), n, "{name}\n{text}");
    }
    assert_eq!(metric(&text, "polaris_heartbeats_received_total"), 1.0);
    // The log says who cannot get through, once however often.
    let logged = wait_for(Duration::from_secs(5), || async {
        let log: String = common::files_under(&home.path().join("logs"))
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        (log.matches("heartbeat refused").count() >= 4).then_some(log)
    })
    .await
    .ok_or("the refusals were not logged")?;
    let refusals_of_a = logged
        .lines()
        .filter(|l| {
            l.contains("heartbeat refused") && l.contains(&a) && l.contains("missing_token")
        })
        .count();
    assert_eq!(refusals_of_a, 1, "{logged}");
    assert!(!logged.contains(&token_a), "never a token in the log");
    Ok(())
}

/// What the original sends without its SSH settings, `ssh://None@None:None`, reads as no
/// address at registration and in `network_update` alike (it was taken at one and refused at the
/// other); a malformed address is refused at both; error bodies carry the original's `message`.
async fn missing_ssh_settings_read_the_same_everywhere_and_errors_carry_message(
    backend: Backend,
) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let placeholder = "ssh://None@None:None";
    let mut body = fixture("registration.json", "");
    body["compute_resources"][0]["network"]["ssh"] = placeholder.into();
    let answer = http
        .post(format!("{}/miners/", server.api))
        .json(&body)
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 201);
    let registered: Value = answer.json().await?;
    let id = registered["miner_id"].as_str().ok_or("no id")?.to_owned();
    let token = registered["token"].as_str().ok_or("no token")?.to_owned();
    let (_, pod) = get(&http, &format!("{}/miners/{id}", server.api), &token).await?;
    let network = &pod["compute_resources"][0]["network"];
    assert!(
        network.is_object() && network["ssh"].is_null(),
        "no address is kept: {pod}"
    );
    let mut update = fixture("network_update.json", &id);
    update["network"]["ssh"] = placeholder.into();
    let answer = http
        .post(format!("{}/network_update", server.api))
        .bearer_auth(&token)
        .json(&update)
        .send()
        .await?;
    assert_eq!(answer.status().as_u16(), 200);

    body["compute_resources"][0]["network"]["ssh"] = "ssh://kato@203.0.113.7:port".into();
    let answer = http
        .post(format!("{}/miners/", server.api))
        .json(&body)
        .send()
        .await?;
    assert_eq!(
        answer.status().as_u16(),
        422,
        "refused as network_update refuses it"
    );
    let error: Value = answer.json().await?;
    assert!(
        error["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("compute_resources[0].network.ssh: ")),
        "{error}"
    );
    assert_eq!(error["message"], error["detail"], "{error}");
    Ok(())
}

/// A request exactly as the original Python miner sends it: its body and User-Agent, no token.
async fn as_the_original(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let mut request = http
        .request(method, url)
        .header("User-Agent", "PolarisHeartbeat/1.0");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let answer = request.send().await?;
    let status = answer.status().as_u16();
    Ok((status, answer.json().await.unwrap_or(Value::Null)))
}

/// `--legacy-clients`: the original's miners, which never send the token registration gave
/// them, get through (heartbeat, network_update, Bittensor and Commune registration, their pod)
/// and are marked legacy, until the miner uses its token once; from then on, across restarts,
/// token-less requests for it are refused. Without the flag the same requests are refused and
/// counted (issue 11).
async fn the_originals_token_less_requests_pass_only_with_legacy_clients(
    backend: Backend,
) -> TestResult {
    let http = reqwest::Client::new();
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let calls = |api: &str, id: &str| {
        let mut update = fixture("network_update.json", id);
        update["network"]["ssh"] = "ssh://None@None:None".into();
        vec![
            (
                post.clone(),
                format!("{api}/heart_beat"),
                Some(fixture("heartbeat.json", id)),
            ),
            (post.clone(), format!("{api}/network_update"), Some(update)),
            (
                post.clone(),
                format!("{api}/bittensor/register"),
                Some(fixture("bittensor_register.json", id)),
            ),
            (
                post.clone(),
                format!("{api}/commune/register"),
                Some(fixture("commune_register.json", id)),
            ),
            (get.clone(), format!("{api}/miners/{id}"), None),
        ]
    };

    // Without the flag: every one is refused, and the heartbeat is counted.
    let (_plain_home, plain) = common::coordinator_on(&backend)?;
    let (id, _) = register(&http, &plain).await?;
    for (method, url, body) in calls(&plain.api, &id) {
        let (status, answer) = as_the_original(&http, method, url.clone(), body).await?;
        assert_eq!(status, 401, "{url}: {answer}");
    }
    let text = common::metrics(&http, &plain).await?;
    assert_eq!(
        metric(
            &text,
            "polaris_heartbeats_refused_total{reason=\"missing_token\"}"
        ),
        1.0
    );

    // With it: all pass, and the miner is marked legacy (a coordinator of its own: for
    // Firestore, a project of its own too).
    let backend = backend.fresh();
    let home = tempfile::tempdir()?;
    let server = Server::start_on(&backend, home.path(), &["--legacy-clients"])?;
    let (id, token) = register(&http, &server).await?;
    for (method, url, body) in calls(&server.api, &id) {
        let (status, answer) = as_the_original(&http, method, url.clone(), body).await?;
        assert_eq!(status, 200, "{url}: {answer}");
    }
    let (_, pod) = as_the_original(
        &http,
        get.clone(),
        format!("{}/miners/{id}", server.api),
        None,
    )
    .await?;
    assert_eq!(pod["legacy"], true, "{pod}");
    assert_eq!(pod["heartbeat_status"], "online", "{pod}");
    assert!(
        pod["bittensor_details"].is_object() && pod["commune_details"].is_object(),
        "{pod}"
    );
    let text = common::metrics(&http, &server).await?;
    assert_eq!(metric(&text, "polaris_legacy_miners"), 1.0, "{text}");
    let (unknown, _) = as_the_original(
        &http,
        post.clone(),
        format!("{}/heart_beat", server.api),
        Some(fixture("heartbeat.json", "NoSuchMiner")),
    )
    .await?;
    assert_eq!(unknown, 404);

    // The miner moves to polaris and uses its token: token-less requests for it stop, and stay
    // stopped after a restart.
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    let refused = |server: &Server| {
        let url = format!("{}/heart_beat", server.api);
        let body = fixture("heartbeat.json", &id);
        as_the_original(&http, post.clone(), url, Some(body))
    };
    let (status, answer) = refused(&server).await?;
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("has used its token")),
        "{answer}"
    );
    assert!(server.stop()?);
    let server = Server::start_on(&backend, home.path(), &["--legacy-clients"])?;
    let (status, answer) = refused(&server).await?;
    assert_eq!(status, 401, "still refused after a restart: {answer}");
    assert_eq!(heartbeat(&http, &server, &id, &token).await?, 200);
    Ok(())
}

async fn a_client_that_never_finishes_its_request_cannot_block_the_stop(
    backend: Backend,
) -> TestResult {
    use std::io::Write;
    let (_home, server) = common::coordinator_on(&backend)?;
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut stuck = std::net::TcpStream::connect(address)?;
    stuck.write_all(b"POST /api/v1/heart_beat HTTP/1.1\r\nHost: x")?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    assert!(server.stop()?, "unclean exit");
    assert!(
        started.elapsed() < Duration::from_secs(14),
        "stop took {:?}",
        started.elapsed()
    );
    drop(stuck);
    Ok(())
}

async fn tokens_of_one_miner_never_reach_another(backend: Backend) -> TestResult {
    let (home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (a, token_a) = register(&http, &server).await?;
    let (b, token_b) = register(&http, &server).await?;
    assert_ne!(token_a, token_b);
    let pod = |id: &str| format!("{}/miners/{id}", server.api);
    assert_eq!(get(&http, &pod(&a), &token_a).await?.0, 200);
    assert_eq!(get(&http, &pod(&b), &token_a).await?.0, 403);
    assert_eq!(get(&http, &pod(&a), &server.admin_token).await?.0, 200);
    assert_eq!(heartbeat(&http, &server, &b, &token_a).await?, 403);
    assert_eq!(
        heartbeat(&http, &server, &a, &server.admin_token).await?,
        403
    );
    // Admin routes refuse miner tokens.
    let list = format!("{}/miners", server.api);
    assert_eq!(get(&http, &list, &token_a).await?.0, 403);
    let (code, page) = get(&http, &list, &server.admin_token).await?;
    assert_eq!(code, 200);
    assert_eq!(page["miners"].as_array().map(Vec::len), Some(2));
    // No answer ever carries a token or the plaintext password of the original body.
    let (_, shown) = get(&http, &pod(&a), &token_a).await?;
    let text = shown.to_string();
    assert!(
        !text.contains(&token_a) && !text.contains("plaintext-in-the-original"),
        "{text}"
    );
    assert!(server.stop()?);
    let stored = backend.stored_bytes(home.path())?;
    assert!(stored.len() > 100, "nothing stored? {} bytes", stored.len());
    for needle in [b"plaintext-in-the-original".as_slice(), token_a.as_bytes()] {
        assert!(
            !stored.windows(needle.len()).any(|w| w == needle),
            "{} reached the store",
            String::from_utf8_lossy(needle)
        );
    }
    Ok(())
}

async fn wallet_and_network_updates_are_stored_and_shown(backend: Backend) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (id, token) = register(&http, &server).await?;
    for (route, file) in [
        ("network_update", "network_update.json"),
        ("bittensor/register", "bittensor_register.json"),
        ("commune/register", "commune_register.json"),
    ] {
        let response = http
            .post(format!("{}/{route}", server.api))
            .bearer_auth(&token)
            .json(&fixture(file, &id))
            .send()
            .await?;
        assert_eq!(response.status(), 200, "{route}");
        let body: Value = response.json().await?;
        assert_eq!(body["status"], "success", "{route}");
    }
    let (_, pod) = get(&http, &format!("{}/miners/{id}", server.api), &token).await?;
    assert_eq!(pod["bittensor_details"]["netuid"], 49);
    assert_eq!(pod["commune_details"]["commune_uid"], "17");
    assert_eq!(pod["status"], "pending_verification");
    let response = http
        .patch(format!("{}/miners/{id}/status", server.api))
        .bearer_auth(&server.admin_token)
        .json(&serde_json::json!({"status": "verified"}))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let (_, pod) = get(&http, &format!("{}/miners/{id}", server.api), &token).await?;
    assert_eq!(pod["status"], "verified");
    assert!(server.stop()?);
    Ok(())
}

async fn health_metrics_and_openapi_are_served(backend: Backend) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let health: Value = http
        .get(format!("{}/healthz", server.base))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(health["status"], "ok");
    let me: Value = http
        .get(format!("{}/whoami", server.api))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(me["ip"], "127.0.0.1");
    let metrics = common::metrics(&http, &server).await?;
    for name in [
        "polaris_heartbeats_received_total",
        "polaris_status_transitions_total{to=\"offline\"}",
        "polaris_store_queue_depth",
        "polaris_alert_failures_total",
        "polaris_miners{status=\"online\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    let doc: Value = http
        .get(format!("{}/openapi.json", server.api))
        .send()
        .await?
        .json()
        .await?;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    for path in [
        "/api/v1/heart_beat",
        "/api/v1/miners/",
        "/api/v1/miners/{id}",
        "/api/v1/network_update",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["HeartbeatRequest"].is_object());
    assert!(server.stop()?);
    Ok(())
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

both_backends!(
    silence_goes_offline_once_recovers_once_and_survives_a_restart,
    mass_silence_holds_transitions_and_sends_one_aggregate_alert,
    a_dead_webhook_never_slows_heartbeats,
    a_webhook_that_never_answers_never_slows_heartbeats,
    sigterm_commits_queued_writes_before_exiting,
    the_coordinators_files_are_private_and_a_readable_token_is_refused,
    refused_heartbeats_are_counted_by_reason_and_logged_once_per_miner,
    missing_ssh_settings_read_the_same_everywhere_and_errors_carry_message,
    the_originals_token_less_requests_pass_only_with_legacy_clients,
    a_client_that_never_finishes_its_request_cannot_block_the_stop,
    tokens_of_one_miner_never_reach_another,
    wallet_and_network_updates_are_stored_and_shown,
    health_metrics_and_openapi_are_served,
);
