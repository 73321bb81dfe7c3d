//! macOS, Windows and the rest: what sysinfo knows. Fields it cannot know stay empty.

use sysinfo::{CpuRefreshKind, RefreshKind, System};

use super::{CpuInfo, byte_order};
use crate::inventory::cpu_list::CpuList;

pub fn read() -> anyhow::Result<CpuInfo> {
    let system =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()))
            .map_err(|e| anyhow::anyhow!("cannot read the CPU list: {e}"))?;
    let cpus = system.cpus();
    let first = cpus.first();
    let physical = System::physical_core_count().ok().map(|n| n as u32);
    let logical = cpus.len() as u32;
    Ok(CpuInfo {
        architecture: System::cpu_arch(),
        vendor_id: first
            .map(|c| c.vendor_id().to_owned())
            .filter(|v| !v.is_empty()),
        model_name: first
            .map(|c| c.brand().trim().to_owned())
            .filter(|v| !v.is_empty()),
        family: None,
        model: None,
        stepping: None,
        op_modes: None,
        address_sizes: None,
        byte_order: byte_order(),
        total_cpus: logical,
        online: CpuList::from_cpus((0..logical).collect()),
        sockets: None,
        cores_per_socket: None,
        // Only when it divides evenly: hybrid CPUs (P-cores with two threads, E-cores with
        // one) have no single figure.
        threads_per_core: physical
            .filter(|&p| p > 0 && logical % p == 0)
            .map(|p| logical / p),
        // sysinfo's frequency is the current (or base) clock, not the limits lscpu names.
        min_mhz: None,
        max_mhz: None,
        flags: Vec::new(),
    })
}
