//! `polaris inventory`: the hardware facts registration would send, the disk benchmark and the
//! self-test gates.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Settings;
use crate::inventory::{self, bench, check};

#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  polaris inventory                  readable summary
  polaris inventory --bench          measure the disk first (about 3 s), then show the summary
  polaris inventory --json           the system_info JSON registration sends
  polaris inventory --check          self-test gates; exit 1 if any fails")]
pub struct InventoryArgs {
    /// Print the registration's system_info JSON (with --check: the gates as JSON)
    #[arg(long)]
    pub json: bool,
    /// First measure sequential write and read speed where POLARIS_HOME is (≤ 512 MiB, ≤ 3 s);
    /// the result is kept and sent at registration
    #[arg(long)]
    pub bench: bool,
    /// Run the self-test gates (RAM ≥ VRAM, 2 CPUs per GPU, 100 GiB free, SSH at the advertised
    /// address, coordinator) and exit 1 if any fails; sshd taking passwords is a warning
    #[arg(long)]
    pub check: bool,
    /// Also write the system_info JSON to this file (replaced atomically; its directory must
    /// exist)
    #[arg(long, value_name = "FILE", value_parser = output_file)]
    pub output: Option<PathBuf>,
}

/// `--output`: a file in a directory that exists. A typo in the directory is refused before
/// anything is measured, rather than creating the misspelt directories.
fn output_file(text: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(text);
    if text.is_empty() || text.ends_with('/') || path.is_dir() {
        return Err("expected a file name, not a directory".to_owned());
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => Err(format!(
            "no directory {}: create it first, or write the file elsewhere",
            dir.display()
        )),
        _ => Ok(path),
    }
}

pub(super) fn run(args: InventoryArgs, home: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(home, &[])?;
    if args.bench {
        measure_disk(&settings)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let found = runtime.block_on(async {
        let found = inventory::collect(&settings).await?;
        // The SSH gate's probes need the public address the coordinator sees, so they follow
        // the inventory; only `--check` pays for them.
        let ssh = if args.check {
            Some(check::probe_ssh(&found, &settings).await)
        } else {
            None
        };
        anyhow::Ok((found, ssh))
    });
    // A probe past its time limit may still sit in the kernel: do not wait for it.
    runtime.shutdown_background();
    let (found, ssh) = found?;
    if let Some(warning) = &found.location.warning {
        eprintln!("polaris: warning: {warning}");
    }
    let system_info = inventory::to_system_info(&found);
    if let Some(path) = &args.output {
        let json = serde_json::to_vec_pretty(&system_info)?;
        crate::files::write_atomically(path, &json)
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("Wrote the system_info JSON to {}", path.display());
    }
    if let Some(ssh) = &ssh {
        return Ok(report_gates(&check::evaluate(&found, ssh), args.json));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&system_info)?);
    } else if args.output.is_none() {
        print!("{}", inventory::render_table(&found));
    }
    Ok(ExitCode::SUCCESS)
}

fn report_gates(gates: &[check::Gate], json: bool) -> ExitCode {
    let passed = gates.iter().filter(|g| g.passed).count();
    let all = passed == gates.len();
    if json {
        let body = serde_json::json!({ "passed": all, "gates": gates });
        println!("{body:#}");
    } else {
        let width = gates
            .iter()
            .map(|g| g.name.chars().count())
            .max()
            .unwrap_or(0);
        for gate in gates {
            let verdict = if gate.passed { "pass" } else { "FAIL" };
            let pad = width - gate.name.chars().count();
            println!("{verdict}  {}{:pad$}  {}", gate.name, "", gate.detail);
            if let Some(warning) = &gate.warning {
                // Under the detail, so the verdicts stay one column a script can cut.
                println!("      {:width$}  warning: {warning}", "");
            }
        }
        println!("{passed} of {} checks passed", gates.len());
    }
    if all {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the disk benchmark in POLARIS_HOME with a progress bar and keeps the result.
fn measure_disk(settings: &Settings) -> anyhow::Result<()> {
    let home = &settings.home;
    let plan = bench::Plan::for_home(home)?;
    eprintln!(
        "Measuring sequential disk speed in {} ({}; at most {} MiB and about 3 s)…",
        plan.dir.display(),
        plan.disk.as_deref().unwrap_or("not on one physical disk"),
        plan.max_bytes >> 20
    );
    let bar = ProgressBar::with_draw_target(Some(1000), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{prefix:<6} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut phase_started = Instant::now();
    let mut current = None;
    let result = bench::run(&plan, |phase, bytes| {
        if current != Some(phase) {
            current = Some(phase);
            phase_started = Instant::now();
            bar.set_prefix(match phase {
                bench::Phase::Write => "write",
                bench::Phase::Read => "read",
            });
        }
        bar.set_position((plan.fraction(bytes, phase_started.elapsed()) * 1000.0) as u64);
        bar.set_message(format!("{} MiB", bytes >> 20));
    });
    bar.finish_and_clear();
    let result = result?;
    bench::save(home, &result)?;
    let read = match (result.read_mb_per_s, result.read_bypass) {
        (Some(read), Some(bypass)) => format!("read {read:.0} MB/s ({})", bypass.describe()),
        _ => "read not measured (no way to bypass the page cache on this system)".to_owned(),
    };
    eprintln!(
        "Disk speed: write {:.0} MB/s, {read}; {} MiB; kept in {}",
        result.write_mb_per_s,
        result.bytes_written >> 20,
        bench::cache_path(home).display()
    );
    Ok(())
}
