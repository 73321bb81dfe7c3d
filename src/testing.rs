//! Support shared by the unit and integration tests; not part of Polaris's interface.
//!
//! A test that cannot run for want of a service (sshd, tmux, git, util-linux's `script`) calls
//! [`missing_service`]. `cargo test` captures what a passing test prints, so a skip is also
//! appended to the file named by `POLARIS_SKIP_LOG`, which `scripts/test.sh` sets and prints at
//! the end of the run.
//!
//! Tests of the Firestore store use the emulator `scripts/test.sh` starts: [`firestore_emulator`]
//! says where, [`unique_project`] gives each test data of its own there.

use std::io::Write;
use std::path::Path;

/// Says a service is missing: panics under `POLARIS_REQUIRE_SERVICES=1` (as CI runs), else
/// prints a loud notice and records it, so the caller can return early.
pub fn missing_service(service: &str, why: &str) {
    if std::env::var("POLARIS_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("{service} is required (POLARIS_REQUIRE_SERVICES=1) but {why}");
    }
    let line = skip_line(std::thread::current().name(), service, why);
    eprintln!("\n!!!!!!!! SKIPPED: {line}\n");
    if let Some(path) = std::env::var_os("POLARIS_SKIP_LOG")
        && let Err(err) = record(Path::new(&path), &line)
    {
        panic!(
            "cannot record the skip in {}: {err}",
            path.to_string_lossy()
        );
    }
}

/// `host:port` of the Firestore emulator the tests use, from `POLARIS_TEST_FIRESTORE` (which
/// `scripts/test.sh` sets once it has started one). Unset, this reports the skip through
/// [`missing_service`] (a panic under `POLARIS_REQUIRE_SERVICES=1`) and returns `None`.
pub fn firestore_emulator() -> Option<String> {
    match std::env::var("POLARIS_TEST_FIRESTORE") {
        Ok(host) if !host.trim().is_empty() => Some(host.trim().to_owned()),
        _ => {
            missing_service(
                "firestore emulator",
                "POLARIS_TEST_FIRESTORE is not set: scripts/test.sh starts one and sets it",
            );
            None
        }
    }
}

/// A Firestore project id no other test (of this run or an earlier one against the same
/// emulator) uses: on the emulator every project id works and holds its own data.
pub fn unique_project(label: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let label: String = label
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    format!(
        "{label}-{}-{}-{:08x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        rand::random::<u32>()
    )
}

/// The test harness names each test's thread after the test.
fn skip_line(test: Option<&str>, service: &str, why: &str) -> String {
    let test = test.unwrap_or("a test");
    format!("{test}: {service} is not available ({why}); install it to run this test")
}

fn record(path: &Path, line: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{line}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_projects_differ_and_keep_to_safe_characters() {
        let (a, b) = (
            unique_project("Store contract"),
            unique_project("Store contract"),
        );
        assert_ne!(a, b);
        assert!(a.starts_with("store-contract-"), "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{a}"
        );
    }

    #[test]
    fn skips_are_appended_one_line_each_with_the_test_name() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let log = dir.path().join("skips.txt");
        record(
            &log,
            &skip_line(Some("tmux_test"), "tmux", "it is not installed"),
        )?;
        record(&log, &skip_line(None, "sshd", "/usr/sbin/sshd is missing"))?;
        assert_eq!(
            std::fs::read_to_string(&log)?,
            "tmux_test: tmux is not available (it is not installed); install it to run this test\n\
             a test: sshd is not available (/usr/sbin/sshd is missing); install it to run this test\n"
        );
        Ok(())
    }
}
