//! What this process may actually use, which in a container (RunPod, vast.ai and the like) is
//! less than the host has: the CPU affinity mask and cgroup CPU and memory limits. The gates
//! judge these, not the host's totals.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs in our affinity mask (what `nproc` counts).
    pub affinity_cpus: Option<u32>,
    /// The cgroup CPU quota in CPUs (`cpu.max` 200000/100000 is 2.0); None when unlimited.
    pub cgroup_cpus: Option<f64>,
    /// The cgroup memory limit; None when unlimited.
    pub cgroup_memory_bytes: Option<u64>,
}

impl Limits {
    /// CPUs this process can keep busy: the affinity mask, capped by the cgroup quota
    /// (rounded down: a 2.5-CPU quota keeps two busy), never more than `online`.
    pub fn usable_cpus(&self, online: u32) -> u32 {
        let mut usable = online;
        if let Some(affinity) = self.affinity_cpus.filter(|&n| n > 0) {
            usable = usable.min(affinity);
        }
        if let Some(quota) = self.cgroup_cpus {
            usable = usable.min((quota.floor() as u32).max(1));
        }
        usable
    }

    /// Memory this process can use: the total, capped by the cgroup limit.
    pub fn usable_memory(&self, total: u64) -> u64 {
        self.cgroup_memory_bytes
            .map_or(total, |limit| limit.min(total))
    }
}

/// `cpu.max` (v2: `max 100000` or `200000 100000`) as CPUs; v1's quota and period are given in
/// the same form (a quota of -1 means unlimited).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut fields = text.split_whitespace();
    let quota: f64 = fields.next()?.parse().ok()?;
    let period: f64 = fields.next().unwrap_or("100000").parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// `memory.max` (v2: `max` or bytes) or v1's `memory.limit_in_bytes` (a huge number when
/// unlimited).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_memory_max(text: &str) -> Option<u64> {
    let bytes: u64 = text.trim().parse().ok()?;
    // v1 writes "unlimited" as the largest page-aligned i64.
    (bytes < (1u64 << 62)).then_some(bytes)
}

/// Calls `visit` on `base/path` and each of its ancestors up to `base`: a parent group's limit
/// applies to its children.
#[cfg(target_os = "linux")]
fn walk_up(base: &std::path::Path, path: &str, mut visit: impl FnMut(&std::path::Path)) {
    let mut dir = base.join(path.trim_start_matches('/'));
    for _ in 0..64 {
        visit(&dir);
        if dir == base || !dir.pop() || !dir.starts_with(base) {
            break;
        }
    }
}

#[cfg(target_os = "linux")]
pub fn read() -> Limits {
    use std::path::{Path, PathBuf};

    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    let mut limits = Limits {
        affinity_cpus: rustix::thread::sched_getaffinity(None)
            .ok()
            .map(|set| set.count()),
        ..Limits::default()
    };
    let mut keep_lower = |cpus: Option<f64>, memory: Option<u64>| {
        if let Some(c) = cpus {
            limits.cgroup_cpus = Some(limits.cgroup_cpus.map_or(c, |old| old.min(c)));
        }
        if let Some(m) = memory {
            limits.cgroup_memory_bytes =
                Some(limits.cgroup_memory_bytes.map_or(m, |old| old.min(m)));
        }
    };
    let root = Path::new("/sys/fs/cgroup");
    let groups = read(PathBuf::from("/proc/self/cgroup")).unwrap_or_default();
    for line in groups.lines() {
        // `ID:CONTROLLERS:PATH`; cgroup v2 has ID 0 and no controllers.
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let controllers: Vec<&str> = controllers.split(',').collect();
        if controllers == [""] {
            walk_up(root, path, |dir| {
                keep_lower(
                    read(dir.join("cpu.max")).and_then(|t| parse_cpu_max(&t)),
                    read(dir.join("memory.max")).and_then(|t| parse_memory_max(&t)),
                );
            });
        }
        if controllers.contains(&"memory") {
            walk_up(&root.join("memory"), path, |dir| {
                let limit = read(dir.join("memory.limit_in_bytes"));
                keep_lower(None, limit.and_then(|t| parse_memory_max(&t)));
            });
        }
        if controllers.contains(&"cpu") {
            walk_up(&root.join("cpu"), path, |dir| {
                let quota = read(dir.join("cpu.cfs_quota_us"));
                let period = read(dir.join("cpu.cfs_period_us"));
                let cpus = quota
                    .zip(period)
                    .and_then(|(q, p)| parse_cpu_max(&format!("{} {}", q.trim(), p.trim())));
                keep_lower(cpus, None);
            });
        }
    }
    limits
}

#[cfg(not(target_os = "linux"))]
pub fn read() -> Limits {
    Limits::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_files_parse() {
        assert_eq!(parse_cpu_max("200000 100000\n"), Some(2.0));
        assert_eq!(parse_cpu_max("max 100000"), None);
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("8589934592\n"), Some(8 << 30));
        assert_eq!(
            parse_memory_max("9223372036854771712"),
            None,
            "v1 unlimited"
        );
    }

    #[test]
    fn usable_takes_the_tightest_limit() {
        let limits = Limits {
            affinity_cpus: Some(8),
            cgroup_cpus: Some(2.5),
            cgroup_memory_bytes: Some(4 << 30),
        };
        assert_eq!(limits.usable_cpus(64), 2);
        assert_eq!(limits.usable_memory(64 << 30), 4 << 30);
        assert_eq!(Limits::default().usable_cpus(16), 16);
        assert_eq!(Limits::default().usable_memory(1 << 30), 1 << 30);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_an_affinity_mask() {
        assert!(read().affinity_cpus.is_some_and(|n| n >= 1));
    }
}
