//! One managed key: checking what the coordinator sent, and reading and writing the key's line
//! in the block (`[expiry-time="YYYYMMDDHHMMSSZ" ]TYPE BASE64[ COMMENT]`).

use chrono::{DateTime, Datelike, NaiveDateTime, SubsecRound, Utc};
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{HashAlg, PublicKey};

use super::{AuthorizedKey, SshAccessError};

/// The longest public key text accepted: an RSA key of 16384 bits is about 2.8 KB in base64, so
/// this only stops garbage, never a real key.
pub(super) const MAX_KEY_LEN: usize = 8 * 1024;
/// The longest comment accepted, in bytes (the comment is printable ASCII).
pub(super) const MAX_COMMENT_LEN: usize = 256;

/// sshd's `expiry-time` format, to the second and in UTC (the `Z`): without the `Z` sshd would
/// read the time in its own time zone. sshd releases older than the `Z` (before OpenSSH 8.7 or
/// so) cannot parse it and then refuse the key: they fail closed.
const EXPIRY_FORMAT: &str = "%Y%m%d%H%M%S";

/// A key as it stands, or will stand, in the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ManagedLine {
    key: KeyData,
    /// `TYPE BASE64`, as written on the line.
    openssh: String,
    comment: String,
    expires_at: Option<DateTime<Utc>>,
}

impl ManagedLine {
    /// A line for what the coordinator sent, or why it cannot be one. `expires_at` is kept to
    /// the second (rounded down, so sshd never accepts a key longer than asked).
    pub(super) fn new(
        public_key: &str,
        comment: &str,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self, SshAccessError> {
        let key = parse_public_key(public_key)?;
        check_comment(comment).map_err(SshAccessError::InvalidComment)?;
        let expires_at = expires_at.map(|t| check_expiry(t, now)).transpose()?;
        // Written from the decoded key, not from the caller's text: whatever the text held
        // beyond the key (its own comment) never reaches the file.
        let openssh = PublicKey::new(key.clone(), "")
            .to_openssh()
            .map_err(|e| SshAccessError::InvalidKey(format!("cannot encode it again ({e})")))?;
        Ok(Self {
            key,
            openssh,
            comment: comment.to_owned(),
            expires_at,
        })
    }

    /// Reads a line of the block, or says why it is not one polaris writes.
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let (expires_at, rest) = match text.strip_prefix("expiry-time=\"") {
            Some(rest) => {
                let (time, rest) = rest
                    .split_once("\" ")
                    .ok_or("its expiry-time option is not closed")?;
                (Some(parse_expiry_time(time)?), rest)
            }
            None => (None, text),
        };
        let mut parts = rest.splitn(3, ' ');
        let kind = parts.next().unwrap_or_default();
        let base64 = parts.next().ok_or("it holds no key")?;
        let comment = parts.next().unwrap_or_default();
        let openssh = format!("{kind} {base64}");
        let key = PublicKey::from_openssh(&openssh)
            .map_err(|e| format!("it does not start with a key or `expiry-time=` ({e})"))?
            .key_data()
            .clone();
        check_comment(comment).map_err(|why| format!("its comment: {why}"))?;
        Ok(Self {
            key,
            openssh,
            comment: comment.to_owned(),
            expires_at,
        })
    }

    /// The line, without its newline.
    pub(super) fn render(&self) -> String {
        let mut line = String::new();
        if let Some(expires_at) = self.expires_at {
            line.push_str(&format!(
                "expiry-time=\"{}Z\" ",
                expires_at.format(EXPIRY_FORMAT)
            ));
        }
        line.push_str(&self.openssh);
        if !self.comment.is_empty() {
            line.push(' ');
            line.push_str(&self.comment);
        }
        line
    }

    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub(super) fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    pub(super) fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    pub(super) fn summary(&self) -> AuthorizedKey {
        AuthorizedKey {
            fingerprint: self.fingerprint(),
            key_type: self.key.algorithm().as_str().to_owned(),
            comment: self.comment.clone(),
            expires_at: self.expires_at,
        }
    }
}

/// The key in `text`, which must be exactly one `TYPE BASE64 [COMMENT]` line: what a `.pub`
/// file holds, a trailing newline allowed. No options before the type, no second line.
fn parse_public_key(text: &str) -> Result<KeyData, SshAccessError> {
    let invalid = |why: String| Err(SshAccessError::InvalidKey(why));
    let text = text.trim();
    if text.is_empty() {
        return invalid("it is empty".to_owned());
    }
    if text.len() > MAX_KEY_LEN {
        return invalid(format!("it is longer than {MAX_KEY_LEN} bytes"));
    }
    if text.contains("PRIVATE KEY") {
        return invalid("that is a private key; send the public one (the .pub file)".to_owned());
    }
    if text.chars().any(char::is_control) {
        return invalid(
            "it holds a line break or another control character; send exactly one key".to_owned(),
        );
    }
    let first = text.split(' ').next().unwrap_or_default();
    if first.contains(['=', '"', ',']) {
        return invalid(
            "it starts with options (command=, from=, …); polaris takes the bare key only"
                .to_owned(),
        );
    }
    match PublicKey::from_openssh(text) {
        Ok(key) => Ok(key.key_data().clone()),
        Err(e) => invalid(format!("expected `TYPE BASE64 [COMMENT]` ({e})")),
    }
}

/// Why `comment` cannot go on a key's line, if it cannot: sshd ends the line at a newline and
/// a terminal would act on control characters when someone reads the file.
fn check_comment(comment: &str) -> Result<(), String> {
    if comment.len() > MAX_COMMENT_LEN {
        return Err(format!("it is longer than {MAX_COMMENT_LEN} bytes"));
    }
    match comment.chars().find(|c| !(' '..='~').contains(c)) {
        Some(c) => Err(format!(
            "it holds {c:?}; only printable ASCII (space to ~) is accepted"
        )),
        None => Ok(()),
    }
}

fn check_expiry(
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, SshAccessError> {
    let refuse = |reason: String| Err(SshAccessError::InvalidExpiry { expires_at, reason });
    let kept = expires_at.trunc_subsecs(0);
    if kept <= now {
        return refuse(format!("it is not in the future (now is {now})"));
    }
    if kept.year() > 9999 {
        return refuse("sshd reads four-digit years only".to_owned());
    }
    Ok(kept)
}

/// `YYYYMMDDHHMMSSZ`, the form [`ManagedLine::render`] writes.
fn parse_expiry_time(text: &str) -> Result<DateTime<Utc>, String> {
    let unreadable = || format!("its expiry-time {text:?} is not YYYYMMDDHHMMSSZ");
    let digits = text.strip_suffix('Z').ok_or_else(unreadable)?;
    if digits.len() != 14 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unreadable());
    }
    NaiveDateTime::parse_from_str(digits, EXPIRY_FORMAT)
        .map(|t| t.and_utc())
        .map_err(|_| unreadable())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::ssh_access::tests::{ED25519, ED25519_FINGERPRINT};
    use chrono::TimeZone;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn now() -> DateTime<Utc> {
        at("2026-12-01T12:00:00Z")
    }

    fn refused(key: &str) -> String {
        match ManagedLine::new(key, "", None, now()) {
            Ok(line) => panic!("{key:?} was accepted as {}", line.render()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_key_with_an_expiry_is_written_with_sshds_expiry_time_option() -> Result<(), String> {
        let expires = at("2026-12-31T23:59:58.750Z");
        let line = ManagedLine::new(ED25519, "validator 7", Some(expires), now())
            .map_err(|e| e.to_string())?;
        let base64 = ED25519.split(' ').nth(1).unwrap_or_default();
        assert_eq!(
            line.render(),
            format!("expiry-time=\"20261231235958Z\" ssh-ed25519 {base64} validator 7")
        );
        assert_eq!(line.expires_at(), Some(at("2026-12-31T23:59:58Z")));
        assert_eq!(ManagedLine::parse(&line.render())?, line);
        Ok(())
    }

    #[test]
    fn the_keys_own_comment_is_dropped_and_ours_written() -> Result<(), String> {
        let line = ManagedLine::new(ED25519, "", None, now()).map_err(|e| e.to_string())?;
        assert!(!line.render().contains("test@polaris"));
        assert_eq!(ManagedLine::parse(&line.render())?, line);
        let spaced =
            ManagedLine::new(ED25519, " two  spaces ", None, now()).map_err(|e| e.to_string())?;
        assert_eq!(ManagedLine::parse(&spaced.render())?, spaced);
        Ok(())
    }

    #[test]
    fn a_pub_files_trailing_newline_is_accepted() {
        assert!(ManagedLine::new(&format!("{ED25519}\n"), "", None, now()).is_ok());
        assert!(ManagedLine::new(&format!("{ED25519}\r\n"), "", None, now()).is_ok());
    }

    #[test]
    fn anything_but_one_bare_key_line_is_refused() {
        let base64 = ED25519.split(' ').nth(1).unwrap_or_default();
        assert!(refused("").contains("empty"));
        assert!(refused(&format!("command=\"/bin/sh\" {ED25519}")).contains("options"));
        assert!(refused(&format!("from=\"10.0.0.1\",no-pty {ED25519}")).contains("options"));
        assert!(refused(&format!("no-pty {ED25519}")).contains("TYPE BASE64"));
        assert!(refused(&format!("{ED25519}\nssh-rsa AAAAB3NzaC1yc2E x")).contains("line break"));
        assert!(refused(&format!("{ED25519}\rssh-ed25519 {base64}")).contains("line break"));
        assert!(refused(&format!("ssh-ed25519 {base64} a\0b")).contains("control"));
        assert!(refused("ssh-ed25519 AAAAnotbase64!!").contains("TYPE BASE64"));
        assert!(refused(&format!("ssh-rsa {base64}")).contains("TYPE BASE64"));
        assert!(refused("-----BEGIN OPENSSH PRIVATE KEY-----").contains("private key"));
        let long = format!("ssh-ed25519 {base64} {}", "x".repeat(MAX_KEY_LEN));
        assert!(refused(&long).contains("longer than"));
    }

    #[test]
    fn comments_must_be_short_printable_ascii() {
        for comment in ["a\nb", "tab\there", "bell\u{7}", "é", "\u{2028}"] {
            let refused = ManagedLine::new(ED25519, comment, None, now());
            assert!(
                matches!(refused, Err(SshAccessError::InvalidComment(_))),
                "{comment:?}"
            );
        }
        let long = "x".repeat(MAX_COMMENT_LEN + 1);
        assert!(ManagedLine::new(ED25519, &long, None, now()).is_err());
        let longest = "x".repeat(MAX_COMMENT_LEN);
        assert!(ManagedLine::new(ED25519, &longest, None, now()).is_ok());
    }

    #[test]
    fn an_expiry_that_has_passed_is_refused() {
        for expires in [
            now(),
            at("2026-12-01T11:59:59Z"),
            at("2026-12-01T12:00:00.900Z"),
        ] {
            let refused = ManagedLine::new(ED25519, "", Some(expires), now());
            assert!(
                matches!(refused, Err(SshAccessError::InvalidExpiry { .. })),
                "{expires}"
            );
        }
        let far = Utc.with_ymd_and_hms(10000, 1, 1, 0, 0, 0).single();
        let refused = ManagedLine::new(ED25519, "", far, now());
        assert!(matches!(refused, Err(SshAccessError::InvalidExpiry { .. })));
    }

    #[test]
    fn the_fingerprint_is_the_one_ssh_keygen_prints() -> Result<(), String> {
        let line = ManagedLine::new(ED25519, "", None, now()).map_err(|e| e.to_string())?;
        assert_eq!(line.fingerprint(), ED25519_FINGERPRINT);
        assert_eq!(line.summary().key_type, "ssh-ed25519");
        Ok(())
    }

    #[test]
    fn lines_polaris_does_not_write_are_refused_when_read() {
        let base64 = ED25519.split(' ').nth(1).unwrap_or_default();
        let bad = [
            "# a comment".to_owned(),
            format!("command=\"x\" ssh-ed25519 {base64}"),
            format!("expiry-time=\"202612312359Z\" ssh-ed25519 {base64}"),
            format!("expiry-time=\"20261231235959\" ssh-ed25519 {base64}"),
            format!("expiry-time=\"20261399235959Z\" ssh-ed25519 {base64}"),
            format!("expiry-time=\"20261231235959Z ssh-ed25519 {base64}"),
            "ssh-ed25519".to_owned(),
            format!("ssh-ed25519 {base64} tab\there"),
        ];
        for line in bad {
            assert!(ManagedLine::parse(&line).is_err(), "{line:?}");
        }
    }
}
