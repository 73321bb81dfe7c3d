//! Where the machine is: `POLARIS_LOCATION`, else an HTTPS geo-IP lookup (never plain HTTP),
//! cached for a day in POLARIS_HOME, else "Unknown".

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The geo-IP service: answers `{city, region, country}` over HTTPS.
pub const LOOKUP_URL: &str = "https://ipinfo.io/json";
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
const CACHE_FOR: chrono::TimeDelta = chrono::TimeDelta::hours(24);
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

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    name: String,
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
    if let Some(cached) = read_cache(cache) {
        return Location {
            name: cached.name,
            source: LocationSource::Lookup,
            warning: None,
        };
    }
    match lookup(client, lookup_url).await {
        Ok(name) => {
            let entry = Cached {
                name: name.clone(),
                looked_up_at: Utc::now(),
            };
            if let Ok(json) = serde_json::to_vec_pretty(&entry) {
                // The cache only saves a lookup: failing to write it changes nothing else.
                let _ = crate::files::write_atomically(cache, &json);
            }
            Location {
                name,
                source: LocationSource::Lookup,
                warning: None,
            }
        }
        Err(why) => Location {
            name: UNKNOWN.to_owned(),
            source: LocationSource::Unknown,
            warning: Some(format!(
                "location lookup failed ({why}); set POLARIS_LOCATION, e.g. \"Berlin, Berlin, DE\""
            )),
        },
    }
}

fn read_cache(path: &Path) -> Option<Cached> {
    let cached: Cached = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let age = Utc::now().signed_duration_since(cached.looked_up_at);
    (age >= chrono::TimeDelta::zero() && age < CACHE_FOR && !cached.name.is_empty())
        .then_some(cached)
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
    async fn plain_http_is_refused_and_gives_unknown_with_a_warning() {
        let dir = tempfile::tempdir().expect("temp dir");
        let client = reqwest::Client::new();
        let cache = dir.path().join("location.json");
        let location = resolve(None, &client, "http://ipinfo.io/json", &cache).await;
        assert_eq!(location.name, UNKNOWN);
        let warning = location.warning.expect("a warning");
        assert!(warning.contains("not an https:// URL"), "{warning}");
        assert!(!cache.exists(), "a failed lookup is not cached");
    }

    #[tokio::test]
    async fn a_fresh_cache_answers_and_a_stale_one_does_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("location.json");
        let write = |at: DateTime<Utc>| {
            let entry = Cached {
                name: "Osaka, JP".to_owned(),
                looked_up_at: at,
            };
            std::fs::write(&cache, serde_json::to_vec(&entry).expect("json")).expect("write");
        };
        write(Utc::now() - chrono::TimeDelta::hours(1));
        assert_eq!(
            read_cache(&cache).map(|c| c.name).as_deref(),
            Some("Osaka, JP")
        );
        write(Utc::now() - chrono::TimeDelta::hours(25));
        assert!(read_cache(&cache).is_none());
        std::fs::write(&cache, b"{not json").expect("write");
        assert!(read_cache(&cache).is_none());
    }
}
