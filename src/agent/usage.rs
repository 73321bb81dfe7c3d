//! CPU and memory of a process and everything it started, measured when asked (`polaris status`),
//! so the idle agent spends nothing on it.

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Percent of one core, summed over the tree.
    pub cpu_percent: f32,
    /// Resident memory, summed over the tree.
    pub rss_bytes: u64,
    pub processes: usize,
}

/// Samples the tree rooted at `root` twice, `sysinfo`'s minimum interval apart (CPU usage is a
/// difference between two readings).
pub fn of_tree(root: u32) -> Option<Usage> {
    let mut system = System::new().ok()?;
    let kind = ProcessRefreshKind::nothing().with_cpu().with_memory();
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
    system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    let root = Pid::from_u32(root);
    system.process(root)?;
    let in_tree = |mut pid: Pid| {
        // Walk up the parents; a depth bound guards against a cycle in a racing table.
        for _ in 0..64 {
            if pid == root {
                return true;
            }
            match system.process(pid).and_then(|p| p.parent()) {
                Some(parent) => pid = parent,
                None => return false,
            }
        }
        false
    };
    let tree: Vec<_> = system
        .processes()
        .iter()
        .filter(|(pid, _)| in_tree(**pid))
        .map(|(_, p)| p)
        .collect();
    Some(Usage {
        cpu_percent: tree.iter().map(|p| p.cpu_usage()).sum(),
        rss_bytes: tree.iter().map(|p| p.memory()).sum(),
        processes: tree.len(),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_tree_counts_its_children() -> std::io::Result<()> {
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()?;
        // Until both children run (a busy machine starts them late), at most 10 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let usage = loop {
            let usage = of_tree(parent.id());
            if usage.is_some_and(|u| u.processes == 3) || std::time::Instant::now() > deadline {
                break usage;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        parent.kill()?;
        parent.wait()?;
        let usage = usage.expect("the tree is measured");
        assert_eq!(usage.processes, 3, "{usage:?}");
        assert!(usage.rss_bytes > 0);
        assert!(of_tree(u32::MAX - 1).is_none());
        Ok(())
    }
}
