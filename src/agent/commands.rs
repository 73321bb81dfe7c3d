//! The coordinator's commands as the agent keeps track of them: each arrives in heartbeat
//! answers until a later heartbeat reports how it ended, so the agent acts on an id once,
//! however often it is delivered, and reports it until the coordinator has acknowledged a
//! heartbeat that carried the report.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::api::{Command, CommandOutcome, CommandResult};

/// Ids remembered as already acted on: far more than a coordinator keeps open for one miner.
const REMEMBERED: usize = 256;

/// A command to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// The coordinator's id, to report back; none from a coordinator that does not track
    /// commands (the original's plain `{"action": "restart"}`).
    pub id: Option<String>,
    pub command: Command,
}

/// A heartbeat answer's entry: its id (when it has a valid one) and the command, or why this
/// agent cannot take it (reported failed when it has an id).
pub fn read(
    entry: &serde_json::Map<String, serde_json::Value>,
) -> (Option<String>, Result<Command, String>) {
    let id = entry
        .get("id")
        .and_then(|id| id.as_str())
        .filter(|id| crate::api::is_command_id(id))
        .map(str::to_owned);
    // The original's coordinator could name the agent itself as the target, which this agent
    // does not restart (its service manager does).
    if entry.get("target").and_then(|t| t.as_str()) == Some("polaris") {
        let why = "restarting the agent itself is left to its service manager".to_owned();
        return (id, Err(why));
    }
    let mut fields = entry.clone();
    fields.remove("id");
    let command = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|err| format!("this agent does not know the command: {err}"));
    (id, command)
}

/// What has been acted on and what is still to be reported. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Reports(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    /// Ids acted on (in flight or ended), oldest first, bounded.
    seen: VecDeque<String>,
    /// How each seen id ended; None while it is carried out.
    ended: HashMap<String, Option<CommandResult>>,
    /// Ended and not yet acknowledged by the coordinator.
    unreported: Vec<CommandResult>,
}

impl Reports {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves the lists whole before it can panic.
        self.0.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// True the first time `id` is seen: act on it. False when it was delivered again; if it
    /// had ended and been reported, the report goes again (the coordinator lost it: it stopped
    /// before storing it).
    pub fn begin(&self, id: &str) -> bool {
        let mut inner = self.lock();
        if let Some(ended) = inner.ended.get(id) {
            if let Some(result) = ended.clone()
                && !inner.unreported.iter().any(|r| r.id == id)
            {
                inner.unreported.push(result);
            }
            return false;
        }
        if inner.seen.len() >= REMEMBERED
            && let Some(oldest) = inner.seen.pop_front()
        {
            inner.ended.remove(&oldest);
        }
        inner.seen.push_back(id.to_owned());
        inner.ended.insert(id.to_owned(), None);
        true
    }

    /// How a command ended, to report in the next heartbeats.
    pub fn end(&self, id: String, outcome: Result<(), String>) {
        let (outcome, reason) = match outcome {
            Ok(()) => (CommandOutcome::Done, None),
            Err(why) => (CommandOutcome::Failed, Some(clip(why))),
        };
        let result = CommandResult {
            id,
            outcome,
            reason,
        };
        let mut inner = self.lock();
        if let Some(ended) = inner.ended.get_mut(&result.id) {
            *ended = Some(result.clone());
        }
        inner.unreported.push(result);
    }

    /// The reports the next heartbeat carries (at most what the coordinator takes at once).
    pub fn pending(&self) -> Vec<CommandResult> {
        let inner = self.lock();
        inner
            .unreported
            .iter()
            .take(crate::api::MAX_RESULTS)
            .cloned()
            .collect()
    }

    /// A heartbeat carrying `sent` was acknowledged: those are reported.
    pub fn acknowledged(&self, sent: &[CommandResult]) {
        if sent.is_empty() {
            return;
        }
        self.lock()
            .unreported
            .retain(|r| !sent.iter().any(|s| s.id == r.id));
    }
}

/// A reason the coordinator accepts: one line, at most 500 characters.
fn clip(why: String) -> String {
    let line: String = why
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    if line.trim().is_empty() {
        "failed".to_owned()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RestartTarget;

    #[test]
    fn a_command_is_read_from_an_answer_entry() -> Result<(), Box<dyn std::error::Error>> {
        let id = "0123456789abcdef0123456789abcdef";
        let entry = serde_json::json!({"id": id, "action": "restart", "target": "compute_subnet"});
        let serde_json::Value::Object(entry) = entry else {
            return Err("not an object".into());
        };
        let (read_id, command) = read(&entry);
        assert_eq!(read_id.as_deref(), Some(id));
        assert_eq!(
            command?,
            Command::Restart {
                target: RestartTarget::ComputeSubnet
            }
        );
        let serde_json::Value::Object(original) = serde_json::json!({"action": "restart"}) else {
            return Err("not an object".into());
        };
        let (no_id, command) = read(&original);
        assert_eq!(no_id, None);
        assert!(command.is_ok());
        let serde_json::Value::Object(unknown) = serde_json::json!({"id": id, "action": "reboot"})
        else {
            return Err("not an object".into());
        };
        let (known_id, command) = read(&unknown);
        assert!(known_id.is_some() && command.is_err());
        Ok(())
    }

    #[test]
    fn an_id_is_acted_on_once_and_reported_until_acknowledged() {
        let reports = Reports::default();
        assert!(reports.begin("a"));
        assert!(!reports.begin("a"), "a re-delivery is not acted on again");
        reports.end("a".into(), Err("no\nway".into()));
        let sent = reports.pending();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].reason.as_deref(), Some("no way"));
        assert_eq!(reports.pending(), sent, "kept until acknowledged");
        reports.acknowledged(&sent);
        assert!(reports.pending().is_empty());
        assert!(!reports.begin("a"), "still remembered after the report");
        assert_eq!(
            reports.pending(),
            sent,
            "delivered again after its report was acknowledged: the coordinator lost it, so it is reported again"
        );
    }
}
