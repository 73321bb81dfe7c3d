//! Bringing the compute_subnet checkout up to date: clone the repository into an empty folder,
//! or fetch and fast-forward an existing checkout. `polaris update subnet` prints the outcome;
//! the dashboard shows it.
//!
//! Local changes are refused, not stashed: the original stashed them silently, and a miner's
//! hand fixes vanished on the next update. The refusal says how to keep or drop them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Context;

/// What `update` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The folder was empty or missing; `repo` is now checked out there.
    Cloned { repo: String, dir: PathBuf },
    /// Origin had nothing new; `commit` is the full id checked out.
    AlreadyUpToDate { commit: String },
    /// Fast-forwarded from one full commit id to another.
    Updated { from: String, to: String },
}

/// The first ten characters of a commit id, as people quote them.
pub fn short(commit: &str) -> &str {
    let commit = commit.trim();
    commit.get(..10).unwrap_or(commit)
}

/// Runs git with its output captured; a failure carries git's own words.
fn git(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut command = Command::new("git");
    if let Some(dir) = dir {
        command.arg("-C").arg(dir);
    }
    // No prompt for credentials: nobody may be at a terminal to answer (the dashboard, a
    // script), and a waiting git would hang the update.
    let output = command
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .output()
        .context("cannot run git: is it installed?")?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        anyhow::bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )
    }
}

/// Clones `repo` into `dir` (missing or empty), or fetches origin and fast-forwards the
/// checkout there; refuses local changes to tracked files, saying how to keep or drop them.
/// Blocking: it runs git and waits (call it from `spawn_blocking` in async code). `progress`
/// receives one human line per step, before the step starts.
pub fn update(
    repo: &str,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<UpdateOutcome> {
    let empty = std::fs::read_dir(dir).map_or(true, |mut entries| entries.next().is_none());
    if empty {
        progress(&format!("Cloning {repo} into {}…", dir.display()));
        let target = dir.to_string_lossy();
        git(None, &["clone", "--quiet", repo, &target])?;
        return Ok(UpdateOutcome::Cloned {
            repo: repo.to_owned(),
            dir: dir.to_path_buf(),
        });
    }
    progress(&format!("Checking {} for local changes…", dir.display()));
    if git(Some(dir), &["rev-parse", "--is-inside-work-tree"]).is_err() {
        anyhow::bail!(
            "{} exists but is not a git checkout: move it away, or point POLARIS_COMPUTE_DIR elsewhere",
            dir.display()
        );
    }
    let changes = git(
        Some(dir),
        &["status", "--porcelain", "--untracked-files=no"],
    )?;
    if !changes.is_empty() {
        anyhow::bail!(
            "{} has local changes; nothing was updated. Keep them with `git -C {0} stash` \
             (and `git stash pop` after), or drop them with `git -C {0} checkout -- .`",
            dir.display()
        );
    }
    let before = git(Some(dir), &["rev-parse", "HEAD"])?;
    progress("Fetching origin…");
    git(Some(dir), &["fetch", "--quiet", "origin"])?;
    progress("Fast-forwarding…");
    git(Some(dir), &["merge", "--ff-only", "--quiet", "@{upstream}"]).map_err(|e| {
        e.context("cannot fast-forward: the checkout has commits origin does not have")
    })?;
    let after = git(Some(dir), &["rev-parse", "HEAD"])?;
    Ok(if before == after {
        UpdateOutcome::AlreadyUpToDate { commit: after }
    } else {
        UpdateOutcome::Updated {
            from: before,
            to: after,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// git in `dir` with an author set, so the test needs no global git config.
    fn commit_in(dir: &Path, file: &str, text: &str) -> anyhow::Result<()> {
        std::fs::write(dir.join(file), text)?;
        git(Some(dir), &["add", file])?;
        git(
            Some(dir),
            &[
                "-c",
                "user.name=test",
                "-c",
                "user.email=test@example.com",
                "commit",
                "--quiet",
                "-m",
                text,
            ],
        )?;
        Ok(())
    }

    #[test]
    fn clones_then_fast_forwards_and_refuses_local_changes() -> anyhow::Result<()> {
        if git(None, &["--version"]).is_err() {
            crate::testing::missing_service("git", "it is not installed");
            return Ok(());
        }
        let temp = tempfile::tempdir()?;
        let origin = temp.path().join("origin");
        std::fs::create_dir(&origin)?;
        git(Some(&origin), &["init", "--quiet"])?;
        commit_in(&origin, "README", "one")?;
        let repo = origin.to_string_lossy().into_owned();
        let dir = temp.path().join("checkout");
        let mut lines = Vec::new();

        let cloned = update(&repo, &dir, &mut |line| lines.push(line.to_owned()))?;
        assert_eq!(
            cloned,
            UpdateOutcome::Cloned {
                repo: repo.clone(),
                dir: dir.clone()
            }
        );
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("Cloning "), "{lines:?}");

        let head = git(Some(&dir), &["rev-parse", "HEAD"])?;
        let same = update(&repo, &dir, &mut |_| {})?;
        assert_eq!(
            same,
            UpdateOutcome::AlreadyUpToDate {
                commit: head.clone()
            }
        );

        commit_in(&origin, "README", "two")?;
        lines.clear();
        let updated = update(&repo, &dir, &mut |line| lines.push(line.to_owned()))?;
        let UpdateOutcome::Updated { from, to } = updated else {
            panic!("expected an update, got {updated:?}");
        };
        assert_eq!(from, head);
        assert_eq!(to, git(Some(&origin), &["rev-parse", "HEAD"])?);
        assert!(lines.iter().any(|l| l == "Fetching origin…"), "{lines:?}");

        std::fs::write(dir.join("README"), "hand fix")?;
        commit_in(&origin, "README", "three")?;
        let err = update(&repo, &dir, &mut |_| {}).expect_err("local changes");
        assert!(format!("{err:#}").contains("local changes"), "{err:#}");
        assert_eq!(
            std::fs::read_to_string(dir.join("README"))?,
            "hand fix",
            "the change is kept"
        );
        assert_eq!(
            git(Some(&dir), &["rev-parse", "HEAD"])?,
            to,
            "nothing moved"
        );
        Ok(())
    }

    #[test]
    fn short_is_ten_characters_or_all_of_a_shorter_id() {
        assert_eq!(short("0123456789abcdef\n"), "0123456789");
        assert_eq!(short(" abc "), "abc");
    }
}
