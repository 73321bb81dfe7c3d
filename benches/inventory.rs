//! Inventory benchmark (release build), run with
//!
//! ```sh
//! cargo bench --bench inventory
//! ```
//!
//! It runs the real binary in a temporary POLARIS_HOME and prints, all measured in this one run:
//!
//! 1. **`polaris inventory --json`** (no `--bench`), `POLARIS_BENCH_RUNS` times (default 20),
//!    against a local `polaris server` (so the public-address probe gets an answer) with
//!    `POLARIS_LOCATION` set (the geo-IP lookup is network-bound and cached for a day). Median and
//!    slowest wall time, the ratio to the goal (300 ms; ≤ 1 meets it), and side by side the
//!    median of the tools a validator runs for the same facts (`lscpu -J`, `lsblk -J`, `nproc`,
//!    `df`, one after another) as a yardstick.
//! 2. **`polaris inventory --bench`**, `POLARIS_BENCH_DISK_RUNS` times (default 3): wall time of
//!    the whole command (benchmark, then inventory) and its ratio to the goal (4 s), with the
//!    measured disk speeds.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the inventory benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    bench::run()
}

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
mod bench {
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};

    use crate::support::{knob, listening_address};

    const INVENTORY_GOAL: Duration = Duration::from_millis(300);
    const DISK_BENCH_GOAL: Duration = Duration::from_secs(4);

    /// A coordinator on a free loopback port, killed when dropped.
    struct Coordinator {
        child: Child,
        api: String,
    }

    impl Coordinator {
        fn start(home: &Path) -> anyhow::Result<Self> {
            let mut child = Command::new(env!("CARGO_BIN_EXE_polaris"))
                .args(["server", "--listen", "127.0.0.1:0"])
                .env("POLARIS_HOME", home)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot start polaris server")?;
            let base = listening_address(&mut child)?;
            Ok(Self {
                child,
                api: format!("{base}/api/v1"),
            })
        }
    }

    impl Drop for Coordinator {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn timed(command: &mut Command) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            bail!(
                "{command:?} failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(elapsed)
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    fn ms(d: Duration) -> f64 {
        d.as_secs_f64() * 1000.0
    }

    pub(super) fn run() -> anyhow::Result<()> {
        let runs = knob("POLARIS_BENCH_RUNS", 20)?.max(1);
        let disk_runs = knob("POLARIS_BENCH_DISK_RUNS", 3)?.max(1);
        let server_home = tempfile::tempdir()?;
        let coordinator = Coordinator::start(server_home.path())?;
        // On the disk, not in a /tmp that may be tmpfs (where --bench refuses to run).
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let inventory = |args: &[&str]| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_polaris"));
            command
                .arg("inventory")
                .args(args)
                .env("POLARIS_HOME", home.path())
                .env("POLARIS_LOCATION", "Benchville, BV")
                .env("SERVER_URL", &coordinator.api);
            command
        };
        // One warm-up run creates POLARIS_HOME's files and warms the page cache for the binary.
        timed(&mut inventory(&["--json"]))?;

        let mut ours = Vec::with_capacity(runs);
        let mut tools = Vec::with_capacity(runs);
        let home_arg = home.path().to_string_lossy().into_owned();
        for _ in 0..runs {
            ours.push(timed(&mut inventory(&["--json"]))?);
            let started = Instant::now();
            for (program, args) in [
                ("lscpu", vec!["-J"]),
                ("lsblk", vec!["-J", "-b"]),
                ("nproc", vec![]),
                ("df", vec!["-B1", home_arg.as_str()]),
            ] {
                timed(Command::new(program).args(args))?;
            }
            tools.push(started.elapsed());
        }
        let slowest = ours.iter().max().copied().unwrap_or_default();
        let (ours, tools) = (median(ours), median(tools));
        println!("polaris inventory --json ({runs} runs, local coordinator, POLARIS_LOCATION set)");
        println!(
            "  median {:.1} ms, slowest {:.1} ms; goal {:.0} ms -> ratio {:.2} (<= 1 meets it)",
            ms(ours),
            ms(slowest),
            ms(INVENTORY_GOAL),
            ours.as_secs_f64() / INVENTORY_GOAL.as_secs_f64()
        );
        println!(
            "  side by side: lscpu -J + lsblk -J + nproc + df, median {:.1} ms -> polaris/tools {:.2}",
            ms(tools),
            ours.as_secs_f64() / tools.as_secs_f64()
        );

        println!("polaris inventory --bench ({disk_runs} runs, POLARIS_HOME on {home_arg})");
        let mut whole = Vec::with_capacity(disk_runs);
        for _ in 0..disk_runs {
            whole.push(timed(&mut inventory(&["--bench"]))?);
            let cached = std::fs::read(home.path().join("inventory/disk-bench.json"))?;
            let result: serde_json::Value = serde_json::from_slice(&cached)?;
            println!(
                "  {:.2} s: write {:.0} MB/s, read {:.0} MB/s, {} MiB, read via {}",
                whole.last().map_or(0.0, Duration::as_secs_f64),
                result["write_mb_per_s"].as_f64().unwrap_or(0.0),
                result["read_mb_per_s"].as_f64().unwrap_or(0.0),
                result["bytes_written"].as_u64().unwrap_or(0) >> 20,
                result["read_bypass"]
            );
        }
        let slowest = whole.iter().max().copied().unwrap_or_default();
        let typical = median(whole);
        println!(
            "  median {:.2} s, slowest {:.2} s; goal {:.0} s -> ratio {:.2} (<= 1 meets it)",
            typical.as_secs_f64(),
            slowest.as_secs_f64(),
            DISK_BENCH_GOAL.as_secs_f64(),
            typical.as_secs_f64() / DISK_BENCH_GOAL.as_secs_f64()
        );
        Ok(())
    }
}
