//! NVIDIA GPUs through NVML, loaded at run time: the binary starts on machines without the
//! driver, and then reports no GPU together with the reason. A GPU is never invented.

use std::ffi::OsStr;

use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::{Deserialize, Serialize};

/// The library NVML lives in when no path is configured (what nvidia-smi loads).
#[cfg(windows)]
pub(crate) const DEFAULT_LIBRARY: &str = "nvml.dll";
#[cfg(not(windows))]
pub(crate) const DEFAULT_LIBRARY: &str = "libnvidia-ml.so.1";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub pci_bus_id: Option<String>,
    pub architecture: Option<String>,
    /// e.g. `9.0` for Hopper.
    pub compute_capability: Option<String>,
    pub cuda_cores: Option<u32>,
    pub max_graphics_clock_mhz: Option<u32>,
    pub max_memory_clock_mhz: Option<u32>,
    /// The enforced power limit in watts.
    pub power_limit_watts: Option<f64>,
    pub pcie_generation_max: Option<u32>,
    pub pcie_width_max: Option<u32>,
    pub pcie_generation_current: Option<u32>,
    pub pcie_width_current: Option<u32>,
    pub temperature_celsius: Option<u32>,
    pub utilization_gpu_percent: Option<u32>,
    pub utilization_memory_percent: Option<u32>,
}

/// Every GPU NVML reports, or none and why.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GpuReport {
    pub gpus: Vec<Gpu>,
    pub driver_version: Option<String>,
    /// The newest CUDA version the driver supports, e.g. `12.4`.
    pub cuda_version: Option<String>,
    /// Why the list is empty or incomplete, in one line.
    pub reason: Option<String>,
}

/// Queries NVML. Blocking: NVML initialisation can take a moment on many-GPU machines.
pub fn probe(library: Option<&OsStr>) -> GpuReport {
    let library = library.unwrap_or(OsStr::new(DEFAULT_LIBRARY));
    let nvml = match Nvml::builder().lib_path(library).init() {
        Ok(nvml) => nvml,
        Err(err) => {
            return GpuReport {
                reason: Some(init_failure(&err, library)),
                ..GpuReport::default()
            };
        }
    };
    let driver_version = nvml.sys_driver_version().ok();
    let cuda_version = nvml.sys_cuda_driver_version().ok().map(|v| {
        format!(
            "{}.{}",
            nvml_wrapper::cuda_driver_version_major(v),
            nvml_wrapper::cuda_driver_version_minor(v)
        )
    });
    let count = match nvml.device_count() {
        Ok(count) => count,
        Err(err) => {
            return GpuReport {
                driver_version,
                cuda_version,
                reason: Some(format!("the NVIDIA driver cannot count its GPUs: {err}")),
                ..GpuReport::default()
            };
        }
    };
    let mut gpus = Vec::new();
    let mut unreadable = Vec::new();
    for index in 0..count {
        match nvml
            .device_by_index(index)
            .and_then(|d| describe(index, &d))
        {
            Ok(gpu) => gpus.push(gpu),
            Err(err) => unreadable.push(format!("GPU {index}: {err}")),
        }
    }
    let reason = if count == 0 {
        Some("the NVIDIA driver is loaded but sees no GPU".to_owned())
    } else if unreadable.is_empty() {
        None
    } else {
        Some(format!(
            "left out unreadable GPUs ({})",
            unreadable.join("; ")
        ))
    };
    GpuReport {
        gpus,
        driver_version,
        cuda_version,
        reason,
    }
}

fn init_failure(err: &NvmlError, library: &OsStr) -> String {
    match err {
        NvmlError::LibloadingError(_) => format!(
            "no NVIDIA driver: {} could not be loaded",
            library.to_string_lossy()
        ),
        NvmlError::DriverNotLoaded => {
            "the NVIDIA driver is installed but not loaded (is the nvidia kernel module in?)"
                .to_owned()
        }
        NvmlError::NoPermission => "no permission to talk to the NVIDIA driver".to_owned(),
        other => format!("NVML could not start: {other}"),
    }
}

/// Name, UUID and memory are required; every other fact is reported when the GPU supports it.
fn describe(index: u32, device: &Device<'_>) -> Result<Gpu, NvmlError> {
    let utilization = device.utilization_rates().ok();
    Ok(Gpu {
        index,
        name: device.name()?,
        uuid: device.uuid()?,
        memory_total_bytes: device.memory_info()?.total,
        pci_bus_id: device.pci_info().ok().map(|p| p.bus_id),
        architecture: device.architecture().ok().map(|a| a.to_string()),
        compute_capability: device
            .cuda_compute_capability()
            .ok()
            .map(|c| format!("{}.{}", c.major, c.minor)),
        cuda_cores: device.num_cores().ok(),
        max_graphics_clock_mhz: device.max_clock_info(Clock::Graphics).ok(),
        max_memory_clock_mhz: device.max_clock_info(Clock::Memory).ok(),
        power_limit_watts: device
            .enforced_power_limit()
            .ok()
            .map(|mw| f64::from(mw) / 1000.0),
        pcie_generation_max: device.max_pcie_link_gen().ok(),
        pcie_width_max: device.max_pcie_link_width().ok(),
        pcie_generation_current: device.current_pcie_link_gen().ok(),
        pcie_width_current: device.current_pcie_link_width().ok(),
        temperature_celsius: device.temperature(TemperatureSensor::Gpu).ok(),
        utilization_gpu_percent: utilization.as_ref().map(|u| u.gpu),
        utilization_memory_percent: utilization.as_ref().map(|u| u.memory),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_library_means_no_gpu_and_a_reason() {
        let report = probe(Some(OsStr::new("/nonexistent/libnvidia-ml.so.1")));
        assert!(report.gpus.is_empty());
        let reason = report.reason.expect("a reason");
        assert!(reason.starts_with("no NVIDIA driver"), "{reason}");
        assert!(
            reason.contains("/nonexistent/libnvidia-ml.so.1"),
            "{reason}"
        );
    }
}
