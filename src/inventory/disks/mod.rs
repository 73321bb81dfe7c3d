//! Physical disks, their type and size, and the filesystems on them with free space.
//!
//! Linux reads /sys/block and /proc/self/mountinfo (what `lsblk` and `df` read). Virtual
//! devices (loop, ram, zram, device-mapper, md, nbd) are not disks: filesystems on them are
//! attributed to the physical disks underneath. Other systems list sysinfo's mounted disks.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(not(target_os = "linux"))]
mod portable;
mod space;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[cfg(target_os = "linux")]
pub use linux::read;
#[cfg(not(target_os = "linux"))]
pub use portable::read;
pub use space::{DataDirSpace, Space};

/// The kind the wire format names (`storage.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiskKind {
    #[serde(rename = "NVME")]
    Nvme,
    #[serde(rename = "SSD")]
    Ssd,
    #[serde(rename = "HDD")]
    Hdd,
    /// The kernel does not say (a hypervisor's virtual disk, no rotational flag): the
    /// original's word for it.
    Unknown,
}

impl DiskKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nvme => "NVME",
            Self::Ssd => "SSD",
            Self::Hdd => "HDD",
            Self::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Disk {
    /// The kernel's name, e.g. `nvme0n1` or `sda`.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: DiskKind,
    /// How it is attached (`nvme`, `sata`, `usb`, `virtio` …), when the kernel says.
    pub transport: Option<String>,
    pub model: Option<String>,
    /// The whole disk's capacity, not one filesystem's; None where the system does not say.
    pub size_bytes: Option<u64>,
    pub removable: bool,
    pub filesystems: Vec<Filesystem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    pub mount_point: PathBuf,
    /// What was mounted, e.g. `/dev/nvme0n1p2`.
    pub source: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// The filesystem holding POLARIS_HOME: where the benchmark runs and the free-space gate looks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataDir {
    pub path: PathBuf,
    /// The physical disk underneath, when there is exactly one (not on tmpfs, overlay, network
    /// mounts, or RAID/LVM across several disks).
    pub disk: Option<String>,
    pub fs_type: Option<String>,
    pub mount_point: Option<PathBuf>,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Storage {
    pub disks: Vec<Disk>,
    pub data_dir: Option<DataDir>,
    /// Why the disk list is empty, when it could not be read.
    pub note: Option<String>,
}

/// Filesystems in memory: a disk benchmark there would measure RAM.
pub const MEMORY_FILESYSTEMS: &[&str] = &["tmpfs", "ramfs"];

impl DataDir {
    pub fn in_memory(&self) -> bool {
        self.fs_type
            .as_deref()
            .is_some_and(|t| MEMORY_FILESYSTEMS.contains(&t))
    }
}

impl Storage {
    /// The disk holding POLARIS_HOME, if it is a physical one.
    pub fn data_disk(&self) -> Option<&Disk> {
        let name = self.data_dir.as_ref()?.disk.as_deref()?;
        self.disks.iter().find(|d| d.name == name)
    }
}

/// The nearest existing directory at or above `path` (POLARIS_HOME may not exist yet).
pub(crate) fn existing_ancestor(path: &Path) -> Option<&Path> {
    path.ancestors().find(|p| p.exists())
}
