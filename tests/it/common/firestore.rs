//! Google's Firestore emulator for the tests: the one `scripts/test.sh` starts for the whole run
//! (its address in `POLARIS_TEST_FIRESTORE`), and an [`Emulator`] of a test's own for the tests
//! that stop and restart it.
//!
//! The emulator keeps its data in memory. A test's own emulator can still be stopped and
//! started again with its data, as a Firestore outage leaves the data in place:
//! [`Emulator::stop`] first asks it to export a project (its `/emulator/v1/projects/P:export`
//! route) and [`Emulator::restart`] seeds the new process from that export, on the same port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::services::{free_port, missing_service};

/// The shared emulator's `HOST:PORT` (`POLARIS_TEST_FIRESTORE`, set by `scripts/test.sh`), or
/// `None` after `missing_service` when this run has none.
pub(crate) use polaris::testing::firestore_emulator as shared;
/// A project id no other test (of this run or an earlier one on the same emulator) uses: the
/// emulator keeps each project's data apart.
pub(crate) use polaris::testing::unique_project;

/// The emulator's jar, from the gcloud SDK (`gcloud info`), or why it cannot be used.
fn jar() -> Result<PathBuf, String> {
    static JAR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    JAR.get_or_init(|| {
        let output = Command::new("gcloud")
            .args(["info", "--format=value(installation.sdk_root)"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("gcloud cannot be run: {e}"))?;
        let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if root.is_empty() {
            return Err("gcloud names no SDK root".to_owned());
        }
        let jar =
            Path::new(&root).join("platform/cloud-firestore-emulator/cloud-firestore-emulator.jar");
        if !jar.exists() {
            return Err(format!(
                "{} is missing (install google-cloud-cli-firestore-emulator)",
                jar.display()
            ));
        }
        let java = Command::new("java")
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !java.is_ok_and(|s| s.success()) {
            return Err("java is not installed".to_owned());
        }
        Ok(jar)
    })
    .clone()
}

/// A Firestore emulator of the test's own: one Java process on a free loopback port, killed by
/// PID when dropped.
pub(crate) struct Emulator {
    child: Option<Child>,
    pub(crate) port: u16,
    jar: PathBuf,
    /// Its log and the exports [`Emulator::stop`] leaves for [`Emulator::restart`].
    dir: tempfile::TempDir,
    /// The last export's `.overall_export_metadata` file.
    export: Option<PathBuf>,
}

impl Emulator {
    /// Starts one, or returns `None` after [`missing_service`] when java, gcloud or the
    /// emulator component is missing.
    pub(crate) fn start() -> Result<Option<Self>, Box<dyn std::error::Error>> {
        let jar = match jar() {
            Ok(jar) => jar,
            Err(why) => {
                missing_service("Firestore emulator", &why);
                return Ok(None);
            }
        };
        let mut emulator = Self {
            child: None,
            port: 0,
            jar,
            dir: tempfile::tempdir()?,
            export: None,
        };
        // A free port may be taken again before Java binds it: try another.
        let mut last = String::new();
        for _ in 0..5 {
            emulator.port = free_port()?;
            match emulator.launch() {
                Ok(()) => return Ok(Some(emulator)),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("the Firestore emulator did not start: {last}").into())
    }

    /// `127.0.0.1:PORT`, as `FIRESTORE_EMULATOR_HOST` wants it.
    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Whether its process is running.
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_none()))
    }

    fn launch(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        let log = std::fs::File::create(self.dir.path().join("emulator.log"))?;
        let mut command = Command::new("java");
        command
            .args(["-Xmx512m", "-Duser.language=en", "-cp"])
            .arg(&self.jar)
            .args([
                "com.google.cloud.datastore.emulator.firestore.CloudFirestore",
                "start",
                "--host=127.0.0.1",
                &format!("--port={}", self.port),
            ]);
        if let Some(export) = &self.export {
            command.arg(format!("--seed_from_export={}", export.display()));
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                return Err(format!("it exited at start ({status}): {}", self.log()).into());
            }
            if request(&self.addr(), "GET", "/", "")
                .is_ok_and(|(s, body)| s == 200 && body.trim() == "Ok")
            {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("not ready within 60 s: {}", self.log()).into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What it printed so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("emulator.log")).unwrap_or_default()
    }

    /// Exports `project` (kept for [`Emulator::restart`]), then stops the process (SIGTERM by
    /// PID, SIGKILL after 10 s) and waits until its port is closed.
    pub(crate) fn stop(&mut self, project: &str) -> Result<(), Box<dyn std::error::Error>> {
        let target = self
            .dir
            .path()
            .join(format!("export-{}", chrono::Utc::now().timestamp_micros()));
        std::fs::create_dir_all(&target)?;
        let body = format!(
            r#"{{"database":"projects/{project}/databases/(default)","export_directory":"{}"}}"#,
            target.display()
        );
        let (status, answer) = request(
            &self.addr(),
            "POST",
            &format!("/emulator/v1/projects/{project}:export"),
            &body,
        )?;
        if status != 200 {
            return Err(format!("the emulator's export answered {status}: {answer}").into());
        }
        self.export = Some(
            super::files_under(&target)
                .into_iter()
                .find(|f| f.to_string_lossy().ends_with(".overall_export_metadata"))
                .ok_or("the export wrote no .overall_export_metadata")?,
        );
        let mut child = self.child.take().ok_or("the emulator is not running")?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            if Instant::now() > deadline {
                return Err(format!("port {} still open after the stop", self.port).into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Starts it again on the same port, with the data of the last [`Emulator::stop`]'s export.
    pub(crate) fn restart(&mut self) -> Result<(), Box<dyn std::error::Error>> {
        if self.is_running() {
            return Err("the emulator is still running".into());
        }
        // The port was ours a moment ago; someone else may hold it briefly.
        let mut last = String::new();
        for _ in 0..5 {
            match self.launch() {
                Ok(()) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        Err(format!(
            "the Firestore emulator did not start again on {}: {last}",
            self.port
        )
        .into())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One HTTP/1.1 request to the emulator (blocking, `Connection: close`); returns the status and
/// the body.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    // It keeps the connection open whatever the request says: read what the head announces.
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some((status, body)) = complete(&answer)? {
            return Ok((status, body));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return complete(&answer)?.ok_or_else(|| "the emulator closed mid-answer".into());
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

/// The status and body of `answer` once it holds a whole HTTP/1.1 response.
fn complete(answer: &[u8]) -> Result<Option<(u16, String)>, Box<dyn std::error::Error>> {
    let text = String::from_utf8_lossy(answer);
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Ok(None);
    };
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status")?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        return Ok(rest.ends_with("0\r\n\r\n").then(|| (status, dechunk(rest))));
    }
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((rest.len() >= length).then(|| (status, rest[..length].to_owned())))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// Every byte of an export of `project` from the emulator at `addr` (which runs on this
/// machine and writes the export where it is told).
pub(crate) fn export_bytes(
    addr: &str,
    project: &str,
) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let body = format!(
        r#"{{"database":"projects/{project}/databases/(default)","export_directory":"{}"}}"#,
        dir.path().display()
    );
    let (status, answer) = request(
        addr,
        "POST",
        &format!("/emulator/v1/projects/{project}:export"),
        &body,
    )?;
    if status != 200 {
        return Err(format!("the emulator's export answered {status}: {answer}").into());
    }
    let mut bytes = Vec::new();
    for file in super::files_under(dir.path()) {
        bytes.extend(std::fs::read(file)?);
    }
    Ok(bytes)
}
