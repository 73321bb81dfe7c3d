//! The original tool's bodies parse into our wire types and come back out unchanged, except for
//! the plaintext SSH password, which is dropped on the way in.

use crate::common;
use polaris::api::{
    BittensorRegistration, CommuneRegistration, HeartbeatRequest, NetworkUpdate,
    RegistrationRequest, Validate,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn original(name: &str) -> Value {
    common::fixture(name, "Pr1L34ioD8GHkwnhJR0q")
}

/// Removes every `password` key, wherever it is.
fn without_passwords(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("password");
            map.values_mut().for_each(without_passwords);
        }
        Value::Array(items) => items.iter_mut().for_each(without_passwords),
        _ => {}
    }
}

/// Python writes `0` where serde writes `0.0`: compare numbers by value.
fn numbers_as_floats(value: &mut Value) {
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().and_then(serde_json::Number::from_f64) {
                *n = f;
            }
        }
        Value::Object(map) => map.values_mut().for_each(numbers_as_floats),
        Value::Array(items) => items.iter_mut().for_each(numbers_as_floats),
        _ => {}
    }
}

fn round_trip<T: DeserializeOwned + Serialize + Validate>(name: &str) -> T {
    let body = original(name);
    let parsed: T = serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    if let Err(err) = parsed.validate() {
        panic!("{name} fails validation: {err}");
    }
    let mut back = serde_json::to_value(&parsed).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut expected = body;
    without_passwords(&mut expected);
    numbers_as_floats(&mut expected);
    numbers_as_floats(&mut back);
    assert_eq!(back, expected, "{name} did not survive the round trip");
    parsed
}

#[test]
fn cpu_registration_round_trips_without_the_password() {
    let parsed: RegistrationRequest = round_trip("registration.json");
    let resource = &parsed.compute_resources[0];
    assert_eq!(resource.ram, "15.68GB");
    assert_eq!(resource.storage.kind, "SSD");
    let cpu = resource.cpu_specs.as_ref().expect("cpu_specs");
    assert_eq!(cpu.online_cpus.as_deref(), Some("0-7"));
    assert_eq!(cpu.total_cpus, Some(8));
    let text = format!("{parsed:?}");
    assert!(
        !text.contains("plaintext-in-the-original"),
        "the password was kept: {text}"
    );
}

#[test]
fn gpu_registration_round_trips() {
    let parsed: RegistrationRequest = round_trip("registration_gpu.json");
    let gpu = parsed.compute_resources[0]
        .gpu_specs
        .as_ref()
        .expect("gpu_specs");
    assert_eq!(gpu.gpu_name, "NVIDIA GeForce RTX 4090");
    assert_eq!(gpu.cuda_cores, None);
}

#[test]
fn heartbeat_round_trips() {
    let parsed: HeartbeatRequest = round_trip("heartbeat.json");
    assert_eq!(parsed.metrics.miner_id, "Pr1L34ioD8GHkwnhJR0q");
    assert_eq!(parsed.metrics.metrics.temperature, None);
}

#[test]
fn network_update_round_trips_without_the_password() {
    let parsed: NetworkUpdate = round_trip("network_update.json");
    assert_eq!(
        parsed.network.ssh.as_deref(),
        Some("ssh://kato@203.0.113.7:11000")
    );
}

#[test]
fn wallet_registrations_round_trip() {
    let bittensor: BittensorRegistration = round_trip("bittensor_register.json");
    assert_eq!(bittensor.netuid, 49);
    let commune: CommuneRegistration = round_trip("commune_register.json");
    assert_eq!(commune.commune_uid, "17");
}

#[test]
fn extra_facts_are_kept_under_their_own_keys() {
    let mut body = original("registration.json");
    body["compute_resources"][0]["polaris_disks"] = serde_json::json!([{"name": "nvme0n1"}]);
    body["compute_resources"][0]["cpu_specs"]["flags"] = serde_json::json!(["avx2"]);
    let parsed: RegistrationRequest = serde_json::from_value(body.clone()).expect("parses");
    let back = serde_json::to_value(&parsed).expect("serializes");
    assert_eq!(
        back["compute_resources"][0]["polaris_disks"],
        body["compute_resources"][0]["polaris_disks"]
    );
    assert_eq!(
        back["compute_resources"][0]["cpu_specs"]["flags"],
        serde_json::json!(["avx2"])
    );
}
