//! Alerts: a tracing line for every alert, and, when `POLARIS_ALERT_WEBHOOK` is set, a JSON POST
//! retried with backoff. Delivery runs in its own tasks: a slow or dead webhook never delays a
//! heartbeat or the health check.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::metrics::Metrics;

/// Deliveries in flight at once; more wait their turn.
const MAX_IN_FLIGHT: usize = 16;
/// Tries per alert: the first and four retries, 1 s → 2 s → 4 s → 8 s apart.
const ATTEMPTS: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What happened.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// A miner that was up went offline.
    MinerOffline {
        miner_id: String,
        last_seen: Option<DateTime<Utc>>,
        reason: String,
    },
    /// A miner that was offline is up again.
    MinerRecovered {
        miner_id: String,
        offline_for_secs: Option<f64>,
    },
    /// Many miners went silent at once: offline transitions are held (the fault is likely ours or
    /// the network's, not theirs).
    MassSilence { silent: usize, up: usize },
    /// The mass silence is over; transitions resume.
    MassSilenceEnded,
}

impl Alert {
    /// One line for a person (also sent as `text`, which chat webhooks display).
    pub fn text(&self) -> String {
        match self {
            Alert::MinerOffline {
                miner_id, reason, ..
            } => format!("miner {miner_id} is offline: {reason}"),
            Alert::MinerRecovered { miner_id, .. } => format!("miner {miner_id} is back online"),
            Alert::MassSilence { silent, up } => format!(
                "{silent} of {up} online miners went silent at once; holding offline transitions \
                 (check the coordinator's network)"
            ),
            Alert::MassSilenceEnded => {
                "mass silence is over; offline transitions resume".to_owned()
            }
        }
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    text: String,
    at: DateTime<Utc>,
}

/// Sends alerts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Alerter {
    webhook: Option<reqwest::Url>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Alerter {
    pub fn new(webhook: Option<reqwest::Url>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            webhook,
            client,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics,
        })
    }

    /// Logs the alert and starts its delivery; returns at once.
    pub fn send(&self, alert: Alert) {
        tracing::warn!(alert = %alert.text(), "alert");
        self.metrics.alert_sent();
        let Some(url) = self.webhook.clone() else {
            return;
        };
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(_slot) = this.slots.acquire().await else {
                return;
            };
            this.deliver(url, &alert).await;
        });
    }

    async fn deliver(&self, url: reqwest::Url, alert: &Alert) {
        let body = Payload {
            alert,
            text: alert.text(),
            at: Utc::now(),
        };
        let mut delay = FIRST_RETRY;
        for attempt in 1..=ATTEMPTS {
            let outcome = self.client.post(url.clone()).json(&body).send().await;
            match outcome {
                Ok(response) if response.status().is_success() => return,
                Ok(response) => {
                    tracing::warn!(status = %response.status(), attempt, "alert webhook refused the alert");
                }
                Err(err) => {
                    tracing::warn!(error = %err, attempt, "alert webhook unreachable");
                }
            }
            self.metrics.alert_failed();
            if attempt < ATTEMPTS {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        tracing::error!(alert = %alert.text(), "alert not delivered to the webhook after {ATTEMPTS} tries");
    }
}
