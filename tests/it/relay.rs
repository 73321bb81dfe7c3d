//! The built-in relay of `polaris server --relay-listen`, driven with Debian's OpenSSH client
//! (`ssh -N -R 0:…`, as any miner could) and with our own tunnel keeper: only registered miners'
//! keys log in, ports come from POLARIS_RELAY_PORTS and stay the same across reconnects, a
//! frozen miner's port is freed within 45 s, and every request but the one forward is refused.

#![cfg(target_os = "linux")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::services::{free_port, missing_service};
use crate::common::{self, Server, TestResult, get};
use polaris::agent::tunnel::{self, Phase, State};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

type Error = Box<dyn std::error::Error>;

/// Ports the tests' relays give out: a block of 40 starting at a port that was free.
fn port_range() -> Result<(u16, u16), Error> {
    let first = free_port()?.clamp(10_000, 60_000);
    Ok((first, first + 39))
}

/// A coordinator with its relay on loopback; returns it, the relay's port and the host key
/// fingerprint it printed.
fn start_relay(
    home: &Path,
    ports: (u16, u16),
    relay_port: u16,
) -> Result<(Server, u16, String), Error> {
    let server = Server::start(
        home,
        &[
            "--relay-listen",
            &format!("127.0.0.1:{relay_port}"),
            "--relay-ports",
            &format!("{}-{}", ports.0, ports.1),
        ],
    )?;
    let line = server.line_after("relay listening on ")?;
    let address = line.split_whitespace().next().ok_or("no relay address")?;
    let port = address
        .rsplit(':')
        .next()
        .ok_or("no port")?
        .parse::<u16>()?;
    // `… (host key SHA256:…), ports …`
    let fingerprint = line
        .split("(host key ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .ok_or("no host key in the relay line")?
        .to_owned();
    Ok((server, port, fingerprint))
}

/// An echo server on loopback: the miner's "SSH server" behind the tunnel.
async fn echo() -> Result<u16, Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 16 << 10];
                while let Ok(n) = socket.read(&mut buffer).await {
                    if n == 0 || socket.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// Sends a line to `port` on loopback and expects it back.
async fn round_trip(port: u16) -> Result<(), Error> {
    let mut socket = tokio::time::timeout(
        Duration::from_secs(5),
        TcpStream::connect(("127.0.0.1", port)),
    )
    .await??;
    socket.write_all(b"hello through the relay\n").await?;
    let mut back = [0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), socket.read_exact(&mut back)).await??;
    assert_eq!(&back, b"hello through the relay\n");
    Ok(())
}

/// A miner: a key in its own home, registered (or not) with the coordinator.
struct Miner {
    home: tempfile::TempDir,
    key: PathBuf,
    public: String,
    id: String,
    token: String,
}

impl Miner {
    fn new() -> Result<Self, Error> {
        let home = tempfile::tempdir()?;
        let (key, _) = polaris::register::ssh_key::ensure(home.path())?;
        let public = std::fs::read_to_string(key.with_extension("pub"))?
            .trim()
            .to_owned();
        Ok(Self {
            home,
            key,
            public,
            id: String::new(),
            token: String::new(),
        })
    }

    /// Registers with the original body plus `relay_key` when `with_key`.
    async fn register(
        &mut self,
        http: &reqwest::Client,
        server: &Server,
        with_key: bool,
    ) -> TestResult {
        let mut body = common::fixture("registration.json", "");
        if with_key {
            body["relay_key"] = json!(self.public);
        }
        let answer: Value = http
            .post(format!("{}/miners/", server.api))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        self.id = answer["miner_id"].as_str().ok_or("no id")?.to_owned();
        self.token = answer["token"].as_str().ok_or("no token")?.to_owned();
        Ok(())
    }

    async fn send_key(
        &self,
        http: &reqwest::Client,
        server: &Server,
        key: &str,
    ) -> Result<u16, Error> {
        let answer = http
            .post(format!("{}/miners/{}/relay_key", server.api, self.id))
            .bearer_auth(&self.token)
            .json(&json!({ "public_key": key }))
            .send()
            .await?;
        Ok(answer.status().as_u16())
    }
}

/// `ssh` with nothing from the user's own configuration, trusting only the relay's key. One
/// that should fail is stopped after 20 s (`timeout`), so a test never hangs on it; a forward
/// that must keep running (and be frozen with SIGSTOP) is plain `ssh`.
fn ssh(miner: &Miner, relay_port: u16, known_hosts: &Path) -> Command {
    ssh_with(
        Command::new("timeout").args(["20", "ssh"]),
        miner,
        relay_port,
        known_hosts,
    )
}

fn ssh_with(command: &mut Command, miner: &Miner, relay_port: u16, known_hosts: &Path) -> Command {
    command
        .args(["-F", "/dev/null", "-p", &relay_port.to_string(), "-i"])
        .arg(&miner.key)
        .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ExitOnForwardFailure=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args(["-o", "ConnectTimeout=10"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    std::mem::replace(command, Command::new("ssh"))
}

/// `ssh … -N -R PORT:127.0.0.1:TARGET miner@127.0.0.1`: a remote forward (PORT 0: the relay
/// picks) and nothing else.
fn remote_forward(mut command: Command, port: u16, target: u16) -> Command {
    command.args([
        "-N",
        "-R",
        &format!("{port}:127.0.0.1:{target}"),
        "miner@127.0.0.1",
    ]);
    command
}

/// What a finished `ssh` said, with its exit status.
fn finished(mut command: Command) -> Result<(bool, String), Error> {
    let output = command.output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// `ssh -N -R 0:127.0.0.1:TARGET`, running; killed when dropped.
struct Forward {
    child: Child,
    port: u16,
}

impl Forward {
    /// Starts the forward and waits for OpenSSH's "Allocated port N" line.
    fn start(
        miner: &Miner,
        relay_port: u16,
        known_hosts: &Path,
        target: u16,
    ) -> Result<Self, Error> {
        let mut command = remote_forward(
            ssh_with(&mut Command::new("ssh"), miner, relay_port, known_hosts),
            0,
            target,
        );
        let mut child = command.spawn()?;
        let rx = common::lines(child.stderr.take().ok_or("no stderr")?);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut said = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                return Err(format!("ssh -R got no port: {said:?}").into());
            };
            if let Some(rest) = line.strip_prefix("Allocated port ") {
                let port = rest.split_whitespace().next().ok_or("no port")?.parse()?;
                return Ok(Self { child, port });
            }
            said.push(line);
        }
    }

    fn signal(&self, signal: &str) -> TestResult {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?
            .success();
        if ok {
            Ok(())
        } else {
            Err("kill failed".into())
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// known_hosts naming the relay's host key, as a miner would write it after checking the
/// fingerprint the server printed.
fn known_hosts(server: &Server, relay_port: u16, dir: &Path) -> Result<PathBuf, Error> {
    let public = std::fs::read_to_string(server.home.join("keys/relay_host_ed25519.pub"))?;
    let path = dir.join("known_hosts");
    std::fs::write(&path, format!("[127.0.0.1]:{relay_port} {}", public.trim()))?;
    Ok(path)
}

async fn sessions(http: &reqwest::Client, server: &Server) -> Result<Vec<Value>, Error> {
    let (status, body) = get(
        http,
        &format!("{}/relay/sessions", server.api),
        &server.admin_token,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    Ok(body.as_array().cloned().unwrap_or_default())
}

/// True (after saying so) when the OpenSSH client is not installed.
fn ssh_missing() -> bool {
    let present = Command::new("ssh")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        missing_service(
            "ssh",
            "the OpenSSH client is not installed (apt-get install openssh-client)",
        );
    }
    !present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_miners_get_their_own_sticky_port_and_nothing_else() -> TestResult {
    if ssh_missing() {
        return Ok(());
    }
    let home = tempfile::tempdir()?;
    let ports = port_range()?;
    let (server, relay_port, announced) = start_relay(home.path(), ports, 0)?;
    let http = reqwest::Client::new();
    let hosts = known_hosts(&server, relay_port, home.path())?;

    // The host key is private, and the printed fingerprint is the one ssh-keygen reads.
    let key_file = server.home.join("keys/relay_host_ed25519");
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key_file)?.permissions().mode() & 0o777,
            0o600
        );
    }
    let printed = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&key_file)
        .output()?;
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    let fingerprint = printed.split_whitespace().nth(1).ok_or("no fingerprint")?;
    assert_eq!(
        announced, fingerprint,
        "the printed fingerprint is ssh-keygen's"
    );

    let target = echo().await?;
    let mut alice = Miner::new()?;
    alice.register(&http, &server, true).await?;
    let stranger = Miner::new()?;

    // A key nobody registered never logs in; nor does a password.
    let (ok, said) = finished(remote_forward(
        ssh(&stranger, relay_port, &hosts),
        0,
        target,
    ))?;
    assert!(
        !ok && said.contains("Permission denied (publickey)"),
        "{said}"
    );
    let mut command = ssh(&alice, relay_port, &hosts);
    command.args([
        "-o",
        "PreferredAuthentications=password",
        "-N",
        "miner@127.0.0.1",
    ]);
    let (ok, said) = finished(command)?;
    assert!(!ok && said.contains("Permission denied"), "{said}");

    // The registered key gets a port of the range, and bytes flow through it.
    let forward = Forward::start(&alice, relay_port, &hosts, target)?;
    let port = forward.port;
    assert!(
        (ports.0..=ports.1).contains(&port),
        "{port} outside {ports:?}"
    );
    round_trip(port).await?;
    let listed = sessions(&http, &server).await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["miner_id"], json!(alice.id));
    assert_eq!(listed[0]["port"], json!(port));
    let metrics = common::metrics(&http, &server).await?;
    assert!(metrics.contains("polaris_relay_sessions 1"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "polaris_relay_port{{miner_id=\"{}\",port=\"{port}\"}} 1",
            alice.id
        )),
        "{metrics}"
    );

    // A shell, a command, a local forward: all refused.
    let mut command = ssh(&alice, relay_port, &hosts);
    command.args(["miner@127.0.0.1", "true"]);
    let (ok, said) = finished(command)?;
    assert!(!ok, "exec went through: {said}");
    let mut command = ssh(&alice, relay_port, &hosts);
    command.args(["-W", &format!("127.0.0.1:{target}"), "miner@127.0.0.1"]);
    let (ok, said) = finished(command)?;
    assert!(
        !ok && said.contains("prohibited"),
        "a local forward went through: {said}"
    );

    // Another miner cannot take alice's port, nor one outside the range.
    let mut bob = Miner::new()?;
    bob.register(&http, &server, false).await?;
    assert_eq!(
        bob.send_key(&http, &server, &alice.public).await?,
        409,
        "alice's key"
    );
    assert_eq!(bob.send_key(&http, &server, "ssh-ed25519 junk").await?, 422);
    assert_eq!(bob.send_key(&http, &server, &bob.public).await?, 200);
    for asked in [port, ports.1 + 1] {
        let (ok, said) = finished(remote_forward(ssh(&bob, relay_port, &hosts), asked, target))?;
        assert!(
            !ok && said.contains("remote port forwarding failed"),
            "port {asked}: {said}"
        );
    }

    // Alice's connection dies and comes back: the same port.
    drop(forward);
    let again = Forward::start(&alice, relay_port, &hosts, target)?;
    assert_eq!(again.port, port, "the same port after a reconnect");
    round_trip(again.port).await?;
    drop(again);

    // Rotation: after a new key, the old one is refused.
    let mut rotated = Miner::new()?;
    rotated.id = alice.id.clone();
    rotated.token = alice.token.clone();
    assert_eq!(alice.send_key(&http, &server, &rotated.public).await?, 200);
    let (ok, said) = finished(remote_forward(ssh(&alice, relay_port, &hosts), 0, target))?;
    assert!(
        !ok && said.contains("Permission denied"),
        "the old key: {said}"
    );
    let with_new = Forward::start(&rotated, relay_port, &hosts, target)?;
    assert_eq!(
        with_new.port, port,
        "a new key, the same miner, the same port"
    );
    drop(with_new);
    assert!(printed.contains("ED25519"), "{printed}");
    assert!(server.stop()?, "clean stop");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_login_takes_over_at_once_and_a_frozen_miner_loses_its_port_within_45_s() -> TestResult
{
    if ssh_missing() {
        return Ok(());
    }
    let home = tempfile::tempdir()?;
    let ports = port_range()?;
    let (server, relay_port, _) = start_relay(home.path(), ports, 0)?;
    let http = reqwest::Client::new();
    let hosts = known_hosts(&server, relay_port, home.path())?;
    let target = echo().await?;
    let mut miner = Miner::new()?;
    miner.register(&http, &server, true).await?;

    // The miner's machine hangs (SIGSTOP): its new login replaces the hung one at once.
    let first = Forward::start(&miner, relay_port, &hosts, target)?;
    first.signal("-STOP")?;
    let started = Instant::now();
    let second = Forward::start(&miner, relay_port, &hosts, target)?;
    println!("a new login took over the port in {:?}", started.elapsed());
    assert_eq!(second.port, first.port);
    round_trip(second.port).await?;
    drop(first);

    // Now it hangs for good: keepalives free its port.
    second.signal("-STOP")?;
    let frozen = Instant::now();
    let freed = common::wait_for(Duration::from_secs(60), || {
        let (http, server) = (&http, &server);
        async move { sessions(http, server).await.ok().filter(Vec::is_empty) }
    })
    .await;
    let took = frozen.elapsed();
    println!("a frozen miner's port was freed after {took:?}");
    assert!(freed.is_some(), "still held after 60 s");
    assert!(took <= Duration::from_secs(45), "freed after {took:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", second.port))
            .await
            .is_err(),
        "the port is closed"
    );
    drop(second);
    assert!(server.stop()?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_keeper_pins_the_relay_and_comes_back_to_the_same_port_after_a_restart() -> TestResult {
    let home = tempfile::tempdir()?;
    let ports = port_range()?;
    let relay_port = free_port()?;
    let (server, _, announced) = start_relay(home.path(), ports, relay_port)?;
    let http = reqwest::Client::new();
    let target = echo().await?;
    let mut miner = Miner::new()?;
    miner.register(&http, &server, true).await?;
    let config = tunnel::Config {
        home: miner.home.path().to_owned(),
        relay: tunnel::RelayAddress {
            user: "miner".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: relay_port,
        },
        remote_port: 0,
        target: format!("127.0.0.1:{target}"),
        // What the server printed, as a miner copies it into POLARIS_RELAY_HOST_KEY.
        pinned_host_key: Some(announced),
        key_path: miner.key.clone(),
        password: None,
        advertised_user: "renter".to_owned(),
        server_url: reqwest::Url::parse(&server.api)?,
        keepalive_interval: Duration::from_secs(5),
        keepalive_max: 3,
        probe_interval: Duration::from_secs(1),
    };
    let (tx, mut state) = watch::channel(State::new(&config));
    let cancel = CancellationToken::new();
    let keeper = tokio::spawn(tunnel::run(config, tx, cancel.clone()));
    let up = |n: u64| move |s: &State| s.sessions >= n && s.is_up();
    let port_of = |s: &State| match s.phase {
        Phase::Up { port, .. } => port,
        _ => 0,
    };
    let first = tokio::time::timeout(Duration::from_secs(20), state.wait_for(up(1)))
        .await??
        .clone();
    let port = port_of(&first);
    assert!((ports.0..=ports.1).contains(&port), "{port}");
    round_trip(port).await?;
    // The probe goes through our own port and back: a few seconds up and still one session.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        state.borrow().sessions,
        1,
        "{}",
        state.borrow().headline(chrono::Utc::now())
    );

    let address = server.base.trim_start_matches("http://").to_owned();
    assert!(server.stop()?);
    let stopped = Instant::now();
    let (server, _) = Server::start(
        home.path(),
        &[
            "--listen",
            &address,
            "--relay-listen",
            &format!("127.0.0.1:{relay_port}"),
            "--relay-ports",
            &format!("{}-{}", ports.0, ports.1),
        ],
    )
    .map(|s| (s, ()))?;
    let back = tokio::time::timeout(Duration::from_secs(20), state.wait_for(up(2)))
        .await??
        .clone();
    println!(
        "back through the restarted relay after {:?}",
        stopped.elapsed()
    );
    assert_eq!(
        port_of(&back),
        port,
        "the same port after the relay restarted"
    );
    round_trip(port).await?;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), keeper).await??;
    assert!(server.stop()?);
    Ok(())
}
