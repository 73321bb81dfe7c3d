//! Who may log in to this machine over SSH: the block of `SSH_USER`'s `~/.ssh/authorized_keys`
//! that the agent manages for the coordinator (its `authorize_key` and `revoke_key` commands),
//! so that a validator can log in to the miner with its own key, for as long as it was granted.
//!
//! # The block
//!
//! Polaris writes only between two marker lines; everything outside them is kept byte for
//! byte. A file without the markers gets the block appended; a file whose markers are damaged
//! (a BEGIN without its END, two BEGINs, …) or whose block holds a line polaris would not write
//! is refused with an error that says so, and nothing is changed: guessing where our block ends
//! could delete a key someone else put there.
//!
//! ```text
//! # BEGIN polaris managed keys: edited by the polaris agent, do not edit by hand
//! expiry-time="20261231235959Z" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAUQ… validator 5F3sa2TJ
//! ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIXV… ops laptop
//! # END polaris managed keys
//! ```
//!
//! Each line is one key, and everything polaris knows about it is on that line, in OpenSSH's
//! own syntax (see `man sshd`, AUTHORIZED_KEYS FILE FORMAT):
//! - the expiry, when there is one, as sshd's `expiry-time` option in UTC to the second
//!   (`YYYYMMDDHHMMSSZ`). sshd itself refuses the key once it has passed, even while the agent
//!   is down; [`ManagedKeys::remove_expired`] only tidies up. It is the only record of the
//!   expiry, so the two can never disagree;
//! - the key type and base64, re-encoded from the decoded key (whatever else the caller's text
//!   held never reaches the file);
//! - the comment the coordinator gave, verbatim after one space (printable ASCII, so it cannot
//!   end the line or carry terminal escapes), or nothing.
//!
//! No other option is ever written, and none is accepted from the caller.
//!
//! # Writing
//!
//! A change reads the file, edits the block and replaces the file atomically (a temporary file
//! in `.ssh`, flushed, mode 0600 or the old mode where stricter, given to the user, renamed
//! over), and only when the keys changed. `.ssh` is created (0700, the user's) when missing.
//! Nothing else is touched. The calls block on file I/O: call them from `spawn_blocking`.

mod block;
mod error;
mod file;
mod key_line;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use block::Document;
pub use error::SshAccessError;
use file::Replaced;
use key_line::ManagedLine;

/// How often an edit starts again because someone else changed the file under it.
const ATTEMPTS: usize = 5;

/// A key in the managed block, as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizedKey {
    /// `SHA256:…`, as `ssh-keygen -l` prints it: what `revoke_key` names.
    pub fingerprint: String,
    /// The key's algorithm: `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    pub key_type: String,
    /// The comment given when it was authorized (may be empty).
    pub comment: String,
    /// When sshd stops accepting it, to the second; `None` for never.
    pub expires_at: Option<DateTime<Utc>>,
}

/// The managed block of one authorized_keys file.
#[derive(Debug)]
pub struct ManagedKeys {
    /// `<home>/.ssh/authorized_keys`.
    path: PathBuf,
    /// The user's uid and gid: a new file or `.ssh` is given to them (an existing file keeps
    /// its owner). `None` leaves them to whoever runs the agent.
    owner: Option<(u32, u32)>,
    /// One edit at a time from this process: two commands arriving together must not each
    /// rewrite the file from the same old content.
    edits: Mutex<()>,
}

impl ManagedKeys {
    /// The authorized_keys of the user `name` (SSH_USER), found through the passwd database
    /// (NSS, so LDAP and sssd users work too).
    #[cfg(unix)]
    pub fn for_user(name: &str) -> Result<Self, SshAccessError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|errno| SshAccessError::Lookup {
                name: name.to_owned(),
                source: errno.into(),
            })?
            .ok_or_else(|| SshAccessError::UnknownUser(name.to_owned()))?;
        if !user.dir.is_absolute() {
            return Err(SshAccessError::NoHome {
                name: name.to_owned(),
                home: user.dir,
            });
        }
        let path = user.dir.join(".ssh").join("authorized_keys");
        Ok(Self::at(path, Some((user.uid.as_raw(), user.gid.as_raw()))))
    }

    /// Not written yet off Unix: OpenSSH for Windows keeps administrators' keys elsewhere and
    /// wants ACLs rather than modes.
    #[cfg(not(unix))]
    pub fn for_user(_name: &str) -> Result<Self, SshAccessError> {
        Err(SshAccessError::Unsupported)
    }

    /// The authorized_keys file at `path`; new files (and a new parent folder) are given to
    /// `owner` (uid, gid) when set. For tests, and for callers that know the path.
    pub fn at(path: impl Into<PathBuf>, owner: Option<(u32, u32)>) -> Self {
        Self {
            path: path.into(),
            owner,
            edits: Mutex::new(()),
        }
    }

    /// The file this manages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys in the block, in file order, expired ones included (until
    /// [`remove_expired`](Self::remove_expired)). No file, or no block, is an empty list.
    pub fn list(&self) -> Result<Vec<AuthorizedKey>, SshAccessError> {
        Ok(self.read()?.iter().map(ManagedLine::summary).collect())
    }

    /// Lets `public_key` (one `TYPE BASE64 [COMMENT]` line, as in a `.pub` file; its own
    /// comment is ignored) log in, with `comment` on its line, until `expires_at` (kept to the
    /// second, rounded down) or for good. Authorizing a key that is there already replaces its
    /// comment and expiry in place. Refused, before the file is read: anything but one bare
    /// key, a bad comment, an expiry not after `now`.
    pub fn authorize(
        &self,
        public_key: &str,
        comment: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<AuthorizedKey, SshAccessError> {
        let line = ManagedLine::new(public_key, comment, expires_at, now)?;
        let fingerprint = line.fingerprint();
        self.edit(|keys| {
            // In place, where the key was; a block edited by hand may hold it twice, and one
            // line is enough.
            let mut found = false;
            keys.retain_mut(|key| {
                if key.fingerprint() != fingerprint {
                    return true;
                }
                if found {
                    return false;
                }
                found = true;
                *key = line.clone();
                true
            });
            if !found {
                keys.push(line.clone());
            }
        })?;
        Ok(line.summary())
    }

    /// Removes the key whose fingerprint is `fingerprint` (`SHA256:…`). `false` when no such
    /// key was in the block, which is not an error: revoking twice is harmless.
    pub fn revoke(&self, fingerprint: &str) -> Result<bool, SshAccessError> {
        self.edit(|keys| {
            let before = keys.len();
            keys.retain(|k| k.fingerprint() != fingerprint);
            keys.len() != before
        })
    }

    /// Removes the keys whose expiry is at or before `now`, and returns them.
    pub fn remove_expired(&self, now: DateTime<Utc>) -> Result<Vec<AuthorizedKey>, SshAccessError> {
        self.edit(|keys| {
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(keys)
                .into_iter()
                .partition(|k| k.expires_at().is_some_and(|t| t <= now));
            *keys = kept;
            expired.iter().map(ManagedLine::summary).collect()
        })
    }

    /// The earliest expiry in the block, passed or not: when the agent should next call
    /// [`remove_expired`](Self::remove_expired). `None` when no key expires.
    pub fn next_expiry(&self) -> Result<Option<DateTime<Utc>>, SshAccessError> {
        Ok(self
            .read()?
            .iter()
            .filter_map(ManagedLine::expires_at)
            .min())
    }

    /// The keys in the block as it is now.
    fn read(&self) -> Result<Vec<ManagedLine>, SshAccessError> {
        let current = file::read(&self.path)?;
        let bytes = current.as_ref().map_or(&[][..], |c| c.bytes.as_slice());
        let document = Document::parse(bytes).map_err(|problem| self.damaged(problem))?;
        self.keys_in(&document)
    }

    /// Reads the block, lets `change` edit its keys, and writes the file when they changed.
    /// `change` may run more than once: again on the new content when someone else wrote the
    /// file between our read and our rename.
    fn edit<T>(
        &self,
        mut change: impl FnMut(&mut Vec<ManagedLine>) -> T,
    ) -> Result<T, SshAccessError> {
        // The lock guards no data, only the order of edits: one that panicked left the file
        // as it was or replaced it whole, so a poisoned lock is still good to take.
        let _one_at_a_time = self.edits.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..ATTEMPTS {
            let current = file::read(&self.path)?;
            let bytes = current.as_ref().map_or(&[][..], |c| c.bytes.as_slice());
            let document = Document::parse(bytes).map_err(|problem| self.damaged(problem))?;
            let before = self.keys_in(&document)?;
            let mut keys = before.clone();
            let outcome = change(&mut keys);
            if keys == before {
                return Ok(outcome);
            }
            let lines: Vec<String> = keys.iter().map(ManagedLine::render).collect();
            let contents = document.render(&lines);
            match file::replace(&self.path, self.owner, current.as_ref(), &contents)? {
                Replaced::Done => return Ok(outcome),
                Replaced::ChangedMeanwhile => continue,
            }
        }
        Err(SshAccessError::Busy {
            path: self.path.clone(),
        })
    }

    /// The block's keys; blank lines are skipped, any other line that is not a key line polaris
    /// writes is damage.
    fn keys_in(&self, document: &Document<'_>) -> Result<Vec<ManagedLine>, SshAccessError> {
        document
            .lines()
            .iter()
            .filter(|line| !line.text.trim().is_empty())
            .map(|line| {
                ManagedLine::parse(line.text).map_err(|why| {
                    self.damaged(format!(
                        "line {}, inside the block, is not a key line polaris writes: {why}",
                        line.number
                    ))
                })
            })
            .collect()
    }

    fn damaged(&self, problem: String) -> SshAccessError {
        SshAccessError::Damaged {
            path: self.path.clone(),
            problem,
        }
    }
}

#[cfg(test)]
mod tests;
