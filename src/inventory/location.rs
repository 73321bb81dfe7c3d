//! Where the machine is: `POLARIS_LOCATION`, else an HTTPS geo-IP lookup (never plain HTTP),
//! cached for a day in POLARIS_HOME, else "Unknown". A failed lookup is remembered for an hour,
//! so an offline machine does not wait 3 s on every run.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The geo-IP service: answers `{city, region, country}` over HTTPS.
pub const LOOKUP_URL: &str = "https://ipinfo.io/json";
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);
const RETRY_AFTER: chrono::TimeDelta = chrono::TimeDelta::hours(1);
pub const UNKNOWN: &str = "Unknown";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationSource {
    /// POLARIS_LOCATION.
    Setting,
    /// The geo-IP lookup, now or from the cache.
    Lookup,
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    pub source: LocationSource,
    /// Why the lookup failed, when it did.
    pub warning: Option<String>,
}

/// The last lookup: a place, or why there was none.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    name: Option<String>,
    #[serde(default)]
    error: Option<String>,
    looked_up_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct GeoIp {
    city: Option<String>,
    region: Option<String>,
    country: Option<String>,
}

pub async fn resolve(
    setting: Option<&str>,
    client: &reqwest::Client,
    lookup_url: &str,
    cache: &Path,
) -> Location {
    if let Some(name) = setting.map(str::trim).filter(|s| !s.is_empty()) {
        return Location {
            name: name.to_owned(),
            source: LocationSource::Setting,
            warning: None,
        };
    }
    let outcome = match read_cache(cache).await {
        Some(cached) => cached,
        None => {
            let outcome = lookup(client, lookup_url).await;
            let entry = Cached {
                name: outcome.as_ref().ok().cloned(),
                error: outcome.as_ref().err().cloned(),
                looked_up_at: Utc::now(),
            };
            if let Ok(json) = serde_json::to_vec_pretty(&entry) {
                let cache = cache.to_path_buf();
                // The cache only saves a lookup: failing to write it changes nothing else.
                let _ = tokio::task::spawn_blocking(move || {
                    crate::files::write_atomically(&cache, &json)
                })
                .await;
            }
            entry
        }
    };
    match outcome.name {
        Some(name) => Location {
            name,
            source: LocationSource::Lookup,
            warning: None,
        },
        None => Location {
            name: UNKNOWN.to_owned(),
            source: LocationSource::Unknown,
            warning: Some(format!(
                "location lookup failed ({}); set POLARIS_LOCATION, e.g. \"Berlin, Berlin, DE\"",
                outcome.error.as_deref().unwrap_or("no answer")
            )),
        },
    }
}

/// A cached place younger than a day, or a cached failure younger than an hour.
async fn read_cache(path: &Path) -> Option<Cached> {
    let cached: Cached = serde_json::from_slice(&tokio::fs::read(path).await.ok()?).ok()?;
    let age = Utc::now().signed_duration_since(cached.looked_up_at);
    let fresh_for = match &cached.name {
        Some(name) if !name.is_empty() => CACHE_FOR,
        Some(_) => return None,
        None => RETRY_AFTER,
    };
    (age >= chrono::TimeDelta::zero() && age < fresh_for).then_some(cached)
}

async fn lookup(client: &reqwest::Client, url: &str) -> Result<String, String> {
    if !url.starts_with("https://") {
        return Err(format!("{url} is not an https:// URL"));
    }
    let answer = client
        .get(url)
        .timeout(LOOKUP_TIMEOUT)
        .send()
        .await
        .map_err(|e| super::network::root_cause(&e))?;
    if !answer.status().is_success() {
        return Err(format!("{url} answered {}", answer.status()));
    }
    let geo: GeoIp = answer
        .json()
        .await
        .map_err(|e| format!("{url} sent an unexpected body: {e}"))?;
    let parts: Vec<String> = [geo.city, geo.region, geo.country]
        .into_iter()
        .flatten()
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        Err(format!("{url} did not name a place"))
    } else {
        Ok(parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_setting_wins_without_a_lookup() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = reqwest::Client::new();
        let location = resolve(
            Some(" Lisbon, PT "),
            &client,
            "https://127.0.0.1:1/",
            &dir.path().join("location.json"),
        )
        .await;
        assert_eq!(location.name, "Lisbon, PT");
        assert_eq!(location.source, LocationSource::Setting);
    }

    #[tokio::test]
    async fn plain_http_is_refused_and_the_failure_is_remembered_for_an_hour() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = reqwest::Client::new();
        let cache = dir.path().join("location.json");
        let location = resolve(None, &client, "http://ipinfo.io/json", &cache).await;
        assert_eq!(location.name, UNKNOWN);
        let warning = location.warning.expect("a warning");
        assert!(warning.contains("not an https:// URL"), "{warning}");
        let cached = read_cache(&cache).await.expect("the failure is cached");
        assert!(cached.name.is_none());
        // Within the hour the cached failure answers without asking again.
        let again = resolve(None, &client, "https://127.0.0.1:1/", &cache).await;
        assert!(
            again
                .warning
                .unwrap_or_default()
                .contains("not an https:// URL")
        );
    }

    #[tokio::test]
    async fn a_fresh_cache_answers_and_a_stale_one_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("location.json");
        let write = |name: Option<&str>, age: chrono::TimeDelta| {
            let entry = Cached {
                name: name.map(str::to_owned),
                error: name.is_none().then(|| "offline".to_owned()),
                looked_up_at: Utc::now() - age,
            };
            std::fs::write(&cache, serde_json::to_vec(&entry).expect("json")).expect("write");
        };
        let hours = chrono::TimeDelta::hours;
        write(Some("Osaka, JP"), hours(1));
        let name = read_cache(&cache).await.and_then(|c| c.name);
        assert_eq!(name.as_deref(), Some("Osaka, JP"));
        write(Some("Osaka, JP"), hours(25));
        assert!(read_cache(&cache).await.is_none());
        write(None, hours(2));
        assert!(
            read_cache(&cache).await.is_none(),
            "a failure is retried after an hour"
        );
        std::fs::write(&cache, b"{not json").expect("write");
        assert!(read_cache(&cache).await.is_none());
    }
}
