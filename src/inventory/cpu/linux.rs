//! /proc/cpuinfo for identity and flags, /sys/devices/system/cpu for the online list,
//! topology and frequency limits.

use std::fs;

use anyhow::Context;

use super::{CpuInfo, byte_order};
use crate::inventory::cpu_list::CpuList;

/// Flags worth showing a renter: vector width and crypto decide what runs fast.
const NOTABLE_FLAGS: &[&str] = &[
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "aes",
    "sha_ni",
    "asimd",
    "sve",
    "sve2",
];

fn notable(flags: &str) -> Vec<String> {
    let present: std::collections::HashSet<&str> = flags.split_whitespace().collect();
    NOTABLE_FLAGS
        .iter()
        .filter(|f| present.contains(*f))
        .map(|f| (*f).to_owned())
        .collect()
}

/// The first processor block of /proc/cpuinfo as key/value pairs.
fn first_block(cpuinfo: &str) -> Vec<(&str, &str)> {
    cpuinfo
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// The facts /proc/cpuinfo holds (identity and flags), without topology.
#[derive(Debug, Default, PartialEq)]
struct CpuIdentity {
    vendor_id: Option<String>,
    model_name: Option<String>,
    family: Option<u32>,
    model: Option<u32>,
    stepping: Option<u32>,
    address_sizes: Option<String>,
    flags: String,
    processors: u32,
}

fn parse_cpuinfo(cpuinfo: &str) -> CpuIdentity {
    let block = first_block(cpuinfo);
    let get = |key: &str| {
        block
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| (*v).to_owned())
            .filter(|v| !v.is_empty())
    };
    let number = |key: &str| {
        get(key).and_then(|v| {
            v.strip_prefix("0x")
                .map_or_else(|| v.parse().ok(), |hex| u32::from_str_radix(hex, 16).ok())
        })
    };
    CpuIdentity {
        // ARM names the vendor by its implementer code.
        // ARM names the vendor by an implementer code; lscpu prints the name.
        vendor_id: get("vendor_id")
            .or_else(|| get("CPU implementer").map(|code| arm_vendor(&code))),
        model_name: get("model name").or_else(|| get("Model")),
        family: number("cpu family"),
        // lscpu's ARM "Model" is the revision; its "Stepping" (r0p1) is no number, so none.
        model: number("model").or_else(|| number("CPU revision")),
        stepping: number("stepping"),
        address_sizes: get("address sizes"),
        flags: get("flags").or_else(|| get("Features")).unwrap_or_default(),
        processors: cpuinfo
            .lines()
            .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
            .count() as u32,
    }
}

/// lscpu's names for ARM implementer codes (util-linux `lscpu-arm.c`), else the code.
fn arm_vendor(code: &str) -> String {
    let name = match code.to_ascii_lowercase().as_str() {
        "0x41" => "ARM",
        "0x42" => "Broadcom",
        "0x43" => "Cavium",
        "0x46" => "FUJITSU",
        "0x48" => "HiSilicon",
        "0x4e" => "NVIDIA",
        "0x50" => "APM",
        "0x51" => "Qualcomm",
        "0x61" => "Apple",
        "0x6d" => "Microsoft",
        "0xc0" => "Ampere",
        _ => return code.to_owned(),
    };
    name.to_owned()
}

/// What lscpu derives from the per-CPU topology files: sockets, cores per socket, threads per core.
/// `cpus` holds each online CPU's (package, core) pair.
fn topology(cpus: &[(u32, u32)]) -> (Option<u32>, Option<u32>, Option<u32>) {
    use std::collections::BTreeMap;
    if cpus.is_empty() {
        return (None, None, None);
    }
    // (package, core) → threads; package → cores.
    let mut threads: BTreeMap<(u32, u32), u32> = BTreeMap::new();
    for &(package, core) in cpus {
        *threads.entry((package, core)).or_default() += 1;
    }
    let mut cores: BTreeMap<u32, u32> = BTreeMap::new();
    for (package, _) in threads.keys() {
        *cores.entry(*package).or_default() += 1;
    }
    (
        Some(cores.len() as u32),
        cores.values().copied().max(),
        threads.values().copied().max(),
    )
}

pub fn read() -> anyhow::Result<CpuInfo> {
    const SYS_CPU: &str = "/sys/devices/system/cpu";
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").context("cannot read /proc/cpuinfo")?;
    let identity = parse_cpuinfo(&cpuinfo);
    let list = |name: &str| {
        fs::read_to_string(format!("{SYS_CPU}/{name}"))
            .ok()
            .and_then(|t| CpuList::parse(&t))
    };
    let online =
        list("online").unwrap_or_else(|| CpuList::from_cpus((0..identity.processors).collect()));
    let total_cpus = list("present").map_or(identity.processors, |l| l.len() as u32);
    let read_u32 = |cpu: u32, file: &str| {
        fs::read_to_string(format!("{SYS_CPU}/cpu{cpu}/{file}"))
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
    };
    let placed: Vec<(u32, u32)> = online
        .cpus()
        .iter()
        .filter_map(|&cpu| {
            Some((
                read_u32(cpu, "topology/physical_package_id")?,
                read_u32(cpu, "topology/core_id")?,
            ))
        })
        .collect();
    let (sockets, cores_per_socket, threads_per_core) = topology(&placed);
    let khz = |file: &str| -> Vec<f64> {
        online
            .cpus()
            .iter()
            .filter_map(|&cpu| read_u32(cpu, &format!("cpufreq/{file}")))
            .map(|khz| f64::from(khz) / 1000.0)
            .collect()
    };
    let max_mhz = khz("cpuinfo_max_freq").into_iter().reduce(f64::max);
    let min_mhz = khz("cpuinfo_min_freq").into_iter().reduce(f64::min);
    let architecture = rustix::system::uname()
        .machine()
        .to_string_lossy()
        .into_owned();
    let flags = notable(&identity.flags);
    let op_modes = match architecture.as_str() {
        "x86_64" if identity.flags.split_whitespace().any(|f| f == "lm") => {
            Some("32-bit, 64-bit".to_owned())
        }
        "i386" | "i486" | "i586" | "i686" => Some("32-bit".to_owned()),
        _ => None,
    };
    Ok(CpuInfo {
        architecture,
        vendor_id: identity.vendor_id,
        model_name: identity.model_name,
        family: identity.family,
        model: identity.model,
        stepping: identity.stepping,
        op_modes,
        address_sizes: identity.address_sizes,
        byte_order: byte_order(),
        total_cpus,
        online,
        sockets,
        cores_per_socket,
        threads_per_core,
        min_mhz,
        max_mhz,
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPYC: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n\
        model\t\t: 17\nmodel name\t: AMD EPYC 9654 96-Core Processor\nstepping\t: 1\n\
        flags\t\t: fpu lm avx avx2 avx512f sha_ni\naddress sizes\t: 52 bits physical, 57 bits virtual\n\
        \nprocessor\t: 1\nvendor_id\t: AuthenticAMD\n";

    #[test]
    fn cpuinfo_identity_comes_from_the_first_block() {
        let id = parse_cpuinfo(EPYC);
        assert_eq!(id.vendor_id.as_deref(), Some("AuthenticAMD"));
        assert_eq!(
            id.model_name.as_deref(),
            Some("AMD EPYC 9654 96-Core Processor")
        );
        assert_eq!(
            (id.family, id.model, id.stepping),
            (Some(25), Some(17), Some(1))
        );
        assert_eq!(id.processors, 2);
        assert_eq!(notable(&id.flags), ["avx", "avx2", "avx512f", "sha_ni"]);
    }

    #[test]
    fn arm_cpuinfo_is_named_as_lscpu_names_it() {
        let id = parse_cpuinfo(
            "processor\t: 0\nFeatures\t: fp asimd sve\nCPU implementer\t: 0x41\n\
             CPU part\t: 0xd0c\nCPU revision\t: 1\n",
        );
        assert_eq!(id.vendor_id.as_deref(), Some("ARM"));
        assert_eq!((id.model, id.stepping), (Some(1), None));
        assert_eq!(notable(&id.flags), ["asimd", "sve"]);
    }

    #[test]
    fn topology_counts_sockets_cores_and_threads() {
        // Two sockets, two cores each, two threads per core.
        let cpus = [
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
            (0, 0),
            (0, 1),
            (1, 0),
            (1, 1),
        ];
        assert_eq!(topology(&cpus), (Some(2), Some(2), Some(2)));
        assert_eq!(topology(&[]), (None, None, None));
    }
}
