//! Alerts: a tracing line for every alert, and, when `POLARIS_ALERT_WEBHOOK` is set, a JSON POST
//! retried with backoff. Delivery runs in its own tasks: a slow or dead webhook never delays a
//! heartbeat or the health check.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

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
    /// The mass silence lasted too long to be the coordinator's fault: the held miners are now
    /// reported offline one by one.
    MassSilenceExpired { held_for_secs: u64 },
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
            Alert::MassSilenceExpired { held_for_secs } => format!(
                "miners have been silent for {held_for_secs} s: no longer holding; they go offline now"
            ),
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

/// Alerts waiting to be dispatched before new ones are dropped (counted as failures).
const QUEUE: usize = 10_000;
/// How long shutdown waits for webhook deliveries still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

enum Message {
    Alert {
        alert: Alert,
        at: DateTime<Utc>,
        /// Resolves when the transition behind the alert is committed.
        committed: Option<oneshot::Receiver<Result<(), crate::store::StoreError>>>,
    },
    Close(oneshot::Sender<()>),
}

/// Raises alerts. Cheap to clone.
///
/// One dispatcher task takes alerts in the order they were raised, waits until the transition
/// behind each one is committed (an alert is never sent for a change that was not stored), logs
/// it, and starts its webhook delivery. Deliveries run beside each other, so one slow delivery
/// does not hold up the next alert.
#[derive(Debug, Clone)]
pub struct Alerter {
    tx: mpsc::Sender<Message>,
    metrics: Arc<Metrics>,
    feed: tokio::sync::broadcast::Sender<String>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("alert message")
    }
}

impl Alerter {
    /// Starts the dispatcher.
    pub fn spawn(webhook: Option<reqwest::Url>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let delivery = Delivery {
            webhook,
            feed: tokio::sync::broadcast::channel(64).0,
            client,
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            metrics: Arc::clone(&metrics),
        };
        let feed = delivery.feed.clone();
        tokio::spawn(dispatch(rx, delivery));
        Ok(Self { tx, metrics, feed })
    }

    /// Every alert's text from now on, as it is raised. A reader that falls behind misses some
    /// (the webhook and the log still get them).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.feed.subscribe()
    }

    /// Raises an alert that needs no commit (mass silence).
    pub fn send(&self, alert: Alert) {
        self.enqueue(alert, Utc::now(), None);
    }

    /// Raises an alert once `committed` reports that its transition (made at `at`) is stored.
    pub fn send_after_commit(
        &self,
        alert: Alert,
        at: DateTime<Utc>,
        committed: oneshot::Receiver<Result<(), crate::store::StoreError>>,
    ) {
        self.enqueue(alert, at, Some(committed));
    }

    fn enqueue(
        &self,
        alert: Alert,
        at: DateTime<Utc>,
        committed: Option<oneshot::Receiver<Result<(), crate::store::StoreError>>>,
    ) {
        if let Err(err) = self.tx.try_send(Message::Alert {
            alert,
            at,
            committed,
        }) {
            self.metrics.alert_failed();
            if let mpsc::error::TrySendError::Full(Message::Alert { alert, .. }) = err {
                tracing::error!(alert = %alert.text(), "alert queue full; alert dropped");
            }
        }
    }

    /// Dispatches every alert raised so far, waits up to a few seconds for their deliveries, and
    /// stops the dispatcher.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Close(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn dispatch(mut rx: mpsc::Receiver<Message>, delivery: Delivery) {
    let deliveries = TaskTracker::new();
    while let Some(message) = rx.recv().await {
        match message {
            Message::Alert {
                alert,
                at,
                committed,
            } => {
                if let Some(committed) = committed {
                    match committed.await {
                        Ok(Ok(())) => {}
                        // Another coordinator recorded the change, so the alert is its to send.
                        Ok(Err(crate::store::StoreError::Superseded)) => {
                            tracing::debug!(alert = %alert.text(), "another coordinator recorded this change; its alert is theirs");
                            continue;
                        }
                        Ok(Err(reason)) => {
                            tracing::error!(alert = %alert.text(), %reason, "transition not stored; alert withheld");
                            continue;
                        }
                        Err(_) => {
                            tracing::error!(alert = %alert.text(), "store stopped before the transition was stored; alert withheld");
                            continue;
                        }
                    }
                }
                tracing::warn!(alert = %alert.text(), "alert");
                let _ = delivery.feed.send(alert.text());
                delivery.metrics.alert_sent();
                if delivery.webhook.is_some() {
                    let delivery = delivery.clone();
                    deliveries.spawn(async move { delivery.deliver(&alert, at).await });
                }
            }
            Message::Close(done) => {
                deliveries.close();
                if tokio::time::timeout(SHUTDOWN_GRACE, deliveries.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!("alert deliveries still running at shutdown were abandoned");
                }
                let _ = done.send(());
                return;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Delivery {
    webhook: Option<reqwest::Url>,
    /// Each alert's text as it is raised, for whoever shows them (`polaris server` prints them).
    feed: tokio::sync::broadcast::Sender<String>,
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Delivery {
    async fn deliver(&self, alert: &Alert, at: DateTime<Utc>) {
        let Some(url) = &self.webhook else { return };
        let Ok(_slot) = self.slots.acquire().await else {
            return;
        };
        let body = Payload {
            alert,
            text: alert.text(),
            at,
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
