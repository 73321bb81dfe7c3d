//! This machine's figures for a heartbeat, read on a thread of their own. NVML's start-up and
//! its calls, /proc and statvfs can all stall (a wedged driver, a dead mount), and the agent's
//! one async worker also serves the control socket and the standalone coordinator: none of it
//! may wait on them. A heartbeat waits at most its limit for fresh figures; past that it
//! carries the last ones read, since a heartbeat proves the miner alive and a stuck driver
//! must not stop that.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::api::{SystemInfo, SystemMetrics};

/// One reading of the machine, as a heartbeat carries it (`network_latency` is the sender's).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Figures {
    pub(super) system_info: SystemInfo,
    pub(super) metrics: SystemMetrics,
    pub(super) resource_usage: serde_json::Map<String, serde_json::Value>,
    pub(super) read_at: DateTime<Utc>,
}

/// What [`Reader::read`] got: this moment's figures, or older ones when none came in time.
#[derive(Debug, Clone)]
pub(super) struct Reading {
    /// None only when nothing was ever read (the first reading is still stuck).
    pub(super) figures: Option<Arc<Figures>>,
    pub(super) fresh: bool,
}

/// The async side of the sampling thread.
pub(super) struct Reader {
    ask: SyncSender<()>,
    answers: watch::Receiver<Option<Arc<Figures>>>,
    limit: Duration,
}

impl Reader {
    /// Starts the thread that reads this machine (NVML is loaded there, after the first
    /// reading, so a driver that hangs at start-up still leaves CPU, memory and disk figures).
    pub(super) fn start(
        home: PathBuf,
        nvml_library: Option<PathBuf>,
        limit: Duration,
    ) -> std::io::Result<Self> {
        Self::start_with(limit, move || {
            let mut sampler = Sampler::new(&home);
            move |first| {
                if !first && sampler.nvml.is_none() && !sampler.nvml_tried {
                    sampler.load_nvml(nvml_library.as_deref());
                }
                sampler.read()
            }
        })
    }

    /// Starts a thread that answers each request with `make()`'s function (given whether it is
    /// the first request).
    fn start_with<M, F>(limit: Duration, make: M) -> std::io::Result<Self>
    where
        M: FnOnce() -> F + Send + 'static,
        F: FnMut(bool) -> Figures,
    {
        // One request at most waits: a stuck thread does not pile them up.
        let (ask, requests) = std::sync::mpsc::sync_channel(1);
        let (answer, answers) = watch::channel(None);
        std::thread::Builder::new()
            .name("polaris-figures".to_owned())
            .spawn(move || serve(&requests, &answer, make()))?;
        Ok(Self {
            ask,
            answers,
            limit,
        })
    }

    pub(super) fn limit(&self) -> Duration {
        self.limit
    }

    /// This moment's figures, waiting at most the limit for them.
    pub(super) async fn read(&mut self) -> Reading {
        self.answers.borrow_and_update();
        let asked = match self.ask.try_send(()) {
            // Full: the previous request is still being read; its answer will do.
            Ok(()) | Err(TrySendError::Full(())) => true,
            Err(TrySendError::Disconnected(())) => false,
        };
        let fresh = asked
            && matches!(
                tokio::time::timeout(self.limit, self.answers.changed()).await,
                Ok(Ok(()))
            );
        Reading {
            figures: self.answers.borrow().clone(),
            fresh,
        }
    }
}

fn serve(
    requests: &Receiver<()>,
    answers: &watch::Sender<Option<Arc<Figures>>>,
    mut read: impl FnMut(bool) -> Figures,
) {
    let mut first = true;
    // Ends when the Reader is dropped.
    while requests.recv().is_ok() {
        answers.send_replace(Some(Arc::new(read(first))));
        first = false;
    }
}

impl Figures {
    /// What a heartbeat carries when this machine was never read (the first reading is stuck):
    /// the wire format's required numbers as zeros, nothing else.
    pub(super) fn none() -> Self {
        Self {
            system_info: SystemInfo::default(),
            metrics: SystemMetrics {
                cpu_usage: 0.0,
                memory_usage: 0.0,
                disk_usage: 0.0,
                network_latency: 0.0,
                gpu_usage: None,
                temperature: None,
                active_processes: None,
            },
            resource_usage: serde_json::Map::new(),
            read_at: Utc::now(),
        }
    }
}

/// Reads the figures; lives on the sampling thread.
struct Sampler {
    system: Option<sysinfo::System>,
    disk: crate::inventory::disks::DataDirSpace,
    /// NVML, loaded once; None without the driver (then no GPU figures are sent).
    nvml: Option<nvml_wrapper::Nvml>,
    nvml_tried: bool,
}

impl Sampler {
    fn new(home: &std::path::Path) -> Self {
        let system = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing()
                .with_cpu(sysinfo::CpuRefreshKind::nothing().with_usage())
                .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        Self {
            system,
            disk: crate::inventory::disks::DataDirSpace::new(home),
            nvml: None,
            nvml_tried: false,
        }
    }

    fn load_nvml(&mut self, library: Option<&std::path::Path>) {
        self.nvml_tried = true;
        let library = library
            .map(|p| p.as_os_str().to_owned())
            .unwrap_or_else(|| std::ffi::OsString::from(crate::inventory::gpu::DEFAULT_LIBRARY));
        self.nvml = nvml_wrapper::Nvml::builder().lib_path(&library).init().ok();
    }

    fn read(&mut self) -> Figures {
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
        let disk = self.disk.read().map_or(0.0, |s| s.percent_used());
        let network = crate::inventory::network::read_local();
        let system_info = SystemInfo {
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
            disk_usage: disk,
            network_latency: 0.0,
            gpu_usage: gpu_mean.map(|u| u.clamp(0.0, 100.0)),
            temperature: hottest.map(|t| t.clamp(-100.0, 200.0)),
            active_processes: None,
        };
        let mut resource_usage = serde_json::Map::new();
        if !gpus.is_empty() {
            resource_usage.insert("gpus".to_owned(), serde_json::Value::Array(gpus));
        }
        Figures {
            system_info,
            metrics,
            resource_usage,
            read_at: Utc::now(),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(cpu: f64) -> Figures {
        let mut figures = Figures::none();
        figures.metrics.cpu_usage = cpu;
        figures
    }

    #[tokio::test]
    async fn each_reading_is_fresh_while_the_thread_answers() {
        let mut calls = 0.0;
        let mut reader = Reader::start_with(Duration::from_secs(20), move || {
            move |_| {
                calls += 1.0;
                figures(calls)
            }
        })
        .expect("thread");
        for expected in [1.0, 2.0, 3.0] {
            let reading = reader.read().await;
            assert!(reading.fresh);
            assert_eq!(reading.figures.map(|f| f.metrics.cpu_usage), Some(expected));
        }
    }

    /// Paused time: the limit passes at once, however busy the machine is.
    #[tokio::test(start_paused = true)]
    async fn a_stuck_reading_gives_the_last_figures_within_the_limit() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let mut reader = Reader::start_with(Duration::from_secs(2), move || {
            move |first| {
                if !first {
                    // A driver call that does not come back (until the test ends).
                    let _ = stuck.recv();
                }
                figures(7.0)
            }
        })
        .expect("thread");
        // The paused clock may run out the first wait before the thread answers; the answer
        // comes all the same.
        let _ = reader.read().await;
        let _ = reader.answers.wait_for(Option::is_some).await;
        for _ in 0..3 {
            let started = tokio::time::Instant::now();
            let reading = reader.read().await;
            assert!(!reading.fresh, "the thread is stuck");
            assert_eq!(reading.figures.map(|f| f.metrics.cpu_usage), Some(7.0));
            assert_eq!(
                started.elapsed(),
                Duration::from_secs(2),
                "the limit, no more"
            );
        }
        drop(release);
    }

    #[tokio::test]
    async fn the_real_sampler_reads_memory_and_the_home_disk() {
        let home = tempfile::tempdir().expect("tempdir");
        let mut reader = Reader::start(
            home.path().to_owned(),
            Some("/nonexistent/libnvidia-ml.so".into()),
            Duration::from_secs(20),
        )
        .expect("thread");
        let first = reader.read().await;
        let second = reader.read().await;
        assert!(first.fresh && second.fresh);
        let figures = second.figures.expect("figures");
        assert!(figures.metrics.memory_usage > 0.0, "{figures:?}");
        assert!(figures.metrics.disk_usage > 0.0, "{figures:?}");
        assert!(
            figures.resource_usage.is_empty(),
            "no driver, no GPU figures"
        );
    }
}
