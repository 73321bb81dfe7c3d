//! The OpenAPI document tells the truth: every status the server answers on a route is listed for
//! that route, and the validation rules the server applies are in the schema (issue 11, finding
//! 4). `scripts/schemathesis.sh` checks the same by generating requests from the document.
#![cfg(unix)]

use crate::common::{self, TestResult, fixture, register};
use reqwest::Method;
use serde_json::{Value, json};

async fn document(
    http: &reqwest::Client,
    server: &common::Server,
) -> Result<Value, Box<dyn std::error::Error>> {
    let response = http
        .get(format!("{}/openapi.json", server.api))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    Ok(response.json().await?)
}

/// Every operation as `(method, path, operation)`.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            out.push((method.clone(), path.clone(), op.clone()));
        }
    }
    out
}

fn documented(op: &Value) -> Vec<u16> {
    op["responses"]
        .as_object()
        .map(|r| r.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default()
}

/// A property of a component schema, looked up through `allOf` (flattened structs).
fn property<'a>(doc: &'a Value, schema: &str, name: &str) -> &'a Value {
    let component = &doc["components"]["schemas"][schema];
    let mut parts = vec![component];
    parts.extend(component["allOf"].as_array().into_iter().flatten());
    parts
        .into_iter()
        .map(|p| &p["properties"][name])
        .find(|p| !p.is_null())
        .unwrap_or_else(|| panic!("{schema}.{name} is not in the document"))
}

#[tokio::test]
async fn every_body_route_lists_its_error_codes_and_the_rules_are_in_the_schema() -> TestResult {
    let (_home, server) = common::coordinator()?;
    let http = reqwest::Client::new();
    let doc = document(&http, &server).await?;
    let mut missing = Vec::new();
    for (method, path, op) in operations(&doc) {
        let codes = documented(&op);
        let mut need = Vec::new();
        if !op["requestBody"].is_null() {
            need.extend([400, 413, 415, 422]);
        }
        if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
            need.push(401);
            // An empty requirement makes the token optional (registration): no 403 there.
            if !op["security"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|s| s == &json!({}))
            {
                need.push(403);
            }
        }
        for code in need {
            if !codes.contains(&code) {
                missing.push(format!("{method} {path}: {code}"));
            }
        }
    }
    let register = &doc["paths"]["/api/v1/miners/"]["post"];
    for code in [401, 429] {
        if !documented(register).contains(&code) {
            missing.push(format!("post /api/v1/miners/: {code}"));
        }
    }
    assert!(missing.is_empty(), "undocumented answers: {missing:#?}");

    // The rules, as the server applies them.
    let identifier = "^[A-Za-z0-9_.:-]{1,128}$";
    for schema in ["BittensorRegistration", "CommuneRegistration"] {
        assert_eq!(
            property(&doc, schema, "netuid")["maximum"],
            65535,
            "{schema}"
        );
        assert_eq!(property(&doc, schema, "miner_id")["pattern"], identifier);
    }
    for schema in ["NetworkUpdate", "HeartbeatMetrics"] {
        let id = property(&doc, schema, "miner_id");
        assert_eq!(id["pattern"], identifier, "{schema}");
        assert_eq!(id["maxLength"], 128, "{schema}");
    }
    assert_eq!(
        property(&doc, "ComputeResource", "id")["pattern"],
        identifier
    );
    assert_eq!(
        property(&doc, "CpuSpecs", "total_cpus")["maximum"],
        4_294_967_295u64
    );
    let name = property(&doc, "RegistrationRequest", "name");
    assert_eq!(
        (&name["minLength"], &name["maxLength"]),
        (&json!(1), &json!(64))
    );
    assert!(name["pattern"].is_string(), "name: {name}");
    assert_eq!(
        property(&doc, "SystemMetrics", "cpu_usage")["maximum"],
        100.0
    );
    assert!(property(&doc, "ComputeResource", "ram")["pattern"].is_string());
    let limit = doc["paths"]["/api/v1/miners"]["get"]["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "limit")
        .ok_or("no limit parameter")?;
    assert_eq!(
        (&limit["schema"]["minimum"], &limit["schema"]["maximum"]),
        (&json!(1), &json!(1000))
    );
    assert!(server.stop()?);
    Ok(())
}

/// What a probe sends as its body.
enum Probe {
    None,
    Raw(&'static str, Vec<u8>),
}

#[tokio::test]
async fn every_answer_the_server_gives_is_documented_for_its_route() -> TestResult {
    let (_home, server) = common::coordinator()?;
    let http = reqwest::Client::new();
    let doc = document(&http, &server).await?;
    let (miner_id, token) = register(&http, &server).await?;
    let mut undocumented = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let codes = documented(&op);
        let url = format!("{}{}", server.base, path.replace("{id}", &miner_id));
        let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
        let mut probes = vec![Probe::None];
        if !op["requestBody"].is_null() {
            probes = vec![
                Probe::Raw("text/plain", b"{}".to_vec()),
                Probe::Raw("application/json", b"{".to_vec()),
                Probe::Raw("application/json", b"[]".to_vec()),
                Probe::Raw("application/json", vec![b' '; 70 * 1024]),
            ];
        }
        for auth in [
            None,
            Some("not-a-token"),
            Some(token.as_str()),
            Some(server.admin_token.as_str()),
        ] {
            for probe in &probes {
                let mut request = http.request(method.clone(), &url);
                if let Some(t) = auth {
                    request = request.bearer_auth(t);
                }
                if let Probe::Raw(kind, bytes) = probe {
                    request = request.header("content-type", *kind).body(bytes.clone());
                }
                let status = request.send().await?.status().as_u16();
                seen.insert(status);
                if !codes.contains(&status) {
                    let what = match probe {
                        Probe::None => "no body".to_owned(),
                        Probe::Raw(kind, bytes) => format!("{kind}, {} bytes", bytes.len()),
                    };
                    let who = match auth {
                        None => "no token",
                        Some(t) if t == token => "the miner's token",
                        Some(t) if t == server.admin_token => "the admin token",
                        Some(_) => "an unknown token",
                    };
                    undocumented.push(format!("{method} {path} ({who}, {what}): {status}"));
                }
            }
        }
    }
    assert!(
        undocumented.is_empty(),
        "answers the document omits: {undocumented:#?}"
    );
    for code in [200, 400, 401, 403, 413, 415, 422] {
        assert!(seen.contains(&code), "no probe got {code}: {seen:?}");
    }

    // netuid is a u16 (a subnet's uid on chain): the schema says so, and the server holds to it.
    let url = format!("{}/bittensor/register", server.api);
    for (netuid, status) in [(65_535, 200), (65_536, 422)] {
        let mut body = fixture("bittensor_register.json", &miner_id);
        body["netuid"] = json!(netuid);
        let response = http
            .post(&url)
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await?;
        assert_eq!(response.status(), status, "netuid {netuid}");
    }
    assert!(server.stop()?);
    Ok(())
}
