//! `--store firestore` when things go wrong (issue 14): credentials that are garbage, an
//! emulator nobody listens on and a missing project stop the start in seconds with one clear
//! line; a Firestore outage while the coordinator runs costs no heartbeat and no transition.
#![cfg(unix)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{
    self, Backend, Server, TestResult, Webhook, firestore::Emulator, fixture, get, heartbeat,
    history, register, services::free_port, wait_for,
};

/// What a `polaris` run that must fail left: exit code, stdout, stderr and how long it took.
struct Failed {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `command` and waits at most `limit` for it to exit (killed, and an error, if not).
fn exits_within(
    mut command: Command,
    limit: Duration,
) -> Result<Failed, Box<dyn std::error::Error>> {
    let started = Instant::now();
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (mut out, mut err) = (
        child.stdout.take().ok_or("no stdout")?,
        child.stderr.take().ok_or("no stderr")?,
    );
    let out_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            return Err(format!("still running after {limit:?}; it said: {stderr}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    Ok(Failed {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        took,
    })
}

/// `polaris server --listen 127.0.0.1:0 --store firestore ARGS` in `home`, from the cleared
/// environment (so neither FIRESTORE_EMULATOR_HOST nor the machine's own Google credentials
/// reach it) plus `env`.
fn firestore_server(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = common::polaris(home);
    command
        .args(["server", "--listen", "127.0.0.1:0", "--store", "firestore"])
        .args(args)
        .envs(env.iter().copied());
    command
}

/// The one line of a start-up failure (other lines fail the test).
/// Starts a Firestore coordinator with one variable set (`setting`) that must stop it: it
/// exits non-zero within 10 s (printed, labelled `what`, for the test's log).
fn start_fails(
    home: &std::path::Path,
    setting: (&str, &str),
    what: &str,
) -> Result<Failed, Box<dyn std::error::Error>> {
    let failed = exits_within(
        firestore_server(
            home,
            &["--firestore-project", "polaris-test-project"],
            &[setting],
        ),
        Duration::from_secs(10),
    )?;
    println!(
        "{what}: exit {:?} after {:?}: {}",
        failed.code, failed.took, failed.stderr
    );
    assert!(
        matches!(failed.code, Some(c) if c != 0),
        "{}",
        failed.stderr
    );
    Ok(failed)
}

fn one_line(failed: &Failed) -> String {
    let lines: Vec<&str> = failed
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "one clear line, not:\n{}", failed.stderr);
    assert!(
        !failed.stdout.contains("listening on"),
        "it must not start: {}",
        failed.stdout
    );
    lines[0].to_owned()
}

#[test]
fn garbage_credentials_stop_the_start_in_seconds_naming_the_variable_not_the_contents() -> TestResult
{
    let home = tempfile::tempdir()?;
    let file = home.path().join("credentials.json");
    let secret = "private_key-PLEASE-NEVER-PRINT-ME-4f1c";
    std::fs::write(&file, format!("this is not JSON {{ {secret}"))?;
    let path = file.to_string_lossy().into_owned();
    let failed = start_fails(
        home.path(),
        ("GOOGLE_APPLICATION_CREDENTIALS", &path),
        "garbage credentials",
    )?;
    let line = one_line(&failed);
    assert!(line.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{line}");
    assert!(
        !failed.stderr.contains(secret) && !failed.stdout.contains(secret),
        "the file's contents were printed: {line}"
    );
    assert!(
        !home.path().join("polaris.db").exists(),
        "no SQLite instead"
    );
    Ok(())
}

#[test]
fn an_emulator_nobody_listens_on_stops_the_start_in_seconds_naming_it() -> TestResult {
    let home = tempfile::tempdir()?;
    let closed = format!("127.0.0.1:{}", free_port()?);
    let failed = start_fails(
        home.path(),
        ("FIRESTORE_EMULATOR_HOST", &closed),
        "closed emulator port",
    )?;
    let line = one_line(&failed);
    assert!(
        line.contains(&closed) && line.contains("FIRESTORE_EMULATOR_HOST"),
        "{line}"
    );
    Ok(())
}

/// Even on a busy port: the missing project is the problem to report (it is found before the
/// listener is bound), and no fixed port is assumed.
#[test]
fn firestore_without_a_project_is_a_usage_error_naming_the_flag() -> TestResult {
    let home = tempfile::tempdir()?;
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = busy.local_addr()?.to_string();
    let mut command = common::polaris(home.path());
    command.args(["server", "--store", "firestore", "--listen", &address]);
    let failed = exits_within(command, Duration::from_secs(10))?;
    assert_eq!(failed.code, Some(2), "a usage error: {}", failed.stderr);
    let line = one_line(&failed);
    assert!(line.contains("--firestore-project"), "{line}");
    assert!(
        !home.path().join("polaris.db").exists(),
        "no SQLite instead"
    );
    Ok(())
}

/// A status_history row as (old, new).
fn pairs(rows: &[serde_json::Value]) -> Vec<(String, String)> {
    rows.iter()
        .map(|r| {
            (
                r["old_status"].as_str().unwrap_or("?").to_owned(),
                r["new_status"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// Firestore goes away while the coordinator runs, and comes back on the same address.
///
/// The emulator keeps its data in memory, so a plain restart would come back empty, which no
/// real outage does (Firestore keeps the data; only the connection is lost): the test's own
/// [`Emulator`] exports the project when stopped and the restarted one is seeded from that
/// export. The coordinator must not notice more than a queue: heartbeats are answered 200
/// throughout, a miner that falls silent and one that signs off during the outage are offline
/// at once (in memory), no alert is sent for a change not yet stored, the queue
/// (`polaris_store_queue_depth`) is visible in /metrics, and once the emulator is back every
/// queued transition is written (read back through a second coordinator started afterwards on
/// the same project, so it comes from the store, not the first one's memory) and alerted once.
// Two workers: the emulator's stop and restart block one (block_in_place) while the steady
// miner's heartbeats go on from the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firestore_outage_costs_no_heartbeat_and_no_transition() -> TestResult {
    let Some(mut emulator) = Emulator::start()? else {
        return Ok(());
    };
    let backend = Backend::on_emulator(emulator.addr());
    let Backend::Firestore { project, .. } = &backend else {
        return Err("not a Firestore backend".into());
    };
    let project = project.clone();
    let hook = Webhook::start().await?;
    let home = tempfile::tempdir()?;
    let server = Server::start_on(
        &backend,
        home.path(),
        &["--offline-after", "2s", "--alert-webhook", &hook.url],
    )?;
    let http = reqwest::Client::new();
    let (silent, silent_token) = register(&http, &server).await?;
    let (leaving, leaving_token) = register(&http, &server).await?;
    let (steady, steady_token) = register(&http, &server).await?;
    for (id, token) in [
        (&silent, &silent_token),
        (&leaving, &leaving_token),
        (&steady, &steady_token),
    ] {
        assert_eq!(heartbeat(&http, &server, id, token).await?, 200);
    }
    // Everything so far is in the store before it goes away.
    wait_for(Duration::from_secs(10), || async {
        let text = common::metrics(&http, &server).await.ok()?;
        (metric(&text, "polaris_store_queue_depth") == 0.0).then_some(())
    })
    .await
    .ok_or("the store's queue never emptied before the outage")?;

    // The steady miner beats every 300 ms from now until the end, outage or not.
    let beats = Arc::new(Mutex::new(Vec::<(u16, Duration)>::new()));
    let beater = {
        let (http, beats) = (http.clone(), Arc::clone(&beats));
        let url = format!("{}/heart_beat", server.api);
        let body = fixture("heartbeat.json", &steady);
        let token = steady_token.clone();
        tokio::spawn(async move {
            loop {
                let sent = Instant::now();
                let answer = http
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&body)
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await;
                let status = answer.map_or(0, |a| a.status().as_u16());
                if let Ok(mut b) = beats.lock() {
                    b.push((status, sent.elapsed()));
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };
    tokio::task::block_in_place(|| emulator.stop(&project))?;
    let outage = Instant::now();
    // The steady miner keeps beating, the leaving one signs off, the silent one says nothing.
    let mut sign_off = fixture("heartbeat.json", &leaving);
    sign_off["status"] = "offline".into();
    let answer = http
        .post(format!("{}/heart_beat", server.api))
        .bearer_auth(&leaving_token)
        .json(&sign_off)
        .timeout(Duration::from_secs(5))
        .send()
        .await?;
    assert_eq!(answer.status(), 200, "a sign-off during the outage");
    let status_of = |id: String| {
        let http = http.clone();
        let url = format!("{}/miners/heartbeat_status", server.api);
        let admin = server.admin_token.clone();
        async move {
            let (_, body) = get(&http, &url, &admin).await.ok()?;
            body[&id]["status"].as_str().map(str::to_owned)
        }
    };
    let queued;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = common::metrics(&http, &server).await?;
        let depth = metric(&text, "polaris_store_queue_depth");
        let offline = status_of(silent.clone()).await.as_deref() == Some("offline")
            && status_of(leaving.clone()).await.as_deref() == Some("offline");
        if offline && depth > 0.0 {
            queued = depth;
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "15 s into the outage: both offline {offline}, queue depth {depth}\n{text}"
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_of(steady.clone()).await.as_deref(),
        Some("online"),
        "the steady miner during the outage"
    );
    assert!(
        hook.of_kind("miner_offline").is_empty(),
        "an alert for a change not yet stored: {:?}",
        hook.alerts()
    );
    println!(
        "outage: both offline and {queued} writes queued {:?} in",
        outage.elapsed()
    );

    // Back on the same port: the queue drains, each offline is alerted once.
    tokio::task::block_in_place(|| emulator.restart())?;
    let back = Instant::now();
    wait_for(Duration::from_secs(30), || async {
        let text = common::metrics(&http, &server).await.ok()?;
        (metric(&text, "polaris_store_queue_depth") == 0.0
            && hook.of_kind("miner_offline").len() >= 2)
            .then_some(())
    })
    .await
    .ok_or_else(|| format!("30 s after the restart: alerts {:?}", hook.alerts()))?;
    println!(
        "store caught up {:?} after the emulator came back",
        back.elapsed()
    );
    // Time for any alert that would come twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    beater.abort();
    let beats = beats.lock().map(|b| b.clone()).unwrap_or_default();
    let slowest = beats
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    println!(
        "steady miner: {} heartbeats across the outage, slowest answered in {slowest:?}",
        beats.len()
    );
    assert!(beats.len() >= 10, "{beats:?}");
    assert!(
        beats.iter().all(|(status, _)| *status == 200),
        "every heartbeat answered 200: {beats:?}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "a heartbeat took {slowest:?} across the outage"
    );
    let offline_alerts: Vec<String> = hook
        .of_kind("miner_offline")
        .iter()
        .filter_map(|a| a["miner_id"].as_str().map(str::to_owned))
        .collect();
    let mut sorted = offline_alerts.clone();
    sorted.sort();
    let mut expected = vec![silent.clone(), leaving.clone()];
    expected.sort();
    assert_eq!(
        sorted,
        expected,
        "one offline alert each: {:?}",
        hook.alerts()
    );
    assert!(server.stop()?, "unclean exit");

    // A coordinator started afterwards reads the transitions from the store.
    let home = tempfile::tempdir()?;
    let fresh = Server::start_on(&backend, home.path(), &[])?;
    let offline = [("online".to_owned(), "offline".to_owned())];
    assert_eq!(
        pairs(&history(&http, &fresh, &silent).await?),
        offline,
        "silent"
    );
    assert_eq!(
        pairs(&history(&http, &fresh, &leaving).await?),
        offline,
        "signed off"
    );
    assert_eq!(pairs(&history(&http, &fresh, &steady).await?), [], "steady");
    // The miners registered before the outage are still known, with their tokens.
    assert_eq!(heartbeat(&http, &fresh, &steady, &steady_token).await?, 200);
    assert!(fresh.stop()?);
    assert!(
        emulator.is_running(),
        "the emulator died: {}",
        emulator.log()
    );
    Ok(())
}

/// What the outage test stands on: the test's own emulator, stopped and started again, comes
/// back on the same port with the project's documents (and without what came after the stop's
/// export).
#[test]
fn the_test_emulator_keeps_a_projects_documents_across_stop_and_restart() -> TestResult {
    use crate::common::firestore::{request, unique_project};
    let Some(mut emulator) = Emulator::start()? else {
        return Ok(());
    };
    let project = unique_project("emu");
    let doc = format!("/v1/projects/{project}/databases/(default)/documents/things/one");
    let (status, body) = request(
        &emulator.addr(),
        "PATCH",
        &doc,
        r#"{"fields":{"kept":{"stringValue":"yes"}}}"#,
    )?;
    assert_eq!(status, 200, "{body}");
    let port = emulator.port;
    tokio::task::block_in_place(|| emulator.stop(&project))?;
    assert!(
        request(&emulator.addr(), "GET", &doc, "").is_err(),
        "still answering after the stop"
    );
    tokio::task::block_in_place(|| emulator.restart())?;
    assert_eq!(emulator.port, port);
    let (status, body) = request(&emulator.addr(), "GET", &doc, "")?;
    assert_eq!(status, 200, "{body}");
    let parsed: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(parsed["fields"]["kept"]["stringValue"], "yes", "{body}");
    Ok(())
}
