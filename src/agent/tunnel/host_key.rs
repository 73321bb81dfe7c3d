//! Is this the relay we mean? The relay's host key is checked against a pinned fingerprint
//! (POLARIS_RELAY_HOST_KEY) or against `POLARIS_HOME/keys/known_hosts`, where the first key seen
//! is learned (trust on first use). A key that differs from the pin or from the learned one is
//! an error that stops the tunnel for good: a man in the middle must never get our forward,
//! and retrying would only ask the same question again.

use std::path::{Path, PathBuf};

use russh::keys::{HashAlg, PublicKey};

/// What the check concluded about a key it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trust {
    /// It equals POLARIS_RELAY_HOST_KEY.
    Pinned,
    /// known_hosts already held it.
    Known,
    /// Nothing was known about this relay: the key was written to known_hosts now.
    Learned,
}

/// As the log says it: `pinned`, `known`, `learned on first use`.
impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Trust::Pinned => "pinned",
            Trust::Known => "known",
            Trust::Learned => "learned on first use",
        })
    }
}

/// Why a relay's key was refused. Each says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostKeyError {
    #[error(
        "the relay's host key is {seen}, not the pinned {pinned} (POLARIS_RELAY_HOST_KEY): \
         refusing to connect. Check the relay's fingerprint with its operator"
    )]
    NotPinned { seen: String, pinned: String },
    #[error(
        "the relay's host key CHANGED: it is now {seen}, but line {line} of {} holds another key \
         for this relay. Someone may be in the middle; if the relay really has a new key, remove \
         that line and restart the agent. The tunnel stays down until then",
        path.display()
    )]
    Changed {
        seen: String,
        line: usize,
        path: PathBuf,
    },
    #[error("cannot use {}: {detail}", path.display())]
    File { path: PathBuf, detail: String },
    #[error("the relay offered a certificate; polaris pins plain host keys")]
    Certificate,
}

/// `SHA256:…`, as `ssh-keygen -l` prints it.
pub(crate) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Accepts `key` for `host:port`, or says why not.
pub(crate) fn check(
    host: &str,
    port: u16,
    key: &PublicKey,
    pinned: Option<&str>,
    known_hosts: &Path,
) -> Result<Trust, HostKeyError> {
    let seen = fingerprint(key);
    if let Some(pinned) = pinned {
        return if seen == pinned {
            Ok(Trust::Pinned)
        } else {
            Err(HostKeyError::NotPinned {
                seen,
                pinned: pinned.to_owned(),
            })
        };
    }
    let file_error = |e: russh::keys::Error| HostKeyError::File {
        path: known_hosts.to_path_buf(),
        detail: e.to_string(),
    };
    match russh::keys::check_known_hosts_path(host, port, key, known_hosts) {
        Ok(true) => Ok(Trust::Known),
        Ok(false) => {
            russh::keys::known_hosts::learn_known_hosts_path(host, port, key, known_hosts)
                .map_err(file_error)?;
            Ok(Trust::Learned)
        }
        Err(russh::keys::Error::KeyChanged { line }) => Err(HostKeyError::Changed {
            seen,
            line,
            path: known_hosts.to_path_buf(),
        }),
        Err(e) => Err(file_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    #[test]
    fn first_use_learns_then_knows_and_a_changed_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("keys").join("known_hosts");
        assert_eq!(
            check("127.0.0.1", 2222, &key(1), None, &file),
            Ok(Trust::Learned)
        );
        assert_eq!(
            check("127.0.0.1", 2222, &key(1), None, &file),
            Ok(Trust::Known)
        );
        // russh starts a new file with an empty line, so find the learned entry's line.
        let text = std::fs::read_to_string(&file).expect("known_hosts");
        let learned_line = 1 + text
            .lines()
            .position(|l| l.starts_with("[127.0.0.1]:2222 "))
            .expect("the learned entry");
        let changed = check("127.0.0.1", 2222, &key(2), None, &file);
        assert!(
            matches!(changed, Err(HostKeyError::Changed { line, .. }) if line == learned_line),
            "{changed:?}"
        );
        assert_eq!(
            check("127.0.0.1", 2223, &key(2), None, &file),
            Ok(Trust::Learned),
            "another port is another relay"
        );
    }

    #[test]
    fn a_pin_decides_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("known_hosts");
        let pin = fingerprint(&key(1));
        assert!(pin.starts_with("SHA256:"), "{pin}");
        assert_eq!(
            check("h", 22, &key(1), Some(&pin), &file),
            Ok(Trust::Pinned)
        );
        let refused = check("h", 22, &key(2), Some(&pin), &file);
        assert!(
            matches!(refused, Err(HostKeyError::NotPinned { .. })),
            "{refused:?}"
        );
        assert!(!file.exists(), "a pinned check learns nothing");
    }
}
