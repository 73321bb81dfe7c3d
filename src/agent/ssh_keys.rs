//! SSH access by key (`POLARIS_SSH_ACCESS=keys`): the coordinator's `authorize_key` and
//! `revoke_key` commands applied to the managed block of SSH_USER's `authorized_keys`
//! ([`super::ssh_access`]), keys removed when they expire, and the keys there published for the
//! heartbeats and `polaris status`.

use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::heartbeat::MAX_KEYS_REPORTED;
use super::ssh_access::{self, ManagedKeys};
use crate::api::{AuthorizedKey, Command};

/// Longest the expiry loop sleeps with no key to expire (a new key wakes it).
const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The managed block and what is known to be in it. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct KeyKeeper {
    user: Arc<str>,
    keys: Arc<ManagedKeys>,
    published: Arc<watch::Sender<Vec<AuthorizedKey>>>,
    /// Wakes the expiry loop: a key with an earlier expiry may have come.
    changed: Arc<Notify>,
}

impl KeyKeeper {
    /// The managed block of `user`'s `authorized_keys`, read now. An unknown user is an error
    /// (a setting to fix); a block that cannot be read is not: the agent runs on, said once in
    /// the log, and each key command says why it fails.
    pub async fn open(user: &str) -> Result<Self, String> {
        let name = user.to_owned();
        let keys = blocking(move || ManagedKeys::for_user(&name)).await?;
        let keys = Arc::new(keys);
        let listed = {
            let keys = Arc::clone(&keys);
            blocking(move || keys.list()).await.unwrap_or_else(|why| {
                tracing::warn!("the managed SSH keys cannot be read: {why}");
                Vec::new()
            })
        };
        let (published, _) = watch::channel(listed.iter().map(reported).collect());
        Ok(Self {
            user: user.into(),
            keys,
            published: Arc::new(published),
            changed: Arc::new(Notify::new()),
        })
    }

    /// The account whose `authorized_keys` is managed.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The keys in the block, as the heartbeats and `status` show them.
    pub fn subscribe(&self) -> watch::Receiver<Vec<AuthorizedKey>> {
        self.published.subscribe()
    }

    /// Carries out a key command; any other command is not this keeper's.
    pub async fn carry_out(&self, command: Command) -> Result<(), String> {
        let keys = Arc::clone(&self.keys);
        let result = match command {
            Command::AuthorizeKey {
                public_key,
                comment,
                expires_at,
            } => {
                self.has_room_for(&public_key)?;
                blocking(move || authorize(&keys, &public_key, comment, expires_at)).await
            }
            Command::RevokeKey { fingerprint } => {
                blocking(move || revoke(&keys, &fingerprint)).await
            }
            Command::Restart { .. } => return Err("not a key command".to_owned()),
        };
        self.publish().await;
        self.changed.notify_one();
        result
    }

    /// A new key fits: the block holds fewer than [`MAX_KEYS_REPORTED`] keys, or this one (being
    /// renewed). More would not fit in a heartbeat's report.
    fn has_room_for(&self, public_key: &str) -> Result<(), String> {
        let published = self.published.borrow();
        if published.len() < MAX_KEYS_REPORTED {
            return Ok(());
        }
        let print = russh::keys::PublicKey::from_openssh(public_key.trim())
            .map(|k| k.fingerprint(russh::keys::HashAlg::Sha256).to_string())
            .unwrap_or_default();
        if published.iter().any(|k| k.fingerprint == print) {
            Ok(())
        } else {
            Err(format!(
                "{MAX_KEYS_REPORTED} keys are authorized already: revoke one first"
            ))
        }
    }

    /// Removes keys when they expire, until `cancel`.
    pub async fn expire(self, cancel: CancellationToken) {
        // Said when it starts failing and when the reason changes, not once a minute.
        let mut failing: Option<String> = None;
        loop {
            let keys = Arc::clone(&self.keys);
            let next = match blocking(move || {
                let removed = keys.remove_expired(Utc::now())?;
                Ok((removed, keys.next_expiry()?))
            })
            .await
            {
                Ok((removed, next)) => {
                    if failing.take().is_some() {
                        tracing::info!("expired SSH keys can be removed again");
                    }
                    for key in &removed {
                        tracing::info!(fingerprint = %key.fingerprint, "SSH key expired and removed");
                    }
                    if !removed.is_empty() {
                        self.publish().await;
                    }
                    next
                }
                Err(why) => {
                    if failing.as_deref() != Some(why.as_str()) {
                        tracing::warn!("cannot remove expired SSH keys: {why}");
                        failing = Some(why);
                    }
                    // sshd refuses them anyway (expiry-time); try again in a minute.
                    Some(Utc::now() + chrono::TimeDelta::minutes(1))
                }
            };
            let wait = next
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or(if next.is_some() {
                    std::time::Duration::ZERO
                } else {
                    IDLE
                })
                .min(IDLE);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.changed.notified() => {}
                () = cancel.cancelled() => return,
            }
        }
    }

    /// Reads the block again and publishes it when it changed.
    async fn publish(&self) {
        let keys = Arc::clone(&self.keys);
        match blocking(move || keys.list()).await {
            Ok(listed) => {
                let listed: Vec<AuthorizedKey> = listed.iter().map(reported).collect();
                self.published.send_if_modified(|now| {
                    let changed = *now != listed;
                    if changed {
                        *now = listed;
                    }
                    changed
                });
            }
            Err(why) => tracing::warn!("cannot read the managed SSH keys: {why}"),
        }
    }
}

/// Adds (or renews) a key.
fn authorize(
    keys: &ManagedKeys,
    public_key: &str,
    comment: Option<String>,
    expires_at: Option<chrono::DateTime<Utc>>,
) -> Result<(), ssh_access::SshAccessError> {
    let comment = comment.unwrap_or_default();
    let key = keys.authorize(public_key, &comment, expires_at, Utc::now())?;
    tracing::info!(fingerprint = %key.fingerprint, "SSH key authorized");
    Ok(())
}

fn revoke(keys: &ManagedKeys, fingerprint: &str) -> Result<(), ssh_access::SshAccessError> {
    if keys.revoke(fingerprint)? {
        tracing::info!(%fingerprint, "SSH key revoked");
    } else {
        tracing::info!(%fingerprint, "SSH key to revoke was not authorized: nothing to do");
    }
    Ok(())
}

fn reported(key: &ssh_access::AuthorizedKey) -> AuthorizedKey {
    AuthorizedKey {
        fingerprint: key.fingerprint.clone(),
        comment: (!key.comment.is_empty()).then(|| key.comment.clone()),
        expires_at: key.expires_at,
    }
}

/// Runs file work off the async threads; its error as text for the command's report.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ssh_access::SshAccessError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(err) => Err(format!("the file work stopped: {err}")),
    }
}
