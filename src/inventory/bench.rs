//! Measured sequential disk speed, replacing the original's constants (NVMe 3500/3000 MB/s …).
//!
//! A bounded test file (at most 512 MiB and 3 s) is written in POLARIS_HOME with periodic
//! fsync, then read back bypassing the page cache (O_DIRECT, else an explicit cache drop), so
//! the figures are the disk's and not memory's. Where the cache cannot be bypassed (so far:
//! everywhere but Linux) the read speed is not reported rather than reported wrong. The file is unlinked the moment it is open
//! (delete-on-close on Windows): whatever ends the process, even SIGKILL, nothing is left.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use super::disks::DataDir;

pub const MAX_BYTES: u64 = 512 << 20;
/// Each of the write and read phases stops after this long.
pub const PHASE_LIMIT: Duration = Duration::from_millis(1500);
const CHUNK: usize = 4 << 20;
/// Written data is flushed to the disk this often, so the page cache cannot hide a slow disk.
const SYNC_EVERY: u64 = 32 << 20;
/// O_DIRECT wants buffers aligned to the logical block size; 4 KiB covers every disk.
const ALIGN: usize = 4096;
const FILE_PREFIX: &str = ".polaris-disk-bench-";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskBench {
    /// The directory measured (POLARIS_HOME).
    pub dir: PathBuf,
    /// The physical disk underneath, when known.
    pub disk: Option<String>,
    pub write_mb_per_s: f64,
    /// None where the page cache could not be bypassed.
    pub read_mb_per_s: Option<f64>,
    pub bytes_written: u64,
    pub bytes_read: u64,
    /// How reads got past the page cache.
    pub read_bypass: Option<CacheBypass>,
    pub measured_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheBypass {
    /// O_DIRECT reads.
    DirectIo,
    /// The file's pages were dropped from the cache before reading.
    CacheDropped,
}

impl CacheBypass {
    pub fn describe(self) -> &'static str {
        match self {
            Self::DirectIo => "direct I/O",
            Self::CacheDropped => "page cache dropped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Write,
    Read,
}

/// Filesystems whose cache O_DIRECT does not reliably bypass (ZFS's ARC before 2.3): only the
/// write speed is measured there.
const CACHED_READ_FILESYSTEMS: &[&str] = &["zfs"];

/// Where and how much to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub dir: PathBuf,
    pub disk: Option<String>,
    pub max_bytes: u64,
    pub measure_read: bool,
}

impl Plan {
    /// The plan for POLARIS_HOME, refused where a figure could only be memory's.
    /// The plan for POLARIS_HOME itself (created when missing), found by its filesystem.
    pub fn for_home(home: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(home)
            .with_context(|| format!("cannot create {}", home.display()))?;
        let data = super::disks::read(home)?
            .data_dir
            .with_context(|| format!("cannot tell which filesystem holds {}", home.display()))?;
        Self::for_data_dir(&data)
    }

    /// How far a phase is, 0 to 1: whichever bound (bytes or time) comes first ends it, so
    /// progress follows the nearer one.
    pub fn fraction(&self, bytes: u64, phase_elapsed: Duration) -> f64 {
        let by_bytes = bytes as f64 / self.max_bytes.max(1) as f64;
        let by_time = phase_elapsed.as_secs_f64() / PHASE_LIMIT.as_secs_f64();
        by_bytes.max(by_time).clamp(0.0, 1.0)
    }

    pub fn for_data_dir(data: &DataDir) -> anyhow::Result<Self> {
        if data.in_memory() {
            anyhow::bail!(
                "{} is on {} (memory): a disk speed measured there would be RAM's; \
                 set POLARIS_HOME to a directory on the disk you rent out",
                data.path.display(),
                data.fs_type.as_deref().unwrap_or("a memory filesystem")
            );
        }
        Ok(Self {
            dir: data.path.clone(),
            disk: data.disk.clone(),
            max_bytes: MAX_BYTES,
            measure_read: !data
                .fs_type
                .as_deref()
                .is_some_and(|t| CACHED_READ_FILESYSTEMS.contains(&t)),
        })
    }
}

/// Runs the benchmark; `progress` hears the bytes done so far in each phase.
pub fn run(plan: &Plan, mut progress: impl FnMut(Phase, u64)) -> anyhow::Result<DiskBench> {
    let dir = plan.dir.as_path();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_leftovers(dir);
    let path = dir.join(format!("{FILE_PREFIX}{}", std::process::id()));
    let mut handles =
        TestFile::create(&path).with_context(|| format!("cannot create {}", path.display()))?;

    let mut chunk = vec![0u8; CHUNK];
    rand::rng().fill_bytes(&mut chunk);
    let started = Instant::now();
    let mut written = 0u64;
    let mut unsynced = 0u64;
    while written < plan.max_bytes && started.elapsed() < PHASE_LIMIT {
        // Every 4 KiB block gets its own offset stamped in, so no two blocks of the file are
        // alike and deduplicating storage (VDO, ZFS dedup, SANs) cannot skip the writes.
        for (i, block) in chunk.chunks_mut(ALIGN).enumerate() {
            let offset = written + (i * ALIGN) as u64;
            block[..8].copy_from_slice(&offset.to_le_bytes());
        }
        handles
            .writer
            .write_all(&chunk)
            .context("writing the test file failed (is the disk full?)")?;
        written += CHUNK as u64;
        unsynced += CHUNK as u64;
        if unsynced >= SYNC_EVERY {
            handles.writer.sync_data().context("fsync failed")?;
            unsynced = 0;
        }
        progress(Phase::Write, written);
    }
    handles.writer.sync_data().context("fsync failed")?;
    let write_seconds = started.elapsed().as_secs_f64();

    let (read, read_seconds, read_bypass) = {
        let reader = if plan.measure_read {
            handles.uncached_reader()?
        } else {
            None
        };
        match reader {
            Some((bypass, mut reader)) => {
                let mut buffer = vec![0u8; CHUNK + ALIGN];
                let offset = (ALIGN - buffer.as_ptr() as usize % ALIGN) % ALIGN;
                let aligned = &mut buffer[offset..offset + CHUNK];
                let started = Instant::now();
                let mut read = 0u64;
                while read < written && started.elapsed() < PHASE_LIMIT {
                    let n = reader
                        .read(aligned)
                        .context("reading the test file failed")?;
                    if n == 0 {
                        break;
                    }
                    read += n as u64;
                    progress(Phase::Read, read);
                }
                (read, started.elapsed().as_secs_f64(), Some(bypass))
            }
            None => (0, 0.0, None),
        }
    };
    drop(handles);
    let _ = std::fs::remove_file(&path); // already gone on Unix; belt and braces elsewhere

    let mb_per_s = |bytes: u64, seconds: f64| bytes as f64 / 1e6 / seconds.max(1e-6);
    Ok(DiskBench {
        dir: plan.dir.clone(),
        disk: plan.disk.clone(),
        write_mb_per_s: mb_per_s(written, write_seconds),
        read_mb_per_s: read_bypass.map(|_| mb_per_s(read, read_seconds)),
        bytes_written: written,
        bytes_read: read,
        read_bypass,
        measured_at: Utc::now(),
    })
}

/// Test files of runs that died in the instant between creating and unlinking their file.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(FILE_PREFIX) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The open handles of the (already deleted) test file.
struct TestFile {
    writer: File,
    #[cfg(target_os = "linux")]
    buffered: File,
    #[cfg(target_os = "linux")]
    direct: Option<File>,
}

impl TestFile {
    #[cfg(unix)]
    fn create(path: &Path) -> std::io::Result<Self> {
        let writer = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        let opened = (|| {
            #[cfg(target_os = "linux")]
            let buffered = File::open(path)?;
            #[cfg(target_os = "linux")]
            let direct = {
                use std::os::unix::fs::OpenOptionsExt;
                // tmpfs and some FUSE filesystems refuse O_DIRECT: then the cache is dropped.
                std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
                    .open(path)
                    .ok()
            };
            Ok(Self {
                writer,
                #[cfg(target_os = "linux")]
                buffered,
                #[cfg(target_os = "linux")]
                direct,
            })
        })();
        // Unlinked while open: the space is freed when the last handle closes, however we die.
        std::fs::remove_file(path)?;
        opened
    }

    #[cfg(not(unix))]
    fn create(path: &Path) -> std::io::Result<Self> {
        #[cfg(windows)]
        use std::os::windows::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(windows)]
        options.custom_flags(0x0400_0000); // FILE_FLAG_DELETE_ON_CLOSE
        Ok(Self {
            writer: options.open(path)?,
        })
    }

    /// A handle that reads the file from its start past the page cache, and how it gets past;
    /// None where we know no way to (then a read speed would be memory's).
    #[cfg(target_os = "linux")]
    fn uncached_reader(&mut self) -> anyhow::Result<Option<(CacheBypass, Box<dyn Read + '_>)>> {
        if let Some(direct) = self.direct.as_mut() {
            return Ok(Some((CacheBypass::DirectIo, Box::new(direct))));
        }
        rustix::fs::fadvise(&self.buffered, 0, None, rustix::fs::Advice::DontNeed)
            .context("cannot drop the test file from the page cache")?;
        Ok(Some((
            CacheBypass::CacheDropped,
            Box::new(&mut self.buffered),
        )))
    }

    #[cfg(not(target_os = "linux"))]
    fn uncached_reader(&mut self) -> anyhow::Result<Option<(CacheBypass, Box<dyn Read + '_>)>> {
        Ok(None)
    }
}

/// Where the last result is kept.
pub fn cache_path(home: &Path) -> PathBuf {
    home.join("inventory").join("disk-bench.json")
}

pub fn load_cached(home: &Path) -> Option<DiskBench> {
    serde_json::from_slice(&std::fs::read(cache_path(home)).ok()?).ok()
}

pub fn save(home: &Path, bench: &DiskBench) -> anyhow::Result<()> {
    let path = cache_path(home);
    let json = serde_json::to_vec_pretty(bench)?;
    crate::files::write_atomically(&path, &json)
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_measures_both_ways_and_leaves_nothing() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join(format!("{FILE_PREFIX}1")), b"left over")?;
        let plan = Plan {
            dir: dir.path().to_path_buf(),
            disk: None,
            max_bytes: 16 << 20,
            measure_read: true,
        };
        let mut phases = Vec::new();
        let bench = run(&plan, |phase, _| phases.push(phase))?;
        assert_eq!(bench.bytes_written, 16 << 20);
        assert!(bench.write_mb_per_s > 0.0);
        assert_eq!(phases.first(), Some(&Phase::Write));
        if cfg!(target_os = "linux") {
            assert!(bench.bytes_read > 0 && bench.bytes_read <= bench.bytes_written);
            assert!(bench.read_mb_per_s.is_some_and(|r| r > 0.0));
            assert!(bench.read_bypass.is_some());
            assert_eq!(phases.last(), Some(&Phase::Read));
        } else {
            assert_eq!(
                bench.read_mb_per_s, None,
                "no cached read passes for the disk's"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0, "no file left");
        Ok(())
    }

    #[test]
    fn memory_filesystems_are_refused_and_zfs_reads_are_not_trusted() {
        let data = |fs: &str| DataDir {
            path: PathBuf::from("/srv/polaris"),
            disk: Some("nvme0n1".to_owned()),
            fs_type: Some(fs.to_owned()),
            mount_point: Some(PathBuf::from("/srv")),
            total_bytes: 1 << 40,
            available_bytes: 1 << 39,
        };
        let err = Plan::for_data_dir(&data("tmpfs")).expect_err("tmpfs refused");
        assert!(err.to_string().contains("would be RAM's"), "{err}");
        assert!(!Plan::for_data_dir(&data("zfs")).is_ok_and(|p| p.measure_read));
        let ext4 = Plan::for_data_dir(&data("ext4")).expect("ext4 measured");
        assert!(ext4.measure_read);
        assert_eq!(ext4.max_bytes, MAX_BYTES);
    }

    #[test]
    fn the_cache_round_trips_and_ignores_garbage() -> anyhow::Result<()> {
        let home = tempfile::tempdir()?;
        assert!(load_cached(home.path()).is_none());
        let bench = DiskBench {
            dir: home.path().to_path_buf(),
            disk: Some("nvme0n1".to_owned()),
            write_mb_per_s: 1800.5,
            read_mb_per_s: Some(3100.0),
            bytes_written: MAX_BYTES,
            bytes_read: MAX_BYTES,
            read_bypass: Some(CacheBypass::DirectIo),
            measured_at: Utc::now(),
        };
        save(home.path(), &bench)?;
        assert_eq!(load_cached(home.path()), Some(bench));
        std::fs::write(cache_path(home.path()), b"[1,2")?;
        assert!(load_cached(home.path()).is_none());
        Ok(())
    }
}
