//! PID files in `POLARIS_HOME/pids` hold the PID and the process's start time, so a PID the
//! system has since given to another process is never taken for ours (the original found its
//! processes by scanning command lines, and killed strangers).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PidRecord {
    pub pid: u32,
    /// The process's start time as [`start_time`] reports it.
    pub started: u64,
}

pub fn path(home: &Path, name: &str) -> PathBuf {
    home.join("pids").join(format!("{name}.pid"))
}

/// When `pid` started, if it runs: on Linux the kernel's start time in clock ticks since boot
/// (/proc/PID/stat field 22), which does not move when the wall clock is stepped.
#[cfg(target_os = "linux")]
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None; // exited, not yet reaped
    }
    fields.get(19)?.parse().ok()
}

/// When the system says `pid` started, if it runs (seconds since the epoch).
#[cfg(not(target_os = "linux"))]
pub fn start_time(pid: u32) -> Option<u64> {
    use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};
    let pid = Pid::from_u32(pid);
    let mut system = System::new().ok()?;
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        true,
        ProcessRefreshKind::nothing(),
    );
    let process = system.process(pid)?;
    // A zombie has exited: it is not running any more.
    (process.status() != sysinfo::ProcessStatus::Zombie).then(|| process.start_time())
}

/// Records that `pid` is `name`.
pub fn write(home: &Path, name: &str, pid: u32) -> anyhow::Result<PidRecord> {
    let record = PidRecord {
        pid,
        started: start_time(pid).ok_or_else(|| anyhow::anyhow!("process {pid} is not running"))?,
    };
    crate::files::write_private_atomically(&path(home, name), &serde_json::to_vec(&record)?)?;
    Ok(record)
}

/// The recorded process, if it still runs and is the same process (same start time).
pub fn read_live(home: &Path, name: &str) -> Option<PidRecord> {
    let record: PidRecord = serde_json::from_slice(&std::fs::read(path(home, name)).ok()?).ok()?;
    (start_time(record.pid) == Some(record.started)).then_some(record)
}

pub fn remove(home: &Path, name: &str) {
    let _ = std::fs::remove_file(path(home, name));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_names_only_the_process_it_was_written_for() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        let me = std::process::id();
        let record = write(home.path(), "polaris", me)?;
        assert_eq!(read_live(home.path(), "polaris"), Some(record));
        // The same PID with another start time is a different process.
        let stranger = PidRecord {
            pid: me,
            started: record.started.saturating_sub(1000),
        };
        std::fs::write(path(home.path(), "polaris"), serde_json::to_vec(&stranger)?)?;
        assert_eq!(read_live(home.path(), "polaris"), None);
        std::fs::write(path(home.path(), "polaris"), b"garbage")?;
        assert_eq!(read_live(home.path(), "polaris"), None);
        remove(home.path(), "polaris");
        assert!(!path(home.path(), "polaris").exists());
        Ok(())
    }
}
