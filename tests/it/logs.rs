//! `polaris logs` on log files as the agent writes them (rotating, stamped and tagged lines).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, TestResult};
use polaris::agent::log_files::{self, Process, Stream};
use polaris::agent::rotating_log::{self, RotatingLog};

fn polaris(home: &Path, args: &[&str]) -> Command {
    let mut command = common::polaris(home);
    command.arg("logs").args(args);
    command
}

#[test]
fn no_log_yet_says_where_it_will_be() -> TestResult {
    let home = tempfile::tempdir()?;
    let output = polaris(home.path(), &[]).output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("polaris_stdout.log"), "{stderr}");
    assert!(stderr.contains("polaris start"), "{stderr}");
    Ok(())
}

/// `logs -f` before the first `start` waits for the log (saying so once), then follows it.
#[test]
fn follow_waits_for_a_log_that_is_not_there_yet() -> TestResult {
    let home = tempfile::tempdir()?;
    let mut child = polaris(home.path(), &["-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        child.try_wait()?.is_none(),
        "logs -f gave up on a missing log"
    );
    let path = log_files::path(&home.path().join("logs"), Process::Polaris, Stream::Stdout);
    let mut log = RotatingLog::open(&path, rotating_log::MAX_BYTES, rotating_log::KEEP)?;
    log.write_line("stdout", "the agent is up")?;
    log.flush()?;
    let rx = common::lines(child.stdout.take().ok_or("no stdout")?);
    let line = rx.recv_timeout(Duration::from_secs(10));
    child.kill()?;
    let output = child.wait_with_output()?;
    let line = line.map_err(|_| "logs -f printed nothing after the log appeared")?;
    assert!(line.ends_with("the agent is up"), "{line}");
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(stderr.matches("waiting for it").count(), 1, "{stderr}");
    Ok(())
}

#[test]
fn the_last_lines_of_the_chosen_stream() -> TestResult {
    let home = tempfile::tempdir()?;
    let logs = home.path().join("logs");
    let path = log_files::path(&logs, Process::ComputeSubnet, Stream::Stderr);
    let mut log = RotatingLog::open(&path, rotating_log::MAX_BYTES, rotating_log::KEEP)?;
    for i in 0..100_000 {
        log.write_line("stderr", &format!("traceback line {i}"))?;
    }
    log.flush()?;
    let output = polaris(
        home.path(),
        &["-n", "3", "--process", "compute-subnet", "--stderr"],
    )
    .output()?;
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[2].ends_with("stderr | traceback line 99999"),
        "{text}"
    );
    assert!(
        lines[0].ends_with("stderr | traceback line 99997"),
        "{text}"
    );
    Ok(())
}

#[test]
fn follow_keeps_printing_across_rotation() -> TestResult {
    let home = tempfile::tempdir()?;
    let path = log_files::path(&home.path().join("logs"), Process::Polaris, Stream::Stdout);
    // Small files, so the follower sees several rotations.
    let mut log = RotatingLog::open(&path, 4096, 5)?;
    log.write_line("stdout", "already there")?;
    log.flush()?;
    let mut child = polaris(home.path(), &["-f", "-n", "1"])
        .stdout(Stdio::piped())
        .spawn()?;
    let rx = common::lines(child.stdout.take().ok_or("no stdout")?);
    let first = rx.recv_timeout(Duration::from_secs(10))?;
    assert!(first.ends_with("already there"), "{first}");
    // About 2.5 rotations written at once: more than one can happen between two polls.
    for i in 0..150 {
        log.write_line("stdout", &format!("heartbeat {i:03} acknowledged"))?;
        log.flush()?;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while seen.len() < 150 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line);
        }
    }
    child.kill()?;
    child.wait()?;
    assert_eq!(seen.len(), 150, "lines lost across rotation");
    for (i, line) in seen.iter().enumerate() {
        assert!(
            line.ends_with(&format!("heartbeat {i:03} acknowledged")),
            "{line}"
        );
    }
    assert!(
        rotating_log::rotated_path(&path, 2).exists(),
        "the log rotated twice"
    );
    Ok(())
}
