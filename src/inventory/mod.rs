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
pub mod location;
pub mod memory;
pub mod network;
mod render;
mod system_info;
pub mod units;

use anyhow::Context;
use chrono::{DateTime, Utc};

use crate::config::Settings;

pub use render::render_table;
pub use system_info::to_system_info;

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

/// Reads every fact. Local facts are read on blocking threads while the coordinator, the SSH
/// port and the location service are asked at the same time, so the slowest probe sets the
/// pace (each is bounded by a 3 s timeout).
pub async fn collect(settings: &Settings) -> anyhow::Result<Inventory> {
    let home = settings.home.clone();
    let local = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        Ok((
            cpu::read()?,
            memory::read()?,
            disks::read(&home)?,
            network::read_local(),
            ids::MachineId::load(&home)?,
            bench::load_cached(&home),
        ))
    });
    let library = settings.nvml_library.clone();
    let gpus =
        tokio::task::spawn_blocking(move || gpu::probe(library.as_deref().map(|p| p.as_os_str())));
    let client = reqwest::Client::builder()
        .user_agent(concat!("polaris/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")?;
    let cache = settings.home.join("inventory").join("location.json");
    let (coordinator, ssh, location) = tokio::join!(
        network::probe_coordinator(&client, &settings.server_url),
        network::probe_ssh(settings.ssh.port),
        location::resolve(
            settings.location.as_deref(),
            &client,
            location::LOOKUP_URL,
            &cache
        ),
    );
    let (cpu, memory, storage, network, machine, cached_bench) =
        local.await.context("the hardware probe stopped")??;
    let gpus = gpus.await.context("the GPU probe stopped")?;
    // A benchmark of another disk (POLARIS_HOME moved) says nothing about this one.
    let data_disk = storage.data_dir.as_ref().and_then(|d| d.disk.clone());
    let disk_bench = cached_bench.filter(|b| b.disk == data_disk);
    Ok(Inventory {
        collected_at: Utc::now(),
        machine,
        hostname: sysinfo::System::host_name().ok(),
        os: sysinfo::System::long_os_version().ok(),
        kernel: sysinfo::System::kernel_version().ok(),
        location,
        cpu,
        memory,
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
fn current_user() -> Option<String> {
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
