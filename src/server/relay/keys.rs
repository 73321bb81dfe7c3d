//! Which public key belongs to which miner: the built-in relay lets a key log in only if a
//! registered miner sent it (at registration, or later through `POST /miners/{id}/relay_key`).
//! Loaded from the store at start-up, updated by the API, read by the relay at every login.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use russh::keys::PublicKey;
use russh::keys::ssh_key::public::KeyData;

/// Why a key was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("this key already belongs to another miner: each miner needs its own")]
    TakenByAnother,
}

/// Keys by miner and miners by key. Comments are not part of a key: `key_data` is compared.
#[derive(Debug, Default)]
pub struct RelayKeys {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    by_key: HashMap<KeyData, Arc<str>>,
    by_miner: HashMap<Arc<str>, KeyData>,
}

impl RelayKeys {
    /// Adds the store's `(miner id, key line)` rows; a row that does not parse is skipped with
    /// a warning (that miner cannot log in until it sends its key again).
    pub fn load(&self, rows: Vec<(String, String)>) {
        for (miner_id, line) in rows {
            match PublicKey::from_openssh(line.trim()) {
                Ok(key) if self.check(&miner_id, &key).is_ok() => self.set(&miner_id, &key),
                Ok(_) => {
                    tracing::warn!(%miner_id, "a stored relay key belongs to two miners: ignored for this one");
                }
                Err(_) => {
                    tracing::warn!(%miner_id, "the stored relay key is unreadable: ignored");
                }
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section is a pair of map updates that cannot panic half-way.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Whether `miner_id` may take `key` (refused when another miner holds it).
    pub fn check(&self, miner_id: &str, key: &PublicKey) -> Result<(), KeyRefusal> {
        match self.lock().by_key.get(key.key_data()) {
            Some(owner) if &**owner != miner_id => Err(KeyRefusal::TakenByAnother),
            _ => Ok(()),
        }
    }

    /// Makes `key` the one key of `miner_id`, forgetting its previous one. Call [`Self::check`]
    /// first (and store the key) — this only updates memory.
    pub fn set(&self, miner_id: &str, key: &PublicKey) {
        let mut inner = self.lock();
        let miner: Arc<str> = miner_id.into();
        if let Some(old) = inner.by_miner.insert(miner.clone(), key.key_data().clone()) {
            inner.by_key.remove(&old);
        }
        inner.by_key.insert(key.key_data().clone(), miner);
    }

    /// The miner whose key this is.
    pub fn miner(&self, key: &PublicKey) -> Option<Arc<str>> {
        self.lock().by_key.get(key.key_data()).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::{Ed25519Keypair, PrivateKey};

    fn key(seed: u8, comment: &str) -> PublicKey {
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone();
        key.set_comment(comment);
        key
    }

    #[test]
    fn a_new_key_replaces_the_old_one_and_no_key_serves_two_miners() {
        let keys = RelayKeys::default();
        keys.load(vec![
            ("a".into(), key(1, "x").to_openssh().expect("encodes")),
            ("b".into(), "not a key".into()),
        ]);
        assert_eq!(keys.miner(&key(1, "another comment")).as_deref(), Some("a"));
        assert_eq!(
            keys.check("b", &key(1, "")),
            Err(KeyRefusal::TakenByAnother)
        );
        assert_eq!(keys.check("a", &key(1, "")), Ok(()), "its own key again");
        keys.set("a", &key(2, ""));
        assert_eq!(keys.miner(&key(1, "")), None, "rotated away");
        assert_eq!(keys.miner(&key(2, "")).as_deref(), Some("a"));
        assert_eq!(keys.check("b", &key(1, "")), Ok(()), "free again");
    }
}
