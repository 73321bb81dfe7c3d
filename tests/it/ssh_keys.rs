//! SSH access by key, end to end: the admin authorizes a validator's key (`polaris miners
//! authorize-key`), the running agent (POLARIS_SSH_ACCESS=keys) writes it into the managed block
//! of the test account's `~/.ssh/authorized_keys`, and a real sshd on a free loopback port lets
//! `ssh -i` in with it; revoked or expired, the key is refused again. A line written by hand
//! outside the block survives every change, and the file keeps the mode and owner sshd's
//! StrictModes insists on.
// The agent tests' parts (and the agent itself, with its control socket) are Linux-only.
#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::agent::Agent;
use crate::common::services::{self, Sshd, SshdOptions, missing_service};
use crate::common::{self, Server, TestResult};

/// The account `tests/fixtures/make-keys-user.sh` makes (CI runs it as root).
const USER: &str = "polaris-keys";

/// The account's home, from the passwd database; None (said loudly) when the account is
/// missing or this test cannot write another account's files.
fn test_account() -> Option<PathBuf> {
    let entry = Command::new("getent")
        .args(["passwd", USER])
        .output()
        .ok()?;
    let line = String::from_utf8_lossy(&entry.stdout).into_owned();
    let home = line.trim().split(':').nth(5).filter(|h| !h.is_empty());
    match home {
        Some(home) if services::is_root() => Some(PathBuf::from(home)),
        Some(_) => {
            missing_service("root", "the agent writes another account's authorized_keys");
            None
        }
        None => {
            missing_service(
                "the polaris-keys test account",
                "run tests/fixtures/make-keys-user.sh as root",
            );
            None
        }
    }
}

fn keygen(dir: &Path, name: &str) -> Result<(PathBuf, String), Box<dyn std::error::Error>> {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .status()?;
    assert!(status.success(), "ssh-keygen");
    let public = std::fs::read_to_string(path.with_extension("pub"))?;
    Ok((path, public.trim().to_owned()))
}

fn fingerprint(key: &Path) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok(text
        .split_whitespace()
        .nth(1)
        .ok_or("no fingerprint")?
        .to_owned())
}

/// Whether `ssh -i key` logs in as the test account (and runs `true`).
fn logs_in(sshd: &Sshd, key: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    let status = Command::new("ssh")
        .args(["-i"])
        .arg(key)
        .args([
            "-p",
            &sshd.port.to_string(),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            &format!("{USER}@127.0.0.1"),
            "true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success())
}

/// `polaris miners ARGS` as the admin; the exit code and everything it printed.
fn miners(
    server: &Server,
    args: &[&str],
) -> Result<(Option<i32>, String), Box<dyn std::error::Error>> {
    let (code, out, err) = common::admin_miners(server, args)?;
    Ok((code, out + &err))
}

#[tokio::test]
async fn authorized_keys_log_in_revoked_and_expired_ones_do_not_and_hand_lines_stay() -> TestResult
{
    let Some(home) = test_account() else {
        return Ok(());
    };
    // sshd as it runs on a real machine: keys from ~/.ssh/authorized_keys, StrictModes on.
    let Some(sshd) = Sshd::start_options(SshdOptions::user_keys())? else {
        return Ok(());
    };
    let keys = tempfile::tempdir()?;
    let (validator, validator_pub) = keygen(keys.path(), "validator")?;
    let (_, own_pub) = keygen(keys.path(), "owner")?;

    // What the account's owner wrote by hand, with no newline at the end.
    let ssh_dir = home.join(".ssh");
    let _ = std::fs::remove_dir_all(&ssh_dir);
    std::fs::create_dir(&ssh_dir)?;
    let file = ssh_dir.join("authorized_keys");
    let hand = format!("# my own key\n{own_pub}");
    std::fs::write(&file, &hand)?;
    for (path, mode) in [(&ssh_dir, "700"), (&file, "600")] {
        Command::new("chown")
            .arg(format!("{USER}:{USER}"))
            .arg(path)
            .status()?;
        Command::new("chmod").arg(mode).arg(path).status()?;
    }
    assert!(
        !logs_in(&sshd, &validator)?,
        "the validator's key must not log in yet"
    );

    let (_server_home, server, agent) = Agent::with_coordinator()?;
    std::fs::write(
        agent.home.path().join(".env"),
        format!("POLARIS_SSH_ACCESS=keys\nSSH_USER={USER}\n"),
    )?;
    let miner_id = agent.register(&server).await?;
    agent.start()?;

    let (code, out) = miners(
        &server,
        &[
            "authorize-key",
            &miner_id,
            "--key",
            &validator_pub,
            "--comment",
            "validator 5F3s",
            "--wait",
        ],
    )?;
    assert_eq!(code, Some(0), "{out}");
    assert!(logs_in(&sshd, &validator)?, "authorized, the key logs in");
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.starts_with(&hand),
        "the hand-written lines are kept as they were:\n{text}"
    );
    let meta = std::fs::metadata(&file)?;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir_meta = std::fs::metadata(&ssh_dir)?;
    assert_eq!(
        meta.uid(),
        dir_meta.uid(),
        "owned by the account, not by root"
    );
    assert_ne!(meta.uid(), 0);

    // status and the admin's view name the key by its fingerprint.
    let print = fingerprint(&validator)?;
    let (_, status) = agent.run(&["status"])?;
    assert!(
        status.contains(&print) && status.contains("validator 5F3s"),
        "{status}"
    );
    let reported = common::wait_for(Duration::from_secs(10), || async {
        let url = format!("{}/miners/{miner_id}/commands", server.api);
        let (_, list) = common::get(&reqwest::Client::new(), &url, &server.admin_token)
            .await
            .ok()?;
        let keys = list["authorized_keys"].as_array()?.clone();
        keys.iter()
            .any(|k| k["fingerprint"] == print.as_str())
            .then_some(keys)
    })
    .await
    .ok_or("the heartbeats never reported the key")?;
    assert_eq!(
        reported.len(),
        1,
        "only the managed block is reported: {reported:?}"
    );

    // Revoked: refused again; the hand-written lines are still there.
    let (code, out) = miners(&server, &["revoke-key", &miner_id, &print, "--wait"])?;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        !logs_in(&sshd, &validator)?,
        "a revoked key must not log in"
    );
    assert!(std::fs::read_to_string(&file)?.starts_with(&hand));

    // With an expiry: in until it passes, then removed by the agent (and refused by sshd).
    let (code, out) = miners(
        &server,
        &[
            "authorize-key",
            &miner_id,
            "--key",
            &validator_pub,
            "--expires-in",
            "8s",
            "--wait",
        ],
    )?;
    assert_eq!(code, Some(0), "{out}");
    assert!(logs_in(&sshd, &validator)?, "in before its expiry");
    let gone = common::wait_for(Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&file).ok()?;
        (!text.contains(validator_pub.split_whitespace().nth(1)?)).then_some(text)
    })
    .await
    .ok_or("the expired key was not removed")?;
    assert!(gone.starts_with(&hand), "{gone}");
    assert!(
        !logs_in(&sshd, &validator)?,
        "an expired key must not log in"
    );
    let status: Value = agent.status()?;
    assert_eq!(
        status["polaris"]["ssh_access"]["keys"],
        serde_json::json!([]),
        "{status}"
    );
    Ok(())
}
