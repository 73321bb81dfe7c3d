//! CPU facts, named as `lscpu` names them. Linux reads /proc/cpuinfo and /sys (what `lscpu`
//! itself reads); other systems ask sysinfo and leave unknown fields empty rather than guess.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod portable;

use serde::{Deserialize, Serialize};

use super::cpu_list::CpuList;

#[cfg(target_os = "linux")]
pub use linux::read;
#[cfg(not(target_os = "linux"))]
pub use portable::read;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuInfo {
    pub architecture: String,
    pub vendor_id: Option<String>,
    pub model_name: Option<String>,
    pub family: Option<u32>,
    pub model: Option<u32>,
    pub stepping: Option<u32>,
    pub op_modes: Option<String>,
    pub address_sizes: Option<String>,
    pub byte_order: String,
    /// CPUs present in the machine (`lscpu`'s `CPU(s)`).
    pub total_cpus: u32,
    pub online: CpuList,
    pub sockets: Option<u32>,
    pub cores_per_socket: Option<u32>,
    pub threads_per_core: Option<u32>,
    pub min_mhz: Option<f64>,
    pub max_mhz: Option<f64>,
    /// The notable subset of the CPU's feature flags.
    pub flags: Vec<String>,
}

impl CpuInfo {
    /// Physical cores, when the topology is known.
    pub fn physical_cores(&self) -> Option<u32> {
        Some(self.sockets? * self.cores_per_socket?)
    }
}

pub(super) fn byte_order() -> String {
    if cfg!(target_endian = "little") {
        "Little Endian".to_owned()
    } else {
        "Big Endian".to_owned()
    }
}
