//! The tunnel benchmark: our keeper (russh, in this process) against OpenSSH's `ssh -R` on the
//! same private OpenSSH relay, in one run.
//!
//! 1. Throughput through the relay's port to a local sink/source, upload (into the miner) and
//!    download, `POLARIS_BENCH_TUNNEL_MB` MB each way (default 512), best of three; OpenSSH
//!    with its default cipher (chacha20-poly1305) and with AES-256-GCM (what we prefer).
//!    Goal: ours ≥ 0.9× OpenSSH's default, each direction.
//! 2. Reconnect: the relay's session process is killed `POLARIS_BENCH_TUNNEL_TRIES` times
//!    (default 12); the time from the kill until bytes flow again through the new forward.
//!    Goal: p50 ≤ 2 s.
//!
//! Run: `cargo bench --bench tunnel` (needs `openssh-server` and `openssh-client`). Every number
//! comes from this run; nothing is remembered.

#[path = "../tests/common/relay_sshd.rs"]
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
    let tries = support::knob("POLARIS_BENCH_TUNNEL_TRIES", 12)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(megabytes as u64 * 1_000_000, tries))
}

async fn run(bytes: u64, tries: usize) -> anyhow::Result<()> {
    let home = tempfile::tempdir()?;
    let (key_path, _) = polaris::register::ssh_key::ensure(home.path())?;
    let public = std::fs::read_to_string(key_path.with_extension("pub"))?;
    let Some(relay) = RelaySshd::start(public.trim(), false)
        .map_err(|e| anyhow::anyhow!("cannot start the relay: {e}"))?
    else {
        bail!("the benchmark needs /usr/sbin/sshd (apt-get install -y openssh-server)");
    };
    let target = sink_source().await?;
    println!("polaris tunnel benchmark (release build, private OpenSSH relay on loopback)");
    println!("throughput: {} MB each way, best of 3", bytes / 1_000_000);

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

    let mut ratios = vec![];
    for (label, cipher) in [
        ("ssh -R (default cipher)", None),
        ("ssh -R -c aes256-gcm", Some("aes256-gcm@openssh.com")),
    ] {
        let (mut child, port) = openssh_forward(&relay, &key_path, &user, target, cipher)?;
        let theirs = best_of_three(port, bytes).await;
        let _ = child.kill();
        let _ = child.wait();
        let theirs = theirs?;
        print_row(label, theirs);
        ratios.push((label, ours.0 / theirs.0, ours.1 / theirs.1));
    }
    for (label, up, down) in &ratios {
        let verdict = |r: f64| if r >= 0.9 { "met" } else { "MISSED" };
        println!(
            "ratio vs {label}: upload {up:.2} ({}), download {down:.2} ({}) (goal >= 0.9)",
            verdict(*up),
            verdict(*down)
        );
    }

    let mut times = vec![];
    for n in 0..tries {
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
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let p50 = pick(0.5);
    println!(
        "reconnect after the relay's session is killed ({} tries): p50 {:.2} s, p95 {:.2} s, max {:.2} s (goal p50 <= 2 s: {})",
        times.len(),
        p50,
        pick(0.95),
        times.last().copied().unwrap_or_default(),
        if p50 <= 2.0 { "met" } else { "MISSED" }
    );
    cancel.cancel();
    let _ = keeper.await;
    Ok(())
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

/// `ssh -N -R 127.0.0.1:0:TARGET`: the child and the port the relay allocated.
fn openssh_forward(
    relay: &RelaySshd,
    key: &std::path::Path,
    user: &str,
    target: SocketAddr,
    cipher: Option<&str>,
) -> anyhow::Result<(Child, u16)> {
    let mut command = Command::new("ssh");
    command
        .args(["-N", "-R", &format!("127.0.0.1:0:{target}")])
        .args(["-p", &relay.port.to_string(), "-i"])
        .arg(key)
        .args([
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
    if let Some(cipher) = cipher {
        command.args(["-c", cipher]);
    }
    let mut child = command
        .arg(format!("{user}@127.0.0.1"))
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
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .context("ssh printed no allocated port within 20 s")?;
        if let Some(rest) = line.strip_prefix("Allocated port ") {
            let port = rest
                .split_whitespace()
                .next()
                .and_then(|p| p.parse().ok())
                .context("unreadable allocated port")?;
            return Ok((child, port));
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
