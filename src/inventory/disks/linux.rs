//! /sys/block for the disks, /proc/self/mountinfo for what is mounted where, statvfs for space.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{DataDir, Disk, DiskKind, Filesystem, Storage, existing_ancestor};

fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

fn read_disk(name: &str) -> Option<Disk> {
    let base = PathBuf::from("/sys/block").join(name);
    let sectors: u64 = read_trimmed(base.join("size"))?.parse().ok()?;
    // No medium (an empty card reader), a CD/DVD drive (SCSI type 5), or a hidden NVMe
    // multipath path that lsblk also leaves out.
    if sectors == 0
        || read_trimmed(base.join("device/type")).as_deref() == Some("5")
        || read_trimmed(base.join("hidden")).as_deref() == Some("1")
    {
        return None;
    }
    let sys_path = fs::canonicalize(&base).ok()?;
    let transport = transport_from_path(&sys_path.to_string_lossy());
    let rotational = read_trimmed(base.join("queue/rotational")).map(|r| r == "1");
    Some(Disk {
        name: name.to_owned(),
        kind: classify(name, transport.as_deref(), rotational),
        transport,
        model: read_trimmed(base.join("device/model")),
        // /sys/block/*/size counts 512-byte sectors whatever the disk's sector size.
        size_bytes: sectors.checked_mul(512),
        removable: read_trimmed(base.join("removable")).as_deref() == Some("1"),
        filesystems: Vec::new(),
    })
}

/// The physical disks under a block device: itself, a partition's parent, or what a
/// device-mapper / md device (or a partition of one) is built on.
fn disks_under(sys_path: &Path, depth: u32, out: &mut HashSet<String>) {
    if depth > 8 {
        return;
    }
    if sys_path.join("partition").exists() {
        if let Some(parent) = sys_path.parent() {
            disks_under(parent, depth + 1, out);
        }
        return;
    }
    let slaves: Vec<String> = fs::read_dir(sys_path.join("slaves"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    if slaves.is_empty() {
        if let Some(name) = sys_path.file_name().and_then(|n| n.to_str()) {
            out.insert(name.to_owned());
        }
        return;
    }
    for slave in slaves {
        if let Ok(path) = fs::canonicalize(format!("/sys/class/block/{slave}")) {
            disks_under(&path, depth + 1, out);
        }
    }
}

/// Resolves a mount to physical disks by its device number, else by its source path
/// (btrfs reports an anonymous device number).
fn disks_of(mount: &Mount) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Ok(path) = fs::canonicalize(format!("/sys/dev/block/{}", mount.device)) {
        disks_under(&path, 0, &mut out);
    } else if mount.source.starts_with("/dev/")
        && let Ok(dev) = fs::canonicalize(&mount.source)
        && let Some(name) = dev.file_name().and_then(|n| n.to_str())
        && let Ok(path) = fs::canonicalize(format!("/sys/class/block/{name}"))
    {
        disks_under(&path, 0, &mut out);
    }
    out
}

fn space(path: &Path) -> Option<(u64, u64)> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some((
        stat.f_blocks.saturating_mul(stat.f_frsize),
        stat.f_bavail.saturating_mul(stat.f_frsize),
    ))
}

fn list_disks() -> anyhow::Result<Vec<Disk>> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .context("cannot list /sys/block")?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| !is_virtual(name))
        .collect();
    names.sort();
    Ok(names.iter().filter_map(|n| read_disk(n)).collect())
}

pub fn read(home: &Path) -> anyhow::Result<Storage> {
    // Without /sys (gVisor, some sandboxes) there are still the data directory's facts.
    let (mut disks, note) = match list_disks() {
        Ok(disks) => (disks, None),
        Err(err) => (Vec::new(), Some(format!("{err:#}: no disk list"))),
    };
    let mountinfo =
        fs::read_to_string("/proc/self/mountinfo").context("cannot read /proc/self/mountinfo")?;
    let mounts = parse_mountinfo(&mountinfo);
    // One filesystem per device: prefer the mount of its root over bind mounts.
    let mut by_device: BTreeMap<&str, &Mount> = BTreeMap::new();
    for mount in &mounts {
        let slot = by_device.entry(mount.device.as_str()).or_insert(mount);
        if slot.root != "/" && mount.root == "/" {
            *slot = mount;
        }
    }
    for mount in by_device.values() {
        let owners = disks_of(mount);
        // Only filesystems on known disks are asked for their space: a dead network mount
        // would hang statvfs.
        if !disks.iter().any(|d| owners.contains(&d.name)) {
            continue;
        }
        let Some((total_bytes, available_bytes)) = space(&mount.mount_point) else {
            continue;
        };
        for disk in disks.iter_mut().filter(|d| owners.contains(&d.name)) {
            disk.filesystems.push(Filesystem {
                mount_point: mount.mount_point.clone(),
                source: mount.source.clone(),
                fs_type: mount.fs_type.clone(),
                total_bytes,
                available_bytes,
            });
        }
    }
    let data_dir = existing_ancestor(home).and_then(|dir| data_dir(dir, &mounts, &disks));
    Ok(Storage {
        disks,
        data_dir,
        note,
    })
}

/// The filesystem holding `dir`: the mount whose mount point is the longest prefix of its real
/// path (device numbers do not work: btrfs gives each subvolume its own).
fn data_dir(dir: &Path, mounts: &[Mount], disks: &[Disk]) -> Option<DataDir> {
    let real = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (total_bytes, available_bytes) = space(&real)?;
    let mount = mounts
        .iter()
        .filter(|m| real.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.as_os_str().len());
    let mut owners: Vec<String> = mount
        .map(disks_of)
        .unwrap_or_default()
        .into_iter()
        .filter(|name| disks.iter().any(|d| &d.name == name))
        .collect();
    owners.sort();
    Some(DataDir {
        path: real,
        // On RAID or LVM across disks, the disks are named together: no one member speaks for it.
        disk: (owners.len() == 1).then(|| owners.remove(0)),
        fs_type: mount.map(|m| m.fs_type.clone()),
        mount_point: mount.map(|m| m.mount_point.clone()),
        total_bytes,
        available_bytes,
    })
}

/// One line of /proc/self/mountinfo.
#[derive(Debug, PartialEq)]
struct Mount {
    device: String,
    root: String,
    mount_point: PathBuf,
    fs_type: String,
    source: String,
}

/// Undoes mountinfo's octal escapes (`\040` is a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|d| {
                let value = d.iter().fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                u8::try_from(value).ok()
            });
        match octal {
            Some(value) => {
                out.push(value);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let tail: Vec<&str> = after.split(' ').collect();
            Some(Mount {
                device: (*fields.get(2)?).to_owned(),
                root: unescape(fields.get(3)?),
                mount_point: PathBuf::from(unescape(fields.get(4)?)),
                fs_type: (*tail.first()?).to_owned(),
                source: unescape(tail.get(1)?),
            })
        })
        .collect()
}

/// Device names that are not physical disks.
fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "nbd"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
}

/// lsblk's transport, read from where the disk hangs in the device tree.
fn transport_from_path(sys_path: &str) -> Option<String> {
    let transport = [
        ("/nvme", "nvme"),
        ("/usb", "usb"),
        ("/ata", "sata"),
        ("/virtio", "virtio"),
        ("/vbd-", "xen"),
        ("/mmc", "mmc"),
    ]
    .iter()
    .find(|(marker, _)| sys_path.contains(marker))?;
    Some(transport.1.to_owned())
}

/// NVMe by name or transport; else the kernel's rotational flag. Hypervisors' virtual disks
/// (virtio, Xen) report rotational by default whatever backs them, so there "rotational" only
/// says we do not know.
fn classify(name: &str, transport: Option<&str>, rotational: Option<bool>) -> DiskKind {
    let virtual_disk = matches!(transport, Some("virtio" | "xen"));
    match rotational {
        _ if name.starts_with("nvme") || transport == Some("nvme") => DiskKind::Nvme,
        Some(false) => DiskKind::Ssd,
        Some(true) if !virtual_disk => DiskKind::Hdd,
        _ => DiskKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
30 22 0:26 / /dev/shm rw - tmpfs tmpfs rw\n\
31 22 259:2 /data /srv/my\\040data rw,noatime master:1 - xfs /dev/nvme0n1p2 rw\n";

    #[test]
    fn mountinfo_lines_give_device_root_and_escaped_mount_point() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].device, "254:0");
        assert_eq!(mounts[0].mount_point, PathBuf::from("/"));
        assert_eq!(mounts[2].root, "/data");
        assert_eq!(mounts[2].mount_point, PathBuf::from("/srv/my data"));
        assert_eq!(mounts[2].fs_type, "xfs");
        assert_eq!(mounts[2].source, "/dev/nvme0n1p2");
    }

    #[test]
    fn virtual_devices_are_not_disks() {
        for name in ["loop0", "zram0", "ram1", "dm-0", "md127", "nbd3"] {
            assert!(is_virtual(name), "{name}");
        }
        for name in ["sda", "vda", "nvme0n1", "mmcblk0"] {
            assert!(!is_virtual(name), "{name}");
        }
    }

    #[test]
    fn disk_kind_follows_the_kernel() {
        let nvme = "/sys/devices/pci0000:00/0000:00:01.0/nvme/nvme0/nvme0n1";
        assert_eq!(transport_from_path(nvme).as_deref(), Some("nvme"));
        assert_eq!(
            classify("nvme0n1", Some("nvme"), Some(false)),
            DiskKind::Nvme
        );
        assert_eq!(classify("sda", Some("sata"), Some(true)), DiskKind::Hdd);
        assert_eq!(classify("sdb", Some("sata"), Some(false)), DiskKind::Ssd);
        assert_eq!(
            classify("vda", Some("virtio"), Some(true)),
            DiskKind::Unknown
        );
        assert_eq!(classify("vdb", Some("virtio"), Some(false)), DiskKind::Ssd);
        assert_eq!(classify("sdc", None, None), DiskKind::Unknown);
        assert_eq!(DiskKind::Nvme.as_str(), "NVME");
    }
}
