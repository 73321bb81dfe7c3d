//! `polaris logs`: the last lines of the agent's or compute_subnet's log, instantly whatever
//! the file's size, and `-f` to keep following it across rotation.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::agent::log_files::{self, Process, Stream};
use crate::agent::tail;
use crate::config::Settings;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Number of lines to print
    #[arg(short = 'n', long, default_value_t = 50)]
    pub lines: usize,
    /// Keep printing new lines as they are written (Ctrl-C to stop)
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Whose logs
    #[arg(long, value_enum, default_value_t = Process::Polaris)]
    pub process: Process,
    /// The stderr stream instead of stdout
    #[arg(long)]
    pub stderr: bool,
}

pub(super) fn run(args: LogsArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    let stream = if args.stderr {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    let path = log_files::path(&settings.logs_dir(), args.process, stream);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        // Following a log that is not there yet waits for it, as `tail -F` does: the usual
        // order is `polaris logs -f` in one terminal, `polaris start` in another.
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && args.follow => {
            eprintln!(
                "polaris: no log yet at {}: waiting for it (`polaris start` writes it)",
                path.display()
            );
            wait_for(&path).with_context(|| format!("cannot read {}", path.display()))?
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "polaris: no log yet at {}: it is written once the agent runs (`polaris start`)",
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
        Err(err) => {
            return Err(anyhow::Error::new(err).context(format!("cannot read {}", path.display())));
        }
    };
    let read = (|| {
        let len = file.metadata()?.len();
        Ok::<_, std::io::Error>((len, tail::last_lines_of(&mut file, len, args.lines)?))
    })();
    let (len, lines) = read.with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    for line in &lines {
        if writeln!(out, "{line}").is_err() {
            return Ok(ExitCode::SUCCESS); // the reader went away (`| head`)
        }
    }
    if args.follow {
        // From where the tail ended, so nothing written meanwhile is lost. Ends with Ctrl-C,
        // or when the reader goes away.
        let _ = tail::follow_from(
            file,
            len,
            &path,
            &mut out,
            Duration::from_millis(250),
            || false,
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `path` once it exists (Ctrl-C to give up).
fn wait_for(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    loop {
        match std::fs::File::open(path) {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(250));
            }
            opened => return opened,
        }
    }
}
