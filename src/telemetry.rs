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
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the log folder {}", dir.display()))?;
    let appender = RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(name)
        .filename_suffix("log")
        .max_log_files(KEEP_FILES)
        .build(dir)
        .with_context(|| format!("cannot open a log file in {}", dir.display()))?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("polaris=info"));
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
