//! Shared parts of the integration tests: the real `polaris` binary started as a coordinator in a
//! temporary POLARIS_HOME on a free loopback port, a loopback webhook receiver, and the original
//! tool's request bodies.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) mod firestore;
/// Shared with the tunnel benchmark, which includes the file by its path (`benches/tunnel.rs`).
pub(crate) mod relay_sshd;
pub(crate) mod services;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The real `polaris` as every test runs it: in `home`, from a cleared environment, so nothing
/// of the test's own reaches it (a POLARIS_* or SSH_* setting of the shell that ran the tests,
/// the real HOME with its ~/.polaris, ~/.bittensor and ~/.commune). It gets back PATH (for the
/// shell, git and sleep it starts), HOME and POLARIS_HOME both set to `home`, `home` as its
/// working directory (the `.env` it reads there is the test's) and /dev/null as stdin (never a
/// terminal). Each test adds its own settings on top.
pub(crate) fn polaris(home: &Path) -> Command {
    cleared(Command::new(env!("CARGO_BIN_EXE_polaris")), home)
}

/// [`polaris`]'s environment, working directory and stdin for a program that runs polaris in
/// turn (util-linux's `script`).
pub(crate) fn cleared(mut command: Command, home: &Path) -> Command {
    command.env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command
        .env("HOME", home)
        .env("POLARIS_HOME", home)
        .current_dir(home)
        .stdin(Stdio::null());
    command
}

/// Where a coordinator under test keeps its state: the one suite of coordinator tests runs on
/// each (see [`both_backends`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Backend {
    /// SQLite in POLARIS_HOME (the default store).
    Sqlite,
    /// A project of its own on a Firestore emulator (`--store firestore`,
    /// `FIRESTORE_EMULATOR_HOST`). A restart with the same value keeps the same project, so the
    /// restarted coordinator finds its data again.
    Firestore { emulator: String, project: String },
}

impl Backend {
    /// A fresh project on the shared emulator, or `None` after `missing_service` when this run
    /// has none.
    pub(crate) fn firestore() -> Option<Self> {
        Some(Self::on_emulator(firestore::shared()?))
    }

    /// A fresh project on the emulator at `emulator` (`127.0.0.1:PORT`).
    pub(crate) fn on_emulator(emulator: String) -> Self {
        Self::Firestore {
            emulator,
            project: firestore::unique_project("it"),
        }
    }

    /// The same kind of store, empty: for Firestore a new project on the same emulator (SQLite
    /// is per POLARIS_HOME already).
    pub(crate) fn fresh(&self) -> Self {
        match self {
            Self::Sqlite => Self::Sqlite,
            Self::Firestore { emulator, .. } => Self::on_emulator(emulator.clone()),
        }
    }

    pub(crate) fn is_sqlite(&self) -> bool {
        *self == Self::Sqlite
    }

    /// Every byte the store holds for this coordinator, to search for what must never be
    /// stored: SQLite's database file in `home`, or an export of the Firestore project.
    pub(crate) fn stored_bytes(&self, home: &Path) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
        match self {
            Self::Sqlite => Ok(std::fs::read(home.join("polaris.db"))?),
            Self::Firestore { emulator, project } => firestore::export_bytes(emulator, project),
        }
    }

    /// What `polaris server` is given to use this store: flags and environment.
    pub(crate) fn apply(&self, command: &mut Command) {
        if let Self::Firestore { emulator, project } = self {
            command
                .args(["--store", "firestore", "--firestore-project", project])
                .env("FIRESTORE_EMULATOR_HOST", emulator);
        }
    }
}

/// Generates, for each `async fn NAME(backend: Backend) -> TestResult` named, two tests:
/// `sqlite::NAME` and `firestore::NAME` (a fresh project on the shared emulator; a visible
/// skip when there is none). One suite, two stores.
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() -> $crate::common::TestResult {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )+
        }
        mod firestore {
            $(
                #[tokio::test]
                async fn $name() -> $crate::common::TestResult {
                    let Some(backend) = $crate::common::Backend::firestore() else {
                        return Ok(());
                    };
                    super::$name(backend).await
                }
            )+
        }
    };
}
pub(crate) use both_backends;

/// A running `polaris server`, stopped with SIGTERM when dropped.
pub(crate) struct Server {
    child: Option<Child>,
    pub(crate) base: String,
    pub(crate) api: String,
    pub(crate) admin_token: String,
    pub(crate) home: PathBuf,
    /// What it printed after the listening line.
    lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `polaris server --listen 127.0.0.1:0 ARGS` with `POLARIS_HOME=home` (ARGS may
    /// name another `--listen`, e.g. to restart on the same port), on SQLite.
    pub(crate) fn start(home: &Path, args: &[&str]) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_on(&Backend::Sqlite, home, args)
    }

    /// [`Server::start`] on `backend`.
    pub(crate) fn start_on(
        backend: &Backend,
        home: &Path,
        args: &[&str],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        Self::start_with(backend, home, args, &[])
    }

    /// [`Server::start_on`] with more environment variables. With `POLARIS_ADMIN_TOKEN` among
    /// them, that is its admin token; else the one it writes to `home/admin_token`.
    pub(crate) fn start_with(
        backend: &Backend,
        home: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let listen: &[&str] = if args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let mut command = polaris(home);
        command.arg("server").args(listen).args(args);
        backend.apply(&mut command);
        command.envs(env.iter().copied());
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let rx = lines(child.stdout.take().ok_or("no stdout")?);
        // Firestore: connecting and the first membership write come before the listener.
        let deadline = Instant::now() + Duration::from_secs(30);
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let status = child.try_wait()?;
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(match status {
                        Some(status) => format!("the server exited before listening ({status})"),
                        None => "the server printed no listening line within 30 s".to_owned(),
                    }
                    .into());
                }
            };
            if let Some(rest) = line.strip_prefix("polaris server listening on ") {
                break rest
                    .split_whitespace()
                    .next()
                    .ok_or("no address")?
                    .to_owned();
            }
        };
        let admin_token = match env.iter().find(|(k, _)| *k == "POLARIS_ADMIN_TOKEN") {
            Some((_, token)) => (*token).to_owned(),
            None => std::fs::read_to_string(home.join("admin_token"))?
                .trim()
                .to_owned(),
        };
        Ok(Self {
            child: Some(child),
            api: format!("{base}/api/v1"),
            base,
            admin_token,
            home: home.to_owned(),
            lines: rx,
        })
    }

    /// Kills it with SIGKILL, as a crash or an OOM kill would: nothing is flushed.
    pub(crate) fn kill(mut self) -> Result<(), Box<dyn std::error::Error>> {
        let mut child = self.child.take().ok_or("already stopped")?;
        let status = Command::new("kill")
            .args(["-KILL", &child.id().to_string()])
            .status()?;
        if !status.success() {
            return Err("kill -KILL failed".into());
        }
        child.wait()?;
        Ok(())
    }

    /// The next printed line that starts with `prefix` (without it), within 10 s.
    pub(crate) fn line_after(&self, prefix: &str) -> Result<String, Box<dyn std::error::Error>> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .map_err(|_| format!("the server printed no line starting {prefix:?}"))?;
            if let Some(rest) = line.strip_prefix(prefix) {
                return Ok(rest.to_owned());
            }
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns the exit status' success.
    pub(crate) fn stop(mut self) -> Result<bool, Box<dyn std::error::Error>> {
        self.terminate()
    }

    /// As [`Server::stop`], with every line it printed since the last one read.
    pub(crate) fn stop_with_output(
        mut self,
    ) -> Result<(bool, Vec<String>), Box<dyn std::error::Error>> {
        let success = self.terminate()?;
        // The reader thread ends at the pipe's end, once the child is gone.
        let mut lines = vec![];
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        Ok((success, lines))
    }

    fn terminate(&mut self) -> Result<bool, Box<dyn std::error::Error>> {
        let mut child = self.child.take().ok_or("already stopped")?;
        terminate(&child)?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if Instant::now() > deadline {
                child.kill()?;
                return Err("the server did not stop within 15 s of SIGTERM".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The lines a child prints on `pipe`, read by a thread of their own as they come, until the
/// pipe ends.
pub(crate) fn lines(pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// `polaris server` on a free loopback port in a temp home of its own, returned with it: the
/// home must outlive the server, and a test may restart it there or read its files.
pub(crate) fn coordinator() -> Result<(tempfile::TempDir, Server), Box<dyn std::error::Error>> {
    coordinator_on(&Backend::Sqlite)
}

/// [`coordinator`] on `backend`.
pub(crate) fn coordinator_on(
    backend: &Backend,
) -> Result<(tempfile::TempDir, Server), Box<dyn std::error::Error>> {
    let home = tempfile::tempdir()?;
    let server = Server::start_on(backend, home.path(), &[])?;
    Ok((home, server))
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn terminate(child: &Child) -> std::io::Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other("kill -TERM failed"))
    }
}

/// A loopback HTTP server that records every JSON body POSTed to it.
pub(crate) struct Webhook {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    pub(crate) async fn start() -> Result<Self, Box<dyn std::error::Error>> {
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let sink = Arc::clone(&sink);
                async move {
                    sink.lock().map(|mut v| v.push(body)).ok();
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            url,
            received,
            task,
        })
    }

    pub(crate) fn alerts(&self) -> Vec<Value> {
        self.received.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The alerts of one kind received so far.
    pub(crate) fn of_kind(&self, kind: &str) -> Vec<Value> {
        self.alerts()
            .into_iter()
            .filter(|a| a["kind"] == kind)
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `polaris miners ARGS` as `server`'s admin (SERVER_URL and POLARIS_ADMIN_TOKEN), from a home
/// of its own; returns the exit code, stdout and stderr.
pub(crate) fn admin_miners(
    server: &Server,
    args: &[&str],
) -> Result<(Option<i32>, String, String), Box<dyn std::error::Error>> {
    let home = tempfile::tempdir()?;
    let output = polaris(home.path())
        .arg("miners")
        .args(args)
        .env("SERVER_URL", &server.api)
        .env("POLARIS_ADMIN_TOKEN", &server.admin_token)
        .output()?;
    Ok((
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// One of the original tool's bodies from `tests/fixtures/original`, with `MINER_ID` replaced.
pub(crate) fn fixture(name: &str, miner_id: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/original")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
        .replace("MINER_ID", miner_id);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

/// Registers a miner with the original registration body; returns `(miner_id, token)`.
pub(crate) async fn register(
    http: &reqwest::Client,
    server: &Server,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let response = http
        .post(format!("{}/miners/", server.api))
        .json(&fixture("registration.json", ""))
        .send()
        .await?;
    assert_eq!(response.status(), 201, "registration refused");
    let body: Value = response.json().await?;
    let id = body["miner_id"].as_str().ok_or("no miner_id")?.to_owned();
    let token = body["token"].as_str().ok_or("no token")?.to_owned();
    Ok((id, token))
}

/// Sends the original heartbeat body for `miner_id`; returns the HTTP status.
pub(crate) async fn heartbeat(
    http: &reqwest::Client,
    server: &Server,
    miner_id: &str,
    token: &str,
) -> Result<u16, Box<dyn std::error::Error>> {
    let response = http
        .post(format!("{}/heart_beat", server.api))
        .bearer_auth(token)
        .json(&fixture("heartbeat.json", miner_id))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// GET with a bearer token; returns status and JSON body (Null when not JSON).
pub(crate) async fn get(
    http: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// A miner's status_history rows, read through the admin route.
pub(crate) async fn history(
    http: &reqwest::Client,
    server: &Server,
    miner_id: &str,
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let url = format!("{}/miners/{miner_id}/status_history", server.api);
    let (status, body) = get(http, &url, &server.admin_token).await?;
    assert_eq!(status, 200, "status_history: {body}");
    Ok(body.as_array().cloned().unwrap_or_default())
}

/// The server's /metrics text.
pub(crate) async fn metrics(
    http: &reqwest::Client,
    server: &Server,
) -> Result<String, Box<dyn std::error::Error>> {
    Ok(http
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?)
}

/// Writes the registration.json `polaris register` would have written for this miner, as
/// `username` on the standard network.
pub(crate) fn save_registration(
    home: &Path,
    api: &str,
    miner_id: &str,
    token: String,
    username: &str,
) -> anyhow::Result<()> {
    use polaris::register::record::{self, Network, RegistrationRecord};
    record::save(
        home,
        &RegistrationRecord {
            miner_id: miner_id.to_owned(),
            token: polaris::config::Secret::new(token),
            username: username.to_owned(),
            network: Network::Standard,
            server_url: api.to_owned(),
            resource_ids: vec![],
            registered_at: chrono::Utc::now(),
            bittensor: None,
            commune: None,
        },
    )
}

/// Every file below `dir` (not the directories themselves).
pub(crate) fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
    }
    found
}

/// A file's permission bits (0 when it cannot be read).
#[cfg(unix)]
pub(crate) fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// `path mode` of each file in `files` that its group or others may use.
#[cfg(unix)]
pub(crate) fn open_to_others(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .filter(|f| mode(f) & 0o077 != 0)
        .map(|f| format!("{} {:03o}", f.display(), mode(f)))
        .collect()
}

/// Runs the test named `test` (`module::name`) again, alone, in a process of its own: this test
/// binary, filtered to it. Returns how that went, or `None` in that process, where the test goes
/// on with its body. For a test whose in-process code changes this whole process for good:
/// polaris's TUI loop installs tokio handlers for SIGTERM and SIGHUP, which tokio never removes,
/// so in the shared binary it would leave every later test, and the binary itself, deaf to
/// SIGTERM (a CI timeout's first try).
pub(crate) fn in_own_process(test: &str) -> Option<TestResult> {
    const ALONE: &str = "POLARIS_IT_ALONE";
    if std::env::var_os(ALONE).is_some_and(|alone| alone == test) {
        return None;
    }
    let run = || -> TestResult {
        let output = Command::new(std::env::current_exe()?)
            .args([test, "--exact", "--test-threads=1"])
            .env(ALONE, test)
            .stdin(Stdio::null())
            .output()?;
        let printed = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        // Captured by the harness, as the test's own output would be.
        eprintln!("{test}, run alone in its own process:\n{printed}");
        if !output.status.success() {
            return Err(format!(
                "{test} failed in its own process ({}):\n{printed}",
                output.status
            )
            .into());
        }
        if !printed.contains("test result: ok. 1 passed") {
            return Err(format!("{test} did not run in its own process:\n{printed}").into());
        }
        Ok(())
    };
    Some(run())
}

/// Polls `check` every 50 ms until it returns `Some` or `limit` passes.
pub(crate) async fn wait_for<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
