//! The tunnel keeper against Debian's OpenSSH server as the relay (tests/it/common/relay_sshd.rs):
//! bytes round-trip from the relay's port to a local echo server, the tunnel comes back after
//! its session is killed, after the relay restarts and after the relay hangs, a relay with
//! another host key is refused before we log in, a password works where the key is refused, and
//! a saturating two-way transfer does not wedge the session. Times are printed, not asserted
//! (the benchmark measures them; see README "Benchmarks").

#![cfg(target_os = "linux")]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::relay_sshd::{self, RelaySshd};
use crate::common::services::missing_service;
use crate::common::{self, TestResult};
use polaris::agent::tunnel::{self, Config, Phase, State};
use polaris::config::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error>;

/// The agent's key in `home`, made as registration makes it; returns its public line.
fn agent_key(home: &Path) -> Result<String, Error> {
    let (path, _) = polaris::register::ssh_key::ensure(home)?;
    Ok(std::fs::read_to_string(path.with_extension("pub"))?
        .trim()
        .to_owned())
}

/// A keeper running in this process; stopped when dropped.
struct Keeper {
    state: watch::Receiver<State>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Keeper {
    fn start(config: Config) -> Self {
        let (tx, state) = watch::channel(State::new(&config));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(tunnel::run(config, tx, cancel.clone()));
        Self {
            state,
            cancel,
            task: Some(task),
        }
    }

    async fn until(
        &mut self,
        limit: Duration,
        what: impl Fn(&State) -> bool,
    ) -> Result<State, Error> {
        let outcome = {
            let waited = self.state.wait_for(|s| what(s));
            tokio::time::timeout(limit, waited)
                .await
                .map(|state| state.map(|s| s.clone()))
        };
        match outcome {
            Ok(state) => Ok(state?),
            Err(_) => Err(format!(
                "not within {limit:?}; the tunnel is: {}",
                self.state.borrow().headline(chrono::Utc::now())
            )
            .into()),
        }
    }

    /// Waits for session number `n` to be up; returns its relay port.
    async fn up(&mut self, n: u64, limit: Duration) -> Result<u16, Error> {
        let state = self.until(limit, |s| s.sessions >= n && s.is_up()).await?;
        match state.phase {
            Phase::Up { port, .. } => Ok(port),
            _ => Err("not up".into()),
        }
    }

    async fn stop(mut self) -> Result<(), Error> {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task).await??;
        }
        Ok(())
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A target that echoes, or (after a first byte `S`) sends and swallows as fast as it can.
async fn target() -> Result<SocketAddr, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve(socket));
        }
    });
    Ok(address)
}

async fn serve(mut socket: TcpStream) {
    let mut first = [0u8; 1];
    if socket.read_exact(&mut first).await.is_err() {
        return;
    }
    if first[0] == b'S' {
        let (mut read, mut write) = socket.into_split();
        let sink = tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 << 10];
            while matches!(read.read(&mut buffer).await, Ok(n) if n > 0) {}
        });
        let chunk = vec![7u8; 64 << 10];
        while write.write_all(&chunk).await.is_ok() {}
        sink.abort();
        return;
    }
    let mut buffer = vec![0u8; 16 << 10];
    if socket.write_all(&first).await.is_err() {
        return;
    }
    while let Ok(n) = socket.read(&mut buffer).await {
        if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
            return;
        }
    }
}

/// Whether the relay's `port` stops accepting within 5 s (sshd closes it as its session ends).
async fn port_closes(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Sends a line through the relay's port and reads it back.
async fn round_trip(port: u16, text: &str) -> Result<(), Error> {
    let work = async {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
        socket.write_all(text.as_bytes()).await?;
        let mut back = vec![0u8; text.len()];
        socket.read_exact(&mut back).await?;
        if back != text.as_bytes() {
            return Err::<(), Error>(format!("sent {text:?}, got {back:?}").into());
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .map_err(|_| format!("no echo through 127.0.0.1:{port} within 10 s"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_flow_and_the_tunnel_comes_back_after_a_killed_session_a_restart_and_a_hang()
-> TestResult {
    let home = tempfile::tempdir()?;
    let key = agent_key(home.path())?;
    let Some(mut relay) = RelaySshd::start(&key, false)? else {
        return Ok(());
    };
    let target = target().await?;
    let mut probing = relay.keeper_config(home.path(), &relay_sshd::whoami(), target);
    probing.probe_interval = Duration::from_millis(300);
    let mut keeper = Keeper::start(probing);
    let port = keeper.up(1, Duration::from_secs(20)).await?;
    round_trip(port, "hello through the relay").await?;
    keeper
        .until(Duration::from_secs(10), |s| s.last_probe.is_some())
        .await
        .map_err(|e| format!("a probe goes through the tunnel and back: {e}"))?;
    let state = keeper.state.borrow().clone();
    assert_eq!(state.host_key, Some(relay.fingerprint()?), "{state:?}");
    let known_hosts = std::fs::read_to_string(home.path().join("keys/known_hosts"))?;
    assert!(
        known_hosts.contains(&format!("[127.0.0.1]:{}", relay.port)),
        "learned on first use: {known_hosts}"
    );
    if let Phase::Up { address, .. } = &state.phase {
        assert_eq!(address, &format!("ssh://renter@127.0.0.1:{port}"));
    }

    let killed_at = Instant::now();
    assert!(relay.kill_sessions()? > 0, "a session process to kill");
    let port = keeper.up(2, Duration::from_secs(20)).await?;
    println!(
        "tunnel back {:?} after its sshd session was killed",
        killed_at.elapsed()
    );
    round_trip(port, "hello after a killed session").await?;

    let restarted_at = Instant::now();
    relay.restart()?;
    let port = keeper.up(3, Duration::from_secs(20)).await?;
    println!(
        "tunnel back {:?} after the relay daemon restarted",
        restarted_at.elapsed()
    );
    round_trip(port, "hello after a restart").await?;

    let frozen_at = Instant::now();
    relay.freeze_sessions(true)?;
    keeper
        .until(Duration::from_secs(30), |s| !s.is_up())
        .await
        .map_err(|e| format!("a hung relay must be noticed within 30 s: {e}"))?;
    println!("a hung relay noticed after {:?}", frozen_at.elapsed());
    let port = keeper.up(4, Duration::from_secs(20)).await?;
    relay.freeze_sessions(false)?;
    round_trip(port, "hello after a hang").await?;

    keeper.stop().await?;
    assert!(
        port_closes(port).await,
        "a stopped keeper closes its session and with it the relay's port"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_host_key_is_not_the_trusted_one_is_never_logged_in_to() -> TestResult {
    let home = tempfile::tempdir()?;
    let key = agent_key(home.path())?;
    let Some(mut relay) = RelaySshd::start(&key, false)? else {
        return Ok(());
    };
    let target = target().await?;
    let logins = |relay: &RelaySshd| relay.log().matches("Accepted publickey").count();

    // Pinned to the right key: up, and nothing learned (the pin decides).
    let mut pinned = relay.keeper_config(home.path(), &relay_sshd::whoami(), target);
    pinned.pinned_host_key = Some(relay.fingerprint()?);
    let mut keeper = Keeper::start(pinned.clone());
    keeper.up(1, Duration::from_secs(20)).await?;
    keeper.stop().await?;
    assert!(!home.path().join("keys/known_hosts").exists());

    // Pinned to another key: stopped for good, before logging in.
    let before = logins(&relay);
    pinned.pinned_host_key = Some("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s".to_owned());
    let mut keeper = Keeper::start(pinned);
    let state = keeper
        .until(Duration::from_secs(20), |s| {
            matches!(s.phase, Phase::Stopped { .. })
        })
        .await?;
    assert!(
        state
            .headline(chrono::Utc::now())
            .contains("not the pinned"),
        "{state:?}"
    );
    keeper.stop().await?;

    // Trust on first use, then the relay's key changes: stopped for good, never logged in.
    let mut keeper = Keeper::start(relay.keeper_config(home.path(), &relay_sshd::whoami(), target));
    keeper.up(1, Duration::from_secs(20)).await?;
    keeper.stop().await?;
    let learned = logins(&relay);
    assert_eq!(learned, before + 1, "one login while trusting on first use");
    relay.new_host_key()?;
    relay.restart()?;
    let mut keeper = Keeper::start(relay.keeper_config(home.path(), &relay_sshd::whoami(), target));
    let state = keeper
        .until(Duration::from_secs(20), |s| {
            matches!(s.phase, Phase::Stopped { .. })
        })
        .await?;
    let headline = state.headline(chrono::Utc::now());
    assert!(headline.contains("CHANGED"), "{headline}");
    assert!(
        headline.contains("known_hosts"),
        "says which file: {headline}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state.sessions, 0);
    assert_eq!(
        logins(&relay),
        learned,
        "no login to a relay with a changed key"
    );
    keeper.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_only_takes_a_password_gets_ssh_password_which_is_written_nowhere()
-> TestResult {
    let home = tempfile::tempdir()?;
    agent_key(home.path())?;
    // The relay knows another key, not ours: only the password can get in.
    let stranger = tempfile::tempdir()?;
    let Some(relay) = RelaySshd::start(&agent_key(stranger.path())?, true)? else {
        return Ok(());
    };
    if relay_sshd::whoami() != "root" || !relay_sshd::password_user_exists() {
        missing_service(
            "relay test account",
            "password logins need sshd running as root and the account made by \
             tests/fixtures/make-relay-user.sh (.ci/run makes it)",
        );
        return Ok(());
    }
    let target = target().await?;
    let mut with_password = relay.keeper_config(home.path(), relay_sshd::PASSWORD_USER, target);
    with_password.password = Some(Secret::new(relay_sshd::PASSWORD));
    let mut keeper = Keeper::start(with_password.clone());
    let port = keeper.up(1, Duration::from_secs(20)).await?;
    round_trip(port, "hello with a password").await?;
    keeper.stop().await?;
    assert!(relay.log().contains("Accepted password"), "{}", relay.log());

    // Without the password the same relay refuses us, and says what to do.
    with_password.password = None;
    let mut keeper = Keeper::start(with_password);
    let state = keeper
        .until(Duration::from_secs(20), |s| {
            matches!(s.phase, Phase::Down { .. })
        })
        .await?;
    let headline = state.headline(chrono::Utc::now());
    assert!(headline.contains("SSH_PASSWORD"), "{headline}");
    keeper.stop().await?;

    for entry in common::files_under(home.path()) {
        let bytes = std::fs::read(&entry)?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(relay_sshd::PASSWORD),
            "{} holds the password",
            entry.display()
        );
    }
    Ok(())
}

/// A relay that allows remote forwards only refuses the probe through the tunnel: that refusal
/// is an answer, so the tunnel stays up on the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_refuses_probes_keeps_the_tunnel_up() -> TestResult {
    let home = tempfile::tempdir()?;
    let key = agent_key(home.path())?;
    let Some(mut relay) = RelaySshd::start(&key, false)? else {
        return Ok(());
    };
    relay.remote_forwarding_only()?;
    relay.restart()?;
    let target = target().await?;
    let mut config = relay.keeper_config(home.path(), &relay_sshd::whoami(), target);
    config.probe_interval = Duration::from_millis(300);
    let mut keeper = Keeper::start(config);
    let port = keeper.up(1, Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    round_trip(port, "hello without probes").await?;
    let state = keeper.state.borrow().clone();
    assert!(state.is_up() && state.sessions == 1, "{state:?}");
    assert_eq!(state.last_probe, None, "no probe went through");
    keeper.stop().await?;
    Ok(())
}

/// Both directions saturated at once for 30 s (the load that wedged russh sessions in 3 of 6
/// runs before the channel was split and drained): echoes through the same tunnel keep coming
/// back within seconds, and the session never has to be replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturating_two_way_transfer_does_not_wedge_the_session() -> TestResult {
    let home = tempfile::tempdir()?;
    let key = agent_key(home.path())?;
    let Some(relay) = RelaySshd::start(&key, false)? else {
        return Ok(());
    };
    let target = target().await?;
    let mut keeper = Keeper::start(relay.keeper_config(home.path(), &relay_sshd::whoami(), target));
    let port = keeper.up(1, Duration::from_secs(20)).await?;
    let (sent, received) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut streams = vec![];
    for _ in 0..4 {
        let mut socket = TcpStream::connect(("127.0.0.1", port)).await?;
        socket.write_all(b"S").await?;
        let (mut read, mut write) = socket.into_split();
        let (sent, received) = (sent.clone(), received.clone());
        streams.push(tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 << 10];
            while let Ok(n) = read.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                received.fetch_add(n as u64, Ordering::Relaxed);
            }
        }));
        streams.push(tokio::spawn(async move {
            let chunk = vec![9u8; 64 << 10];
            while write.write_all(&chunk).await.is_ok() {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let started = Instant::now();
    let mut echoes = 0;
    while started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        if let Err(e) = round_trip(port, "still there?").await {
            // What the keeper says of its session, so a failure here shows why it ended.
            let state = keeper.state.borrow().clone();
            return Err(format!(
                "an echo failed {:?} into the transfer: {e}; the keeper: {} ({} sessions)",
                started.elapsed(),
                state.headline(chrono::Utc::now()),
                state.sessions
            )
            .into());
        }
        echoes += 1;
    }
    let (up, down) = (
        sent.load(Ordering::Relaxed),
        received.load(Ordering::Relaxed),
    );
    println!(
        "30 s two-way: {:.0} MB/s up, {:.0} MB/s down, {echoes} echoes on time",
        up as f64 / 30e6,
        down as f64 / 30e6
    );
    assert!(
        up > 0 && down > 0,
        "both directions moved: {up} up, {down} down"
    );
    assert_eq!(
        keeper.state.borrow().sessions,
        1,
        "the session was never replaced"
    );
    assert!(keeper.state.borrow().is_up());
    for stream in streams {
        stream.abort();
    }
    keeper.stop().await?;
    Ok(())
}

/// `polaris start` with POLARIS_RELAY set: `polaris status` shows the tunnel up with its port,
/// the coordinator's record of the miner carries the advertised address, and `polaris stop`
/// closes the tunnel (the relay's port no longer accepts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polaris_start_keeps_the_tunnel_advertises_it_and_stop_closes_it() -> TestResult {
    let (_server_home, server) = common::coordinator()?;
    let http = reqwest::Client::new();
    let (miner_id, token) = common::register(&http, &server).await?;
    let home = tempfile::tempdir()?;
    common::save_registration(
        home.path(),
        &server.api,
        &miner_id,
        token.clone(),
        "tunnel-test",
    )?;
    let key = agent_key(home.path())?;
    let Some(relay) = RelaySshd::start(&key, false)? else {
        return Ok(());
    };
    let target = target().await?;
    let polaris = |args: &[&str]| {
        let mut command = common::polaris(home.path());
        command
            .args(args)
            .env("SERVER_URL", &server.api)
            .env(
                "POLARIS_RELAY",
                format!("ssh://{}@127.0.0.1:{}", relay_sshd::whoami(), relay.port),
            )
            .env("POLARIS_TUNNEL_TARGET", target.to_string())
            .env("SSH_USER", "renter");
        command
    };
    let started = polaris(&["start"]).output()?;
    assert!(started.status.success(), "{started:?}");

    let deadline = Instant::now() + Duration::from_secs(30);
    let (status, port) = loop {
        let output = polaris(&["status", "--json"]).output()?;
        let status: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let tunnel = &status["polaris"]["tunnel"];
        if tunnel["state"] == "up" {
            let port = tunnel["port"].as_u64().ok_or("no port")? as u16;
            break (output, port);
        }
        if Instant::now() > deadline {
            return Err(format!("the tunnel did not come up: {status:#}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.status.code(), Some(0), "up: healthy");
    let text = String::from_utf8(polaris(&["status"]).output()?.stdout)?;
    let address = format!("ssh://renter@127.0.0.1:{port}");
    assert!(text.contains(&format!("tunnel up at {address}")), "{text}");
    round_trip(port, "hello through polaris start").await?;

    let pod_url = format!("{}/miners/{miner_id}", server.api);
    let advertised = common::wait_for(Duration::from_secs(15), || async {
        let (_, pod) = common::get(&http, &pod_url, &token).await.ok()?;
        (pod["network"]["ssh"] == address.as_str()).then_some(pod)
    })
    .await;
    assert!(
        advertised.is_some(),
        "the coordinator's record shows {address}"
    );

    let stopped = polaris(&["stop"]).output()?;
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(
        port_closes(port).await,
        "polaris stop closes the relay's port"
    );
    Ok(())
}
