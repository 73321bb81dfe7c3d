//! Logging: structured lines into rotating files under `POLARIS_HOME/logs`. The terminal never
//! gets log lines; commands print their own short, human messages.

use std::path::Path;

use anyhow::Context;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// How many rotated files of one log are kept.
const KEEP_FILES: usize = 5;

/// Starts logging into `dir/<name>.log.<date>`, rotated daily, the newest five kept.
/// `RUST_LOG` overrides the default filter. Keep the guard alive: dropping it flushes the file.
pub fn init_file_logging(dir: &Path, name: &str) -> anyhow::Result<WorkerGuard> {
    crate::files::create_private_dir_all(dir)
        .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(name)
        .filename_suffix("log")
        .max_log_files(KEEP_FILES)
        .build(dir)
        .with_context(|| format!("cannot open a log file in {}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = default_filter();
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        )
        .try_init()
        .context("logging was already initialised")?;
    Ok(guard)
}

/// Starts logging into `path` (the agent's `polaris_stdout.log`), rotated at 10 MB with five
/// files kept, each line stamped and tagged like compute_subnet's. `RUST_LOG` overrides the
/// default filter.
pub fn init_agent_logging(path: &Path) -> anyhow::Result<()> {
    use crate::agent::rotating_log::{KEEP, MAX_BYTES, RotatingLog};
    let log = RotatingLog::open(path, MAX_BYTES, KEEP)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let writer = LineWriter(std::sync::Arc::new(std::sync::Mutex::new(log)));
    let filter = default_filter();
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false)
                .without_time(),
        )
        .try_init()
        .context("logging was already initialised")?;
    Ok(())
}

/// Hands tracing a buffer per event and writes its lines to the rotating log when done.
#[derive(Clone)]
struct LineWriter(std::sync::Arc<std::sync::Mutex<crate::agent::rotating_log::RotatingLog>>);

struct EventBuffer {
    log: std::sync::Arc<std::sync::Mutex<crate::agent::rotating_log::RotatingLog>>,
    bytes: Vec<u8>,
}

impl std::io::Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.bytes);
        if let Ok(mut log) = self.log.lock() {
            for line in text.lines().filter(|l| !l.is_empty()) {
                let _ = log.write_line("stdout", line.trim_start());
            }
            let _ = log.flush();
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer {
            log: self.0.clone(),
            bytes: Vec::new(),
        }
    }
}

/// `RUST_LOG` when set, else Polaris's own info lines.
fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("polaris=info"))
}
