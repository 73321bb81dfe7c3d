//! Bad input on every route: each case gets its 4xx status and `{"error", "detail"}` body, and
//! afterwards nothing anywhere has changed and the server still serves. Each test runs on
//! SQLite and on Firestore (`bad_input::sqlite::…`, `bad_input::firestore::…`).
#![cfg(unix)]

use crate::common::{
    self, Backend, Server, TestResult, both_backends, fixture, get, heartbeat, register,
};
use reqwest::Method;
use serde_json::{Value, json};

/// Which token a case presents.
#[derive(Clone, Copy, Debug)]
enum Auth {
    None,
    Garbage,
    Malformed,
    Own,
    Other,
    Admin,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    status: u16,
    error: &'static str,
}

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

/// Everything a bad request could have changed, read through the API.
async fn snapshot(
    http: &reqwest::Client,
    server: &Server,
    ids: &[&str],
) -> Result<Value, Box<dyn std::error::Error>> {
    let (_, list) = get(
        http,
        &format!("{}/miners?limit=1000", server.api),
        &server.admin_token,
    )
    .await?;
    let (_, mut liveness) = get(
        http,
        &format!("{}/miners/heartbeat_status", server.api),
        &server.admin_token,
    )
    .await?;
    // time_since grows by itself; everything else must stay put.
    if let Some(map) = liveness.as_object_mut() {
        for entry in map.values_mut() {
            entry.as_object_mut().map(|e| e.remove("time_since"));
        }
    }
    let mut histories = Vec::new();
    for id in ids {
        let url = format!("{}/miners/{id}/status_history", server.api);
        histories.push(get(http, &url, &server.admin_token).await?.1);
    }
    let metrics = common::metrics(http, server).await?;
    let counters: Vec<String> = metrics
        .lines()
        .filter(|l| {
            [
                "polaris_heartbeats_received_total",
                "polaris_registrations_total",
                "polaris_store_rows_total",
            ]
            .iter()
            .any(|name| l.starts_with(name))
        })
        .map(str::to_owned)
        .collect();
    Ok(json!({"list": list, "liveness": liveness, "histories": histories, "counters": counters}))
}

/// A well-formed public key (made with `ssh-keygen -t ed25519`; nobody holds its private half).
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHBRkCg5h1pmIV2YsByxS68p+gmVgdGY3pd6b7JSItRm test";

fn cases(a: &str, b: &str) -> Vec<Case> {
    let big = vec![b' '; 1024 * 1024];
    let mut big_json = b"{\"name\": \"".to_vec();
    big_json.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    big_json.extend(b"\"}");
    let beat = fixture("heartbeat.json", a);
    let with = |mut v: Value, pointer: &str, value: Value| {
        if let Some(slot) = v.pointer_mut(pointer) {
            *slot = value;
        }
        v
    };
    let without = |mut v: Value, parent: &str, key: &str| {
        if let Some(obj) = v.pointer_mut(parent).and_then(Value::as_object_mut) {
            obj.remove(key);
        }
        v
    };
    let reg = fixture("registration.json", "");
    let net = fixture("network_update.json", a);
    let bt = fixture("bittensor_register.json", a);
    let cm = fixture("commune_register.json", a);
    let case = |name, method: Method, path: &str, auth, body, status, error| Case {
        name,
        method,
        path: path.to_owned(),
        auth,
        body,
        status,
        error,
    };
    use Auth::*;
    use Body::Json as J;
    let raw = |text: &'static str| Body::Raw("application/json", text.as_bytes().to_vec());
    vec![
        // POST /miners/ (anonymous)
        case(
            "register: invalid JSON",
            Method::POST,
            "/miners/",
            None,
            raw("{\"name\": "),
            400,
            "malformed_json",
        ),
        case(
            "register: missing field",
            Method::POST,
            "/miners/",
            None,
            J(without(reg.clone(), "", "compute_resources")),
            422,
            "invalid_body",
        ),
        case(
            "register: wrong type",
            Method::POST,
            "/miners/",
            None,
            J(with(
                reg.clone(),
                "/compute_resources/0/cpu_specs/total_cpus",
                json!("eight"),
            )),
            422,
            "invalid_body",
        ),
        case(
            "register: bad RAM format",
            Method::POST,
            "/miners/",
            None,
            J(with(
                reg.clone(),
                "/compute_resources/0/ram",
                json!("16 GB"),
            )),
            422,
            "invalid_field",
        ),
        case(
            "register: bad CPU list",
            Method::POST,
            "/miners/",
            None,
            J(with(
                reg.clone(),
                "/compute_resources/0/cpu_specs/online_cpus",
                json!("0-"),
            )),
            422,
            "invalid_field",
        ),
        case(
            "register: GPU without gpu_specs",
            Method::POST,
            "/miners/",
            None,
            J(with(
                reg.clone(),
                "/compute_resources/0/resource_type",
                json!("GPU"),
            )),
            422,
            "invalid_field",
        ),
        case(
            "register: no resources",
            Method::POST,
            "/miners/",
            None,
            J(with(reg.clone(), "/compute_resources", json!([]))),
            422,
            "invalid_field",
        ),
        case(
            "register: empty name",
            Method::POST,
            "/miners/",
            None,
            J(with(reg.clone(), "/name", json!("  "))),
            422,
            "invalid_field",
        ),
        case(
            "register: 1 MiB body",
            Method::POST,
            "/miners/",
            None,
            Body::Raw("application/json", big_json.clone()),
            413,
            "payload_too_large",
        ),
        case(
            "register: not JSON",
            Method::POST,
            "/miners/",
            None,
            Body::Raw("text/plain", b"hello".to_vec()),
            415,
            "unsupported_media_type",
        ),
        case(
            "register: malformed bearer",
            Method::POST,
            "/miners/",
            Malformed,
            J(reg.clone()),
            401,
            "unauthorized",
        ),
        // POST /heart_beat
        case(
            "heartbeat: no token",
            Method::POST,
            "/heart_beat",
            None,
            J(beat.clone()),
            401,
            "unauthorized",
        ),
        case(
            "heartbeat: unknown token",
            Method::POST,
            "/heart_beat",
            Garbage,
            J(beat.clone()),
            401,
            "unauthorized",
        ),
        case(
            "heartbeat: malformed header",
            Method::POST,
            "/heart_beat",
            Malformed,
            J(beat.clone()),
            401,
            "unauthorized",
        ),
        case(
            "heartbeat: other miner's token",
            Method::POST,
            "/heart_beat",
            Other,
            J(beat.clone()),
            403,
            "forbidden",
        ),
        case(
            "heartbeat: admin token",
            Method::POST,
            "/heart_beat",
            Admin,
            J(beat.clone()),
            403,
            "forbidden",
        ),
        case(
            "heartbeat: unknown miner",
            Method::POST,
            "/heart_beat",
            Own,
            J(fixture("heartbeat.json", "NoSuchMiner0000000000")),
            404,
            "not_found",
        ),
        case(
            "heartbeat: invalid JSON",
            Method::POST,
            "/heart_beat",
            Own,
            raw("{\"status\": online}"),
            400,
            "malformed_json",
        ),
        case(
            "heartbeat: missing field",
            Method::POST,
            "/heart_beat",
            Own,
            J(without(beat.clone(), "/metrics/metrics", "cpu_usage")),
            422,
            "invalid_body",
        ),
        case(
            "heartbeat: wrong type",
            Method::POST,
            "/heart_beat",
            Own,
            J(with(
                beat.clone(),
                "/metrics/metrics/cpu_usage",
                json!("high"),
            )),
            422,
            "invalid_body",
        ),
        case(
            "heartbeat: unknown status",
            Method::POST,
            "/heart_beat",
            Own,
            J(with(beat.clone(), "/status", json!("busy"))),
            422,
            "invalid_body",
        ),
        case(
            "heartbeat: CPU over 100 %",
            Method::POST,
            "/heart_beat",
            Own,
            J(with(
                beat.clone(),
                "/metrics/metrics/cpu_usage",
                json!(250.0),
            )),
            422,
            "invalid_field",
        ),
        case(
            "heartbeat: 1 MiB body",
            Method::POST,
            "/heart_beat",
            Own,
            Body::Raw("application/json", big.clone()),
            413,
            "payload_too_large",
        ),
        // POST /network_update
        case(
            "network: no token",
            Method::POST,
            "/network_update",
            None,
            J(net.clone()),
            401,
            "unauthorized",
        ),
        case(
            "network: other miner's token",
            Method::POST,
            "/network_update",
            Other,
            J(net.clone()),
            403,
            "forbidden",
        ),
        case(
            "network: unknown miner",
            Method::POST,
            "/network_update",
            Own,
            J(with(net.clone(), "/miner_id", json!("NoSuchMiner"))),
            404,
            "not_found",
        ),
        case(
            "network: invalid JSON",
            Method::POST,
            "/network_update",
            Own,
            raw("{\"miner_id\": "),
            400,
            "malformed_json",
        ),
        case(
            "network: missing field",
            Method::POST,
            "/network_update",
            Own,
            J(without(net.clone(), "", "network")),
            422,
            "invalid_body",
        ),
        case(
            "network: wrong type",
            Method::POST,
            "/network_update",
            Own,
            J(with(net.clone(), "/network/open_ports", json!(22))),
            422,
            "invalid_body",
        ),
        case(
            "network: bad ssh URL",
            Method::POST,
            "/network_update",
            Own,
            J(with(
                net.clone(),
                "/network/ssh",
                json!("ssh kato@host -p 22"),
            )),
            422,
            "invalid_field",
        ),
        case(
            "network: 1 MiB body",
            Method::POST,
            "/network_update",
            Own,
            Body::Raw("application/json", big.clone()),
            413,
            "payload_too_large",
        ),
        // POST /bittensor/register and /commune/register
        case(
            "bittensor: wrong token",
            Method::POST,
            "/bittensor/register",
            Garbage,
            J(bt.clone()),
            401,
            "unauthorized",
        ),
        case(
            "bittensor: other miner's token",
            Method::POST,
            "/bittensor/register",
            Other,
            J(bt.clone()),
            403,
            "forbidden",
        ),
        case(
            "bittensor: wrong type",
            Method::POST,
            "/bittensor/register",
            Own,
            J(with(bt.clone(), "/netuid", json!("49"))),
            422,
            "invalid_body",
        ),
        case(
            "bittensor: bad network",
            Method::POST,
            "/bittensor/register",
            Own,
            J(with(bt.clone(), "/network", json!("devnet"))),
            422,
            "invalid_field",
        ),
        case(
            "bittensor: invalid JSON",
            Method::POST,
            "/bittensor/register",
            Own,
            raw("{"),
            400,
            "malformed_json",
        ),
        case(
            "bittensor: 1 MiB body",
            Method::POST,
            "/bittensor/register",
            Own,
            Body::Raw("application/json", big.clone()),
            413,
            "payload_too_large",
        ),
        case(
            "commune: missing field",
            Method::POST,
            "/commune/register",
            Own,
            J(without(cm.clone(), "", "wallet_address")),
            422,
            "invalid_body",
        ),
        case(
            "commune: other miner's token",
            Method::POST,
            "/commune/register",
            Other,
            J(cm.clone()),
            403,
            "forbidden",
        ),
        case(
            "commune: no token",
            Method::POST,
            "/commune/register",
            None,
            J(cm.clone()),
            401,
            "unauthorized",
        ),
        case(
            "commune: 1 MiB body",
            Method::POST,
            "/commune/register",
            Own,
            Body::Raw("application/json", big.clone()),
            413,
            "payload_too_large",
        ),
        // GET /miners/{id}
        case(
            "pod: no token",
            Method::GET,
            &format!("/miners/{a}"),
            None,
            Body::None,
            401,
            "unauthorized",
        ),
        case(
            "pod: unknown token",
            Method::GET,
            &format!("/miners/{a}"),
            Garbage,
            Body::None,
            401,
            "unauthorized",
        ),
        case(
            "pod: other miner's token",
            Method::GET,
            &format!("/miners/{b}"),
            Own,
            Body::None,
            403,
            "forbidden",
        ),
        case(
            "pod: unknown miner",
            Method::GET,
            "/miners/NoSuchMiner",
            Admin,
            Body::None,
            404,
            "not_found",
        ),
        case(
            "pod: id that is not UTF-8",
            Method::GET,
            "/miners/%FF",
            Admin,
            Body::None,
            400,
            "invalid_query",
        ),
        // POST /miners/ with a relay key that is not one
        case(
            "register: bad relay key",
            Method::POST,
            "/miners/",
            None,
            J({
                let mut body = reg.clone();
                body["relay_key"] = json!("ssh-ed25519 not-base64");
                body
            }),
            422,
            "invalid_field",
        ),
        // POST /miners/{id}/relay_key
        case(
            "relay key: no token",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            None,
            J(json!({"public_key": KEY})),
            401,
            "unauthorized",
        ),
        case(
            "relay key: other miner's token",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            Other,
            J(json!({"public_key": KEY})),
            403,
            "forbidden",
        ),
        case(
            "relay key: admin token",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            Admin,
            J(json!({"public_key": KEY})),
            403,
            "forbidden",
        ),
        case(
            "relay key: not a key",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            Own,
            J(json!({"public_key": "hello world"})),
            422,
            "invalid_field",
        ),
        case(
            "relay key: wrong type",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            Own,
            J(json!({"public_key": 7})),
            422,
            "invalid_body",
        ),
        // GET /relay/sessions
        case(
            "relay sessions: miner token",
            Method::GET,
            "/relay/sessions",
            Own,
            Body::None,
            403,
            "forbidden",
        ),
        case(
            "relay sessions: no relay here",
            Method::GET,
            "/relay/sessions",
            Admin,
            Body::None,
            404,
            "not_found",
        ),
        // GET /miners/{id}/status_history
        case(
            "history: other miner's token",
            Method::GET,
            &format!("/miners/{b}/status_history"),
            Own,
            Body::None,
            403,
            "forbidden",
        ),
        case(
            "history: unknown miner",
            Method::GET,
            "/miners/NoSuchMiner/status_history",
            Admin,
            Body::None,
            404,
            "not_found",
        ),
        // GET /miners and /miners/heartbeat_status (admin)
        case(
            "list: miner token",
            Method::GET,
            "/miners",
            Own,
            Body::None,
            403,
            "forbidden",
        ),
        case(
            "list: no token",
            Method::GET,
            "/miners",
            None,
            Body::None,
            401,
            "unauthorized",
        ),
        case(
            "list: bad limit",
            Method::GET,
            "/miners?limit=lots",
            Admin,
            Body::None,
            400,
            "invalid_query",
        ),
        case(
            "list: limit out of range",
            Method::GET,
            "/miners?limit=0",
            Admin,
            Body::None,
            400,
            "invalid_query",
        ),
        case(
            "liveness: miner token",
            Method::GET,
            "/miners/heartbeat_status",
            Own,
            Body::None,
            403,
            "forbidden",
        ),
        case(
            "liveness: unknown token",
            Method::GET,
            "/miners/heartbeat_status",
            Garbage,
            Body::None,
            401,
            "unauthorized",
        ),
        // PATCH /miners/{id}/status (admin)
        case(
            "verify: miner token",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Own,
            J(json!({"status": "verified"})),
            403,
            "forbidden",
        ),
        case(
            "verify: unknown status",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            J(json!({"status": "great"})),
            422,
            "invalid_body",
        ),
        case(
            "verify: missing field",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            J(json!({})),
            422,
            "invalid_body",
        ),
        case(
            "verify: invalid JSON",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            raw("status=verified"),
            400,
            "malformed_json",
        ),
        case(
            "verify: unknown miner",
            Method::PATCH,
            "/miners/NoSuchMiner/status",
            Admin,
            J(json!({"status": "verified"})),
            404,
            "not_found",
        ),
        case(
            "verify: 1 MiB body",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            Body::Raw("application/json", big.clone()),
            413,
            "payload_too_large",
        ),
        // Who is calling is answered before what the body is (issue 11, finding 2).
        case(
            "heartbeat: unknown token and invalid JSON",
            Method::POST,
            "/heart_beat",
            Garbage,
            raw("{bad"),
            401,
            "unauthorized",
        ),
        case(
            "heartbeat: admin token and invalid JSON",
            Method::POST,
            "/heart_beat",
            Admin,
            raw("{bad"),
            403,
            "forbidden",
        ),
        case(
            "verify: miner token and invalid JSON",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Own,
            raw("{bad"),
            403,
            "forbidden",
        ),
        case(
            "verify: unknown token and a body of the wrong shape",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Garbage,
            J(json!({"status": "great"})),
            401,
            "unauthorized",
        ),
        case(
            "network_update: unknown token and invalid JSON",
            Method::POST,
            "/network_update",
            Garbage,
            raw("{bad"),
            401,
            "unauthorized",
        ),
        case(
            "bittensor: malformed header and invalid JSON",
            Method::POST,
            "/bittensor/register",
            Malformed,
            raw("{bad"),
            401,
            "unauthorized",
        ),
        case(
            "commune: admin token and invalid JSON",
            Method::POST,
            "/commune/register",
            Admin,
            raw("{bad"),
            403,
            "forbidden",
        ),
        case(
            "relay_key: another miner's token and invalid JSON",
            Method::POST,
            &format!("/miners/{a}/relay_key"),
            Other,
            raw("{bad"),
            403,
            "forbidden",
        ),
        case(
            "register: unknown token and invalid JSON",
            Method::POST,
            "/miners/",
            Garbage,
            raw("{bad"),
            401,
            "unauthorized",
        ),
        // A value of the wrong type where a name belongs is a field error (finding 3).
        case(
            "verify: status a number",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            J(json!({"status": 1})),
            422,
            "invalid_body",
        ),
        case(
            "verify: status null",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            J(json!({"status": null})),
            422,
            "invalid_body",
        ),
        case(
            "verify: status a list",
            Method::PATCH,
            &format!("/miners/{a}/status"),
            Admin,
            J(json!({"status": []})),
            422,
            "invalid_body",
        ),
        case(
            "heartbeat: status a number",
            Method::POST,
            "/heart_beat",
            Own,
            J(with(beat.clone(), "/status", json!(1))),
            422,
            "invalid_body",
        ),
        // Routes and methods that do not exist
        case(
            "unknown route",
            Method::GET,
            "/nothing/here",
            Admin,
            Body::None,
            404,
            "not_found",
        ),
        case(
            "wrong method",
            Method::DELETE,
            "/heart_beat",
            Own,
            Body::None,
            405,
            "method_not_allowed",
        ),
    ]
}

async fn every_route_refuses_bad_input_and_changes_nothing(backend: Backend) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (a, token_a) = register(&http, &server).await?;
    let (b, token_b) = register(&http, &server).await?;
    assert_eq!(heartbeat(&http, &server, &a, &token_a).await?, 200);
    // The heartbeat's writes are queued and gathered (250 ms): the snapshot is taken once two
    // readings a gather window apart agree, however late a busy machine commits them.
    let mut before = snapshot(&http, &server, &[&a, &b]).await?;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let again = snapshot(&http, &server, &[&a, &b]).await?;
        if again == before {
            break;
        }
        before = again;
    }
    assert_eq!(
        before["list"]["miners"].as_array().map(Vec::len),
        Some(2),
        "{before}"
    );
    assert_eq!(before["liveness"][&a]["status"], "online", "{before}");

    let mut failures = Vec::new();
    for case in cases(&a, &b) {
        let url = format!("{}{}", server.api, case.path);
        let mut request = http.request(case.method.clone(), &url);
        request = match case.auth {
            Auth::None => request,
            Auth::Garbage => request.bearer_auth("0123456789abcdef0123456789abcdef"),
            Auth::Malformed => request.header("Authorization", "Token abc"),
            Auth::Own => request.bearer_auth(&token_a),
            Auth::Other => request.bearer_auth(&token_b),
            Auth::Admin => request.bearer_auth(&server.admin_token),
        };
        request = match case.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(kind, bytes) => request.header("Content-Type", kind).body(bytes),
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let detail_ok = body["detail"].as_str().is_some_and(|d| !d.is_empty());
        if status != case.status || body["error"] != case.error || !detail_ok {
            failures.push(format!(
                "{}: expected {} {}, got {status} {body}",
                case.name, case.status, case.error
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));

    let after = snapshot(&http, &server, &[&a, &b]).await?;
    assert_eq!(before, after, "a refused request changed something");
    // Still serving, and the good path still works.
    assert_eq!(heartbeat(&http, &server, &a, &token_a).await?, 200);
    assert!(server.stop()?);
    Ok(())
}

async fn anonymous_registration_is_rate_limited_per_address(backend: Backend) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let url = format!("{}/miners/", server.api);
    let body = fixture("registration.json", "");
    let mut accepted = 0;
    let mut refused = None;
    for _ in 0..25 {
        let response = http.post(&url).json(&body).send().await?;
        match response.status().as_u16() {
            201 => accepted += 1,
            429 => {
                // A refill comes every 3 s: the client is told when to come back.
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                assert!(
                    retry_after.is_some_and(|s| (1..=3).contains(&s)),
                    "Retry-After: {retry_after:?}"
                );
                refused = Some(response.json::<Value>().await?);
                break;
            }
            other => return Err(format!("unexpected status {other}").into()),
        }
    }
    assert_eq!(accepted, 20, "the burst allows 20");
    let refused = refused.ok_or("never rate-limited")?;
    assert_eq!(refused["error"], "rate_limited");
    let (_, page) = get(
        &http,
        &format!("{}/miners?limit=100", server.api),
        &server.admin_token,
    )
    .await?;
    assert_eq!(
        page["miners"].as_array().map(Vec::len),
        Some(20),
        "the refused one was not stored"
    );
    // The admin token lifts the limit.
    let response = http
        .post(&url)
        .bearer_auth(&server.admin_token)
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status(), 201);
    assert!(server.stop()?);
    Ok(())
}

/// A number, null or list where a name belongs is reported as that field of the wrong type
/// (it read "the body is not valid JSON: expected value at line 1 column 12").
async fn a_wrong_type_where_a_name_belongs_names_the_field(backend: Backend) -> TestResult {
    let (_home, server) = common::coordinator_on(&backend)?;
    let http = reqwest::Client::new();
    let (a, _) = register(&http, &server).await?;
    for (value, found) in [
        (json!(1), "a number"),
        (json!(null), "null"),
        (json!([]), "a list"),
    ] {
        let answer = http
            .patch(format!("{}/miners/{a}/status", server.api))
            .bearer_auth(&server.admin_token)
            .json(&json!({ "status": value }))
            .send()
            .await?;
        assert_eq!(answer.status().as_u16(), 422);
        let body: Value = answer.json().await?;
        assert_eq!(
            body["detail"],
            format!("status: expected one of its names (a string), got {found}"),
            "{body}"
        );
    }
    Ok(())
}

both_backends!(
    every_route_refuses_bad_input_and_changes_nothing,
    anonymous_registration_is_rate_limited_per_address,
    a_wrong_type_where_a_name_belongs_names_the_field,
);
