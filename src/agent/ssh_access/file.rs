//! Reading authorized_keys and replacing it atomically, as the user's own file.
//!
//! Not `crate::files::write_private_atomically`: the agent may run as root and write into a
//! directory its user controls, so on Unix every step goes through a descriptor of that
//! directory, opened without following a symlink at `.ssh` or at `authorized_keys` (a user who
//! points either at a root-only file must not get that file's content, or our write, there).
//! The temporary file gets the mode and owner before it is renamed over the target, and the
//! target is read once more just before the rename: a change by someone else in the meantime
//! (`ssh-copy-id`, an editor) is noticed and the edit is done again on the new content instead
//! of being lost.

use std::path::Path;

use super::SshAccessError;

/// The most we read: a file this large is not a list of keys a person keeps.
pub(super) const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

/// The file as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Current {
    pub(super) bytes: Vec<u8>,
    /// Permission bits (`0o600`), on Unix.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) mode: u32,
    /// Owner and group, on Unix.
    #[cfg_attr(not(unix), allow(dead_code))]
    pub(super) owner: (u32, u32),
}

/// Whether a replacement went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Replaced {
    Done,
    /// The file was no longer what the edit started from; nothing was written.
    ChangedMeanwhile,
}

/// An I/O error with what we were doing and where.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SshAccessError {
    let path = path.to_path_buf();
    move |source| SshAccessError::Io {
        action,
        path,
        source,
    }
}

#[cfg(unix)]
pub(super) use unix::{read, replace};

#[cfg(unix)]
mod unix {
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicU64, Ordering};

    use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
    use rustix::io::Errno;
    use rustix::process::{Gid, Uid};

    use super::{Current, MAX_FILE_LEN, Replaced, io};
    use crate::agent::ssh_access::SshAccessError;

    /// `path`'s directory: `(its parent, its name)`, or the directory itself when it has no name
    /// (`/`, `.`): that one is then opened as it is.
    pub(super) fn dir_of(path: &Path) -> (PathBuf, Option<std::ffi::OsString>) {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        match (dir.parent(), dir.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                (parent.to_path_buf(), Some(name.to_owned()))
            }
            (_, Some(name)) => (PathBuf::from("."), Some(name.to_owned())),
            _ => (dir.to_path_buf(), None),
        }
    }

    /// The file at `path`, or `None` when it (or its directory) does not exist.
    pub(in crate::agent::ssh_access) fn read(
        path: &Path,
    ) -> Result<Option<Current>, SshAccessError> {
        match open_dir(path, Missing::Absent)? {
            Some(dir) => read_in(&dir, path),
            None => Ok(None),
        }
    }

    /// Replaces the file at `path` with `bytes`, if it still holds `expected` (`None`: does not
    /// exist). The directory is created (0700) when missing. The new file has the old one's
    /// owner, or `owner` when there was none, and mode 0600 or the old mode where that is
    /// stricter.
    pub(in crate::agent::ssh_access) fn replace(
        path: &Path,
        owner: Option<(u32, u32)>,
        expected: Option<&Current>,
        bytes: &[u8],
    ) -> Result<Replaced, SshAccessError> {
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let dir = open_dir(path, Missing::Create(owner))?
            .ok_or_else(|| io("open the folder of", path)(Errno::NOENT.into()))?;
        let name = file_name(path)?;
        let temporary = format!(
            ".{}.polaris.{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        );
        let mode = match expected {
            // Keeps what is stricter than 0600, drops everything else: sshd (StrictModes)
            // refuses a file that group or others may write.
            Some(current) => current.mode & 0o600,
            None => 0o600,
        };
        let owner = expected.map(|current| current.owner).or(owner);
        let file = rustix::fs::openat(
            &dir,
            temporary.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io("create a temporary file beside", path)(e.into()))?;
        let written = (|| {
            let mut file = std::fs::File::from(file);
            file.write_all(bytes)
                .map_err(io("write a temporary file beside", path))?;
            if let Some((uid, gid)) = owner {
                give(&file, uid, gid).map_err(io("give to its user the new", path))?;
            }
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                .map_err(|e| io("set the mode of the new", path)(e.into()))?;
            file.sync_all().map_err(io("flush to disk the new", path))?;
            if read_in(&dir, path)?.as_ref() != expected {
                return Ok(Replaced::ChangedMeanwhile);
            }
            rustix::fs::renameat(&dir, temporary.as_str(), &dir, name)
                .map_err(|e| io("rename the new file over", path)(e.into()))?;
            Ok(Replaced::Done)
        })();
        if !matches!(written, Ok(Replaced::Done)) {
            let _ = rustix::fs::unlinkat(&dir, temporary.as_str(), AtFlags::empty());
        }
        let replaced = written?;
        if replaced == Replaced::Done {
            // The rename is durable once the directory is.
            rustix::fs::fsync(&dir).map_err(|e| io("flush the folder of", path)(e.into()))?;
        }
        Ok(replaced)
    }

    /// Sets the owner and group unless the file has them already: a non-root agent that
    /// manages its own user's keys never needs the privilege.
    fn give(file: &std::fs::File, uid: u32, gid: u32) -> std::io::Result<()> {
        let stat = rustix::fs::fstat(file)?;
        if stat.st_uid == uid && stat.st_gid == gid {
            return Ok(());
        }
        rustix::fs::fchown(file, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))?;
        Ok(())
    }

    fn file_name(path: &Path) -> Result<&std::ffi::OsStr, SshAccessError> {
        path.file_name().ok_or_else(|| {
            io("find the file name of", path)(std::io::Error::from(
                std::io::ErrorKind::InvalidInput,
            ))
        })
    }

    /// What [`open_dir`] does when the directory does not exist.
    enum Missing {
        /// Says so (`None`).
        Absent,
        /// Makes it, mode 0700, given to this owner and group.
        Create(Option<(u32, u32)>),
    }

    /// The directory holding `path`, opened without following a symlink at its last
    /// component.
    fn open_dir(path: &Path, missing: Missing) -> Result<Option<OwnedFd>, SshAccessError> {
        let directory = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let (parent, name) = dir_of(path);
        let parent_fd = rustix::fs::openat(CWD, &parent, directory, Mode::empty());
        let parent_fd = match (parent_fd, &missing) {
            (Ok(fd), _) => fd,
            (Err(Errno::NOENT), Missing::Absent) => return Ok(None),
            (Err(e), _) => return Err(io("open", &parent)(e.into())),
        };
        let Some(name) = name else {
            return Ok(Some(parent_fd));
        };
        let dir_path = parent.join(&name);
        let open = || {
            rustix::fs::openat(
                &parent_fd,
                name.as_os_str(),
                directory | OFlags::NOFOLLOW,
                Mode::empty(),
            )
        };
        match (open(), missing) {
            (Ok(fd), _) => Ok(Some(fd)),
            (Err(Errno::NOENT), Missing::Absent) => Ok(None),
            (Err(Errno::NOENT), Missing::Create(owner)) => {
                match rustix::fs::mkdirat(&parent_fd, name.as_os_str(), Mode::from_raw_mode(0o700))
                {
                    // Another writer made it first: fine, it is opened below like any other.
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io("create", &dir_path)(e.into())),
                }
                let fd = open().map_err(|e| io("open", &dir_path)(e.into()))?;
                let fd = std::fs::File::from(fd);
                if let Some((uid, gid)) = owner {
                    give(&fd, uid, gid).map_err(io("give to its user", &dir_path))?;
                }
                // The umask may have taken bits away; sshd wants no more than 0700 anyway.
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700))
                    .map_err(|e| io("set the mode of", &dir_path)(e.into()))?;
                rustix::fs::fsync(&parent_fd)
                    .map_err(|e| io("flush the folder of", &dir_path)(e.into()))?;
                Ok(Some(OwnedFd::from(fd)))
            }
            (Err(Errno::LOOP | Errno::NOTDIR), _) => Err(io("use", &dir_path)(
                std::io::Error::other("it is a symlink or not a folder; refusing to follow it"),
            )),
            (Err(e), _) => Err(io("open", &dir_path)(e.into())),
        }
    }

    /// The file named by `path` in `dir`, if it exists; never through a symlink, never more
    /// than [`MAX_FILE_LEN`] bytes, and only a regular file (a FIFO would block the agent).
    fn read_in(dir: &OwnedFd, path: &Path) -> Result<Option<Current>, SshAccessError> {
        let name = file_name(path)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(io("read", path)(std::io::Error::other(
                    "it is a symlink; refusing to follow it",
                )));
            }
            Err(e) => return Err(io("read", path)(e.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| io("read", path)(e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io("read", path)(std::io::Error::other(
                "it is not a regular file",
            )));
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_FILE_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(io("read", path))?;
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(io("read", path)(std::io::Error::other(format!(
                "it is larger than {MAX_FILE_LEN} bytes"
            ))));
        }
        Ok(Some(Current {
            bytes,
            mode: (stat.st_mode & 0o7777) as u32,
            owner: (stat.st_uid, stat.st_gid),
        }))
    }
}

#[cfg(not(unix))]
pub(super) use portable::{read, replace};

/// Elsewhere (Windows): the plain path-based calls; owners and modes do not apply, and
/// `ManagedKeys::for_user` is not offered, so no other user's folder is ever written.
#[cfg(not(unix))]
mod portable {
    use std::path::Path;

    use super::{Current, MAX_FILE_LEN, Replaced, io};
    use crate::agent::ssh_access::SshAccessError;

    pub(in crate::agent::ssh_access) fn read(
        path: &Path,
    ) -> Result<Option<Current>, SshAccessError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("read", path)(e)),
        };
        if bytes.len() as u64 > MAX_FILE_LEN {
            return Err(io("read", path)(std::io::Error::other(format!(
                "it is larger than {MAX_FILE_LEN} bytes"
            ))));
        }
        Ok(Some(Current {
            bytes,
            mode: 0o600,
            owner: (0, 0),
        }))
    }

    pub(in crate::agent::ssh_access) fn replace(
        path: &Path,
        _owner: Option<(u32, u32)>,
        expected: Option<&Current>,
        bytes: &[u8],
    ) -> Result<Replaced, SshAccessError> {
        if read(path)?.as_ref() != expected {
            return Ok(Replaced::ChangedMeanwhile);
        }
        crate::files::write_private_atomically(path, bytes).map_err(io("write", path))?;
        Ok(Replaced::Done)
    }
}

/// Unix only: elsewhere `replace` is `crate::files::write_private_atomically`, tested there.
#[cfg(all(test, unix))]
mod tests {
    use std::path::Path;

    use super::unix::dir_of;
    use super::*;

    #[test]
    fn the_folder_is_split_from_its_parent() {
        let (parent, name) = dir_of(Path::new("/home/u/.ssh/authorized_keys"));
        assert_eq!(parent, Path::new("/home/u"));
        assert_eq!(name.as_deref(), Some(std::ffi::OsStr::new(".ssh")));
        let (parent, name) = dir_of(Path::new("keys/authorized_keys"));
        assert_eq!(parent, Path::new("."));
        assert_eq!(name.as_deref(), Some(std::ffi::OsStr::new("keys")));
        let (parent, name) = dir_of(Path::new("/authorized_keys"));
        assert_eq!(parent, Path::new("/"));
        assert_eq!(name, None);
        let (parent, name) = dir_of(Path::new("authorized_keys"));
        assert_eq!(parent, Path::new("."));
        assert_eq!(name, None);
    }

    #[test]
    fn a_symlinked_file_or_folder_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let secret = root.path().join("secret");
        std::fs::write(&secret, "root's keys\n")?;
        let ssh = root.path().join("home/.ssh");
        std::fs::create_dir_all(&ssh)?;
        std::os::unix::fs::symlink(&secret, ssh.join("authorized_keys"))?;
        assert!(read(&ssh.join("authorized_keys")).is_err());

        let elsewhere = root.path().join("elsewhere");
        std::fs::create_dir(&elsewhere)?;
        std::os::unix::fs::symlink(&elsewhere, root.path().join("home/.link"))?;
        let through = root.path().join("home/.link/authorized_keys");
        assert!(replace(&through, None, None, b"x\n").is_err());
        assert_eq!(std::fs::read_dir(&elsewhere)?.count(), 0);
        assert_eq!(std::fs::read(&secret)?, b"root's keys\n");
        Ok(())
    }

    #[test]
    fn a_change_in_the_meantime_is_noticed_and_nothing_written()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let path = root.path().join(".ssh/authorized_keys");
        assert_eq!(replace(&path, None, None, b"one\n")?, Replaced::Done);
        let read_then = read(&path)?;
        std::fs::write(&path, "someone else\n")?;
        let outcome = replace(&path, None, read_then.as_ref(), b"two\n")?;
        assert_eq!(outcome, Replaced::ChangedMeanwhile);
        assert_eq!(std::fs::read(&path)?, b"someone else\n");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap_or(root.path()))?.count(),
            1
        );
        Ok(())
    }
}
