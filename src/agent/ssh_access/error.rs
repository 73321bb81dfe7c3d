//! Why a change to the managed keys was refused or failed. The first three are the caller's
//! (the coordinator sent something we will not write), the rest are this machine's.

use std::path::PathBuf;

use chrono::{DateTime, Utc};

/// What went wrong; every message says what to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum SshAccessError {
    /// The text is not one OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`).
    #[error("not an OpenSSH public key line: {0}")]
    InvalidKey(String),
    /// The comment would not fit on the key's line as it was given.
    #[error("refusing the key's comment: {0}")]
    InvalidComment(String),
    /// An expiry that has passed already, or that sshd could not read.
    #[error("refusing the expiry {expires_at}: {reason}")]
    InvalidExpiry {
        expires_at: DateTime<Utc>,
        reason: String,
    },
    /// The markers of the managed block, or a line between them, are not as polaris writes them;
    /// nothing was changed.
    #[error(
        "{}: {problem}. Polaris keeps its keys between `{}` and `{}`; fix the file by hand. \
         Nothing was changed",
        path.display(),
        super::block::BEGIN,
        super::block::END
    )]
    Damaged { path: PathBuf, problem: String },
    /// The passwd database (NSS) knows no such user.
    #[error("no user {0:?} in the passwd database: check SSH_USER")]
    UnknownUser(String),
    /// The passwd database could not be asked.
    #[error("cannot look up the user {name:?} in the passwd database")]
    Lookup {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// The user's passwd entry names no absolute home directory.
    #[error("the user {name:?} has no home directory in the passwd database ({home:?})")]
    NoHome { name: String, home: PathBuf },
    /// `for_user` on a platform where it is not written yet.
    #[error("managing a user's authorized_keys is not supported on this platform yet")]
    Unsupported,
    /// Reading, writing or looking something up failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something else rewrote the file each time between our read and our rename.
    #[error(
        "{} kept changing while polaris edited it (another program writing it?); nothing was \
         changed, try again",
        path.display()
    )]
    Busy { path: PathBuf },
}

impl SshAccessError {
    /// Whether the request itself was at fault (a bad key, comment or expiry), as opposed to
    /// this machine: the coordinator should not retry the same request.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            Self::InvalidKey(_) | Self::InvalidComment(_) | Self::InvalidExpiry { .. }
        )
    }
}
