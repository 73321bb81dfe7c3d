//! The inventory in the original's `system_info` shape (original-polaris.md §4.2/§4.3): the
//! original's field names and unit strings, with our extra facts under new keys.
//!
//! A machine with NVIDIA GPUs offers one GPU resource per GPU (the original kept only the
//! first); a machine without offers one CPU resource. Every resource carries the host's CPU,
//! memory and data-disk facts, as the original's did, and `machine_id` groups them.

use serde_json::{Map, Value, json};

use super::Inventory;
use super::disks::DiskKind;
use super::units::{wire_gb, wire_mb_per_s};
use crate::api::{ComputeResource, CpuSpecs, GpuSpecs, NetworkInfo, Storage, SystemInventory};

/// Each resource's type and stable id: one GPU resource per GPU, else one CPU resource.
pub fn resource_ids(inventory: &Inventory) -> Vec<(&'static str, String)> {
    if inventory.gpus.gpus.is_empty() {
        vec![("CPU", inventory.machine.resource_id("cpu"))]
    } else {
        inventory
            .gpus
            .gpus
            .iter()
            .map(|gpu| ("GPU", gpu_resource_id(inventory, gpu)))
            .collect()
    }
}

fn gpu_resource_id(inventory: &Inventory, gpu: &super::gpu::Gpu) -> String {
    inventory.machine.resource_id(&format!("gpu:{}", gpu.uuid))
}

pub fn to_system_info(inventory: &Inventory) -> SystemInventory {
    let base = |id: String, kind: &str| ComputeResource {
        id,
        resource_type: kind.to_owned(),
        location: Some(inventory.location.name.clone()),
        hourly_price: 0.0,
        ram: wire_gb(inventory.memory.total_bytes),
        storage: storage(inventory),
        cpu_specs: Some(cpu_specs(inventory)),
        gpu_specs: None,
        network: Some(network(inventory)),
        is_active: Some(true),
        extra: object(json!({ "machine_id": inventory.machine.fingerprint() })),
    };
    let compute_resources = if inventory.gpus.gpus.is_empty() {
        vec![base(inventory.machine.resource_id("cpu"), "CPU")]
    } else {
        inventory
            .gpus
            .gpus
            .iter()
            .map(|gpu| {
                let mut resource = base(gpu_resource_id(inventory, gpu), "GPU");
                resource.gpu_specs = Some(gpu_specs(inventory, gpu));
                resource
            })
            .collect()
    };
    SystemInventory {
        location: Some(inventory.location.name.clone()),
        compute_resources,
        extra: extra(inventory),
    }
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn cpu_specs(inventory: &Inventory) -> CpuSpecs {
    let cpu = &inventory.cpu;
    CpuSpecs {
        op_modes: cpu.op_modes.clone(),
        address_sizes: cpu.address_sizes.clone(),
        byte_order: Some(cpu.byte_order.clone()),
        total_cpus: Some(cpu.total_cpus),
        online_cpus: Some(cpu.online.to_string()),
        vendor_id: cpu.vendor_id.clone(),
        cpu_name: cpu.model_name.clone(),
        cpu_family: cpu.family,
        model: cpu.model,
        threads_per_core: cpu.threads_per_core,
        cores_per_socket: cpu.cores_per_socket,
        sockets: cpu.sockets,
        stepping: cpu.stepping,
        cpu_max_mhz: cpu.max_mhz,
        cpu_min_mhz: cpu.min_mhz,
        extra: object(json!({
            "architecture": cpu.architecture,
            "online_cpu_count": cpu.online.len(),
            "online_cpu_list": cpu.online.cpus(),
            "flags": cpu.flags,
        })),
    }
}

/// The data disk: the one holding POLARIS_HOME, where `--bench` measured. When that is not one
/// physical disk (tmpfs, a container's overlay, RAID across disks) the type is `Unknown` and the
/// capacity is the data filesystem's, said so in `capacity_source`: never another disk's facts.
fn storage(inventory: &Inventory) -> Storage {
    let storage = &inventory.storage;
    let disk = storage.data_disk();
    let data = storage.data_dir.as_ref();
    let (capacity, source) = match (disk.and_then(|d| d.size_bytes), data) {
        (Some(size), _) => (size, "disk"),
        (None, Some(data)) => (data.total_bytes, "filesystem"),
        (None, None) => (0, "unknown"),
    };
    let mut extra = Map::new();
    extra.insert("capacity_bytes".into(), json!(capacity));
    extra.insert("capacity_source".into(), json!(source));
    if let Some(disk) = disk {
        extra.insert("device".into(), json!(disk.name));
        extra.insert("model".into(), json!(disk.model));
        extra.insert("transport".into(), json!(disk.transport));
    }
    if let Some(data) = data {
        extra.insert("data_dir_free_bytes".into(), json!(data.available_bytes));
        extra.insert("data_dir_fs_type".into(), json!(data.fs_type));
    }
    let bench = inventory.disk_bench.as_ref();
    if let Some(bench) = bench {
        extra.insert("measured_at".into(), json!(bench.measured_at));
        extra.insert("read_cache_bypass".into(), json!(bench.read_bypass));
    }
    Storage {
        kind: disk
            .map_or(DiskKind::Unknown, |d| d.kind)
            .as_str()
            .to_owned(),
        capacity: wire_gb(capacity),
        read_speed: bench.and_then(|b| b.read_mb_per_s).map(wire_mb_per_s),
        write_speed: bench.map(|b| wire_mb_per_s(b.write_mb_per_s)),
        extra,
    }
}

fn gpu_specs(inventory: &Inventory, gpu: &super::gpu::Gpu) -> GpuSpecs {
    let mut extra = object(serde_json::to_value(gpu).unwrap_or(Value::Null));
    extra.remove("name");
    extra.insert(
        "driver_version".into(),
        json!(inventory.gpus.driver_version),
    );
    extra.insert("cuda_version".into(), json!(inventory.gpus.cuda_version));
    GpuSpecs {
        gpu_name: gpu.name.clone(),
        memory_size: Some(wire_gb(gpu.memory_total_bytes)),
        cuda_cores: gpu.cuda_cores,
        clock_speed: gpu.max_graphics_clock_mhz.map(|mhz| format!("{mhz}MHz")),
        power_consumption: gpu.power_limit_watts.map(|w| format!("{w:.0}W")),
        extra,
    }
}

/// Where registration tells validators to log in: `host` (bare, an IPv6 address without
/// brackets) and the SSH port. `polaris inventory --check` probes exactly this address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAddress {
    pub host: String,
    pub port: u16,
}

impl SshAddress {
    /// `host:port`, IPv6 in brackets, as people (and URLs) write it.
    pub fn host_port(&self) -> String {
        // SSH_HOST may come bracketed already.
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// How validators reach this machine: SSH_HOST, else the public address (unless the
/// coordinator runs on this machine and so sees loopback), else the internal one; `None` when
/// none of them is known.
pub fn advertised_ssh(inventory: &Inventory) -> Option<SshAddress> {
    let reachable_from_outside =
        |ip: &std::net::IpAddr| !ip.is_loopback() && !ip.is_unspecified() && !is_link_local(ip);
    let host = inventory
        .ssh_host
        .clone()
        .or_else(|| {
            inventory
                .coordinator
                .public_ip
                .filter(reachable_from_outside)
                .map(|ip| ip.to_string())
        })
        .or_else(|| inventory.network.internal_ip.map(|ip| ip.to_string()))?;
    Some(SshAddress {
        host,
        port: inventory.ssh.port,
    })
}

fn network(inventory: &Inventory) -> NetworkInfo {
    let port = inventory.ssh.port;
    let ssh = match (&inventory.ssh_user, advertised_ssh(inventory)) {
        (Some(user), Some(address)) => Some(format!("ssh://{user}@{}", address.host_port())),
        _ => None,
    };
    NetworkInfo {
        internal_ip: inventory.network.internal_ip.map(|ip| ip.to_string()),
        ssh,
        username: inventory.ssh_user.clone(),
        open_ports: vec![port.to_string()],
        ..NetworkInfo::default()
    }
}

fn is_link_local(ip: &std::net::IpAddr) -> bool {
    match ip {
        std::net::IpAddr::V4(v4) => v4.is_link_local(),
        std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Machine-wide facts beyond the original's fields.
fn extra(inventory: &Inventory) -> Map<String, Value> {
    object(json!({
        "collected_at": inventory.collected_at,
        "polaris_version": env!("CARGO_PKG_VERSION"),
        "location_source": inventory.location.source,
        "machine": {
            "machine_id": inventory.machine.fingerprint(),
            "hostname": inventory.hostname,
            "os": inventory.os,
            "kernel": inventory.kernel,
        },
        "memory": inventory.memory,
        "limits": {
            "affinity_cpus": inventory.limits.affinity_cpus,
            "cgroup_cpus": inventory.limits.cgroup_cpus,
            "cgroup_memory_bytes": inventory.limits.cgroup_memory_bytes,
            "usable_cpus": inventory.limits.usable_cpus(inventory.cpu.online.len() as u32),
            "usable_memory_bytes": inventory.limits.usable_memory(inventory.memory.total_bytes),
        },
        "disks": inventory.storage.disks,
        "data_dir": inventory.storage.data_dir,
        "disk_bench": inventory.disk_bench,
        "gpu_status": {
            "count": inventory.gpus.gpus.len(),
            "driver_version": inventory.gpus.driver_version,
            "cuda_version": inventory.gpus.cuda_version,
            "reason": inventory.gpus.reason,
        },
        "network": {
            "default_interface": inventory.network.default_interface,
            "internal_ip": inventory.network.internal_ip,
            "public_ip": inventory.coordinator.public_ip,
            "public_ip_error": inventory.coordinator.error,
            "coordinator_reachable": inventory.coordinator.reachable,
            "interfaces": inventory.network.interfaces,
            "ssh": inventory.ssh,
        },
    }))
}
