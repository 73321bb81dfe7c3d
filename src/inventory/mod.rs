//! What this machine has: CPU, memory, disks (with measured speed), NVIDIA GPUs, network and
//! location. `polaris inventory` shows it and registration sends it (`system_info`).
//!
//! Everything reported is read from the machine or measured; what cannot be found is left
//! empty with a reason, never filled in with a plausible guess.

pub mod bench;
pub mod check;
pub mod cpu;
pub mod cpu_list;
pub mod disks;
pub mod gpu;
pub mod ids;
pub mod limits;
pub mod location;
pub mod memory;
pub mod network;
mod render;
pub mod ssh_login;
mod system_info;
pub mod units;

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::Settings;

pub use render::render_table;
pub use system_info::{SshAddress, advertised_ssh, resource_ids, to_system_info};

/// Everything `collect` found.
#[derive(Debug, Clone)]
pub struct Inventory {
    pub collected_at: DateTime<Utc>,
    pub machine: ids::MachineId,
    pub hostname: Option<String>,
    pub os: Option<String>,
    pub kernel: Option<String>,
    pub location: location::Location,
    pub cpu: cpu::CpuInfo,
    pub memory: memory::MemoryInfo,
    /// What this process may use of the CPUs and memory (containers get less than the host).
    pub limits: limits::Limits,
    pub storage: disks::Storage,
    /// The last `--bench` result for the data disk, if one was measured.
    pub disk_bench: Option<bench::DiskBench>,
    pub gpus: gpu::GpuReport,
    pub network: network::LocalNetwork,
    /// Whether the coordinator answers, and this machine's address as it sees it.
    pub coordinator: network::CoordinatorProbe,
    pub ssh: network::SshProbe,
    /// The account validators log in as (SSH_USER, else the current user).
    pub ssh_user: Option<String>,
    /// SSH_HOST, when set: the address validators should use.
    pub ssh_host: Option<String>,
    pub server_url: reqwest::Url,
}

/// Local facts (the slow part is walking /sys and statvfs) get this long: a hung network
/// mount under POLARIS_HOME must not hang `inventory` and `--check` with it.
const LOCAL_LIMIT: Duration = Duration::from_secs(10);
/// NVML initialisation takes seconds on many-GPU machines without persistence mode, and can
/// hang on a GPU that has fallen off the bus.
const GPU_LIMIT: Duration = Duration::from_secs(20);

/// What is read from this machine's own files.
struct LocalFacts {
    cpu: cpu::CpuInfo,
    memory: memory::MemoryInfo,
    limits: limits::Limits,
    storage: disks::Storage,
    machine: ids::MachineId,
    cached_bench: Option<bench::DiskBench>,
}

impl LocalFacts {
    fn read(home: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            cpu: cpu::read()?,
            memory: memory::read()?,
            limits: limits::read(),
            storage: disks::read(home)?,
            machine: ids::MachineId::load(home)?,
            cached_bench: bench::load_cached(home),
        })
    }
}

/// Reads every fact. Local facts and NVML are read on blocking threads while the coordinator,
/// the SSH port and the location service are asked at the same time; every part has a time
/// limit. Call from a runtime that is shut down with `shutdown_background`, so a probe stuck
/// in the kernel cannot hold the process after its limit.
pub async fn collect(settings: &Settings) -> anyhow::Result<Inventory> {
    let home = settings.home.clone();
    let local = tokio::task::spawn_blocking(move || LocalFacts::read(&home));
    let library = settings.nvml_library.clone();
    let gpus =
        tokio::task::spawn_blocking(move || gpu::probe(library.as_deref().map(|p| p.as_os_str())));
    let client = reqwest::Client::builder()
        .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let cache = settings.home.join("inventory").join("location.json");
    // Interfaces first (a few milliseconds): the SSH probe also tries the LAN address.
    let network = network::read_local();
    let ssh_addresses = network::ssh_probe_addresses(network.internal_ip);
    let (coordinator, ssh, location) = tokio::join!(
        network::probe_coordinator(&client, &settings.server_url),
        network::probe_ssh(settings.ssh.port, &ssh_addresses),
        location::resolve(
            settings.location.as_deref(),
            &client,
            location::LOOKUP_URL,
            &cache
        ),
    );
    let local = tokio::time::timeout(LOCAL_LIMIT, local)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "reading this machine's disks took over {} s: is a network filesystem under {} hung?",
                LOCAL_LIMIT.as_secs(),
                settings.home.display()
            )
        })?
        .context("the hardware probe stopped")??;
    let gpus = match tokio::time::timeout(GPU_LIMIT, gpus).await {
        Ok(report) => report.context("the GPU probe stopped")?,
        Err(_) => gpu::GpuReport {
            reason: Some(format!(
                "the NVIDIA driver did not answer within {} s (a GPU fallen off the bus?)",
                GPU_LIMIT.as_secs()
            )),
            ..gpu::GpuReport::default()
        },
    };
    let LocalFacts {
        cpu,
        memory,
        limits,
        storage,
        machine,
        cached_bench,
    } = local;
    // A benchmark of another place (POLARIS_HOME moved) says nothing about this one.
    let disk_bench = cached_bench.filter(|b| {
        storage
            .data_dir
            .as_ref()
            .is_some_and(|d| d.disk == b.disk && d.path == b.dir)
    });
    Ok(Inventory {
        collected_at: Utc::now(),
        machine,
        hostname: sysinfo::System::host_name().ok(),
        os: sysinfo::System::long_os_version().ok(),
        kernel: sysinfo::System::kernel_version().ok(),
        location,
        cpu,
        memory,
        limits,
        storage,
        disk_bench,
        gpus,
        network,
        coordinator,
        ssh,
        ssh_user: settings.ssh.user.clone().or_else(current_user),
        ssh_host: settings.ssh.host.clone(),
        server_url: settings.server_url.clone(),
    })
}

/// The login name: the environment's, else (services often run without $USER) the password
/// database's entry for our uid.
pub(crate) fn current_user() -> Option<String> {
    let from_env = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()));
    #[cfg(unix)]
    let from_env = from_env.or_else(|| {
        let uid = rustix::process::getuid().as_raw().to_string();
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid).then(|| name.to_owned())
        })
    });
    from_env
}
