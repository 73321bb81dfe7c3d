//! This machine's load for the Overview's gauges and sparklines (CPU, memory, the data disk,
//! each NVIDIA GPU) and, while the Processes tab asks, the CPU and memory of the agent and of
//! compute_subnet's process tree. One plain thread samples every [`EVERY`] and publishes on a
//! `watch`; nothing here ever runs on the UI's thread, since NVML and /proc can stall.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use sysinfo::{
    CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, RefreshKind,
    System,
};
use tokio::sync::watch;

/// btop's default refresh; the anchors' idle cost was measured at 1–2 s.
pub(crate) const EVERY: Duration = Duration::from_secs(2);
/// Samples kept per series: four minutes at [`EVERY`].
pub(crate) const HISTORY: usize = 120;

/// Percentages over time, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Series(pub(crate) VecDeque<u64>);

impl Series {
    fn push(&mut self, percent: f64) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(percent.clamp(0.0, 100.0).round() as u64);
    }

    pub(crate) fn last(&self) -> Option<u64> {
        self.0.back().copied()
    }

    pub(crate) fn values(&self) -> Vec<u64> {
        self.0.iter().copied().collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct GpuUsage {
    pub(crate) name: String,
    pub(crate) utilisation: Series,
    pub(crate) memory_used: u64,
    pub(crate) memory_total: u64,
    pub(crate) temperature: Option<u32>,
}

/// CPU and memory of one process (or tree) as the Processes tab shows them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessUsage {
    pub(crate) pid: u32,
    pub(crate) cpu_percent: f32,
    pub(crate) rss_bytes: u64,
    pub(crate) processes: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MachineUsage {
    pub(crate) samples: u64,
    pub(crate) cpu: Series,
    pub(crate) memory: Series,
    pub(crate) memory_used: u64,
    pub(crate) memory_total: u64,
    pub(crate) disk: Series,
    pub(crate) disk_used: u64,
    pub(crate) disk_total: u64,
    pub(crate) gpus: Vec<GpuUsage>,
    /// Why there are no GPU figures (no driver …), when there are none.
    pub(crate) gpu_note: Option<String>,
    pub(crate) processes: Vec<ProcessUsage>,
}

/// What the Processes tab wants measured: `(pid, whole tree?)`.
pub(crate) type Interest = Vec<(u32, bool)>;

struct Sampler {
    /// None where sysinfo cannot read this system at all.
    system: Option<System>,
    disk: crate::inventory::disks::DataDirSpace,
    nvml: Option<nvml_wrapper::Nvml>,
    usage: MachineUsage,
}

impl Sampler {
    fn new(home: PathBuf) -> Self {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        Self {
            system,
            disk: crate::inventory::disks::DataDirSpace::new(&home),
            nvml: None,
            usage: MachineUsage {
                gpu_note: Some("looking for the NVIDIA driver…".to_owned()),
                ..MachineUsage::default()
            },
        }
    }

    /// Loads NVML (after the first sample: a wedged driver's start-up never returns, and the
    /// other gauges must not wait on it).
    fn load_nvml(&mut self, nvml_library: Option<PathBuf>) {
        let library = nvml_library
            .map(|p| p.into_os_string())
            .unwrap_or_else(|| crate::inventory::gpu::DEFAULT_LIBRARY.into());
        match nvml_wrapper::Nvml::builder().lib_path(&library).init() {
            Ok(nvml) => {
                self.nvml = Some(nvml);
                self.usage.gpu_note = None;
            }
            Err(_) => {
                self.usage.gpu_note = Some(format!(
                    "no NVIDIA driver ({} not loaded)",
                    library.to_string_lossy()
                ));
            }
        }
    }

    fn sample(&mut self, interest: &Interest) {
        let u = &mut self.usage;
        u.samples += 1;
        if let Some(system) = self.system.as_mut() {
            system.refresh_cpu_usage();
            system.refresh_memory();
            // The first CPU reading has nothing to compare with.
            if u.samples > 1 {
                u.cpu.push(f64::from(system.global_cpu_usage()));
            }
            u.memory_total = system.total_memory();
            u.memory_used = system.used_memory();
            u.memory
                .push(u.memory_used as f64 / u.memory_total.max(1) as f64 * 100.0);
        }
        if let Some(space) = self.disk.read() {
            u.disk_used = space.used_bytes;
            u.disk_total = space.total_bytes;
            u.disk.push(space.percent_used());
        }
        if let Some(nvml) = &self.nvml {
            sample_gpus(nvml, &mut u.gpus);
        }
        let processes = if interest.is_empty() {
            Vec::new()
        } else {
            self.processes(interest)
        };
        self.usage.processes = processes;
    }

    fn processes(&mut self, interest: &Interest) -> Vec<ProcessUsage> {
        let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
        let Some(system) = self.system.as_mut() else {
            return Vec::new();
        };
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let system = &*system;
        interest
            .iter()
            .filter_map(|&(pid, tree)| {
                let root = Pid::from_u32(pid);
                system.process(root)?;
                let members: Vec<_> = system
                    .processes()
                    .iter()
                    .filter(|(p, _)| **p == root || (tree && descends_from(system, **p, root)))
                    .map(|(_, p)| p)
                    .collect();
                Some(ProcessUsage {
                    pid,
                    cpu_percent: members.iter().map(|p| p.cpu_usage()).sum(),
                    rss_bytes: members.iter().map(|p| p.memory()).sum(),
                    processes: members.len(),
                })
            })
            .collect()
    }
}

fn descends_from(system: &System, mut pid: Pid, root: Pid) -> bool {
    // A depth bound guards against a cycle in a process table read while it changes.
    for _ in 0..64 {
        match system.process(pid).and_then(|p| p.parent()) {
            Some(parent) if parent == root => return true,
            Some(parent) => pid = parent,
            None => return false,
        }
    }
    false
}

fn sample_gpus(nvml: &nvml_wrapper::Nvml, gpus: &mut Vec<GpuUsage>) {
    use nvml_wrapper::enum_wrappers::device::TemperatureSensor;
    let count = nvml.device_count().unwrap_or(0) as usize;
    gpus.resize_with(count, GpuUsage::default);
    for (index, gpu) in gpus.iter_mut().enumerate() {
        let Ok(device) = nvml.device_by_index(index as u32) else {
            continue;
        };
        if gpu.name.is_empty() {
            gpu.name = device.name().unwrap_or_else(|_| format!("GPU {index}"));
        }
        if let Ok(rates) = device.utilization_rates() {
            gpu.utilisation.push(f64::from(rates.gpu));
        }
        if let Ok(memory) = device.memory_info() {
            gpu.memory_used = memory.used;
            gpu.memory_total = memory.total;
        }
        gpu.temperature = device.temperature(TemperatureSensor::Gpu).ok();
    }
}

/// Starts the sampling thread; it ends when every receiver of `usage` is gone.
pub(crate) fn spawn(
    home: PathBuf,
    nvml_library: Option<PathBuf>,
    usage: watch::Sender<MachineUsage>,
    interest: watch::Receiver<Interest>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("polaris-sampler".to_owned())
        .spawn(move || {
            let mut sampler = Sampler::new(home);
            let mut nvml_library = Some(nvml_library);
            while !usage.is_closed() {
                let wanted = interest.borrow().clone();
                sampler.sample(&wanted);
                usage.send_replace(sampler.usage.clone());
                if let Some(library) = nvml_library.take() {
                    sampler.load_nvml(library);
                }
                std::thread::sleep(EVERY);
            }
        })
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_the_last_minutes_in_percent() {
        let mut series = Series::default();
        for i in 0..(HISTORY + 10) {
            series.push(i as f64);
        }
        assert_eq!(series.0.len(), HISTORY);
        assert_eq!(series.0.front(), Some(&10));
        series.push(250.0);
        assert_eq!(series.last(), Some(100));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_sample_reads_memory_disk_and_a_process_tree() -> std::io::Result<()> {
        let home = tempfile::tempdir()?;
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()?;
        let mut sampler = Sampler::new(home.path().to_owned());
        sampler.load_nvml(Some("/nonexistent/libnvidia-ml.so".into()));
        let interest = vec![
            (child.id(), true),
            (child.id(), false),
            (u32::MAX - 1, true),
        ];
        // Until both children run (a busy machine starts them late), at most 10 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            sampler.sample(&interest);
            let tree = sampler.usage.processes.first().map(|p| p.processes);
            if tree == Some(3) || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        child.wait()?;
        let u = &sampler.usage;
        assert!(u.memory_total > 0 && u.memory.last().is_some());
        assert!(u.disk_total > 0, "statvfs of the home");
        assert!(u.gpus.is_empty() && u.gpu_note.is_some());
        assert_eq!(u.processes.len(), 2, "the missing pid is left out");
        assert_eq!(u.processes[0].processes, 3, "the tree counts its children");
        assert_eq!(u.processes[1].processes, 1);
        Ok(())
    }
}
