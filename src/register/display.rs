//! The seed's blocks: "System Information" (dotted keys, secrets masked) and "Registration
//! Complete".

use std::fmt::Write;

use comfy_table::{Table, presets};
use serde_json::Value;

use super::record::RegistrationRecord;
use crate::api::SystemInventory;

/// Keys whose values are never shown.
const SECRET_WORDS: &[&str] = &["password", "token", "secret", "private"];

/// Flattens JSON into `(dotted.key, value)` rows: `compute_resources[0].storage.type`.
pub fn flatten(value: &Value, prefix: &str, rows: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                if SECRET_WORDS.iter().any(|w| key.to_lowercase().contains(w)) {
                    rows.push((path, "********".to_owned()));
                } else {
                    flatten(value, &path, rows);
                }
            }
        }
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let text: Vec<String> = items.iter().map(scalar).collect();
            rows.push((prefix.to_owned(), text.join(", ")));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten(item, &format!("{prefix}[{i}]"), rows);
            }
        }
        other => rows.push((prefix.to_owned(), scalar(other))),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "—".to_owned(),
        other => other.to_string(),
    }
}

/// What registration sends, as a two-column table: the location and the resources (the
/// machine-wide extras stay in `polaris inventory --json`).
pub fn system_information(info: &SystemInventory) -> String {
    let wire = serde_json::json!({
        "location": info.location,
        "compute_resources": info.compute_resources,
    });
    let mut rows = Vec::new();
    flatten(&wire, "", &mut rows);
    let mut table = Table::new();
    table.load_preset(presets::UTF8_FULL_CONDENSED);
    table.set_header(vec!["Field", "Value"]);
    table.add_rows(rows.into_iter().map(|(k, v)| vec![k, v]));
    format!("System Information\n{table}\n")
}

pub fn registration_complete(record: &RegistrationRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Registration Complete");
    let _ = writeln!(out, "Miner ID: {}", record.miner_id);
    let _ = writeln!(out, "Added Resources: {}", record.resource_ids.join(", "));
    let _ = writeln!(out, "Network: {}", record.network.label());
    if let Some(b) = &record.bittensor {
        let _ = writeln!(out, "Wallet Name: {}", b.wallet_name);
        let _ = writeln!(
            out,
            "Hotkey: {}{}",
            b.hotkey_name,
            b.hotkey_ss58
                .as_ref()
                .map_or_else(String::new, |a| format!(" ({a})"))
        );
        let _ = writeln!(out, "Subnet: netuid {} ({})", b.netuid, b.chain.as_str());
        if let Some(uid) = b.uid {
            let _ = writeln!(out, "UID: {uid}");
        }
    }
    if let Some(c) = &record.commune {
        let _ = writeln!(
            out,
            "Key: {}{}",
            c.key_name,
            c.ss58
                .as_ref()
                .map_or_else(String::new, |a| format!(" ({a})"))
        );
        let _ = writeln!(out, "Subnet: netuid {} ({})", c.netuid, c.chain.as_str());
        if let Some(uid) = c.uid {
            let _ = writeln!(out, "UID: {uid}");
        }
    }
    let _ = writeln!(
        out,
        "Important: Save your Miner ID - you'll need it to manage your compute resources."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattening_uses_dotted_keys_and_masks_secrets() {
        let value = serde_json::json!({
            "compute_resources": [{"storage": {"type": "SSD"}, "network": {"password": "hunter2"}}],
            "flags": ["avx", "avx2"]
        });
        let mut rows = Vec::new();
        flatten(&value, "", &mut rows);
        assert!(rows.contains(&("compute_resources[0].storage.type".into(), "SSD".into())));
        assert!(rows.contains(&(
            "compute_resources[0].network.password".into(),
            "********".into()
        )));
        assert!(rows.contains(&("flags".into(), "avx, avx2".into())));
        assert!(!format!("{rows:?}").contains("hunter2"));
    }
}
