//! Agent benchmark (release build), run with
//!
//! ```sh
//! cargo bench --bench agent
//! ```
//!
//! It prints, all measured in this one run:
//!
//! 1. **Idle cost of `polaris --daemon`**: a registered agent heart-beating every 10 s to a local
//!    coordinator and supervising an idle compute_subnet (`sleep`), measured from /proc over
//!    `POLARIS_BENCH_IDLE_SECS` (default 60) after 5 s of settling: CPU as a percentage of one
//!    core (goal ≤ 0.1 %) and RSS (goal ≤ 12 MB), each with its ratio to the goal.
//! 2. **`polaris logs -n 100` on a 1 GB log** (`POLARIS_BENCH_LOG_MB`, default 1024), median of
//!    five runs, side by side with coreutils `tail -n 100` on the same file.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the agent benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    bench::run()
}

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
mod bench {
    use std::io::Write;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use anyhow::bail;

    use crate::support::{cpu_ticks, knob, listening_address, rss_mb, tick_seconds};

    const CPU_GOAL_PERCENT: f64 = 0.1;
    const RSS_GOAL_MB: f64 = 12.0;

    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// The agent, stopped with SIGTERM so it stops its compute_subnet too (SIGKILL would leave
    /// that behind).
    struct Stopped(Child);

    impl Drop for Stopped {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }

    fn idle_daemon(idle: Duration) -> anyhow::Result<()> {
        let server_home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let mut server = Command::new(env!("CARGO_BIN_EXE_polaris"))
            .args(["server", "--listen", "127.0.0.1:0"])
            .env("POLARIS_HOME", server_home.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let base = listening_address(&mut server)?;
        let _server = Killed(server);
        let api = format!("{base}/api/v1");
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original/registration.json");
        let body = std::fs::read_to_string(fixture)?.replace("MINER_ID", "");
        let answer: serde_json::Value = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                reqwest::Client::new()
                    .post(format!("{api}/miners/"))
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?
                    .json()
                    .await
            })?;
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let record = serde_json::json!({
            "miner_id": answer["miner_id"], "token": answer["token"], "username": "bench",
            "network": "standard", "server_url": api, "resource_ids": [],
            "registered_at": "2026-11-25T00:00:00Z",
        });
        std::fs::write(home.path().join("registration.json"), record.to_string())?;
        let daemon = Command::new(env!("CARGO_BIN_EXE_polaris"))
            .arg("--daemon")
            .env("POLARIS_HOME", home.path())
            .env("SERVER_URL", &api)
            .env("POLARIS_COMPUTE_CMD", "sleep 100000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = daemon.id();
        let daemon = Stopped(daemon);
        std::thread::sleep(Duration::from_secs(5));
        let before = cpu_ticks(pid)?;
        let started = Instant::now();
        std::thread::sleep(idle);
        let ticks = cpu_ticks(pid)? - before;
        let seconds = started.elapsed().as_secs_f64();
        let tick = tick_seconds();
        // The kernel counts CPU time in ticks (10 ms): below one tick, say so.
        let cpu = ticks.max(1) as f64 * tick / seconds * 100.0;
        let bound = if ticks == 0 { "< " } else { "" };
        let rss = rss_mb(pid)?;
        drop(daemon);
        println!(
            "polaris --daemon, idle for {seconds:.0} s (heartbeat every 10 s, compute_subnet supervised)"
        );
        println!(
            "  CPU {bound}{cpu:.3} % of one core ({ticks} ticks of {:.0} ms); goal {CPU_GOAL_PERCENT} % -> ratio {bound}{:.2} (<= 1 meets it)",
            tick * 1000.0,
            cpu / CPU_GOAL_PERCENT
        );
        println!(
            "  RSS {rss:.1} MB; goal {RSS_GOAL_MB} MB -> ratio {:.2} (<= 1 meets it)",
            rss / RSS_GOAL_MB
        );
        Ok(())
    }

    fn median(mut samples: Vec<Duration>) -> Duration {
        samples.sort();
        samples[samples.len() / 2]
    }

    fn timed(command: &mut Command) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let status = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let elapsed = started.elapsed();
        if !status.success() {
            bail!("{command:?} failed");
        }
        Ok(elapsed)
    }

    fn logs_tail(megabytes: usize) -> anyhow::Result<()> {
        let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let logs = home.path().join("logs");
        std::fs::create_dir_all(&logs)?;
        let path = logs.join("polaris_stdout.log");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        let line = "2026-11-25T15:00:00.000Z stdout | a heartbeat was acknowledged in 2.3 ms by the coordinator\n";
        let lines = megabytes * 1024 * 1024 / line.len();
        for _ in 0..lines {
            file.write_all(line.as_bytes())?;
        }
        file.flush()?;
        drop(file);
        let ours = median(
            (0..5)
                .map(|_| {
                    timed(
                        Command::new(env!("CARGO_BIN_EXE_polaris"))
                            .args(["logs", "-n", "100"])
                            .env("POLARIS_HOME", home.path()),
                    )
                })
                .collect::<anyhow::Result<_>>()?,
        );
        let theirs = median(
            (0..5)
                .map(|_| timed(Command::new("tail").args(["-n", "100"]).arg(&path)))
                .collect::<anyhow::Result<_>>()?,
        );
        println!("polaris logs -n 100 on a {megabytes} MB log (median of 5)");
        println!(
            "  {:.1} ms; side by side: tail -n 100 {:.1} ms -> polaris/tail {:.2}",
            ours.as_secs_f64() * 1000.0,
            theirs.as_secs_f64() * 1000.0,
            ours.as_secs_f64() / theirs.as_secs_f64()
        );
        Ok(())
    }

    pub(super) fn run() -> anyhow::Result<()> {
        let idle = Duration::from_secs(knob("POLARIS_BENCH_IDLE_SECS", 60)? as u64);
        let megabytes = knob("POLARIS_BENCH_LOG_MB", 1024)?;
        idle_daemon(idle)?;
        logs_tail(megabytes)?;
        Ok(())
    }
}
