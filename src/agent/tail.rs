//! Reading logs from the end: the last N lines of a file of any size (blocks read backwards,
//! so a 1 GB log costs a few reads), and following it across rotation.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use super::rotating_log::rotated_path;

const BLOCK: u64 = 64 * 1024;

/// The last `n` lines of `path` (without their newlines), oldest first.
pub fn last_lines(path: &Path, n: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    last_lines_of(&mut file, len, n)
}

/// The last `n` lines of the first `len` bytes of `file`. Blocks are read backwards only until
/// enough line breaks are seen, then the lines are read forward once: the cost follows the
/// lines asked for, not the file's size.
pub fn last_lines_of(file: &mut File, len: u64, n: usize) -> io::Result<Vec<String>> {
    if n == 0 || len == 0 {
        return Ok(Vec::new());
    }
    // A final newline ends the last line; it does not start another one.
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    let end = if last[0] == b'\n' { len - 1 } else { len };
    let mut start = 0u64;
    let mut breaks = 0usize;
    let mut position = end;
    let mut block = vec![0u8; BLOCK as usize];
    'scan: while position > 0 {
        let step = BLOCK.min(position);
        position -= step;
        let chunk = &mut block[..step as usize];
        file.seek(SeekFrom::Start(position))?;
        file.read_exact(chunk)?;
        for (i, &byte) in chunk.iter().enumerate().rev() {
            if byte == b'\n' {
                breaks += 1;
                if breaks == n {
                    start = position + i as u64 + 1;
                    break 'scan;
                }
            }
        }
    }
    let mut wanted = vec![0u8; (end - start) as usize];
    file.seek(SeekFrom::Start(start))?;
    file.read_exact(&mut wanted)?;
    Ok(wanted
        .split(|&b| b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim_end_matches('\r').to_owned())
        .collect())
}

/// How far back a rotated file is looked for (`NAME.1` … `NAME.16`).
const MAX_ROTATIONS: usize = 16;

fn copy_rest(file: &mut File, out: &mut dyn Write, chunk: &mut [u8]) -> io::Result<()> {
    loop {
        let n = file.read(chunk)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&chunk[..n])?;
    }
}

/// A stable identity of the file a path names, to notice rotation.
fn identity(meta: &std::fs::Metadata) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        meta.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        0
    }
}

/// Copies what is appended to `path` into `out` from its current end, until `stop()` says so.
pub fn follow(
    path: &Path,
    out: &mut dyn Write,
    poll: Duration,
    stop: impl FnMut() -> bool,
) -> io::Result<()> {
    let file = File::open(path)?;
    let end = file.metadata()?.len();
    follow_from(file, end, path, out, poll, stop)
}

/// Copies `file` (opened from `path`) from byte `position` on, then whatever is appended, until
/// `stop()` says so. Starting from where a tail read ended loses no line written in between.
/// When the file is rotated (renamed away, a new one created) the rest of the old file is
/// written first, then the files rotated since, then the new file from its start; a truncated
/// file is read from its start.
pub fn follow_from(
    mut file: File,
    position: u64,
    path: &Path,
    out: &mut dyn Write,
    poll: Duration,
    mut stop: impl FnMut() -> bool,
) -> io::Result<()> {
    let mut position = file.seek(SeekFrom::Start(position))?;
    let mut id = identity(&file.metadata()?);
    let mut chunk = vec![0u8; BLOCK as usize];
    loop {
        // Drain what is there.
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            position += n as u64;
            out.write_all(&chunk[..n])?;
        }
        out.flush()?;
        if stop() {
            return Ok(());
        }
        std::thread::sleep(poll);
        match std::fs::metadata(path) {
            // Rotated: finish the old file (its last lines may have come after our read),
            // then any files rotated since ours (a burst can rotate several times between two
            // polls), oldest first, then the new live file from its start.
            Ok(meta) if identity(&meta) != id => {
                copy_rest(&mut file, out, &mut chunk)?;
                let ours = (1..=MAX_ROTATIONS).find(|&n| {
                    std::fs::metadata(rotated_path(path, n)).is_ok_and(|m| identity(&m) == id)
                });
                for n in (1..ours.unwrap_or(1)).rev() {
                    if let Ok(mut newer) = File::open(rotated_path(path, n)) {
                        copy_rest(&mut newer, out, &mut chunk)?;
                    }
                }
                file = File::open(path)?;
                id = identity(&file.metadata()?);
                position = 0;
            }
            Ok(meta) if meta.len() < position => {
                file.seek(SeekFrom::Start(0))?;
                position = 0;
            }
            // Between the rename and the new file: keep reading the old one.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_come_from_the_end() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        let text: String = (0..100_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text)?;
        let last = last_lines(&path, 3)?;
        assert_eq!(last, ["line 99997", "line 99998", "line 99999"]);
        assert_eq!(last_lines(&path, 0)?, Vec::<String>::new());
        assert_eq!(last_lines(&path, 200_000)?.len(), 100_000);
        Ok(())
    }

    #[test]
    fn a_last_line_without_newline_and_short_files_work() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("log");
        std::fs::write(&path, "a\r\nb\nc")?;
        assert_eq!(last_lines(&path, 2)?, ["b", "c"]);
        assert_eq!(last_lines(&path, 5)?, ["a", "b", "c"]);
        std::fs::write(&path, "")?;
        assert!(last_lines(&path, 5)?.is_empty());
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn following_survives_rotation() -> io::Result<()> {
        use super::super::rotating_log::RotatingLog;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("polaris_stdout.log");
        let mut log = RotatingLog::open(&path, 2000, 5)?;
        log.write_line("stdout", "before following")?;
        log.flush()?;
        /// What the follower wrote so far, readable while it runs.
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                let mut seen = self.0.lock().map_err(|_| io::Error::other("lock"))?;
                seen.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Shared {
            fn text(&self) -> String {
                self.0
                    .lock()
                    .map(|seen| String::from_utf8_lossy(&seen).into_owned())
                    .unwrap_or_default()
            }
        }

        let started = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicBool::new(false));
        let seen = Shared::default();
        let follower = {
            let (started, done, path) = (started.clone(), done.clone(), path.clone());
            let mut out = seen.clone();
            std::thread::spawn(move || {
                follow(&path, &mut out, Duration::from_millis(5), || {
                    // Asked first once the file is open and read to its end.
                    started.store(true, Ordering::SeqCst);
                    done.load(Ordering::SeqCst)
                })
            })
        };
        // Handshakes, not sleeps: a busy machine may run the follower late.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !started.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the follower never started"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        for i in 0..100 {
            log.write_line("stdout", &format!("entry {i:03}"))?;
            log.flush()?;
            std::thread::sleep(Duration::from_millis(2));
        }
        while !seen.text().contains("entry 099\n") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        done.store(true, Ordering::SeqCst);
        follower
            .join()
            .map_err(|_| io::Error::other("follower panicked"))??;
        let seen = seen.text();
        assert!(!seen.contains("before following"), "starts at the end");
        for i in 0..100 {
            assert!(
                seen.contains(&format!("entry {i:03}\n")),
                "entry {i:03} missing"
            );
        }
        assert!(
            super::super::rotating_log::rotated_path(&path, 1).exists(),
            "the log did rotate"
        );
        Ok(())
    }
}
