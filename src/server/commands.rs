//! Commands queued for miners, in memory while they are open (queued or delivered): a heartbeat
//! answer carries its miner's open commands, the next heartbeats report them done or failed,
//! and the expiry loop ends those nobody reported in time. The store keeps every command and
//! its outcome; this book is loaded from it at start-up, so open commands survive a restart.
//!
//! Each change is a [`Write`] the caller queues; the book only decides.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::api::{AuthorizedKey, Command, CommandResult, CommandState};
use crate::store::{StoredCommand, Write};

/// Most commands open for one miner at once: a miner that is away for long does not let an
/// admin's script pile up work for its return.
pub const MAX_OPEN_PER_MINER: usize = 32;

/// Why a command was not queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueRefusal {
    #[error(
        "miner {0} already has {MAX_OPEN_PER_MINER} commands waiting: wait for them to be reported or to expire"
    )]
    TooMany(String),
}

#[derive(Debug, Clone)]
struct Open {
    id: String,
    command: Command,
    expires_at: DateTime<Utc>,
    delivered: bool,
}

/// The open commands of every miner, and the SSH keys each miner last reported.
#[derive(Debug, Default)]
pub struct CommandBook {
    open: Mutex<HashMap<String, Vec<Open>>>,
    /// Open commands in all: lets a heartbeat skip the lock when there are none.
    count: AtomicUsize,
    keys: Mutex<HashMap<String, Vec<AuthorizedKey>>>,
    /// Miners in `keys`: lets a heartbeat without keys skip the lock when nobody reported any.
    with_keys: AtomicUsize,
    /// Wakes the expiry loop when a command that expires sooner is queued.
    pub(crate) queued: Notify,
}

/// Whether a heartbeat's client reports the commands it is given.
#[derive(Debug, Clone, Copy)]
pub enum Reporter<'a> {
    /// A polaris agent: these are its reports (maybe none); it gets its open commands again in
    /// each answer until it reports them.
    Reports(&'a [CommandResult]),
    /// A client that never reports (the original, an agent older than commands): each command
    /// is sent to it once, since it would carry out every copy, and then left to expire.
    Silent,
}

/// What a heartbeat exchanges with the book.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The commands to deliver in this heartbeat's answer, as the wire writes them.
    pub deliver: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The writes that record what changed.
    pub writes: Vec<Write>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update leaves the map whole before it can panic, so a poisoned lock is still good.
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

impl CommandBook {
    /// The book as the store left it.
    pub fn load(open: Vec<StoredCommand>) -> Self {
        let book = Self::default();
        {
            let mut map = lock(&book.open);
            for stored in open.into_iter().filter(|c| c.state.is_open()) {
                map.entry(stored.miner_id).or_default().push(Open {
                    id: stored.id,
                    command: stored.command,
                    expires_at: stored.expires_at,
                    delivered: stored.state == CommandState::Delivered,
                });
                book.count.fetch_add(1, Ordering::Relaxed);
            }
        }
        book
    }

    /// Whether `miner_id` may have one more open command. Checked before the command is stored;
    /// two admins racing may pass it together, which only bends the bound by one.
    pub fn check_room(&self, miner_id: &str) -> Result<(), QueueRefusal> {
        let open = lock(&self.open);
        if open.get(miner_id).map_or(0, Vec::len) >= MAX_OPEN_PER_MINER {
            return Err(QueueRefusal::TooMany(miner_id.to_owned()));
        }
        Ok(())
    }

    /// Opens a command the store has committed; it goes out with the miner's next heartbeat.
    pub fn open(&self, command: &StoredCommand) {
        let mut open = lock(&self.open);
        open.entry(command.miner_id.clone())
            .or_default()
            .push(Open {
                id: command.id.clone(),
                command: command.command.clone(),
                expires_at: command.expires_at,
                delivered: false,
            });
        // Counted under the lock, as every change of the count is: it never dips below zero.
        self.count.fetch_add(1, Ordering::Relaxed);
        drop(open);
        self.queued.notify_one();
    }

    /// A heartbeat of `miner_id` at `now` reporting `results`: ends the commands reported, and
    /// hands out the open ones (again, until they are reported).
    pub fn exchange(&self, miner_id: &str, reporter: Reporter<'_>, now: DateTime<Utc>) -> Exchange {
        let (results, again) = match reporter {
            Reporter::Reports(results) => (results, true),
            Reporter::Silent => (&[][..], false),
        };
        let mut exchange = Exchange::default();
        if results.is_empty() && self.count.load(Ordering::Relaxed) == 0 {
            return exchange;
        }
        let mut map = lock(&self.open);
        for result in results {
            // Written even for a command no longer open: a late report of a delivered command
            // that expired meanwhile still says what the agent did (the store's rule).
            exchange.writes.push(Write::CommandFinished {
                id: result.id.clone(),
                miner_id: miner_id.to_owned(),
                state: result.outcome.into(),
                reason: result.reason.clone(),
                at: now,
            });
        }
        let Some(open) = map.get_mut(miner_id) else {
            return exchange;
        };
        let before = open.len();
        open.retain(|c| !results.iter().any(|r| r.id == c.id));
        for command in open.iter_mut().filter(|c| c.expires_at > now) {
            if command.delivered && !again {
                continue;
            }
            if !command.delivered {
                command.delivered = true;
                exchange.writes.push(Write::CommandDelivered {
                    id: command.id.clone(),
                    at: now,
                });
            }
            exchange.deliver.push(wire(&command.id, &command.command));
        }
        let ended = before - open.len();
        if open.is_empty() {
            map.remove(miner_id);
        }
        self.count.fetch_sub(ended, Ordering::Relaxed);
        exchange
    }

    /// Ends every open command whose time is up; returns their writes and when the next one
    /// expires.
    pub fn expire(&self, now: DateTime<Utc>) -> (Vec<Write>, Option<DateTime<Utc>>) {
        let mut map = lock(&self.open);
        let mut writes = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        map.retain(|miner_id, open| {
            open.retain(|c| {
                if c.expires_at > now {
                    next = Some(next.map_or(c.expires_at, |n| n.min(c.expires_at)));
                    return true;
                }
                writes.push(Write::CommandFinished {
                    id: c.id.clone(),
                    miner_id: miner_id.clone(),
                    state: CommandState::Expired,
                    reason: Some(if c.delivered {
                        "delivered, but the miner did not report it in time".to_owned()
                    } else {
                        "the miner did not ask for it in time (not running, or unreachable)"
                            .to_owned()
                    }),
                    at: now,
                });
                false
            });
            !open.is_empty()
        });
        self.count.fetch_sub(writes.len(), Ordering::Relaxed);
        (writes, next)
    }

    /// Keeps the keys a miner reported (its agent's managed block of `authorized_keys`); a
    /// heartbeat without any (SSH access by key turned off) forgets them.
    pub fn report_keys(&self, miner_id: &str, keys: Option<&[AuthorizedKey]>) {
        if keys.is_none() && self.with_keys.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut map = lock(&self.keys);
        match keys {
            None => {
                if map.remove(miner_id).is_some() {
                    self.with_keys.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Some(keys) if map.get(miner_id).is_some_and(|known| known == keys) => {}
            Some(keys) => {
                if map.insert(miner_id.to_owned(), keys.to_vec()).is_none() {
                    self.with_keys.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// The keys a miner last reported, if it did since this coordinator started.
    pub fn keys_of(&self, miner_id: &str) -> Option<Vec<AuthorizedKey>> {
        lock(&self.keys).get(miner_id).cloned()
    }
}

/// Longest the expiry loop sleeps with nothing due (a new command wakes it earlier).
const IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Expires unreported commands on time until `cancel` fires.
pub(super) async fn expire(
    state: super::state::AppState,
    cancel: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = Utc::now();
        let (writes, next) = state.commands.expire(now);
        for write in writes {
            if let Write::CommandFinished { id, miner_id, .. } = &write {
                tracing::info!(%miner_id, %id, "command expired unreported");
            }
            state.writer.send(write);
        }
        let wait = next
            .and_then(|at| (at - now).to_std().ok())
            .unwrap_or(IDLE)
            .min(IDLE);
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.commands.queued.notified() => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// A command as a heartbeat answer carries it: the command's own fields and its `id`.
fn wire(id: &str, command: &Command) -> serde_json::Map<String, serde_json::Value> {
    let mut map = match serde_json::to_value(command) {
        Ok(serde_json::Value::Object(map)) => map,
        // A tagged enum always serializes to an object; anything else would be a bug here.
        _ => serde_json::Map::new(),
    };
    map.insert("id".to_owned(), id.into());
    map
}

/// A new command's id: 128 random bits in hex.
pub fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CommandOutcome, RestartTarget};

    fn restart(id: &str, miner: &str, expires_at: DateTime<Utc>) -> StoredCommand {
        StoredCommand {
            id: id.into(),
            miner_id: miner.into(),
            command: Command::Restart {
                target: RestartTarget::ComputeSubnet,
            },
            state: CommandState::Queued,
            reason: None,
            created_at: expires_at - chrono::TimeDelta::hours(1),
            expires_at,
            delivered_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn a_command_is_delivered_until_reported() {
        let now = Utc::now();
        let book = CommandBook::default();
        book.open(&restart("c1", "m", now + chrono::TimeDelta::hours(1)));
        let first = book.exchange("m", Reporter::Reports(&[]), now);
        assert_eq!(first.deliver.len(), 1);
        assert_eq!(first.deliver[0]["id"], "c1");
        assert_eq!(first.deliver[0]["action"], "restart");
        assert!(matches!(first.writes[..], [Write::CommandDelivered { .. }]));
        let again = book.exchange("m", Reporter::Reports(&[]), now);
        assert_eq!(again.deliver.len(), 1, "sent again until reported");
        assert!(again.writes.is_empty(), "delivered is written once");
        assert!(
            book.exchange("other", Reporter::Reports(&[]), now)
                .deliver
                .is_empty()
        );
        let done = CommandResult {
            id: "c1".into(),
            outcome: CommandOutcome::Done,
            reason: None,
        };
        let reported = book.exchange("m", Reporter::Reports(&[done]), now);
        assert!(reported.deliver.is_empty());
        assert!(matches!(
            &reported.writes[..],
            [Write::CommandFinished {
                state: CommandState::Done,
                ..
            }]
        ));
        assert_eq!(book.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn unreported_commands_expire_and_are_no_longer_sent() {
        let now = Utc::now();
        let book = CommandBook::load(vec![
            restart("soon", "m", now + chrono::TimeDelta::seconds(1)),
            restart("later", "m", now + chrono::TimeDelta::hours(1)),
        ]);
        let (writes, next) = book.expire(now + chrono::TimeDelta::seconds(2));
        assert!(matches!(
            &writes[..],
            [Write::CommandFinished { id, state: CommandState::Expired, .. }] if id == "soon"
        ));
        assert_eq!(next, Some(now + chrono::TimeDelta::hours(1)));
        let sent = book.exchange(
            "m",
            Reporter::Reports(&[]),
            now + chrono::TimeDelta::seconds(2),
        );
        assert_eq!(sent.deliver.len(), 1);
        assert_eq!(sent.deliver[0]["id"], "later");
    }

    #[test]
    fn a_command_past_its_time_is_not_sent_even_before_the_expiry_loop_ends_it() {
        let now = Utc::now();
        let book = CommandBook::load(vec![restart("c", "m", now + chrono::TimeDelta::seconds(1))]);
        let late = book.exchange(
            "m",
            Reporter::Reports(&[]),
            now + chrono::TimeDelta::seconds(2),
        );
        assert!(late.deliver.is_empty() && late.writes.is_empty());
    }

    #[test]
    fn a_client_that_never_reports_gets_each_command_once() {
        let now = Utc::now();
        let book = CommandBook::load(vec![restart("c", "m", now + chrono::TimeDelta::hours(1))]);
        assert_eq!(book.exchange("m", Reporter::Silent, now).deliver.len(), 1);
        assert!(
            book.exchange("m", Reporter::Silent, now).deliver.is_empty(),
            "the original would restart again for every copy"
        );
        // It still expires, with the reason that it was delivered.
        let (writes, _) = book.expire(now + chrono::TimeDelta::hours(2));
        assert!(matches!(
            &writes[..],
            [Write::CommandFinished { reason: Some(why), .. }] if why.starts_with("delivered")
        ));
    }

    #[test]
    fn a_miner_holds_a_bounded_number_of_open_commands() {
        let now = Utc::now() + chrono::TimeDelta::hours(1);
        let book = CommandBook::default();
        for i in 0..MAX_OPEN_PER_MINER {
            assert!(book.check_room("m").is_ok());
            book.open(&restart(&format!("c{i}"), "m", now));
        }
        assert!(book.check_room("m").is_err());
        assert!(book.check_room("other").is_ok());
    }
}
