//! Heartbeats the coordinator refused, counted by reason for `/metrics` and logged once per
//! miner and reason: a fleet that cannot get through (the original's miners, which never send
//! the token they were given; a coordinator whose database was replaced) shows up at once
//! instead of as silence.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a heartbeat was refused (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refused {
    /// No `Authorization: Bearer` header, or a malformed one (401).
    MissingToken,
    /// A token no miner holds (401).
    UnknownToken,
    /// Another miner's token, or the admin's (403).
    WrongToken,
    /// A known token for a miner id that does not exist (404).
    UnknownMiner,
    /// A body that is not a heartbeat (400, 413, 415, 422).
    BadBody,
}

impl Refused {
    const ALL: [Refused; 5] = [
        Refused::MissingToken,
        Refused::UnknownToken,
        Refused::WrongToken,
        Refused::UnknownMiner,
        Refused::BadBody,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refused::MissingToken => "missing_token",
            Refused::UnknownToken => "unknown_token",
            Refused::WrongToken => "wrong_token",
            Refused::UnknownMiner => "unknown_miner",
            Refused::BadBody => "bad_body",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Distinct (miner, reason) pairs remembered for logging once; past this, new pairs are counted
/// but not logged (a flood of made-up ids must not fill memory or the log).
const MAX_REMEMBERED: usize = 10_000;

#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; 5],
    logged: Mutex<HashSet<(Box<str>, Refused)>>,
}

impl Refusals {
    /// Counts a refusal; logs it when it is this miner's first for this reason. `miner_id` is
    /// what the body named, when it could be read.
    pub fn record(&self, reason: Refused, miner_id: Option<&str>) {
        self.counts[reason.index()].fetch_add(1, Ordering::Relaxed);
        let miner = miner_id.unwrap_or("(unreadable body)");
        let first = {
            let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
            let key = (Box::<str>::from(miner), reason);
            if logged.contains(&key) || logged.len() >= MAX_REMEMBERED {
                false
            } else {
                logged.insert(key);
                true
            }
        };
        if first {
            tracing::warn!(
                miner_id = miner,
                reason = reason.label(),
                "heartbeat refused (logged once per miner and reason; counted in /metrics)"
            );
        }
    }

    /// `(label, count)` for every reason, zeros included.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Refused::ALL
            .into_iter()
            .map(|r| (r.label(), self.counts[r.index()].load(Ordering::Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_is_counted_and_each_pair_remembered_once() {
        let refusals = Refusals::default();
        refusals.record(Refused::MissingToken, Some("m1"));
        refusals.record(Refused::MissingToken, Some("m1"));
        refusals.record(Refused::WrongToken, Some("m1"));
        refusals.record(Refused::BadBody, None);
        let counts: Vec<_> = refusals.counts().collect();
        assert_eq!(
            counts,
            [
                ("missing_token", 2),
                ("unknown_token", 0),
                ("wrong_token", 1),
                ("unknown_miner", 0),
                ("bad_body", 1)
            ]
        );
        let logged = refusals.logged.lock().map(|l| l.len()).unwrap_or(0);
        assert_eq!(logged, 3, "m1 twice for one reason is one entry");
    }
}
