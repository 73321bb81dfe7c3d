//! Store benchmark of `polaris server` (release build): SQLite against Firestore, run with
//!
//! ```sh
//! cargo bench --bench store
//! ```
//!
//! It starts the real binary on a loopback port, once on SQLite (`--store sqlite`, the default),
//! once on the Firestore emulator (`--store firestore`, a project of its own) and, on the same
//! emulator, as two coordinators sharing one project (heartbeats alternating between them), and
//! prints side by side, all measured in this one run:
//!
//! 1. **Throughput**: heartbeats/s with `POLARIS_BENCH_MINERS` miners (default 500) on 32
//!    keep-alive connections for `POLARIS_BENCH_ROUND_SECS` (default 5 s). A heartbeat never
//!    waits for the store, so the stores should be close.
//! 2. **Steady state**: `POLARIS_BENCH_STEADY_MINERS` miners (default 1000) heart-beating on
//!    the agent's real cadence (every 10 s ± 10 %) for one sampling interval and 20 s (the
//!    default `--state-every`/`--metrics-every`: 80 s on SQLite, 620 s on Firestore, so every
//!    miner's samples are in the window; `POLARIS_BENCH_STEADY_SECS` sets one window for all),
//!    after one round of first contact that is not counted, the three stores at once (each a
//!    little load); from `/metrics`, the store's `polaris_store_documents_written_total` delta
//!    (summed over the coordinators) per 1 000 heartbeats: what Firestore bills. Goal: ≤ 100
//!    document writes per 1 000 heartbeats on Firestore (PASS/FAIL); SQLite's rows are shown
//!    for comparison.
//!
//! With two coordinators, the miners register on the first and are then introduced to the
//! second at 100 heartbeats a second (not counted): a coordinator looks up at most 200 miners
//! a second that it does not know yet, and answers 401 past that cap.
//!
//! The emulator is the one in `POLARIS_TEST_FIRESTORE` (`127.0.0.1:PORT`, as `scripts/test.sh`
//! exports it), else one this benchmark starts on a free loopback port (java and gcloud's
//! `cloud-firestore-emulator.jar`) and kills by PID at the end; without either, the Firestore
//! rows say why they are missing. The emulator shares the CPUs with the server and the load
//! generator, so compare the rows with each other, not with production Firestore's speed.

#[cfg(not(unix))]
fn main() {
    eprintln!("the store benchmark runs on Linux only");
}

#[cfg(unix)]
fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(bench::run())
}

#[cfg(unix)]
mod support;

#[cfg(unix)]
mod bench {
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use anyhow::{Context, bail};
    use serde_json::Value;

    use crate::support::{knob, listening_address};

    const CONCURRENCY: usize = 32;
    /// Goal: Firestore document writes per 1 000 heartbeats in the steady state.
    const GOAL_PER_1000: f64 = 100.0;

    fn free_port() -> anyhow::Result<u16> {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    }

    /// The Firestore emulator this benchmark started, killed by PID when dropped.
    struct Emulator {
        child: Child,
        addr: String,
    }

    impl Drop for Emulator {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// `GET http://addr/` answers `Ok` once the emulator is ready.
    fn emulator_ready(addr: &str) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if write!(stream, "GET / HTTP/1.1\r\nHost: {addr}\r\n\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 512];
        let n = stream.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        text.starts_with("HTTP/1.1 200") && text.trim_end().ends_with("Ok")
    }

    /// Starts an emulator on a free port (retrying on a clash), or says why it cannot.
    fn start_emulator() -> anyhow::Result<Emulator> {
        let output = Command::new("gcloud")
            .args(["info", "--format=value(installation.sdk_root)"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .context("gcloud cannot be run")?;
        let sdk = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let jar = PathBuf::from(&sdk)
            .join("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar");
        if sdk.is_empty() || !jar.exists() {
            bail!("no cloud-firestore-emulator.jar in gcloud's SDK ({sdk:?})");
        }
        for _ in 0..5 {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            let mut child = Command::new("java")
                .args(["-Xmx512m", "-Duser.language=en", "-cp"])
                .arg(&jar)
                .args([
                    "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                    "start",
                    "--host=127.0.0.1",
                    &format!("--port={port}"),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("java cannot be run")?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if child.try_wait()?.is_some() {
                    break; // the port was taken: another one
                }
                if emulator_ready(&addr) {
                    return Ok(Emulator { child, addr });
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("the emulator was not ready within 60 s");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        bail!("the emulator did not start on any of 5 free ports")
    }

    #[derive(Clone)]
    enum Store {
        Sqlite,
        Firestore { emulator: String, project: String },
    }

    /// A running server in a temporary POLARIS_HOME, stopped with SIGTERM (then SIGKILL) when
    /// dropped.
    struct Server {
        child: Child,
        home: PathBuf,
        api: String,
        base: String,
    }

    impl Server {
        fn start(store: &Store, replica: &str, admin: &str) -> anyhow::Result<Self> {
            let home = std::env::temp_dir().join(format!(
                "polaris-bench-store-{replica}-{}-{}",
                std::process::id(),
                chrono::Utc::now().timestamp_micros()
            ));
            std::fs::create_dir_all(&home)?;
            let mut command = Command::new(env!("CARGO_BIN_EXE_polaris"));
            command
                .args([
                    "server",
                    "--listen",
                    "127.0.0.1:0",
                    "--offline-after",
                    "45s",
                ])
                .env("POLARIS_HOME", &home)
                .env("POLARIS_ADMIN_TOKEN", admin)
                .env_remove("POLARIS_ALERT_WEBHOOK")
                .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
                .env_remove("FIRESTORE_EMULATOR_HOST");
            if let Store::Firestore { emulator, project } = store {
                command
                    .args(["--store", "firestore", "--firestore-project", project])
                    .args(["--replica", replica])
                    .env("FIRESTORE_EMULATOR_HOST", emulator);
            }
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("cannot start polaris server")?;
            let base = listening_address(&mut child)?;
            Ok(Self {
                child,
                home,
                api: format!("{base}/api/v1"),
                base,
            })
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

    struct Miner {
        token: String,
        body: Value,
    }

    fn fixture(name: &str) -> anyhow::Result<Value> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original")
            .join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }

    /// Registers `count` miners on `server` with `CONCURRENCY` requests in flight.
    async fn register(
        http: &reqwest::Client,
        server: &Server,
        admin: &str,
        count: usize,
    ) -> anyhow::Result<Vec<Miner>> {
        let registration = Arc::new(fixture("registration.json")?);
        let heartbeat = Arc::new(fixture("heartbeat.json")?);
        let next = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY.min(count) {
            let (http, url, admin) = (
                http.clone(),
                format!("{}/miners/", server.api),
                admin.to_owned(),
            );
            let (next, registration, heartbeat) = (
                Arc::clone(&next),
                Arc::clone(&registration),
                Arc::clone(&heartbeat),
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
                    let mut body = (*heartbeat).clone();
                    body["metrics"]["miner_id"] = Value::String(id);
                    out.push(Miner { token, body });
                }
                anyhow::Ok(out)
            }));
        }
        let mut miners = Vec::with_capacity(count);
        for worker in workers {
            miners.extend(worker.await??);
        }
        Ok(miners)
    }

    async fn beat(http: &reqwest::Client, api: &str, miner: &Miner) -> anyhow::Result<()> {
        let response = http
            .post(format!("{api}/heart_beat"))
            .bearer_auth(&miner.token)
            .json(&miner.body)
            .send()
            .await?;
        if response.status() != 200 {
            bail!("heartbeat answered {}", response.status());
        }
        Ok(())
    }

    /// One heartbeat from each miner to each of `others` (coordinators it did not register
    /// with), 100 a second: a coordinator looks up at most 200 unknown miners a second in the
    /// store and answers 401 past that, so a burst of miners new to it would be refused.
    async fn introduce(
        http: &reqwest::Client,
        others: &[Server],
        miners: &[Miner],
    ) -> anyhow::Result<()> {
        let mut pace = tokio::time::interval(Duration::from_millis(10));
        for server in others {
            for miner in miners {
                pace.tick().await;
                beat(http, &server.api, miner).await?;
            }
        }
        Ok(())
    }

    /// Heartbeats on `CONCURRENCY` connections for `length`, round-robin over the miners, the
    /// n-th heartbeat to server n mod the number of servers; returns heartbeats/s.
    async fn throughput(
        http: &reqwest::Client,
        apis: &Arc<Vec<String>>,
        miners: &Arc<Vec<Miner>>,
        length: Duration,
    ) -> anyhow::Result<f64> {
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..CONCURRENCY {
            let (http, apis, miners, next) = (
                http.clone(),
                Arc::clone(apis),
                Arc::clone(miners),
                Arc::clone(&next),
            );
            workers.push(tokio::spawn(async move {
                let mut sent = 0usize;
                while started.elapsed() < length {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    beat(&http, &apis[i % apis.len()], &miners[i % miners.len()]).await?;
                    sent += 1;
                }
                anyhow::Ok(sent)
            }));
        }
        let mut total = 0;
        for worker in workers {
            total += worker.await??;
        }
        Ok(total as f64 / started.elapsed().as_secs_f64())
    }

    /// A counter summed over the servers.
    async fn counter(
        http: &reqwest::Client,
        servers: &[Server],
        name: &str,
    ) -> anyhow::Result<f64> {
        let mut sum = 0.0;
        for server in servers {
            let text = http
                .get(format!("{}/metrics", server.base))
                .send()
                .await?
                .text()
                .await?;
            sum += text
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .with_context(|| format!("{name} missing from /metrics"))?;
        }
        Ok(sum)
    }

    /// Every miner beats every 10 s ± 10 % (spread over the first interval) for `window`,
    /// each beat to the next server in turn; returns (heartbeats, documents written).
    async fn steady(
        http: &reqwest::Client,
        servers: &[Server],
        miners: Vec<Miner>,
        window: Duration,
    ) -> anyhow::Result<(f64, f64)> {
        let apis: Arc<Vec<String>> = Arc::new(servers.iter().map(|s| s.api.clone()).collect());
        let miners: Vec<Arc<Miner>> = miners.into_iter().map(Arc::new).collect();
        // First contact (each miner's first state write) is not the steady state.
        for (i, miner) in miners.iter().enumerate() {
            beat(http, &apis[i % apis.len()], miner).await?;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let names = [
            "polaris_heartbeats_received_total",
            "polaris_store_documents_written_total",
        ];
        let before = [
            counter(http, servers, names[0]).await?,
            counter(http, servers, names[1]).await?,
        ];
        let n = miners.len().max(1) as u64;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (i, miner) in miners.into_iter().enumerate() {
            let (http, apis) = (http.clone(), Arc::clone(&apis));
            let offset = Duration::from_millis((i as u64 * 10_000) / n);
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                let mut seed = i as u64 + 1;
                let mut k = i;
                while started.elapsed() < window {
                    k += 1;
                    beat(&http, &apis[k % apis.len()], &miner).await?;
                    // xorshift: a ±10 % jitter without a random-number crate.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    tokio::time::sleep(Duration::from_millis(9_000 + seed % 2_001)).await;
                }
                anyhow::Ok(())
            }));
        }
        for task in tasks {
            task.await??;
        }
        let after = [
            counter(http, servers, names[0]).await?,
            counter(http, servers, names[1]).await?,
        ];
        Ok((after[0] - before[0], after[1] - before[1]))
    }

    struct Config {
        name: &'static str,
        store: Store,
        replicas: usize,
    }

    impl Config {
        /// The same kind of store, empty (a new project on the emulator).
        fn fresh(&self, tag: &str) -> Store {
            match &self.store {
                Store::Sqlite => Store::Sqlite,
                Store::Firestore { emulator, project } => Store::Firestore {
                    emulator: emulator.clone(),
                    project: format!("{project}-{tag}"),
                },
            }
        }

        fn is_firestore(&self) -> bool {
            matches!(self.store, Store::Firestore { .. })
        }

        fn start(&self, store: &Store, admin: &str) -> anyhow::Result<Vec<Server>> {
            (0..self.replicas)
                .map(|r| Server::start(store, &format!("r{r}"), admin))
                .collect()
        }
    }

    fn client() -> anyhow::Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .pool_max_idle_per_host(CONCURRENCY * 2)
            .build()?)
    }

    /// Heartbeats/s with `miners_n` miners for `round`, after a 1-s warm-up.
    async fn throughput_of(
        config: &Config,
        admin: &str,
        miners_n: usize,
        round: Duration,
    ) -> anyhow::Result<f64> {
        let http = client()?;
        let servers = config.start(&config.fresh("throughput"), admin)?;
        let apis = Arc::new(servers.iter().map(|s| s.api.clone()).collect::<Vec<_>>());
        let miners = register(&http, &servers[0], admin, miners_n).await?;
        introduce(&http, &servers[1..], &miners).await?;
        let miners = Arc::new(miners);
        throughput(&http, &apis, &miners, Duration::from_secs(1)).await?;
        throughput(&http, &apis, &miners, round).await
    }

    /// (heartbeats, documents written) in the steady state.
    async fn steady_of(
        config: &Config,
        admin: &str,
        steady_n: usize,
        window: Duration,
    ) -> anyhow::Result<(f64, f64)> {
        let http = client()?;
        let servers = config.start(&config.fresh("steady"), admin)?;
        let miners = register(&http, &servers[0], admin, steady_n).await?;
        introduce(&http, &servers[1..], &miners).await?;
        steady(&http, &servers, miners, window).await
    }

    pub(super) async fn run() -> anyhow::Result<()> {
        let miners_n = knob("POLARIS_BENCH_MINERS", 500)?;
        let steady_n = knob("POLARIS_BENCH_STEADY_MINERS", 1000)?;
        let round = Duration::from_secs(knob("POLARIS_BENCH_ROUND_SECS", 5)? as u64);
        // One sampling interval (the default --state-every and --metrics-every: 1 min on
        // SQLite, 10 min on Firestore) and two heartbeats more, so every miner's sample is in.
        let window_of = |config: &Config| -> anyhow::Result<Duration> {
            let default = if config.is_firestore() { 620 } else { 80 };
            Ok(Duration::from_secs(
                knob("POLARIS_BENCH_STEADY_SECS", default)? as u64,
            ))
        };
        let admin = format!(
            "bench-admin-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros()
        );

        let mut own_emulator = None;
        let emulator = match std::env::var("POLARIS_TEST_FIRESTORE") {
            Ok(addr) if !addr.trim().is_empty() => Ok(addr.trim().to_owned()),
            _ => match start_emulator() {
                Ok(started) => {
                    let addr = started.addr.clone();
                    own_emulator = Some(started);
                    Ok(addr)
                }
                Err(e) => Err(format!("{e:#}")),
            },
        };
        let mut configs = vec![Config {
            name: "sqlite",
            store: Store::Sqlite,
            replicas: 1,
        }];
        if let Ok(addr) = &emulator {
            for (name, replicas) in [("firestore", 1), ("firestore x2", 2)] {
                configs.push(Config {
                    name,
                    store: Store::Firestore {
                        emulator: addr.clone(),
                        project: format!(
                            "bench-r{replicas}-{}-{}",
                            std::process::id(),
                            chrono::Utc::now().timestamp_micros() % 1_000_000_000
                        ),
                    },
                    replicas,
                });
            }
        }

        // 1. Throughput, one store at a time: it is CPU-bound.
        let mut rates = Vec::new();
        for config in &configs {
            eprintln!(
                "[{}] throughput: {miners_n} miners, {CONCURRENCY} connections, {round:?}",
                config.name
            );
            rates.push(throughput_of(config, &admin, miners_n, round).await);
        }
        // 2. Steady state, all stores at once: 100 heartbeats/s each is little load, and a
        // window of a whole Firestore sampling interval is long.
        let configs = Arc::new(configs);
        let mut tasks = Vec::new();
        for i in 0..configs.len() {
            let (configs, admin) = (Arc::clone(&configs), admin.clone());
            let window = window_of(&configs[i])?;
            eprintln!(
                "[{}] steady state: {steady_n} miners every 10 s ± 10 % for {window:?}",
                configs[i].name
            );
            tasks.push(tokio::spawn(async move {
                let outcome = steady_of(&configs[i], &admin, steady_n, window).await;
                (window, outcome)
            }));
        }
        let mut steadies = Vec::new();
        for task in tasks {
            steadies.push(task.await?);
        }
        drop(own_emulator);

        println!();
        println!(
            "polaris store benchmark (release build; server, load generator and emulator share the CPUs)"
        );
        println!(
            "throughput: {miners_n} miners, {CONCURRENCY} connections, {round:?}; steady state: {steady_n} miners every 10 s ± 10 %, for one sampling interval"
        );
        println!(
            "{:<14} {:>13} {:>8} {:>18} {:>18} {:>27}",
            "store",
            "heartbeats/s",
            "window",
            "steady heartbeats",
            "documents written",
            "writes per 1000 heartbeats"
        );
        let mut failed = 0;
        for ((config, rate), (window, steady)) in configs.iter().zip(&rates).zip(&steadies) {
            let rate = match rate {
                Ok(rate) => format!("{rate:.0}"),
                Err(e) => {
                    failed += 1;
                    println!("{:<14} throughput FAILED: {e:#}", config.name);
                    "-".to_owned()
                }
            };
            let (heartbeats, documents) = match steady {
                Ok(numbers) => *numbers,
                Err(e) => {
                    failed += 1;
                    println!("{:<14} steady state FAILED: {e:#}", config.name);
                    continue;
                }
            };
            let per_1000 = 1000.0 * documents / heartbeats.max(1.0);
            let mark = if config.is_firestore() {
                let verdict = if per_1000 <= GOAL_PER_1000 {
                    "PASS"
                } else {
                    "FAIL"
                };
                format!("(goal <= {GOAL_PER_1000:.0}: {verdict})")
            } else {
                "(no goal: rows, for comparison)".to_owned()
            };
            println!(
                "{:<14} {:>13} {:>7}s {:>18.0} {:>18.0} {:>27.1} {mark}",
                config.name,
                rate,
                window.as_secs(),
                heartbeats,
                documents,
                per_1000
            );
        }
        if let Err(why) = &emulator {
            println!(
                "firestore      not measured: no emulator ({why}); set POLARIS_TEST_FIRESTORE or install it"
            );
        }
        if failed > 0 {
            bail!("{failed} measurement(s) failed");
        }
        Ok(())
    }
}
