//! Dashboard benchmark (release build), run with
//!
//! ```sh
//! cargo bench --bench dashboard
//! ```
//!
//! It needs tmux and htop (`apt-get install -y tmux htop`) and says so, failing, when either is
//! missing. Every program runs in a private tmux server (its socket under `target/tmp`) on a
//! 120×40 screen; a local coordinator (`polaris server`), a registered agent (`polaris start`,
//! heart-beating every 10 s) and the dashboard (`polaris` on the tmux terminal) share one
//! POLARIS_HOME under `target/tmp`. It prints, all measured side by side in this one run:
//!
//! 1. **Idle cost of the dashboard** on its Overview, with compute_subnet idle (`sleep`),
//!    measured from /proc over `POLARIS_BENCH_IDLE_SECS` (default 60) after 5 s of settling: CPU
//!    as a percentage of one core (goal ≤ 0.3 %) and RSS (goal ≤ 12 MB), each with its ratio to
//!    the goal; and over the same seconds `htop -d 10` in another tmux session of the same size,
//!    the anchor, with the dashboard/htop ratios.
//! 2. **Log flood on the Logs tab**: compute_subnet (this benchmark's own executable, re-invoked
//!    with `POLARIS_BENCH_GENERATE=RATE,SECS`) writes `POLARIS_BENCH_FLOOD_RATE` lines a second
//!    (default 100 000) for `POLARIS_BENCH_FLOOD_SECS` (default 10), lines `seq=1`, `seq=2` … and
//!    last `seq=LAST done`, in paced batches; it starts once the dashboard follows the Logs tab
//!    (key `5`). The screen is read (`tmux capture-pane`) every 100 ms for the highest `seq`
//!    shown, and it prints:
//!    - the generator's own rate (below the asked one when the agent cannot drain its pipe);
//!    - the lines a second the screen kept up with: the highest seq on screen when the
//!      generation window (`SECS` from the start) ends, over the time since the start;
//!    - how far the screen is behind the file at the end: from the last line's stamp in
//!      `logs/compute_subnet_stdout.log` (written by the agent as it reads the line) until the
//!      screen shows that seq (goal ≤ 1 s; read every 100 ms, so ± 0.1 s);
//!    - the dashboard's peak RSS during the flood, sampled every 100 ms, and its high-water mark
//!      (`VmHWM`) (goal ≤ 40 MB);
//!    - the CPU of the agent and of the dashboard during the generation (for context);
//!    - how many of the lines reached the log files (`logs/compute_subnet_stdout.log*`), so a
//!      loss is visible.
//!
//! Knobs: `POLARIS_BENCH_IDLE_SECS`, `POLARIS_BENCH_FLOOD_RATE`, `POLARIS_BENCH_FLOOD_SECS`.
//! Nothing is asserted on time: compare the ratios, not the absolute figures, across machines.

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("the dashboard benchmark runs on Linux only");
}

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    // Re-invoked as the flood's compute_subnet.
    if let Ok(spec) = std::env::var(bench::GENERATE) {
        return bench::generate(&spec);
    }
    bench::run()
}

#[cfg(target_os = "linux")]
mod support;

#[cfg(target_os = "linux")]
mod bench {
    use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    use anyhow::{Context, bail};

    use crate::support::{cpu_ticks, knob, listening_address, peak_rss_mb, rss_mb, tick_seconds};

    /// `RATE,SECS`: run as the flood's generator instead of the benchmark.
    pub(super) const GENERATE: &str = "POLARIS_BENCH_GENERATE";
    /// The folder where the generator waits for `go` and leaves its `report`.
    const GENERATE_DIR: &str = "POLARIS_BENCH_GENERATE_DIR";

    const IDLE_CPU_GOAL_PERCENT: f64 = 0.3;
    const IDLE_RSS_GOAL_MB: f64 = 12.0;
    const FLOOD_RSS_GOAL_MB: f64 = 40.0;
    const LAG_GOAL_SECS: f64 = 1.0;
    const SETTLE: Duration = Duration::from_secs(5);
    const SAMPLE_EVERY: Duration = Duration::from_millis(100);
    const HEARTBEAT_INTERVAL: &str = "10s";
    const COLUMNS: &str = "120";
    const ROWS: &str = "40";

    // ---- the generator (compute_subnet during the flood) ----

    /// Writes `rate` lines a second for `secs` seconds to stdout once `GENERATE_DIR/go` exists,
    /// in batches every 10 ms, then records what it did in `GENERATE_DIR/report` (`LINES
    /// SECONDS`) and sleeps until it is stopped.
    pub(super) fn generate(spec: &str) -> anyhow::Result<()> {
        let (rate, secs) = spec
            .split_once(',')
            .with_context(|| format!("{GENERATE}={spec:?}: expected RATE,SECS"))?;
        let rate: u64 = rate
            .trim()
            .parse()
            .with_context(|| format!("{GENERATE}={spec:?}: the rate is not a whole number"))?;
        let secs: u64 = secs
            .trim()
            .parse()
            .with_context(|| format!("{GENERATE}={spec:?}: the seconds are not a whole number"))?;
        let dir = PathBuf::from(
            std::env::var_os(GENERATE_DIR).with_context(|| format!("{GENERATE_DIR} is not set"))?,
        );
        let report = dir.join("report");
        // Restarted by the supervisor after a flood: never flood twice.
        if !report.exists() {
            let go = dir.join("go");
            while !go.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            let (lines, seconds) = write_lines(rate, secs)?;
            let partial = dir.join("report.partial");
            std::fs::write(&partial, format!("{lines} {seconds}\n"))
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &report)
                .with_context(|| format!("cannot write {}", report.display()))?;
        }
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }

    /// The lines, paced: by the end of each 10-ms step, `rate / 100` more.
    fn write_lines(rate: u64, secs: u64) -> anyhow::Result<(u64, f64)> {
        const STEP: Duration = Duration::from_millis(10);
        let total = rate * secs;
        let mut out = BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
        let started = Instant::now();
        let mut written = 0;
        let mut step: u32 = 0;
        while written < total {
            step += 1;
            let due = (rate * u64::from(step) / 100).min(total);
            while written < due {
                written += 1;
                if written == total {
                    writeln!(out, "seq={written} done")?;
                } else {
                    writeln!(out, "seq={written}")?;
                }
            }
            out.flush().context("cannot write to stdout")?;
            if let Some(wait) = (started + STEP * step).checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        Ok((written, started.elapsed().as_secs_f64()))
    }

    // ---- the processes ----

    struct Killed(Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn polaris_exe() -> &'static str {
        env!("CARGO_BIN_EXE_polaris")
    }

    /// A word for `sh -c`.
    fn quoted(word: &str) -> String {
        format!("'{}'", word.replace('\'', r"'\''"))
    }

    /// What every `polaris` of this run is told.
    struct Setup {
        /// The working directory of everything (so no stray `.env` is read).
        scratch: PathBuf,
        home: PathBuf,
        api: String,
    }

    impl Setup {
        fn env(&self, compute: &str) -> Vec<(&'static str, String)> {
            vec![
                ("POLARIS_HOME", self.home.display().to_string()),
                ("SERVER_URL", self.api.clone()),
                ("POLARIS_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL.to_owned()),
                ("POLARIS_COMPUTE_CMD", compute.to_owned()),
                ("POLARIS_LOCATION", "Bench, XX".to_owned()),
                ("POLARIS_NVML_LIBRARY", "/nonexistent".to_owned()),
            ]
        }

        fn polaris(&self, compute: &str, args: &[&str]) -> Command {
            let mut command = Command::new(polaris_exe());
            command
                .args(args)
                .current_dir(&self.scratch)
                .envs(self.env(compute))
                .stdin(Stdio::null());
            command
        }

        /// Runs `polaris ARGS` to its end; its output is the error when it fails.
        fn run(&self, compute: &str, args: &[&str]) -> anyhow::Result<()> {
            let output = self
                .polaris(compute, args)
                .output()
                .with_context(|| format!("cannot run polaris {}", args.join(" ")))?;
            if !output.status.success() {
                bail!(
                    "polaris {} failed ({}):\n{}{}",
                    args.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            Ok(())
        }

        fn logs(&self) -> PathBuf {
            self.home.join("logs")
        }
    }

    /// The agent, started with `polaris start` and stopped with `polaris stop` when dropped.
    struct Agent<'a> {
        setup: &'a Setup,
        compute: String,
        pid: u32,
    }

    impl<'a> Agent<'a> {
        fn start(setup: &'a Setup, compute: &str) -> anyhow::Result<Self> {
            setup.run(compute, &["start"])?;
            let mut agent = Agent {
                setup,
                compute: compute.to_owned(),
                pid: 0,
            };
            let pidfile = setup.home.join("pids/polaris.pid");
            let record: serde_json::Value = serde_json::from_slice(
                &std::fs::read(&pidfile)
                    .with_context(|| format!("cannot read {}", pidfile.display()))?,
            )
            .with_context(|| format!("{}: not JSON", pidfile.display()))?;
            agent.pid = record["pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok())
                .with_context(|| format!("{}: no pid", pidfile.display()))?;
            Ok(agent)
        }
    }

    impl Drop for Agent<'_> {
        fn drop(&mut self) {
            if let Err(err) = self.setup.run(&self.compute, &["stop"]) {
                eprintln!("cannot stop the agent: {err:#}");
            }
        }
    }

    /// A private tmux server, killed when dropped.
    struct Tmux {
        socket: PathBuf,
        cwd: PathBuf,
    }

    impl Tmux {
        fn run(&self, args: &[&str]) -> anyhow::Result<String> {
            let output = Command::new("tmux")
                .arg("-S")
                .arg(&self.socket)
                .args(["-f", "/dev/null"])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("cannot run tmux {}", args.join(" ")))?;
            if !output.status.success() {
                bail!(
                    "tmux {} failed ({}): {}",
                    args.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            String::from_utf8(output.stdout)
                .with_context(|| format!("tmux {}: output is not UTF-8", args.join(" ")))
        }

        /// Opens session `name` (120×40) running `command` with `env`; returns its PID.
        fn open(&self, name: &str, env: &[(&str, String)], command: &str) -> anyhow::Result<u32> {
            let cwd = self.cwd.display().to_string();
            let mut args = vec!["new-session", "-d", "-s", name, "-x", COLUMNS, "-y", ROWS];
            args.extend(["-c", &cwd]);
            let pairs: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            for pair in &pairs {
                args.extend(["-e", pair]);
            }
            let line = format!("exec {command}");
            args.push(&line);
            self.run(&args)?;
            let pid = self.run(&["display", "-p", "-t", name, "#{pane_pid}"])?;
            pid.trim()
                .parse()
                .with_context(|| format!("tmux: {pid:?} is not the PID of {name}'s pane"))
        }

        fn screen(&self, name: &str) -> anyhow::Result<String> {
            self.run(&["capture-pane", "-p", "-t", name])
                .with_context(|| format!("cannot read {name}'s screen (did it exit?)"))
        }

        fn keys(&self, name: &str, keys: &str) -> anyhow::Result<()> {
            self.run(&["send-keys", "-t", name, keys]).map(drop)
        }

        /// Polls the screen until `ready` holds; the error shows the last screen.
        fn wait_for(
            &self,
            name: &str,
            what: &str,
            timeout: Duration,
            ready: impl Fn(&str) -> bool,
        ) -> anyhow::Result<String> {
            let deadline = Instant::now() + timeout;
            loop {
                let screen = self.screen(name)?;
                if ready(&screen) {
                    return Ok(screen);
                }
                if Instant::now() > deadline {
                    bail!(
                        "{name}: no {what} after {} s; the screen:\n{screen}",
                        timeout.as_secs()
                    );
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        }

        /// Presses `q` and waits for the session to end (closing it after 5 s).
        fn quit(&self, name: &str) -> anyhow::Result<()> {
            self.keys(name, "q")?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.run(&["has-session", "-t", name]).is_ok() {
                if Instant::now() > deadline {
                    self.run(&["kill-session", "-t", name])?;
                    bail!("{name} did not quit within 5 s of `q`");
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            Ok(())
        }
    }

    impl Drop for Tmux {
        fn drop(&mut self) {
            let _ = self.run(&["kill-server"]);
        }
    }

    fn require(tool: &str, version_flag: &str) -> anyhow::Result<()> {
        let ok = Command::new(tool)
            .arg(version_flag)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            bail!(
                "the dashboard benchmark needs {tool}, which is not installed: apt-get install -y tmux htop"
            );
        }
        Ok(())
    }

    // ---- the figures ----

    /// CPU in ticks over `seconds` as a percentage of one core; "< " when below one tick.
    fn cpu_percent(ticks: u64, seconds: f64) -> (f64, &'static str) {
        let bound = if ticks == 0 { "< " } else { "" };
        (
            ticks.max(1) as f64 * tick_seconds() / seconds * 100.0,
            bound,
        )
    }

    /// ours/theirs in ticks, with what a tick-less side leaves of it.
    fn tick_ratio(ours: u64, theirs: u64) -> String {
        match (ours, theirs) {
            (0, 0) => "— (both below one tick)".to_owned(),
            (0, t) => format!("< {:.2}", 1.0 / t as f64),
            (o, 0) => format!("> {o:.2}"),
            (o, t) => format!("{:.2}", o as f64 / t as f64),
        }
    }

    fn verdict(ratio: f64) -> &'static str {
        if ratio <= 1.0 {
            "meets it"
        } else {
            "misses it"
        }
    }

    fn millis(at: SystemTime) -> i64 {
        at.duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn clock(ms: i64) -> String {
        chrono::DateTime::from_timestamp_millis(ms)
            .map_or_else(|| ms.to_string(), |t| t.format("%H:%M:%S%.3f").to_string())
    }

    /// The highest `seq=N` on a screen.
    fn highest_seq(screen: &str) -> u64 {
        screen
            .match_indices("seq=")
            .filter_map(|(at, tag)| {
                let rest = &screen[at + tag.len()..];
                let end = rest
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(rest.len());
                rest[..end].parse().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// The stamp (ms since the epoch) of `last_line` when it ends the file, read from its tail.
    fn stamp_of_last(path: &Path, last_line: &str) -> anyhow::Result<Option<i64>> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("cannot open {}", path.display())),
        };
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(4096)))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let tail = String::from_utf8_lossy(&tail);
        let Some(line) = tail.lines().rev().find(|l| l.ends_with(last_line)) else {
            return Ok(None);
        };
        let stamp = line.split(' ').next().unwrap_or_default();
        let at = chrono::DateTime::parse_from_rfc3339(stamp)
            .with_context(|| format!("{}: {line:?} does not start with a stamp", path.display()))?;
        Ok(Some(at.timestamp_millis()))
    }

    /// What reached `logs/compute_subnet_stdout.log*`.
    struct Written {
        lines: u64,
        distinct: u64,
        lowest: u64,
        highest: u64,
    }

    fn count_written(logs: &Path, total: u64) -> anyhow::Result<Written> {
        let mut seen = vec![false; usize::try_from(total + 1)?];
        let mut written = Written {
            lines: 0,
            distinct: 0,
            lowest: u64::MAX,
            highest: 0,
        };
        let entries =
            std::fs::read_dir(logs).with_context(|| format!("cannot list {}", logs.display()))?;
        for entry in entries {
            let path = entry?.path();
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if !name.starts_with("compute_subnet_stdout.log") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            for line in text.lines() {
                written.lines += 1;
                let Some((_, rest)) = line.split_once(" | seq=") else {
                    continue;
                };
                let digits = rest.split(' ').next().unwrap_or_default();
                let Ok(seq) = digits.parse::<u64>() else {
                    continue;
                };
                if let Some(slot) = usize::try_from(seq).ok().and_then(|i| seen.get_mut(i))
                    && !*slot
                {
                    *slot = true;
                    written.distinct += 1;
                }
                written.lowest = written.lowest.min(seq);
                written.highest = written.highest.max(seq);
            }
        }
        Ok(written)
    }

    // ---- the measurements ----

    fn idle(setup: &Setup, tmux: &Tmux, idle: Duration) -> anyhow::Result<()> {
        let compute = "sleep 100000";
        let _agent = Agent::start(setup, compute)?;
        let dashboard = tmux.open("idle", &setup.env(compute), &quoted(polaris_exe()))?;
        let screen = tmux.wait_for(
            "idle",
            "acknowledged heartbeat on the Overview",
            Duration::from_secs(30),
            |s| s.contains("acknowledged") || s.contains("The agent is not running"),
        )?;
        if screen.contains("The agent is not running") {
            bail!("the dashboard offers to start an agent that runs; the screen:\n{screen}");
        }
        let htop_home = setup.scratch.join("htop-home");
        std::fs::create_dir_all(&htop_home)
            .with_context(|| format!("cannot create {}", htop_home.display()))?;
        // htop keeps its settings under HOME: a private one leaves the user's alone.
        let htop_env = [
            ("HOME", htop_home.display().to_string()),
            ("XDG_CONFIG_HOME", htop_home.display().to_string()),
        ];
        let htop = tmux.open("htop", &htop_env, "htop -d 10")?;
        std::thread::sleep(SETTLE);
        let (ours_before, htop_before) = (cpu_ticks(dashboard)?, cpu_ticks(htop)?);
        let started = Instant::now();
        std::thread::sleep(idle);
        let (ours_after, htop_after) = (cpu_ticks(dashboard)?, cpu_ticks(htop)?);
        let seconds = started.elapsed().as_secs_f64();
        let (ours_rss, htop_rss) = (rss_mb(dashboard)?, rss_mb(htop)?);
        let screen = tmux.screen("idle")?;
        tmux.quit("idle")?;
        tmux.run(&["kill-session", "-t", "htop"])?;

        let (ours, htop_ticks) = (ours_after - ours_before, htop_after - htop_before);
        let (cpu, bound) = cpu_percent(ours, seconds);
        let (htop_cpu, htop_bound) = cpu_percent(htop_ticks, seconds);
        let tick_ms = tick_seconds() * 1000.0;
        println!(
            "polaris dashboard idle on its Overview ({COLUMNS}×{ROWS}) for {seconds:.0} s (agent heart-beating every {HEARTBEAT_INTERVAL}, compute_subnet idle)"
        );
        println!(
            "  CPU {bound}{cpu:.3} % of one core ({ours} ticks of {tick_ms:.0} ms); goal {IDLE_CPU_GOAL_PERCENT} % -> ratio {bound}{:.2}: {}",
            cpu / IDLE_CPU_GOAL_PERCENT,
            verdict(cpu / IDLE_CPU_GOAL_PERCENT)
        );
        println!(
            "  RSS {ours_rss:.1} MB; goal {IDLE_RSS_GOAL_MB} MB -> ratio {:.2}: {}",
            ours_rss / IDLE_RSS_GOAL_MB,
            verdict(ours_rss / IDLE_RSS_GOAL_MB)
        );
        println!(
            "  side by side: htop -d 10 ({COLUMNS}×{ROWS}) CPU {htop_bound}{htop_cpu:.3} % ({htop_ticks} ticks), RSS {htop_rss:.1} MB -> dashboard/htop CPU {}, RSS {:.2}",
            tick_ratio(ours, htop_ticks),
            ours_rss / htop_rss
        );
        if screen.contains("The agent is not running") {
            println!("  note: a popup about the agent was open at the end");
        }
        Ok(())
    }

    struct Sample {
        since_go: Duration,
        highest: u64,
    }

    fn flood(setup: &Setup, tmux: &Tmux, rate: u64, secs: u64) -> anyhow::Result<()> {
        let total = rate * secs;
        if total == 0 {
            bail!("POLARIS_BENCH_FLOOD_RATE and POLARIS_BENCH_FLOOD_SECS must be above 0");
        }
        let logs = setup.logs();
        // The file must hold this flood only (the idle compute_subnet wrote nothing, but still).
        if let Ok(entries) = std::fs::read_dir(&logs) {
            for entry in entries.flatten() {
                if entry
                    .file_name()
                    .to_string_lossy()
                    .starts_with("compute_subnet_")
                {
                    std::fs::remove_file(entry.path())
                        .with_context(|| format!("cannot remove {}", entry.path().display()))?;
                }
            }
        }
        let generator = setup.scratch.join("generator");
        std::fs::create_dir_all(&generator)
            .with_context(|| format!("cannot create {}", generator.display()))?;
        let me = std::env::current_exe().context("cannot find this benchmark's executable")?;
        let compute = format!(
            "{GENERATE}={rate},{secs} {GENERATE_DIR}={} exec {}",
            quoted(&generator.display().to_string()),
            quoted(&me.display().to_string())
        );
        let agent = Agent::start(setup, &compute)?;
        let dashboard = tmux.open("flood", &setup.env(&compute), &quoted(polaris_exe()))?;
        tmux.wait_for(
            "flood",
            "acknowledged heartbeat on the Overview",
            Duration::from_secs(30),
            |s| s.contains("acknowledged"),
        )?;
        tmux.keys("flood", "5")?;
        tmux.wait_for(
            "flood",
            "Logs tab following compute_subnet",
            Duration::from_secs(10),
            |s| s.contains("compute_subnet") && s.contains("following"),
        )?;

        let last_line = format!("seq={total} done");
        let log = logs.join("compute_subnet_stdout.log");
        let (agent_before, ours_before) = (cpu_ticks(agent.pid)?, cpu_ticks(dashboard)?);
        let go = generator.join("go");
        std::fs::write(&go, b"").with_context(|| format!("cannot write {}", go.display()))?;
        let go_at = Instant::now();
        let window = Duration::from_secs(secs);
        let give_up = window + Duration::from_secs(60);
        let mut samples = Vec::new();
        let mut peak_rss: f64 = 0.0;
        // When the file showed the last line: since go, its stamp, and the CPU ticks then.
        let mut in_file: Option<(Duration, i64, u64, u64)> = None;
        let mut on_screen: Option<(Duration, i64)> = None;
        let mut step = 0;
        while go_at.elapsed() < give_up {
            let screen = tmux.screen("flood")?;
            let now = SystemTime::now();
            let since_go = go_at.elapsed();
            let highest = highest_seq(&screen);
            samples.push(Sample { since_go, highest });
            peak_rss = peak_rss.max(rss_mb(dashboard)?);
            if in_file.is_none()
                && let Some(stamp) = stamp_of_last(&log, &last_line)?
            {
                in_file = Some((
                    go_at.elapsed(),
                    stamp,
                    cpu_ticks(agent.pid)?,
                    cpu_ticks(dashboard)?,
                ));
            }
            if highest >= total {
                on_screen = Some((since_go, millis(now)));
                break;
            }
            step += 1;
            if let Some(wait) = (go_at + SAMPLE_EVERY * step).checked_duration_since(Instant::now())
            {
                std::thread::sleep(wait);
            }
        }
        let hwm = peak_rss_mb(dashboard)?;
        let report_path = generator.join("report");
        let deadline = Instant::now() + Duration::from_secs(5);
        let report = loop {
            match std::fs::read_to_string(&report_path) {
                Ok(text) => break Some(text),
                Err(_) if Instant::now() < deadline => std::thread::sleep(SAMPLE_EVERY),
                Err(_) => break None,
            }
        };
        tmux.quit("flood")?;
        drop(agent);
        let written = count_written(&logs, total)?;

        println!(
            "Logs tab following a flood: compute_subnet writes {rate} lines/s for {secs} s ({total} lines), dashboard {COLUMNS}×{ROWS}"
        );
        match report.as_deref().map(str::split_whitespace).map(|mut w| {
            (
                w.next().and_then(|n| n.parse::<u64>().ok()),
                w.next().and_then(|s| s.parse::<f64>().ok()),
            )
        }) {
            Some((Some(lines), Some(seconds))) => println!(
                "  generator: {lines} lines in {seconds:.2} s = {:.0} lines/s (asked {rate}: {:.2})",
                lines as f64 / seconds,
                lines as f64 / seconds / rate as f64
            ),
            _ => println!("  generator: no report in {}", report_path.display()),
        }
        match samples.iter().find(|s| s.since_go >= window) {
            Some(s) => {
                let kept = s.highest as f64 / s.since_go.as_secs_f64();
                println!(
                    "  screen kept up with {kept:.0} lines/s: seq={} on screen {:.2} s after the start (the generator's window: {secs} s) -> {:.2} of the asked rate",
                    s.highest,
                    s.since_go.as_secs_f64(),
                    kept / rate as f64
                );
            }
            None => println!(
                "  screen kept up: not measured (the screen showed the last line before the window ended)"
            ),
        }
        match (in_file, on_screen) {
            (Some((_, stamp, ..)), Some((_, shown))) => {
                let behind = (shown - stamp) as f64 / 1000.0;
                println!(
                    "  screen behind the file at the end: {behind:.2} s (last line stamped {} in the log, on screen by {}); goal {LAG_GOAL_SECS} s -> ratio {:.2}: {}",
                    clock(stamp),
                    clock(shown),
                    behind / LAG_GOAL_SECS,
                    verdict(behind / LAG_GOAL_SECS)
                );
            }
            (Some((seen, stamp, ..)), None) => {
                let last = samples.last().map_or(0, |s| s.highest);
                println!(
                    "  screen behind the file at the end: more than {:.0} s (last line stamped {} in the log, seen there {:.1} s after the start; the screen never showed it, only up to seq={last}); goal {LAG_GOAL_SECS} s -> misses it",
                    give_up.as_secs_f64() - seen.as_secs_f64(),
                    clock(stamp),
                    seen.as_secs_f64()
                );
            }
            (None, _) => println!(
                "  screen behind the file: not measured ({last_line:?} never reached {})",
                log.display()
            ),
        }
        println!(
            "  dashboard peak RSS {peak_rss:.1} MB sampled every {} ms (high-water mark VmHWM {hwm:.1} MB); goal {FLOOD_RSS_GOAL_MB} MB -> ratio {:.2}: {}",
            SAMPLE_EVERY.as_millis(),
            peak_rss.max(hwm) / FLOOD_RSS_GOAL_MB,
            verdict(peak_rss.max(hwm) / FLOOD_RSS_GOAL_MB)
        );
        if let Some((seen, _, agent_after, ours_after)) = in_file {
            let seconds = seen.as_secs_f64();
            let (agent_cpu, agent_bound) = cpu_percent(agent_after - agent_before, seconds);
            let (ours_cpu, ours_bound) = cpu_percent(ours_after - ours_before, seconds);
            println!(
                "  CPU from the start until the file held the last line ({seconds:.1} s): agent {agent_bound}{agent_cpu:.1} % of one core, dashboard {ours_bound}{ours_cpu:.1} %"
            );
        }
        let lost = total - written.distinct.min(total);
        let range = if written.distinct == 0 {
            "none".to_owned()
        } else {
            format!("seq={}..={}", written.lowest, written.highest)
        };
        println!(
            "  log files: {} lines in {}* ({} distinct seq of {total}, {range}) -> {lost} lost",
            written.lines,
            log.display(),
            written.distinct
        );
        Ok(())
    }

    pub(super) fn run() -> anyhow::Result<()> {
        let idle_for = Duration::from_secs(knob("POLARIS_BENCH_IDLE_SECS", 60)? as u64);
        let rate = knob("POLARIS_BENCH_FLOOD_RATE", 100_000)? as u64;
        let secs = knob("POLARIS_BENCH_FLOOD_SECS", 10)? as u64;
        require("tmux", "-V")?;
        require("htop", "--version")?;

        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .context("cannot create a folder under target/tmp")?;
        let scratch = dir.path();
        let server_home = scratch.join("server");
        let mut server = Command::new(polaris_exe())
            .args(["server", "--listen", "127.0.0.1:0"])
            .current_dir(scratch)
            .env("POLARIS_HOME", &server_home)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start polaris server")?;
        let base = listening_address(&mut server).context("polaris server")?;
        let _server = Killed(server);
        let setup = Setup {
            scratch: scratch.to_owned(),
            home: scratch.join("home"),
            api: format!("{base}/api/v1"),
        };
        setup.run(
            "sleep 100000",
            &[
                "register",
                "--network",
                "standard",
                "--username",
                "bench",
                "--yes",
            ],
        )?;
        let tmux = Tmux {
            socket: scratch.join("tmux.sock"),
            cwd: scratch.to_owned(),
        };
        idle(&setup, &tmux, idle_for)?;
        flood(&setup, &tmux, rate, secs)?;
        Ok(())
    }
}
