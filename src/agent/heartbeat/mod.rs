//! The heartbeat sender: every `POLARIS_HEARTBEAT_INTERVAL` (10 s) ± 10 % jitter, the original's
//! body (original-polaris.md §6.1) with this machine's real figures, sent with the miner token.
//! A failed send is retried from 200 ms, doubling to 7 s, inside the interval; the sender never
//! gives up, and it logs changes of state, not every failure. Before registration it waits
//! quietly and starts as soon as `registration.json` appears.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::commands::{self, Order, Reports};
use crate::api::{AuthorizedKey, HeartbeatMetrics, HeartbeatRequest, HeartbeatStatus};
use crate::register::record::{self, RegistrationRecord};

mod figures;
mod send;

pub use send::{Failure, FailureKind};

#[derive(Debug, Clone)]
pub struct Config {
    pub home: PathBuf,
    pub interval: Duration,
    pub retry_start: Duration,
    pub retry_max: Duration,
    /// How often to look for registration.json before there is one.
    pub registration_poll: Duration,
    /// POLARIS_NVML_LIBRARY, when set.
    pub nvml_library: Option<PathBuf>,
    /// The longest a heartbeat waits for this moment's figures before it carries older ones.
    pub sample_limit: Duration,
}

impl Config {
    pub fn new(home: PathBuf, interval: Duration) -> Self {
        Self {
            home,
            interval,
            retry_start: Duration::from_millis(200),
            retry_max: Duration::from_secs(7),
            registration_poll: Duration::from_secs(2),
            nvml_library: None,
            // Reading takes milliseconds; a quarter of the interval leaves the send its time.
            sample_limit: (interval / 4).min(Duration::from_secs(2)),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub miner_id: Option<String>,
    /// The coordinator's time of the last acknowledged heartbeat.
    pub last_ack: Option<DateTime<Utc>>,
    /// Round trip of the last acknowledged heartbeat, in milliseconds.
    pub last_rtt_ms: Option<f64>,
    pub acknowledged: u64,
    /// Failed sends since the last acknowledged one.
    pub failures: u32,
    /// Why the last send failed, while failures > 0.
    pub last_error: Option<Failure>,
    /// Why heartbeats are not being sent although a registration exists: `registration.json`
    /// cannot be read (damaged). Cleared once it reads again.
    #[serde(default)]
    pub registration_problem: Option<String>,
    /// Set while this machine's figures do not come in time (a stuck GPU driver or disk):
    /// heartbeats still go, with the last figures read.
    #[serde(default)]
    pub sampling_problem: Option<String>,
}

/// Most keys a heartbeat reports: with long comments, far more would pass the coordinator's
/// 64 KiB body limit and get every heartbeat refused. The agent manages no more than this
/// ([`super::ssh_keys`]), so the report is whole.
pub const MAX_KEYS_REPORTED: usize = 100;

/// What heartbeats carry besides this machine's figures, and where the coordinator's commands
/// go. The default carries nothing and drops commands (a sender on its own, in tests).
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Where the commands of heartbeat answers are handed to be carried out.
    pub orders: Option<mpsc::Sender<Order>>,
    /// How the commands handed out ended, reported in the next heartbeats.
    pub reports: Reports,
    /// The keys of the managed `authorized_keys` block, when SSH access by key is on.
    pub ssh_keys: Option<watch::Receiver<Vec<AuthorizedKey>>>,
}

/// The interval with ± 10 % jitter, so a fleet restarted together does not beat in step.
fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.9..=1.1))
}

/// Sends heartbeats until `cancel`, then signs off with an `offline` heartbeat, so the
/// coordinator marks the miner offline at once instead of after its silence limit.
pub async fn run(
    config: Config,
    state: watch::Sender<State>,
    links: Links,
    cancel: CancellationToken,
) {
    let client = match reqwest::Client::builder()
        .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            state.send_modify(|s| {
                s.last_error = Some(Failure {
                    kind: FailureKind::Unreachable,
                    status: None,
                    message: format!("cannot build the HTTP client: {err}"),
                })
            });
            return;
        }
    };
    let mut figures = match figures::Reader::start(
        config.home.clone(),
        config.nvml_library.clone(),
        config.sample_limit,
    ) {
        Ok(reader) => reader,
        Err(err) => {
            tracing::error!(error = %err, "heartbeats stopped: cannot start the thread that reads this machine");
            state.send_modify(|s| {
                s.sampling_problem = Some(format!("cannot start the sampling thread: {err}"))
            });
            return;
        }
    };
    beat(&config, &client, &mut figures, &state, &links, &cancel).await;
    if let Ok(Some(record)) = read_record(&config.home).await {
        let mut body = request(
            &mut figures,
            &state,
            &record.miner_id,
            HeartbeatStatus::Offline,
            0.0,
        )
        .await;
        links.attach(&mut body);
        // Quick: a coordinator that is gone must not hold the agent's stop.
        let quick =
            tokio::time::timeout(Duration::from_secs(2), send::send(&client, &record, &body));
        match quick.await {
            Ok(Ok(_)) => tracing::info!("signed off: the coordinator marks this miner offline now"),
            Ok(Err(why)) => tracing::warn!("could not sign off: {why}"),
            Err(_) => tracing::warn!("could not sign off: no answer within 2 s"),
        }
    }
}

/// The original's heartbeat body with this moment's figures (or the last ones read, when the
/// machine does not answer in time; said once in the state and the log).
async fn request(
    figures: &mut figures::Reader,
    state: &watch::Sender<State>,
    miner_id: &str,
    status: HeartbeatStatus,
    latency_ms: f64,
) -> HeartbeatRequest {
    let reading = figures.read().await;
    let late = (!reading.fresh).then(|| match &reading.figures {
        Some(old) => format!(
            "this machine's figures did not come within {} (a stuck GPU driver or disk?): heartbeats carry those of {}",
            humantime::format_duration(figures.limit()),
            old.read_at.format("%H:%M:%S UTC")
        ),
        None => format!(
            "this machine's figures did not come within {} (a stuck GPU driver or disk?): heartbeats carry none",
            humantime::format_duration(figures.limit())
        ),
    });
    if state.borrow().sampling_problem != late {
        match &late {
            Some(why) if state.borrow().sampling_problem.is_none() => tracing::warn!("{why}"),
            Some(_) => {}
            None => tracing::info!("this machine's figures come in time again"),
        }
        state.send_modify(|s| s.sampling_problem = late);
    }
    let figures::Figures {
        system_info,
        mut metrics,
        resource_usage,
        ..
    } = reading
        .figures
        .map_or_else(figures::Figures::none, |f| f.as_ref().clone());
    metrics.network_latency = latency_ms.clamp(0.0, 3.6e6);
    HeartbeatRequest {
        // The original's naive UTC timestamp (no zone).
        timestamp: Some(Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()),
        status,
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        metrics: HeartbeatMetrics {
            miner_id: miner_id.to_owned(),
            system_info,
            metrics,
            resource_usage,
            active_jobs: Vec::new(),
        },
        command_results: None,
        ssh_keys: None,
    }
}

impl Links {
    /// Adds the command reports and the SSH keys to a heartbeat.
    fn attach(&self, body: &mut HeartbeatRequest) {
        // Always present, if empty: it says this agent reports the commands it is given.
        body.command_results = Some(self.reports.pending());
        body.ssh_keys = self.ssh_keys.as_ref().map(|keys| {
            let keys = keys.borrow();
            keys.iter().take(MAX_KEYS_REPORTED).cloned().collect()
        });
    }

    /// Hands the commands of an acknowledged heartbeat's answer on, each id once; one this
    /// agent cannot take is reported failed at once.
    async fn take(&self, answer: &crate::api::HeartbeatResponse) {
        for entry in &answer.commands {
            let (id, command) = commands::read(entry);
            if let Some(id) = &id
                && !self.reports.begin(id)
            {
                continue;
            }
            let command = match command {
                Ok(command) => command,
                Err(why) => {
                    tracing::warn!("a command from the coordinator was refused: {why}");
                    if let Some(id) = id {
                        self.reports.end(id, Err(why));
                    }
                    continue;
                }
            };
            let Some(orders) = &self.orders else {
                if let Some(id) = id {
                    self.reports
                        .end(id, Err("this agent carries out no commands".to_owned()));
                }
                continue;
            };
            let action = command.action();
            tracing::info!(action, "the coordinator sent a command");
            if orders
                .send(Order {
                    id: id.clone(),
                    command,
                })
                .await
                .is_err()
                && let Some(id) = id
            {
                self.reports
                    .end(id, Err(format!("the agent is stopping: {action} not done")));
            }
        }
    }
}

async fn beat(
    config: &Config,
    client: &reqwest::Client,
    figures: &mut figures::Reader,
    state: &watch::Sender<State>,
    links: &Links,
    cancel: &CancellationToken,
) {
    let mut latency_ms = 0.0;
    let mut was_failing = false;
    loop {
        let record = match read_record(&config.home).await {
            Ok(record) => {
                if state.borrow().registration_problem.is_some() {
                    tracing::info!("registration.json reads again: heartbeats resume");
                    state.send_modify(|s| s.registration_problem = None);
                }
                record
            }
            Err(why) => {
                // Said once per problem, not once per poll.
                if state.borrow().registration_problem.as_deref() != Some(why.as_str()) {
                    tracing::error!("heartbeats stopped: {why}");
                    state.send_modify(|s| s.registration_problem = Some(why));
                }
                None
            }
        };
        let Some(record) = record else {
            // Not registered yet (or the file is damaged): look again soon.
            tokio::select! {
                () = tokio::time::sleep(config.registration_poll) => continue,
                () = cancel.cancelled() => return,
            }
        };
        state.send_modify(|s| s.miner_id = Some(record.miner_id.clone()));
        let beat_started = Instant::now();
        let deadline = beat_started + config.interval;
        let mut retry = config.retry_start;
        loop {
            let mut body = request(
                figures,
                state,
                &record.miner_id,
                HeartbeatStatus::Online,
                latency_ms,
            )
            .await;
            links.attach(&mut body);
            let sent = Instant::now();
            match send::send(client, &record, &body).await {
                Ok(answer) => {
                    latency_ms = sent.elapsed().as_secs_f64() * 1000.0;
                    if was_failing {
                        tracing::info!("heartbeats acknowledged again");
                        was_failing = false;
                    }
                    state.send_modify(|s| {
                        // Our clock, not the coordinator's: `status` ages it with ours.
                        s.last_ack = Some(Utc::now());
                        s.last_rtt_ms = Some(latency_ms);
                        s.acknowledged += 1;
                        s.failures = 0;
                        s.last_error = None;
                    });
                    links
                        .reports
                        .acknowledged(body.command_results.as_deref().unwrap_or_default());
                    links.take(&answer).await;
                    break;
                }
                Err(why) => {
                    // Logged when it starts failing, and again when the reason changes kind
                    // (unreachable, then refused: the user has something else to do).
                    let kind_changed = state
                        .borrow()
                        .last_error
                        .as_ref()
                        .is_some_and(|e| e.kind != why.kind);
                    if !was_failing || kind_changed {
                        tracing::warn!("heartbeat not acknowledged; retrying: {why}");
                        was_failing = true;
                    }
                    state.send_modify(|s| {
                        s.failures += 1;
                        s.last_error = Some(why);
                    });
                    // Retry inside this interval; the next interval starts over regardless.
                    if Instant::now() + retry >= deadline {
                        break;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = cancel.cancelled() => return,
                    }
                    retry = (retry * 2).min(config.retry_max);
                }
            }
        }
        let next = jittered(config.interval).saturating_sub(beat_started.elapsed());
        tokio::select! {
            () = tokio::time::sleep(next) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// The saved registration, read off the async threads: None when there is none, an error
/// that says what to do when it is damaged (never taken for "not registered").
async fn read_record(home: &std::path::Path) -> Result<Option<RegistrationRecord>, String> {
    let home = home.to_owned();
    match tokio::task::spawn_blocking(move || record::load(&home)).await {
        Ok(loaded) => loaded.map_err(|err| format!("{err:#}")),
        Err(err) => Err(format!("cannot read registration.json: {err}")),
    }
}
