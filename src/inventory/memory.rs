//! Total and available memory: /proc/meminfo on Linux, sysinfo elsewhere.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryInfo {
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// `MemTotal` and `MemAvailable` from /proc/meminfo text (values are in KiB).
#[cfg(target_os = "linux")]
fn parse_meminfo(text: &str) -> Option<MemoryInfo> {
    let kib = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let number = rest.trim().strip_suffix("kB").unwrap_or(rest).trim();
            number.parse::<u64>().ok()?.checked_mul(1024)
        })
    };
    let total_bytes = kib("MemTotal")?;
    Some(MemoryInfo {
        total_bytes,
        // Kernels before 3.14 have no MemAvailable; MemFree is the honest lower bound.
        available_bytes: kib("MemAvailable").or_else(|| kib("MemFree"))?,
    })
}

#[cfg(target_os = "linux")]
pub fn read() -> anyhow::Result<MemoryInfo> {
    use anyhow::Context;
    let text = std::fs::read_to_string("/proc/meminfo").context("cannot read /proc/meminfo")?;
    parse_meminfo(&text).context("/proc/meminfo has no MemTotal line")
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> anyhow::Result<MemoryInfo> {
    use sysinfo::{MemoryRefreshKind, RefreshKind, System};
    let system = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_err(|e| anyhow::anyhow!("cannot read the memory size: {e}"))?;
    Ok(MemoryInfo {
        total_bytes: system.total_memory(),
        available_bytes: system.available_memory(),
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn meminfo_values_are_kib() {
        let info = parse_meminfo(
            "MemTotal:       16442688 kB\nMemFree:  1000 kB\nMemAvailable:   12000000 kB\n",
        )
        .expect("parses");
        assert_eq!(info.total_bytes, 16_442_688 * 1024);
        assert_eq!(info.available_bytes, 12_000_000 * 1024);
    }

    #[test]
    fn old_kernels_fall_back_to_memfree() {
        let info = parse_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n").expect("parses");
        assert_eq!(info.available_bytes, 1024 * 1024);
        assert!(parse_meminfo("garbage").is_none());
    }
}
