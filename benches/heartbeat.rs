//! Heartbeat benchmark of `polaris server` (release build), run with
//!
//! ```sh
//! cargo bench --bench heartbeat
//! ```
//!
//! It starts the real binary on a loopback port in a temporary POLARIS_HOME, registers simulated
//! miners over HTTP and prints, all measured in this one run:
//!
//! 1. **Throughput**: heartbeats/s and `/healthz` requests/s with the same client and concurrency,
//!    in alternating rounds (so drift affects both alike), their ratio (goal ≥ 0.7: a heartbeat,
//!    with JSON parsing, validation, auth and bookkeeping, costs little more than an empty answer),
//!    and heartbeat p50/p99 latency. With two CPUs and `taskset`, the server runs on CPU 0 and the
//!    load generator (a lean keep-alive HTTP/1.1 client, so it is not the bottleneck) on CPU 1, as
//!    in the reference harness of `shared/reference/peers.md` §F. Compare the ratio, not the
//!    absolute rates, across machines.
//! 2. **Steady state**: miners heart-beating on the agent's real cadence (every 10 s ± 10 %) for
//!    `POLARIS_BENCH_STEADY_SECS` (default 70 s, so each miner passes the 60-s sampling gate), and
//!    from `/metrics` the rows written and the store commits (batched transactions) per heartbeat.
//!    Goal: ≤ 0.1 store writes (commits) per heartbeat.
//! 3. **Memory**: server RSS (`VmRSS`) with 10 000 and then `POLARIS_BENCH_MAX_MINERS` (default
//!    100 000) registered miners, each having sent two heartbeats (the bursts fill the store's
//!    queue, so the samples it sheds are counted and printed). Goal: ≤ 100 MB at 100 000.
//!
//! Knobs: `POLARIS_BENCH_MINERS` (throughput phase, default 1000), `POLARIS_BENCH_STEADY_MINERS`
//! (default 2000), `POLARIS_BENCH_STEADY_SECS`, `POLARIS_BENCH_MAX_MINERS`,
//! `POLARIS_BENCH_ROUND_SECS` (length of each of the 5 alternating throughput rounds, default 2).

#[cfg(not(unix))]
fn main() {
    eprintln!("the heartbeat benchmark runs on Linux only");
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    // Pin before any thread exists, so every thread of the load generator inherits it.
    bench::pin_self();
    // One worker thread for the load generator leaves the other core to the server.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(bench::run())
}

#[cfg(unix)]
mod support;

#[cfg(unix)]
mod bench {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use serde_json::Value;

    use crate::support::{self, knob, listening_address};

    const CONCURRENCY: usize = 32;
    /// Alternating rounds of heartbeats and /healthz in the throughput phase.
    const ROUNDS: usize = 5;

    /// A running server, stopped with SIGTERM (then SIGKILL) when dropped.
    struct Server {
        child: Child,
        home: PathBuf,
        api: String,
        base: String,
        admin: String,
    }

    impl Server {
        fn start(tag: &str) -> anyhow::Result<Self> {
            let home = std::env::temp_dir().join(format!(
                "polaris-bench-{tag}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            ));
            std::fs::create_dir_all(&home)?;
            let mut command = if pinned() {
                let mut c = Command::new("taskset");
                c.args(["-c", "0", env!("CARGO_BIN_EXE_polaris")]);
                c
            } else {
                Command::new(env!("CARGO_BIN_EXE_polaris"))
            };
            let mut child = command
                .args([
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--offline-after",
                    "45s",
                ])
                .env("POLARIS_HOME", &home)
                .env_remove("POLARIS_ALERT_WEBHOOK")
                .env_remove("POLARIS_ADMIN_TOKEN")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start polaris server")?;
            let base = listening_address(&mut child)?;
            let admin = std::fs::read_to_string(home.join("admin_token"))?
                .trim()
                .to_owned();
            Ok(Self {
                child,
                home,
                api: format!("{base}/api/v1"),
                base,
                admin,
            })
        }

        fn rss_mb(&self) -> anyhow::Result<f64> {
            support::rss_mb(self.child.id())
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.home);
        }
    }

    #[derive(Clone)]
    struct Miner {
        token: String,
        body: Arc<Value>,
    }

    fn fixture(name: &str) -> anyhow::Result<Value> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Registers `count` miners with `CONCURRENCY` requests in flight.
    async fn register(
        http: &reqwest::Client,
        server: &Server,
        count: usize,
    ) -> anyhow::Result<Vec<Miner>> {
        let registration = Arc::new(fixture("registration.json")?);
        let heartbeat = fixture("heartbeat.json")?;
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY.min(count) {
            let (http, url, admin) = (
                http.clone(),
                format!("{}/miners/", server.api),
                server.admin.clone(),
            );
            let (next, registration, heartbeat) = (
                Arc::clone(&next),
                Arc::clone(&registration),
                heartbeat.clone(),
            );
            workers.push(tokio::spawn(async move {
                let mut out = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let response = http
                        .post(&url)
                        .bearer_auth(&admin)
                        .json(&*registration)
                        .send()
                        .await?;
                    if response.status() != 201 {
                        bail!("registration answered {}", response.status());
                    }
                    let answer: Value = response.json().await?;
                    let id = answer["miner_id"].as_str().context("miner_id")?.to_owned();
                    let token = answer["token"].as_str().context("token")?.to_owned();
                    let mut body = heartbeat.clone();
                    body["metrics"]["miner_id"] = Value::String(id.clone());
                    out.push(Miner {
                        token,
                        body: Arc::new(body),
                    });
                }
                Ok(out)
            }));
        }
        let mut miners = Vec::with_capacity(count);
        for worker in workers {
            miners.extend(worker.await??);
        }
        Ok(miners)
    }

    /// What a load round measured.
    struct Round {
        requests: usize,
        elapsed: Duration,
        latencies: Vec<Duration>,
    }

    /// Whether the server runs on CPU 0 and this process on CPU 1 (see [`pin_self`]).
    fn pinned() -> bool {
        PINNED.load(Ordering::Relaxed)
    }

    static PINNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// Pins this process (and every thread it starts later) to CPU 1, so the server, pinned to
    /// CPU 0, has a core of its own and the load generator cannot steal it: the reference harness
    /// of `shared/reference/peers.md` §F. Needs two CPUs and `taskset`.
    pub(super) fn pin_self() {
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let ok = cpus >= 2
            && Command::new("taskset")
                .args(["-pc", "1", &std::process::id().to_string()])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
        PINNED.store(ok, Ordering::Relaxed);
    }

    /// Sends prepared HTTP/1.1 requests (round-robin over `requests`) on `CONCURRENCY` keep-alive
    /// connections for `length`. A hand-rolled client as lean as wrk, so the server, not the load
    /// generator, is what runs out of CPU.
    async fn load(
        addr: std::net::SocketAddr,
        requests: &Arc<Vec<Vec<u8>>>,
        length: Duration,
    ) -> anyhow::Result<Round> {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (requests, next) = (Arc::clone(requests), Arc::clone(&next));
            workers.push(tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = tokio::net::TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let mut buf = Vec::with_capacity(4096);
                let mut latencies = Vec::new();
                while started.elapsed() < length {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    stream.write_all(&requests[i % requests.len()]).await?;
                    let status = read_response(&mut stream, &mut buf).await?;
                    if status != 200 {
                        bail!("the server answered {status}");
                    }
                    latencies.push(sent.elapsed());
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for worker in workers {
            latencies.extend(worker.await??);
        }
        Ok(Round {
            requests: latencies.len(),
            elapsed: started.elapsed(),
            latencies,
        })
    }

    /// Reads one HTTP/1.1 response with a Content-Length body; returns its status.
    async fn read_response(
        stream: &mut tokio::net::TcpStream,
        buf: &mut Vec<u8>,
    ) -> anyhow::Result<u16> {
        use tokio::io::AsyncReadExt;
        buf.clear();
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end])?;
                let status = head
                    .split_whitespace()
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .context("no status line")?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .context("no content-length")?;
                while buf.len() < end + 4 + length {
                    if stream.read_buf(buf).await? == 0 {
                        bail!("connection closed mid-body");
                    }
                }
                return Ok(status);
            }
            if stream.read_buf(buf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    fn heartbeat_request(miner: &Miner) -> anyhow::Result<Vec<u8>> {
        let body = serde_json::to_string(&*miner.body)?;
        Ok(format!(
            "POST /api/v1/heart_beat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {}\r\nContent-Length: {}\r\n\r\n{body}",
            miner.token,
            body.len()
        )
        .into_bytes())
    }

    /// One heartbeat from every miner.
    async fn beat_all(
        http: &reqwest::Client,
        server: &Server,
        miners: &Arc<Vec<Miner>>,
    ) -> anyhow::Result<()> {
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (http, miners, next, url) = (
                http.clone(),
                Arc::clone(miners),
                Arc::clone(&next),
                format!("{}/heart_beat", server.api),
            );
            workers.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(miner) = miners.get(i) else {
                        return anyhow::Ok(());
                    };
                    let response = http
                        .post(&url)
                        .bearer_auth(&miner.token)
                        .json(&*miner.body)
                        .send()
                        .await?;
                    if response.status() != 200 {
                        bail!("heartbeat answered {}", response.status());
                    }
                }
            }));
        }
        for worker in workers {
            worker.await??;
        }
        Ok(())
    }

    async fn counter(http: &reqwest::Client, server: &Server, name: &str) -> anyhow::Result<f64> {
        let text = http
            .get(format!("{}/metrics", server.base))
            .send()
            .await?
            .text()
            .await?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("{name} missing from /metrics"))
    }

    fn percentile(sorted: &[Duration], p: f64) -> Duration {
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    fn verdict(ok: bool) -> &'static str {
        if ok { "met" } else { "MISSED" }
    }

    pub(super) async fn run() -> anyhow::Result<()> {
        let miners_n = knob("POLARIS_BENCH_MINERS", 1000)?;
        let steady_n = knob("POLARIS_BENCH_STEADY_MINERS", 2000)?;
        let steady_secs = knob("POLARIS_BENCH_STEADY_SECS", 70)?;
        let max_miners = knob("POLARIS_BENCH_MAX_MINERS", 100_000)?;
        let round = Duration::from_secs(knob("POLARIS_BENCH_ROUND_SECS", 2)? as u64);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY * 2)
            .build()?;

        // 1. Throughput and latency, heartbeats and /healthz in alternating rounds.
        eprintln!(
            "[1/3] throughput: {miners_n} miners, {CONCURRENCY} connections, {ROUNDS} × {round:?} rounds of each"
        );
        let server = Server::start("throughput")?;
        let addr: std::net::SocketAddr = server
            .base
            .trim_start_matches("http://")
            .parse()
            .context("server address")?;
        let miners = register(&http, &server, miners_n).await?;
        let beats_requests = Arc::new(
            miners
                .iter()
                .map(heartbeat_request)
                .collect::<anyhow::Result<Vec<_>>>()?,
        );
        let health_requests = Arc::new(vec![
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        ]);
        load(addr, &beats_requests, Duration::from_secs(1)).await?; // warm-up
        load(addr, &health_requests, Duration::from_secs(1)).await?;
        let (mut beats, mut beat_time, mut health, mut health_time) =
            (0, Duration::ZERO, 0, Duration::ZERO);
        let mut latencies = Vec::new();
        for _ in 0..ROUNDS {
            let r = load(addr, &beats_requests, round).await?;
            beats += r.requests;
            beat_time += r.elapsed;
            latencies.extend(r.latencies);
            let r = load(addr, &health_requests, round).await?;
            health += r.requests;
            health_time += r.elapsed;
        }
        drop(server);
        latencies.sort_unstable();
        let beat_rate = beats as f64 / beat_time.as_secs_f64();
        let health_rate = health as f64 / health_time.as_secs_f64();
        let ratio = beat_rate / health_rate;

        // 2. Steady state on the agent's cadence.
        eprintln!("[2/3] steady state: {steady_n} miners every 10 s ± 10 % for {steady_secs} s");
        let server = Server::start("steady")?;
        let steady = Arc::new(register(&http, &server, steady_n).await?);
        beat_all(&http, &server, &steady).await?; // first contact: every miner's first sample
        tokio::time::sleep(Duration::from_millis(500)).await;
        let names = [
            "polaris_heartbeats_received_total",
            "polaris_store_rows_total",
            "polaris_store_commits_total",
            "polaris_store_samples_dropped_total",
        ];
        let mut before = [0.0; 4];
        for (slot, name) in before.iter_mut().zip(names) {
            *slot = counter(&http, &server, name).await?;
        }
        let window = Duration::from_secs(steady_secs as u64);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, miner) in steady.iter().cloned().enumerate() {
            let (http, url) = (http.clone(), format!("{}/heart_beat", server.api));
            // Spread the miners over the interval, then each keeps its own jittered cadence.
            let offset = Duration::from_millis((i as u64 * 10_000) / steady_n.max(1) as u64);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut seed = i as u64 + 1;
                while started.elapsed() < window {
                    let response = http
                        .post(&url)
                        .bearer_auth(&miner.token)
                        .json(&*miner.body)
                        .send()
                        .await?;
                    if response.status() != 200 {
                        bail!("heartbeat answered {}", response.status());
                    }
                    // xorshift: a ±10 % jitter without pulling in a random-number crate here.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let jitter = 9_000 + seed % 2_001;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut after = [0.0; 4];
        for (slot, name) in after.iter_mut().zip(names) {
            *slot = counter(&http, &server, name).await?;
        }
        drop(server);
        let [hb, rows, commits, shed] = [0, 1, 2, 3].map(|i| after[i] - before[i]);

        // 3. Memory with many miners.
        eprintln!("[3/3] memory: 10000 then {max_miners} miners, two heartbeats each");
        let server = Server::start("memory")?;
        let mut all = Vec::new();
        let mut rss = Vec::new();
        for target in [10_000.min(max_miners), max_miners] {
            while all.len() < target {
                let batch = (target - all.len()).min(10_000);
                all.extend(register(&http, &server, batch).await?);
                eprintln!("      {} miners registered", all.len());
            }
            eprintln!("      RSS after registration: {:.1} MB", server.rss_mb()?);
            let shared = Arc::new(all);
            beat_all(&http, &server, &shared).await?;
            eprintln!(
                "      RSS after the first heartbeats: {:.1} MB",
                server.rss_mb()?
            );
            beat_all(&http, &server, &shared).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let dropped = counter(&http, &server, "polaris_store_samples_dropped_total").await?;
            rss.push((shared.len(), server.rss_mb()?, dropped));
            all = Arc::try_unwrap(shared).unwrap_or_else(|shared| (*shared).clone());
        }
        drop(server);

        println!();
        let setup = if pinned() {
            "server pinned to CPU 0, load generator to CPU 1"
        } else {
            "server and load generator share the CPUs (no taskset, or one CPU)"
        };
        println!("polaris heartbeat benchmark (release build; {setup})");
        println!(
            "throughput    heartbeats/s {beat_rate:>9.0}   /healthz/s {health_rate:>9.0}   ratio {ratio:.2} (goal >= 0.70: {})",
            verdict(ratio >= 0.7)
        );
        println!(
            "latency       heartbeat p50 {:.2} ms   p99 {:.2} ms   ({} requests, {miners_n} miners, {CONCURRENCY} connections)",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.len()
        );
        println!(
            "steady state  {steady_n} miners @ 10 s for {steady_secs} s: {hb:.0} heartbeats, {rows:.0} rows ({:.3}/heartbeat), {commits:.0} commits ({:.3}/heartbeat; goal <= 0.1 store writes/heartbeat: {}), {shed:.0} samples shed",
            rows / hb.max(1.0),
            commits / hb.max(1.0),
            verdict(commits / hb.max(1.0) <= 0.1)
        );
        for (n, mb, dropped) in &rss {
            let goal = if *n >= 100_000 {
                format!(" (goal <= 100 MB: {})", verdict(*mb <= 100.0))
            } else {
                String::new()
            };
            println!(
                "memory        RSS with {n:>6} miners heart-beating: {mb:.1} MB{goal} ({dropped:.0} samples shed during the bursts)"
            );
        }
        Ok(())
    }
}
