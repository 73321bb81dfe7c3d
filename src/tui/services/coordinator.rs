//! The coordinator as the dashboard sees it: whether it answers (`/healthz`), this machine's
//! registration (`registration.json`) and, once registered, its pod (`GET /miners/{id}`), polled
//! every 10 s, retried with a growing pause while it is down, and asked at once when poked.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, watch};

use crate::api::Pod;
use crate::api::client::CoordinatorClient;
use crate::register::record::{self, RegistrationRecord};

/// Between two polls while the coordinator answers.
const POLL: Duration = Duration::from_secs(10);
/// The longest pause between retries while it does not.
const RETRY_MAX: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Health {
    Unknown,
    Up {
        rtt_ms: f64,
    },
    Down {
        error: String,
        retry_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Registration {
    Unknown,
    Missing,
    /// registration.json cannot be read: the text says what to do.
    Damaged(String),
    Present(Box<RegistrationRecord>),
}

impl Registration {
    pub(crate) fn record(&self) -> Option<&RegistrationRecord> {
        match self {
            Self::Present(record) => Some(record),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CoordinatorView {
    /// The coordinator asked: the registration's, else SERVER_URL's.
    pub(crate) url: String,
    pub(crate) health: Health,
    pub(crate) registration: Registration,
    pub(crate) pod: Option<Pod>,
    pub(crate) pod_error: Option<String>,
    pub(crate) checked_at: Option<DateTime<Utc>>,
}

impl CoordinatorView {
    pub(crate) fn new(url: String) -> Self {
        Self {
            url,
            health: Health::Unknown,
            registration: Registration::Unknown,
            pod: None,
            pod_error: None,
            checked_at: None,
        }
    }
}

/// `http://host:port/api/v1` → `http://host:port/healthz`.
fn health_url(base: &str) -> String {
    let root = base.trim_end_matches('/');
    let root = root.strip_suffix("/api/v1").unwrap_or(root);
    format!("{root}/healthz")
}

fn read_registration(home: &std::path::Path) -> Registration {
    match record::load(home) {
        Ok(Some(record)) => Registration::Present(Box::new(record)),
        Ok(None) => Registration::Missing,
        Err(err) => Registration::Damaged(format!("{err:#}")),
    }
}

/// One poll: the registration file, the coordinator's health and the pod.
async fn poll(
    http: &reqwest::Client,
    home: &std::path::Path,
    default_url: &str,
    previous: &CoordinatorView,
) -> CoordinatorView {
    let registration = read_registration(home);
    let url = registration
        .record()
        .map_or_else(|| default_url.to_owned(), |r| r.server_url.clone());
    let started = Instant::now();
    let answer = http
        .get(health_url(&url))
        .timeout(HEALTH_TIMEOUT)
        .send()
        .await;
    let health = match answer {
        Ok(a) if a.status().is_success() => Health::Up {
            rtt_ms: started.elapsed().as_secs_f64() * 1000.0,
        },
        Ok(a) => Health::Down {
            error: format!("it answered {} on /healthz", a.status()),
            retry_at: Utc::now(),
        },
        Err(err) => Health::Down {
            error: crate::inventory::network::root_cause(&err),
            retry_at: Utc::now(),
        },
    };
    let (mut pod, mut pod_error) = (previous.pod.clone(), previous.pod_error.clone());
    match (&health, registration.record()) {
        (Health::Up { .. }, Some(record)) => {
            let fetched = match reqwest::Url::parse(&record.server_url) {
                Ok(base) => match CoordinatorClient::new(&base) {
                    Ok(client) => client
                        .miner(record.token.expose(), &record.miner_id)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                },
                Err(e) => Err(format!(
                    "bad coordinator URL {:?} in registration.json: {e}",
                    record.server_url
                )),
            };
            match fetched {
                Ok(p) => (pod, pod_error) = (Some(p), None),
                Err(e) => pod_error = Some(e),
            }
        }
        (_, None) => (pod, pod_error) = (None, None),
        // Down: keep the last pod shown, marked stale by the health line.
        _ => {}
    }
    CoordinatorView {
        url,
        health,
        registration,
        pod,
        pod_error,
        checked_at: Some(Utc::now()),
    }
}

/// Polls until every receiver is gone.
pub(crate) async fn run(
    home: PathBuf,
    default_url: String,
    view: watch::Sender<CoordinatorView>,
    poke: Arc<Notify>,
) {
    let Ok(http) = reqwest::Client::builder()
        .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
        .build()
    else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let previous = view.borrow().clone();
        let mut next = poll(&http, &home, &default_url, &previous).await;
        let wait = if let Health::Down { retry_at, .. } = &mut next.health {
            failures += 1;
            let wait = Duration::from_secs(1u64 << failures.min(4)).min(RETRY_MAX);
            *retry_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
            wait
        } else {
            failures = 0;
            POLL
        };
        // The round trip changes on every poll; only a real change redraws the screen.
        view.send_if_modified(|current| {
            let same = current.url == next.url
                && current.registration == next.registration
                && current.pod == next.pod
                && current.pod_error == next.pod_error
                && std::mem::discriminant(&current.health) == std::mem::discriminant(&next.health)
                && !matches!(next.health, Health::Down { .. });
            *current = next;
            !same
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = poke.notified() => {}
            () = view.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_route_sits_beside_the_api() {
        assert_eq!(
            health_url("http://127.0.0.1:8420/api/v1"),
            "http://127.0.0.1:8420/healthz"
        );
        assert_eq!(
            health_url("https://c.example/api/v1/"),
            "https://c.example/healthz"
        );
        assert_eq!(health_url("http://h:1"), "http://h:1/healthz");
    }

    #[tokio::test]
    async fn a_dead_coordinator_and_a_damaged_registration_are_reported() {
        let home = tempfile::tempdir().expect("temp dir");
        std::fs::write(home.path().join("registration.json"), "{").expect("write");
        let http = reqwest::Client::new();
        let previous = CoordinatorView::new(String::new());
        let view = poll(&http, home.path(), "http://127.0.0.1:9/api/v1", &previous).await;
        assert!(
            matches!(view.health, Health::Down { .. }),
            "{:?}",
            view.health
        );
        match &view.registration {
            Registration::Damaged(why) => assert!(why.contains("is damaged"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
