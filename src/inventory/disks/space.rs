//! The data directory's space, read again and again (every heartbeat, every dashboard tick):
//! its filesystem is found once, and each reading asks that one filesystem, never the whole
//! walk of [`super::read`] (mountinfo, /sys, a statvfs per mount), where a dead network mount
//! can hang.

use std::path::{Path, PathBuf};

/// Bytes used and in all on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub used_bytes: u64,
    pub total_bytes: u64,
}

impl Space {
    /// How full it is, 0–100.
    pub fn percent_used(self) -> f64 {
        if self.total_bytes == 0 {
            return 0.0;
        }
        (self.used_bytes as f64 / self.total_bytes as f64 * 100.0).clamp(0.0, 100.0)
    }
}

/// The filesystem holding a directory (POLARIS_HOME, or its nearest existing parent).
pub struct DataDirSpace {
    /// The directory's real path, resolved once.
    #[cfg(unix)]
    path: Option<PathBuf>,
    /// sysinfo's mounted disks and the one holding the directory.
    #[cfg(not(unix))]
    disks: Option<(sysinfo::Disks, usize)>,
}

impl DataDirSpace {
    pub fn new(dir: &Path) -> Self {
        let real: Option<PathBuf> = super::existing_ancestor(dir)
            .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf()));
        #[cfg(unix)]
        {
            Self { path: real }
        }
        #[cfg(not(unix))]
        {
            let disks = real.and_then(|real| {
                let disks = sysinfo::Disks::new_with_refreshed_list().ok()?;
                let index = disks
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| real.starts_with(d.mount_point()))
                    .max_by_key(|(_, d)| d.mount_point().as_os_str().len())?
                    .0;
                Some((disks, index))
            });
            Self { disks }
        }
    }

    /// This moment's figures: one statvfs (one disk's refresh elsewhere); None when the
    /// system will not say.
    pub fn read(&mut self) -> Option<Space> {
        #[cfg(unix)]
        {
            let stat = rustix::fs::statvfs(self.path.as_deref()?).ok()?;
            let total_bytes = stat.f_blocks.saturating_mul(stat.f_frsize);
            let available = stat.f_bavail.saturating_mul(stat.f_frsize);
            Some(Space {
                used_bytes: total_bytes.saturating_sub(available),
                total_bytes,
            })
        }
        #[cfg(not(unix))]
        {
            let (disks, index) = self.disks.as_mut()?;
            let disk = disks.get_mut(*index)?;
            disk.refresh_specifics(sysinfo::DiskRefreshKind::nothing().with_storage());
            let total_bytes = disk.total_space();
            Some(Space {
                used_bytes: total_bytes.saturating_sub(disk.available_space()),
                total_bytes,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_home_not_made_yet_reads_its_parents_filesystem() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let space = DataDirSpace::new(&dir.path().join("not").join("yet")).read();
        let space = space.expect("the temp dir's filesystem answers");
        assert!(space.total_bytes > 0);
        assert!(space.used_bytes <= space.total_bytes);
        assert!((0.0..=100.0).contains(&space.percent_used()));
        Ok(())
    }

    #[test]
    fn nothing_full_of_nothing_is_empty() {
        let none = Space {
            used_bytes: 0,
            total_bytes: 0,
        };
        assert_eq!(none.percent_used(), 0.0);
    }
}
