//! Who is logged in to the built-in relay and which port each miner holds.
//!
//! One forward per miner: a newer session that asks for a forward replaces the older one (the
//! old session is disconnected and its port handed over), because a miner that reconnects after
//! a network blip must not wait for the relay to notice that its previous session is dead. A
//! session that asks for nothing (a stray `ssh` with the miner's key) replaces nothing. Each
//! miner has a preferred port, derived from its id, so it gets the same port across reconnects
//! and relay restarts; the next free ones are tried when it is taken.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::api::RelaySession;

/// A session's place in the book; stale ids (of a replaced session) change nothing.
pub(super) type SessionId = u64;

#[derive(Debug)]
pub(super) struct Book {
    ports: RangeInclusive<u16>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: SessionId,
    /// The session holding each miner's forward.
    by_miner: HashMap<Arc<str>, Held>,
    port_owner: HashMap<u16, Arc<str>>,
}

#[derive(Debug)]
struct Held {
    id: SessionId,
    peer: SocketAddr,
    connected_at: DateTime<Utc>,
    handle: russh::server::Handle,
    port: u16,
    /// Stops the port's listener and its connections.
    stop: CancellationToken,
}

/// Why a port was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PortRefusal {
    OutOfRange,
    TakenByAnother,
    /// The session already forwards a port: one per miner.
    AlreadyForwarding,
}

impl std::fmt::Display for PortRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortRefusal::OutOfRange => "outside the relay's port range",
            PortRefusal::TakenByAnother => "held by another miner",
            PortRefusal::AlreadyForwarding => "the session already forwards a port",
        })
    }
}

/// A session asking for a port.
#[derive(Debug)]
pub(super) struct Claim {
    pub(super) id: SessionId,
    pub(super) peer: SocketAddr,
    pub(super) connected_at: DateTime<Utc>,
    pub(super) handle: russh::server::Handle,
}

/// A port given.
#[derive(Debug)]
pub(super) struct Reserved {
    /// The miner's previous session, whose forward this one replaces: disconnect it.
    pub(super) replaced: Option<russh::server::Handle>,
    /// The port was this miner's until now: its old listener may take a moment to close.
    pub(super) was_ours: bool,
}

impl Book {
    pub(super) fn new(ports: RangeInclusive<u16>) -> Self {
        Self {
            ports,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Critical sections are map updates that leave the maps consistent before any panic.
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// A fresh id for a session that just logged in.
    pub(super) fn new_session(&self) -> SessionId {
        let mut inner = self.lock();
        inner.next_id += 1;
        inner.next_id
    }

    /// The ports to try for this miner, best first: `requested` alone if it is not 0, else every
    /// port of the range starting at the miner's own.
    pub(super) fn candidates(&self, miner: &str, requested: u16) -> Vec<u16> {
        if requested != 0 {
            return vec![requested];
        }
        let (start, end) = (*self.ports.start(), *self.ports.end());
        let span = u64::from(end - start) + 1;
        let offset = stable_hash(miner) % span;
        (0..span)
            .map(|i| {
                let port = u64::from(start) + (offset + i) % span;
                u16::try_from(port).unwrap_or(end)
            })
            .collect()
    }

    /// Gives `port` to the session `claim` of `miner`, replacing the miner's older forward; the
    /// caller binds it next and calls [`Self::release`] if that fails.
    pub(super) fn reserve(
        &self,
        miner: &Arc<str>,
        claim: Claim,
        port: u16,
        stop: CancellationToken,
    ) -> Result<Reserved, PortRefusal> {
        if !self.ports.contains(&port) {
            return Err(PortRefusal::OutOfRange);
        }
        let mut inner = self.lock();
        let was_ours = match inner.port_owner.get(&port) {
            Some(owner) if owner != miner => return Err(PortRefusal::TakenByAnother),
            owner => owner.is_some(),
        };
        let replaced = match inner.by_miner.remove(miner) {
            Some(old) if old.id == claim.id => {
                inner.by_miner.insert(miner.clone(), old);
                return Err(PortRefusal::AlreadyForwarding);
            }
            Some(old) => {
                old.stop.cancel();
                inner.port_owner.remove(&old.port);
                Some(old.handle)
            }
            None => None,
        };
        inner.by_miner.insert(
            miner.clone(),
            Held {
                id: claim.id,
                peer: claim.peer,
                connected_at: claim.connected_at,
                handle: claim.handle,
                port,
                stop,
            },
        );
        inner.port_owner.insert(port, miner.clone());
        Ok(Reserved { replaced, was_ours })
    }

    /// Gives back the port of session `id` (a failed bind, a cancelled forward, the session's
    /// end); a stale id changes nothing.
    pub(super) fn release(&self, miner: &str, id: SessionId) {
        let mut inner = self.lock();
        if inner.by_miner.get(miner).is_some_and(|h| h.id == id)
            && let Some(held) = inner.by_miner.remove(miner)
        {
            held.stop.cancel();
            inner.port_owner.remove(&held.port);
        }
    }

    /// Every session that holds a port, by port.
    pub(super) fn sessions(&self) -> Vec<RelaySession> {
        let inner = self.lock();
        let mut out: Vec<RelaySession> = inner
            .by_miner
            .iter()
            .map(|(miner, held)| RelaySession {
                miner_id: miner.to_string(),
                port: held.port,
                peer: held.peer.to_string(),
                connected_at: held.connected_at,
            })
            .collect();
        out.sort_by_key(|s| s.port);
        out
    }

    /// Every forwarding session's handle, to disconnect them all at shutdown.
    pub(super) fn handles(&self) -> Vec<russh::server::Handle> {
        self.lock()
            .by_miner
            .values()
            .map(|h| h.handle.clone())
            .collect()
    }
}

/// FNV-1a: a hash that is the same in every build and on every machine (std's is not promised
/// to be), so a miner's preferred port survives an upgrade of the coordinator.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_start_at_the_miners_own_port_and_cover_the_range_once() {
        let book = Book::new(20000..=20009);
        let first = book.candidates("miner-a", 0);
        assert_eq!(first, book.candidates("miner-a", 0), "stable");
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (20000..=20009).collect::<Vec<_>>());
        assert_eq!(book.candidates("miner-a", 20005), [20005]);
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c, "FNV-1a of \"a\"");
    }
}
