//! Commands from the coordinator to a miner: queued by an admin (`POST /miners/{id}/commands`),
//! delivered in the miner's heartbeat answers until the agent reports them done or failed in a
//! later heartbeat, listed with their state (`GET /miners/{id}/commands`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::relay::RelayKey;
use super::validate::{FieldError, Validate, fail};

/// What a miner is asked to do. On the wire (the POST body, the heartbeat answer) it is one flat
/// object tagged by `action`, as the original's `{"action": "restart", "target": …}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Command {
    /// Restart a process the agent supervises.
    Restart {
        /// What to restart; today only compute_subnet.
        #[serde(default)]
        target: RestartTarget,
    },
    /// Let this public key log in as the miner's SSH user (needs `POLARIS_SSH_ACCESS=keys` on
    /// the miner).
    AuthorizeKey {
        /// One OpenSSH public key line, `ssh-ed25519 AAAA… comment`, without options.
        #[schema(
            max_length = 8192,
            pattern = r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,2}( [ -~]*)?$"
        )]
        public_key: String,
        /// Who the key belongs to, shown beside its fingerprint.
        #[serde(default)]
        #[schema(max_length = 200, pattern = r"^[ -~]*$")]
        comment: Option<String>,
        /// When the miner removes the key again (sshd refuses it from then on, too).
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
    },
    /// Remove a key authorized before, by its fingerprint (`ssh-keygen -lf` prints it).
    RevokeKey {
        #[schema(pattern = r"^SHA256:[A-Za-z0-9+/]{43}$")]
        fingerprint: String,
    },
}

/// What a `restart` restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RestartTarget {
    #[default]
    ComputeSubnet,
}

/// The key types an `authorize_key` takes (the schema's pattern names the same).
const KEY_TYPES: &[&str] = &[
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// Longest comment of an `authorize_key`.
const MAX_KEY_COMMENT: usize = 200;

impl Command {
    /// The action's name, as the wire writes it.
    pub fn action(&self) -> &'static str {
        match self {
            Command::Restart { .. } => "restart",
            Command::AuthorizeKey { .. } => "authorize_key",
            Command::RevokeKey { .. } => "revoke_key",
        }
    }
}

impl Validate for Command {
    fn validate(&self) -> Result<(), FieldError> {
        match self {
            Command::Restart { .. } => Ok(()),
            Command::AuthorizeKey {
                public_key,
                comment,
                expires_at,
            } => {
                // What the schema states and the agent takes: one line of printable ASCII, of a
                // key type sshd accepts, that decodes.
                let algorithm = public_key.split(' ').next().unwrap_or_default();
                if !KEY_TYPES.contains(&algorithm)
                    || !public_key.chars().all(|c| c == ' ' || c.is_ascii_graphic())
                {
                    return Err(fail(
                        "public_key",
                        format!(
                            "expected one OpenSSH public key line of printable ASCII, of type {}",
                            KEY_TYPES.join(", ")
                        ),
                    ));
                }
                RelayKey {
                    public_key: public_key.clone(),
                }
                .parsed()?;
                if let Some(comment) = comment {
                    if comment.chars().count() > MAX_KEY_COMMENT {
                        return Err(fail(
                            "comment",
                            format!("must be at most {MAX_KEY_COMMENT} characters"),
                        ));
                    }
                    if !comment.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
                        return Err(fail("comment", "must be printable ASCII"));
                    }
                }
                if let Some(at) = expires_at
                    && *at <= Utc::now()
                {
                    return Err(fail("expires_at", "must be in the future"));
                }
                Ok(())
            }
            Command::RevokeKey { fingerprint: print } => fingerprint("fingerprint", print),
        }
    }
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandState {
    /// Waiting for the miner's next heartbeat.
    Queued,
    /// Sent in a heartbeat answer; sent again until the agent reports it.
    Delivered,
    /// The agent did it.
    Done,
    /// The agent could not or would not do it (`reason` says why).
    Failed,
    /// Not reported within its time limit (the miner was away, or ran an agent that does not
    /// know commands).
    Expired,
}

impl CommandState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Delivered => "delivered",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Delivered,
            Self::Done,
            Self::Failed,
            Self::Expired,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// Still to be delivered (queued or delivered, not reported).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Queued | Self::Delivered)
    }
}

/// The answer of `POST /miners/{id}/commands`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandQueued {
    #[schema(pattern = r"^[0-9a-f]{32}$")]
    pub id: String,
    pub state: CommandState,
    /// When it expires unless the agent reports it first.
    pub expires_at: DateTime<Utc>,
}

/// One command as `GET /miners/{id}/commands` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandEntry {
    #[schema(pattern = r"^[0-9a-f]{32}$")]
    pub id: String,
    pub command: Command,
    pub state: CommandState,
    /// Why it failed (from the agent), or why it expired.
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// First sent in a heartbeat answer.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Reported done or failed, or expired.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The answer of `GET /miners/{id}/commands`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CommandList {
    pub commands: Vec<CommandEntry>,
    /// The SSH keys the miner's agent last reported as authorized (its managed block of
    /// `authorized_keys`); null until it reports any, e.g. with `POLARIS_SSH_ACCESS` off.
    pub authorized_keys: Option<Vec<AuthorizedKey>>,
}

/// How the agent reports a command it was given, in the next heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CommandResult {
    #[schema(pattern = r"^[0-9a-f]{32}$")]
    pub id: String,
    /// `done` or `failed`.
    pub outcome: CommandOutcome,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 500, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub reason: Option<String>,
}

/// How a command ended on the miner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CommandOutcome {
    Done,
    Failed,
}

impl From<CommandOutcome> for CommandState {
    fn from(outcome: CommandOutcome) -> Self {
        match outcome {
            CommandOutcome::Done => CommandState::Done,
            CommandOutcome::Failed => CommandState::Failed,
        }
    }
}

/// Most command results one heartbeat may carry.
pub const MAX_RESULTS: usize = 64;
/// Longest reason a result may give.
const MAX_REASON: usize = 500;

impl Validate for CommandResult {
    fn validate(&self) -> Result<(), FieldError> {
        if !is_command_id(&self.id) {
            return Err(fail("command_results.id", "expected 32 of 0-9 a-f"));
        }
        if let Some(reason) = &self.reason {
            plain("command_results.reason", reason, MAX_REASON)?;
        }
        Ok(())
    }
}

/// A key in the managed block of the miner's `authorized_keys`, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuthorizedKey {
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    #[schema(pattern = r"^SHA256:[A-Za-z0-9+/]{43}$")]
    pub fingerprint: String,
    #[serde(default)]
    #[schema(max_length = 256, pattern = r"^[^\u0000-\u001f\u007f-\u009f]*$")]
    pub comment: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl Validate for AuthorizedKey {
    fn validate(&self) -> Result<(), FieldError> {
        fingerprint("ssh_keys.fingerprint", &self.fingerprint)?;
        if let Some(comment) = &self.comment {
            plain("ssh_keys.comment", comment, 256)?;
        }
        Ok(())
    }
}

/// At most `max` characters, none of them a control character (empty is fine).
fn plain(field: &str, value: &str, max: usize) -> Result<(), FieldError> {
    if value.chars().count() > max {
        return Err(fail(field, format!("must be at most {max} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(fail(field, "must not contain control characters"));
    }
    Ok(())
}

/// `SHA256:` and 43 characters of unpadded base64, as `ssh-keygen -lf` prints it.
fn fingerprint(field: &str, value: &str) -> Result<(), FieldError> {
    let ok = value.strip_prefix("SHA256:").is_some_and(|b64| {
        b64.len() == 43
            && b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    });
    if ok {
        Ok(())
    } else {
        Err(fail(
            field,
            "expected a SHA256 fingerprint as `ssh-keygen -lf` prints it (SHA256: and 43 characters)",
        ))
    }
}

/// Most keys a heartbeat may report.
pub const MAX_REPORTED_KEYS: usize = 256;

/// 32 lowercase hex digits: the ids the coordinator gives commands.
pub fn is_command_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_is_one_flat_object_tagged_by_action() -> Result<(), serde_json::Error> {
        let restart: Command = serde_json::from_str(r#"{"action": "restart"}"#)?;
        assert_eq!(
            restart,
            Command::Restart {
                target: RestartTarget::ComputeSubnet
            }
        );
        assert_eq!(
            serde_json::to_value(&restart)?,
            serde_json::json!({"action": "restart", "target": "compute_subnet"})
        );
        assert!(serde_json::from_str::<Command>(r#"{"action": "reboot"}"#).is_err());
        assert!(serde_json::from_str::<Command>(r#"{"action": "revoke_key"}"#).is_err());
        Ok(())
    }

    #[test]
    fn key_commands_check_their_fields() {
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEJ4LK+ElZZGrX8oCBWCVU6Kaysy/MFFNTMEGbxuQGDQ v@x";
        let authorize = |public_key: &str, comment: Option<&str>| Command::AuthorizeKey {
            public_key: public_key.to_owned(),
            comment: comment.map(str::to_owned),
            expires_at: None,
        };
        assert!(authorize(key, Some("validator 5F3s")).validate().is_ok());
        assert!(authorize("ssh-ed25519 nope", None).validate().is_err());
        assert!(authorize(key, Some("a\nb")).validate().is_err());
        assert!(authorize(&format!("{key}\tx"), None).validate().is_err());
        assert!(
            authorize(&key.replace("ssh-ed25519", "ssh-dss"), None)
                .validate()
                .is_err()
        );
        let past = Command::AuthorizeKey {
            public_key: key.to_owned(),
            comment: None,
            expires_at: Some(Utc::now() - chrono::TimeDelta::seconds(1)),
        };
        assert!(past.validate().is_err());
        let revoke = |fingerprint: &str| Command::RevokeKey {
            fingerprint: fingerprint.to_owned(),
        };
        assert!(
            revoke("SHA256:npyRrFbj6R/2BZlaet8hJYfwjGGcAYtrnRKI62oOJwE")
                .validate()
                .is_ok()
        );
        assert!(revoke("MD5:aa:bb").validate().is_err());
    }
}
