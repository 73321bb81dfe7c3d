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

use crate::api::{
    HeartbeatMetrics, HeartbeatRequest, HeartbeatResponse, HeartbeatStatus, SystemInfo,
    SystemMetrics,
};
use crate::register::record::{self, RegistrationRecord};

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
    pub last_error: Option<String>,
    /// Why heartbeats are not being sent although a registration exists: `registration.json`
    /// cannot be read (damaged). Cleared once it reads again.
    #[serde(default)]
    pub registration_problem: Option<String>,
}

/// What the coordinator asked the agent to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instruction {
    RestartCompute,
}

/// Reads this machine's figures for one heartbeat.
struct Sampler {
    system: Option<sysinfo::System>,
    home: PathBuf,
    /// NVML, loaded once; None without the driver (then no GPU figures are sent).
    nvml: Option<nvml_wrapper::Nvml>,
}

/// Per-GPU figures: (`resource_usage.gpus`, mean utilisation, hottest temperature).
fn gpu_usage(nvml: &nvml_wrapper::Nvml) -> (Vec<serde_json::Value>, Option<f64>, Option<f64>) {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    let count = nvml.device_count().unwrap_or(0);
    let mut gpus = Vec::new();
    let mut utilisation = Vec::new();
    let mut hottest: Option<f64> = None;
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let util = device.utilization_rates().ok();
        let memory = device.memory_info().ok();
        let temperature = device.temperature(TemperatureSensor::Gpu).ok();
        if let Some(u) = &util {
            utilisation.push(f64::from(u.gpu));
        }
        if let Some(t) = temperature {
            hottest = Some(hottest.map_or(f64::from(t), |h| h.max(f64::from(t))));
        }
        gpus.push(serde_json::json!({
            "index": index,
            "uuid": device.uuid().ok(),
            "utilization_percent": util.as_ref().map(|u| u.gpu),
            "memory_utilization_percent": util.as_ref().map(|u| u.memory),
            "memory_used_bytes": memory.as_ref().map(|m| m.used),
            "memory_total_bytes": memory.as_ref().map(|m| m.total),
            "temperature_celsius": temperature,
        }));
    }
    let mean = (!utilisation.is_empty())
        .then(|| utilisation.iter().sum::<f64>() / utilisation.len() as f64);
    (gpus, mean, hottest)
}

impl Sampler {
    fn new(home: PathBuf, nvml_library: Option<&std::path::Path>) -> Self {
        let library = nvml_library
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_else(|| std::ffi::OsString::from(crate::inventory::gpu::DEFAULT_LIBRARY));
        let nvml = nvml_wrapper::Nvml::builder().lib_path(&library).init().ok();
        let system = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing()
                .with_cpu(sysinfo::CpuRefreshKind::nothing().with_usage())
                .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        Self { system, home, nvml }
    }

    /// The original's heartbeat body with this moment's figures.
    fn request(
        &mut self,
        miner_id: &str,
        status: HeartbeatStatus,
        latency_ms: f64,
    ) -> HeartbeatRequest {
        let (system_info, metrics, resource_usage) = self.sample(latency_ms);
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
        }
    }

    fn sample(
        &mut self,
        latency_ms: f64,
    ) -> (
        SystemInfo,
        SystemMetrics,
        serde_json::Map<String, serde_json::Value>,
    ) {
        let (cpu, memory) = match self.system.as_mut() {
            Some(system) => {
                // CPU usage is measured between two refreshes: the previous heartbeat's and now.
                system.refresh_cpu_usage();
                system.refresh_memory();
                let total = system.total_memory().max(1) as f64;
                (
                    f64::from(system.global_cpu_usage()).clamp(0.0, 100.0),
                    (system.used_memory() as f64 / total * 100.0).clamp(0.0, 100.0),
                )
            }
            None => (0.0, 0.0),
        };
        let disk = crate::inventory::disks::read(&self.home)
            .ok()
            .and_then(|s| s.data_dir)
            .filter(|d| d.total_bytes > 0)
            .map_or(0.0, |d| {
                (1.0 - d.available_bytes as f64 / d.total_bytes as f64) * 100.0
            });
        let network = crate::inventory::network::read_local();
        let info = SystemInfo {
            hostname: sysinfo::System::host_name().ok(),
            ip_address: network.internal_ip.map(|ip| ip.to_string()),
            os_version: sysinfo::System::long_os_version().ok(),
            uptime: sysinfo::System::uptime().ok().map(|s| s as f64),
            last_boot: sysinfo::System::boot_time()
                .ok()
                .and_then(|t| DateTime::<Utc>::from_timestamp(i64::try_from(t).ok()?, 0))
                .map(|t| t.to_rfc3339()),
        };
        let (gpus, gpu_mean, hottest) = self.nvml.as_ref().map(gpu_usage).unwrap_or_default();
        let metrics = SystemMetrics {
            cpu_usage: cpu,
            memory_usage: memory,
            disk_usage: disk.clamp(0.0, 100.0),
            network_latency: latency_ms.clamp(0.0, 3.6e6),
            gpu_usage: gpu_mean.map(|u| u.clamp(0.0, 100.0)),
            temperature: hottest.map(|t| t.clamp(-100.0, 200.0)),
            active_processes: None,
        };
        let mut resource_usage = serde_json::Map::new();
        if !gpus.is_empty() {
            resource_usage.insert("gpus".to_owned(), serde_json::Value::Array(gpus));
        }
        (info, metrics, resource_usage)
    }
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
    instructions: Option<mpsc::Sender<Instruction>>,
    cancel: CancellationToken,
) {
    let Ok(client) = reqwest::Client::builder()
        .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
        .timeout(Duration::from_secs(2))
        .build()
    else {
        return;
    };
    let home = config.home.clone();
    let nvml = config.nvml_library.clone();
    beat(config, state, instructions, cancel).await;
    if let Ok(Some(record)) = read_record(&home).await {
        let body = Sampler::new(home, nvml.as_deref()).request(
            &record.miner_id,
            HeartbeatStatus::Offline,
            0.0,
        );
        match send(&client, &record, &body).await {
            Ok(_) => tracing::info!("signed off: the coordinator marks this miner offline now"),
            Err(why) => tracing::warn!(error = %why, "could not sign off"),
        }
    }
}

async fn beat(
    config: Config,
    state: watch::Sender<State>,
    instructions: Option<mpsc::Sender<Instruction>>,
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
                s.last_error = Some(format!("cannot build the HTTP client: {err}"))
            });
            return;
        }
    };
    let mut sampler = Sampler::new(config.home.clone(), config.nvml_library.as_deref());
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
            let body = sampler.request(&record.miner_id, HeartbeatStatus::Online, latency_ms);
            let sent = Instant::now();
            match send(&client, &record, &body).await {
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
                    for command in &answer.commands {
                        let restart = command.get("action").and_then(|a| a.as_str())
                            == Some("restart")
                            && command.get("target").and_then(|t| t.as_str()) != Some("polaris");
                        if restart && let Some(tx) = &instructions {
                            let _ = tx.send(Instruction::RestartCompute).await;
                        }
                    }
                    break;
                }
                Err(why) => {
                    if !was_failing {
                        tracing::warn!(error = %why, "heartbeat not acknowledged; retrying");
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

async fn send(
    client: &reqwest::Client,
    record: &RegistrationRecord,
    body: &HeartbeatRequest,
) -> Result<HeartbeatResponse, String> {
    let url = format!("{}/heart_beat", record.server_url.trim_end_matches('/'));
    let answer = client
        .post(&url)
        .bearer_auth(record.token.expose())
        .json(body)
        .send()
        .await
        .map_err(|e| {
            format!(
                "{url} unreachable: {}",
                crate::inventory::network::root_cause(&e)
            )
        })?;
    let status = answer.status();
    if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::NOT_FOUND {
        return Err(format!(
            "the coordinator does not know this miner ({status}): run `polaris register` again"
        ));
    }
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    answer
        .json()
        .await
        .map_err(|e| format!("{url} sent an unexpected answer: {e}"))
}
