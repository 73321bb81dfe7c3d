//! macOS, Windows and the rest: sysinfo's mounted disks, grouped by device.

use std::collections::BTreeMap;
use std::path::Path;

use super::{DataDir, Disk, DiskKind, Filesystem, Storage, existing_ancestor};

pub fn read(home: &Path) -> anyhow::Result<Storage> {
    let list = sysinfo::Disks::new_with_refreshed_list()
        .map_err(|e| anyhow::anyhow!("cannot list disks: {e}"))?;
    let mut disks: BTreeMap<String, Disk> = BTreeMap::new();
    for entry in &list {
        let name = entry.name().to_string_lossy().into_owned();
        let disk = disks.entry(name.clone()).or_insert_with(|| Disk {
            kind: match entry.kind() {
                sysinfo::DiskKind::SSD => DiskKind::Ssd,
                sysinfo::DiskKind::HDD => DiskKind::Hdd,
                _ => DiskKind::Unknown,
            },
            name,
            transport: None,
            model: None,
            // sysinfo knows filesystems, not the disks under them.
            size_bytes: None,
            removable: entry.is_removable(),
            filesystems: Vec::new(),
        });
        disk.filesystems.push(Filesystem {
            mount_point: entry.mount_point().to_path_buf(),
            source: disk.name.clone(),
            fs_type: entry.file_system().to_string_lossy().into_owned(),
            total_bytes: entry.total_space(),
            available_bytes: entry.available_space(),
        });
    }
    let disks: Vec<Disk> = disks.into_values().collect();
    let data_dir = existing_ancestor(home).and_then(|dir| {
        let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let (disk, fs) = disks
            .iter()
            .flat_map(|d| d.filesystems.iter().map(move |f| (d, f)))
            .filter(|(_, f)| dir.starts_with(&f.mount_point))
            .max_by_key(|(_, f)| f.mount_point.as_os_str().len())?;
        Some(DataDir {
            path: dir.clone(),
            disk: Some(disk.name.clone()),
            fs_type: Some(fs.fs_type.clone()),
            mount_point: Some(fs.mount_point.clone()),
            total_bytes: fs.total_bytes,
            available_bytes: fs.available_bytes,
        })
    });
    Ok(Storage {
        disks,
        data_dir,
        note: None,
    })
}
