//! A log file that rotates by size: at `max_bytes` the file becomes `NAME.1`, `NAME.1` becomes
//! `NAME.2` and so on, and the oldest is dropped, so a stream never takes more than
//! `max_bytes × keep` of disk. Each line gets an RFC 3339 timestamp and its stream's tag.
//! Lines are buffered: a writer calls [`RotatingLog::flush`] when they must reach the file (the
//! supervisor's pump once the pipe is drained, the agent's own log after each event).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{SecondsFormat, Utc};

/// The figures: 10 MB per file, five files per stream.
pub const MAX_BYTES: u64 = 10 << 20;
pub const KEEP: usize = 5;

/// Bumped by [`reopen_all`]; a log whose generation differs reopens its path before writing.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Makes every log reopen its file before its next line: after SIGHUP, when logrotate or a
/// person has moved the files away.
pub fn reopen_all() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
}

pub struct RotatingLog {
    path: PathBuf,
    max_bytes: u64,
    keep: usize,
    file: BufWriter<File>,
    written: u64,
    generation: u64,
}

/// Bytes gathered before a write to the file: a flood of short lines costs few system calls.
const BUFFER: usize = 64 * 1024;

fn open_append(path: &Path) -> io::Result<(BufWriter<File>, u64)> {
    let file = crate::files::open_private_append(path)?;
    let len = file.metadata()?.len();
    Ok((BufWriter::with_capacity(BUFFER, file), len))
}

/// `NAME.log.N`.
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

impl RotatingLog {
    /// Opens `path` for appending (creating it and its directory).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            crate::files::create_private_dir_all(dir)?;
        }
        let (file, written) = open_append(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            max_bytes: max_bytes.max(1),
            keep: keep.max(1),
            file,
            written,
            generation: GENERATION.load(Ordering::SeqCst),
        })
    }

    fn reopen(&mut self) -> io::Result<()> {
        // What is buffered belongs to the file it was written for (now moved away).
        let _ = self.file.flush();
        (self.file, self.written) = open_append(&self.path)?;
        Ok(())
    }

    /// Writes one line: `2026-11-25T15:00:00.123Z stdout | text`.
    pub fn write_line(&mut self, tag: &str, text: &str) -> io::Result<()> {
        let generation = GENERATION.load(Ordering::SeqCst);
        if generation != self.generation {
            self.generation = generation;
            self.reopen()?;
        }
        let text = text.trim_end_matches(['\r', '\n']);
        let line = format!(
            "{} {tag} | {text}\n",
            Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.written += line.len() as u64;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 1 {
            self.file.get_ref().set_len(0)?;
            self.written = 0;
            return Ok(());
        }
        let oldest = rotated_path(&self.path, self.keep - 1);
        match std::fs::remove_file(&oldest) {
            Err(err) if err.kind() != io::ErrorKind::NotFound => return Err(err),
            _ => {}
        }
        for n in (1..self.keep - 1).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                std::fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated_path(&self.path, 1))?;
        (self.file, self.written) = open_append(&self.path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_stamped_and_tagged() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("logs/polaris_stdout.log");
        let mut log = RotatingLog::open(&path, MAX_BYTES, KEEP)?;
        log.write_line("stdout", "hello\r\n")?;
        log.flush()?;
        let text = std::fs::read_to_string(&path)?;
        let (stamp, rest) = text.split_once(' ').unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{text}"
        );
        assert_eq!(rest, "stdout | hello\n");
        Ok(())
    }

    #[test]
    fn rotation_keeps_at_most_keep_files_of_at_most_max_bytes() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("compute_subnet_stderr.log");
        let mut log = RotatingLog::open(&path, 1000, 5)?;
        for i in 0..500 {
            log.write_line(
                "stderr",
                &format!("line {i:04} of the crash-looping process"),
            )?;
        }
        log.flush()?;
        let mut files: Vec<String> = std::fs::read_dir(dir.path())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(
            files,
            [
                "compute_subnet_stderr.log",
                "compute_subnet_stderr.log.1",
                "compute_subnet_stderr.log.2",
                "compute_subnet_stderr.log.3",
                "compute_subnet_stderr.log.4",
            ]
        );
        for file in &files {
            let len = std::fs::metadata(dir.path().join(file))?.len();
            assert!(len <= 1000, "{file}: {len} bytes");
        }
        // The newest lines are in the live file, the ones before them in .1.
        let live = std::fs::read_to_string(&path)?;
        assert!(live.contains("line 0499"), "{live}");
        let previous = std::fs::read_to_string(rotated_path(&path, 1))?;
        assert!(!previous.contains("line 0499"));
        Ok(())
    }

    #[test]
    fn after_reopen_all_lines_go_to_a_new_file_at_the_path() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("polaris_stdout.log");
        let mut log = RotatingLog::open(&path, MAX_BYTES, KEEP)?;
        log.write_line("stdout", "before")?;
        // logrotate moves the file away, then sends SIGHUP.
        std::fs::rename(&path, dir.path().join("moved.log"))?;
        reopen_all();
        log.write_line("stdout", "after")?;
        log.flush()?;
        let now = std::fs::read_to_string(&path)?;
        assert!(now.contains("after") && !now.contains("before"), "{now}");
        Ok(())
    }

    #[test]
    fn reopening_appends_and_counts_what_is_there() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("polaris_stdout.log");
        std::fs::write(&path, "x".repeat(900))?;
        let mut log = RotatingLog::open(&path, 1000, 3)?;
        log.write_line("stdout", &"y".repeat(200))?;
        log.flush()?;
        assert_eq!(
            std::fs::read_to_string(rotated_path(&path, 1))?,
            "x".repeat(900)
        );
        Ok(())
    }
}
