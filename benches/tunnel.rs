//! The tunnel benchmark: our keeper (russh, in this process) against OpenSSH's `ssh -R`, first
//! on a private OpenSSH relay, then on the built-in relay of `polaris server --relay-listen`,
//! in one run.
//!
//! 1. Throughput through the relay's port to a local sink/source, upload (into the miner) and
//!    download, `POLARIS_BENCH_TUNNEL_MB` MB each way (default 512), best of three; OpenSSH
//!    with its default cipher (chacha20-poly1305) and with AES-256-GCM (what we prefer).
//!    Goal: ours ≥ 0.9× OpenSSH's default, each direction.
//! 2. Reconnect, `POLARIS_BENCH_TUNNEL_TRIES` times (default 10): the time from killing the
//!    relay's side of the session until bytes flow again through the new forward. Each kill
//!    comes once the session has been up `tunnel::BACKOFF_RESETS_AFTER` (10 s), as unrelated
//!    drops do; kills back to back would measure the backoff's doubling instead. On OpenSSH
//!    the per-connection sshd process is killed; the built-in relay lives in one process, so
//!    the whole `polaris server` is killed with SIGKILL and started again on the same ports.
//!    Goal: p50 ≤ 2 s.
//!
//! Run: `cargo bench --bench tunnel` (needs `openssh-server` and `openssh-client`). Every number
//! comes from this run; nothing is remembered.

#[path = "../tests/it/common/relay_sshd.rs"]
#[allow(dead_code, unreachable_pub)]
mod relay_sshd;
mod support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use polaris::agent::tunnel::{self, Phase, State};
use relay_sshd::RelaySshd;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const CHUNK: usize = 256 << 10;

fn main() -> anyhow::Result<()> {
    let megabytes = support::knob("POLARIS_BENCH_TUNNEL_MB", 512)?;
    let tries = support::knob("POLARIS_BENCH_TUNNEL_TRIES", 10)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(megabytes as u64 * 1_000_000, tries))
}

async fn run(bytes: u64, tries: usize) -> anyhow::Result<()> {
    let target = sink_source().await?;
    println!("polaris tunnel benchmark (release build, relays on loopback)");
    println!(
        "throughput: {} MB each way, best of 3; reconnect: {tries} tries",
        bytes / 1_000_000
    );
    openssh_relay(bytes, tries, target).await?;
    builtin_relay(bytes, tries, target).await
}

/// Our keeper and `ssh -R` through a private OpenSSH sshd; reconnects after its session
/// process is killed.
async fn openssh_relay(bytes: u64, tries: usize, target: SocketAddr) -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let (key_path, _) = polaris::register::ssh_key::ensure(home.path())?;
    let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
    let Some(relay) = RelaySshd::start(public.trim(), false)
        .map_err(|e| anyhow::anyhow!("cannot start the relay: {e}"))?
    else {
        bail!("the benchmark needs /usr/sbin/sshd (apt-get install -y openssh-server)");
    };
    println!("\nOpenSSH relay (sshd on loopback)");
    let user = relay_sshd::whoami();
    let (state_tx, mut state) =
        watch::channel(State::new(&relay.keeper_config(home.path(), &user, target)));
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn(tunnel::run(
        relay.keeper_config(home.path(), &user, target),
        state_tx,
        cancel.clone(),
    ));
    let port = up(&mut state, 1).await?;
    let ours = best_of_three(port, bytes).await?;
    print_row("polaris (russh, aes256-gcm)", ours);
    let mut theirs = vec![];
    for (label, cipher) in CIPHERS {
        let ssh = Ssh {
            relay_port: relay.port,
            key: &key_path,
            user: &user,
            cipher,
        };
        // sshd wants the bind address; 0 asks it to choose the port.
        let (mut child, port) = ssh.forward(&format!("127.0.0.1:0:{target}"))?;
        let measured = best_of_three(port, bytes).await;
        let _ = child.kill();
        let _ = child.wait();
        let measured = measured?;
        print_row(label, measured);
        theirs.push((label, measured));
    }
    print_ratios(ours, &theirs);

    let mut times = vec![];
    for n in 0..tries {
        settle().await;
        let killed = Instant::now();
        if relay
            .kill_sessions()
            .map_err(|e| anyhow::anyhow!("kill: {e}"))?
            == 0
        {
            bail!("no session process to kill");
        }
        let port = up(&mut state, n as u64 + 2).await?;
        round_trip(port).await?;
        times.push(killed.elapsed().as_secs_f64());
    }
    print_reconnects("after the relay's session process is killed", times);
    cancel.cancel();
    let _ = keeper.await;
    Ok(())
}

/// Our keeper and `ssh -R` through `polaris server --relay-listen`; reconnects after the whole
/// server is killed and started again. `ssh -R` goes first: the relay gives one miner one
/// session, so the keeper would take the port over from it.
async fn builtin_relay(bytes: u64, tries: usize, target: SocketAddr) -> anyhow::Result<()> {
    let miner_home = tempfile::tempdir()?;
    let (key_path, _) = polaris::register::ssh_key::ensure(miner_home.path())?;
    let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
    let mut server = BuiltinRelay::start()?;
    println!(
        "\nbuilt-in relay (polaris server --relay-listen, host key {})",
        server.fingerprint
    );
    let api = server.register(public.trim()).await?;
    let user = "miner";
    let mut theirs = vec![];
    for (label, cipher) in CIPHERS {
        let ssh = Ssh {
            relay_port: server.relay_port,
            key: &key_path,
            user,
            cipher,
        };
        let (mut child, port) = ssh.forward(&format!("0:{target}"))?;
        let measured = best_of_three(port, bytes).await;
        let _ = child.kill();
        let _ = child.wait();
        theirs.push((label, measured?));
    }

    let config = tunnel::Config {
        home: miner_home.path().to_owned(),
        relay: tunnel::RelayAddress {
            user: user.to_owned(),
            host: "127.0.0.1".to_owned(),
            port: server.relay_port,
        },
        remote_port: 0,
        target: target.to_string(),
        pinned_host_key: Some(server.fingerprint.clone()),
        key_path,
        password: None,
        advertised_user: "renter".to_owned(),
        server_url: api,
        keepalive_interval: Duration::from_secs(5),
        keepalive_max: 3,
        probe_interval: Duration::from_secs(30),
    };
    let (state_tx, mut state) = watch::channel(State::new(&config));
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn(tunnel::run(config, state_tx, cancel.clone()));
    let port = up(&mut state, 1).await?;
    let ours = best_of_three(port, bytes).await?;
    print_row("polaris (russh, aes256-gcm)", ours);
    for (label, measured) in &theirs {
        print_row(label, *measured);
    }
    print_ratios(ours, &theirs);

    let mut times = vec![];
    for n in 0..tries {
        settle().await;
        let killed = Instant::now();
        server.restart()?;
        let again = up(&mut state, n as u64 + 2).await?;
        if again != port {
            bail!("the relay gave port {again} after a restart, not {port}");
        }
        round_trip(again).await?;
        times.push(killed.elapsed().as_secs_f64());
    }
    print_reconnects("after the relay is killed and restarted", times);
    cancel.cancel();
    let _ = keeper.await;
    Ok(())
}

/// Lets the session stay up long enough to reset the keeper's backoff (not counted).
async fn settle() {
    tokio::time::sleep(tunnel::BACKOFF_RESETS_AFTER + Duration::from_millis(300)).await;
}

/// What `ssh -R` is measured with.
const CIPHERS: [(&str, Option<&str>); 2] = [
    ("ssh -R (default cipher)", None),
    ("ssh -R -c aes256-gcm", Some("aes256-gcm@openssh.com")),
];

fn print_ratios(ours: (f64, f64), theirs: &[(&str, (f64, f64))]) {
    let verdict = |r: f64| if r >= 0.9 { "met" } else { "MISSED" };
    for (label, (up, down)) in theirs {
        let (up, down) = (ours.0 / up, ours.1 / down);
        println!(
            "ratio vs {label}: upload {up:.2} ({}), download {down:.2} ({}) (goal >= 0.9)",
            verdict(up),
            verdict(down)
        );
    }
}

fn print_reconnects(what: &str, mut times: Vec<f64>) {
    if times.is_empty() {
        return;
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let p50 = pick(0.5);
    println!(
        "reconnect {what} ({} tries): p50 {:.2} s, p95 {:.2} s, max {:.2} s (goal p50 <= 2 s: {})",
        times.len(),
        p50,
        pick(0.95),
        times.last().copied().unwrap_or_default(),
        if p50 <= 2.0 { "met" } else { "MISSED" }
    );
}

/// `polaris server` with its relay, in a home of its own; SIGKILLed when dropped.
struct BuiltinRelay {
    home: tempfile::TempDir,
    child: Child,
    /// `host:port` of the API, kept across restarts.
    listen: String,
    relay_port: u16,
    ports: String,
    fingerprint: String,
}

impl BuiltinRelay {
    fn start() -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        // 0 twice: the first start picks free ports, and restarts ask for the same ones.
        let ports = free_range()?;
        let (child, listen, relay_port, fingerprint) =
            Self::spawn(home.path(), "127.0.0.1:0", "127.0.0.1:0", &ports)?;
        Ok(Self {
            home,
            child,
            listen,
            relay_port,
            ports,
            fingerprint,
        })
    }

    /// `(child, API host:port, relay port, host key fingerprint)` from what the server prints.
    fn spawn(
        home: &std::path::Path,
        listen: &str,
        relay: &str,
        ports: &str,
    ) -> anyhow::Result<(Child, String, u16, String)> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_polaris"))
            .args(["server", "--listen", listen, "--relay-listen", relay])
            .args(["--relay-ports", ports])
            .env("POLARIS_HOME", home)
            .env_remove("POLARIS_ALERT_WEBHOOK")
            .env_remove("POLARIS_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start polaris server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let (mut api, mut relay) = (None, None);
        while api.is_none() || relay.is_none() {
            let line = lines
                .next()
                .context("the server exited before both listening lines")??;
            if let Some(rest) = line.strip_prefix("polaris server listening on http://") {
                api = rest.split_whitespace().next().map(str::to_owned);
            } else if let Some(rest) = line.strip_prefix("relay listening on ") {
                relay = Some(rest.to_owned());
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let (api, relay) = (api.context("no API address")?, relay.context("no relay")?);
        // `ADDR (host key SHA256:…), ports A-B`
        let port = relay
            .split_whitespace()
            .next()
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .context("no relay port")?;
        let fingerprint = relay
            .split("(host key ")
            .nth(1)
            .and_then(|rest| rest.split(')').next())
            .context("no host key")?
            .to_owned();
        Ok((child, api, port, fingerprint))
    }

    /// Registers a miner with the original body and `relay_key`; the API's URL.
    async fn register(&self, public_key: &str) -> anyhow::Result<reqwest::Url> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original/registration.json");
        let mut body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path)?.replace("MINER_ID", ""))?;
        body["relay_key"] = public_key.into();
        let api = reqwest::Url::parse(&format!("http://{}/api/v1/", self.listen))?;
        reqwest::Client::new()
            .post(api.join("miners/")?)
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("the coordinator refused the registration")?;
        Ok(reqwest::Url::parse(&format!(
            "http://{}/api/v1",
            self.listen
        ))?)
    }

    /// SIGKILL, then the same command on the same ports and home.
    fn restart(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let relay = format!("127.0.0.1:{}", self.relay_port);
        let (child, _, _, fingerprint) =
            Self::spawn(self.home.path(), &self.listen, &relay, &self.ports)?;
        self.child = child;
        if fingerprint != self.fingerprint {
            bail!("the relay's host key changed across a restart");
        }
        Ok(())
    }
}

impl Drop for BuiltinRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `A-B`: 40 ports starting at one that was free a moment ago.
fn free_range() -> anyhow::Result<String> {
    let first = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port()
        .clamp(10_000, 60_000);
    Ok(format!("{first}-{}", first + 39))
}

/// Waits for session `n` to be up; its relay port.
async fn up(state: &mut watch::Receiver<State>, n: u64) -> anyhow::Result<u16> {
    let waited = state.wait_for(|s| s.sessions >= n && s.is_up());
    let state = tokio::time::timeout(Duration::from_secs(30), waited)
        .await
        .context("the tunnel did not come up within 30 s")??
        .clone();
    match state.phase {
        Phase::Up { port, .. } => Ok(port),
        _ => bail!("not up"),
    }
}

/// How `ssh -R` logs in to a relay: with the miner's key, trusting any host key (the relay is
/// ours, on loopback), nothing from the user's own configuration.
struct Ssh<'a> {
    relay_port: u16,
    key: &'a std::path::Path,
    user: &'a str,
    cipher: Option<&'a str>,
}

impl Ssh<'_> {
    /// `ssh -N -R SPEC`: the child and the port the relay allocated.
    fn forward(&self, spec: &str) -> anyhow::Result<(Child, u16)> {
        let mut command = Command::new("ssh");
        command
            .args(["-F", "/dev/null", "-N", "-R", spec])
            .args(["-p", &self.relay_port.to_string(), "-i"])
            .arg(self.key)
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "ExitOnForwardFailure=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=INFO",
            ]);
        if let Some(cipher) = self.cipher {
            command.args(["-c", cipher]);
        }
        let mut child = command
            .arg(format!("{}@127.0.0.1", self.user))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run ssh (apt-get install -y openssh-client)")?;
        let stderr = child.stderr.take().context("no stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut said = vec![];
        loop {
            let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            else {
                let _ = child.kill();
                let _ = child.wait();
                bail!("ssh printed no allocated port within 20 s: {said:?}");
            };
            if let Some(rest) = line.strip_prefix("Allocated port ") {
                let port = rest
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .context("unreadable allocated port")?;
                return Ok((child, port));
            }
            said.push(line);
        }
    }
}

/// A target that, per connection, reads a command line: `U` swallows everything and answers
/// the count when the writer is done; `D N` sends N bytes.
async fn sink_source() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = socket.set_nodelay(true);
                let mut socket = tokio::io::BufReader::new(socket);
                let mut command = String::new();
                if socket.read_line(&mut command).await.is_err() {
                    return;
                }
                let mut buffer = vec![0u8; CHUNK];
                match command.trim().split_once(' ') {
                    Some(("D", n)) => {
                        let mut left: u64 = n.parse().unwrap_or(0);
                        while left > 0 {
                            let n = left.min(CHUNK as u64) as usize;
                            if socket.get_mut().write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                            left -= n as u64;
                        }
                        let _ = socket.get_mut().shutdown().await;
                    }
                    _ if command.starts_with('E') => {
                        let _ = socket.get_mut().write_all(b"E\n").await;
                    }
                    _ => {
                        let mut total = 0u64;
                        while let Ok(n) = socket.read(&mut buffer).await {
                            if n == 0 {
                                break;
                            }
                            total += n as u64;
                        }
                        let _ = socket.get_mut().write_all(&total.to_be_bytes()).await;
                    }
                }
            });
        }
    });
    Ok(address)
}

/// Upload and download MB/s through `port`, best of three each.
async fn best_of_three(port: u16, bytes: u64) -> anyhow::Result<(f64, f64)> {
    let (mut up, mut down) = (0f64, 0f64);
    for _ in 0..3 {
        up = up.max(upload(port, bytes).await?);
        down = down.max(download(port, bytes).await?);
    }
    Ok((up, down))
}

async fn upload(port: u16, bytes: u64) -> anyhow::Result<f64> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
    socket.set_nodelay(true)?;
    socket.write_all(b"U\n").await?;
    let chunk = vec![5u8; CHUNK];
    let started = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        socket.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    socket.shutdown().await?;
    let mut count = [0u8; 8];
    socket
        .read_exact(&mut count)
        .await
        .context("the sink did not answer its count")?;
    let seconds = started.elapsed().as_secs_f64();
    if u64::from_be_bytes(count) != bytes {
        bail!(
            "the sink got {} of {bytes} bytes",
            u64::from_be_bytes(count)
        );
    }
    Ok(bytes as f64 / seconds / 1e6)
}

async fn download(port: u16, bytes: u64) -> anyhow::Result<f64> {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
    socket.set_nodelay(true)?;
    socket.write_all(format!("D {bytes}\n").as_bytes()).await?;
    let mut buffer = vec![0u8; CHUNK];
    let started = Instant::now();
    let mut total = 0u64;
    loop {
        let n = socket.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    if total != bytes {
        bail!("got {total} of {bytes} bytes");
    }
    Ok(bytes as f64 / seconds / 1e6)
}

/// One small exchange through `port`: proof that the forward carries bytes again.
async fn round_trip(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = async {
            let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
            socket.write_all(b"E\n").await?;
            let mut answer = [0u8; 2];
            socket.read_exact(&mut answer).await?;
            anyhow::ensure!(&answer == b"E\n", "wrong answer");
            Ok::<(), anyhow::Error>(())
        };
        match tokio::time::timeout(Duration::from_secs(2), attempt).await {
            Ok(Ok(())) => return Ok(()),
            _ if Instant::now() > deadline => bail!("no round trip through port {port}"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn print_row(label: &str, (up, down): (f64, f64)) {
    println!("  {label:<30} upload {up:>7.0} MB/s   download {down:>7.0} MB/s");
}
