//! `polaris register` and `polaris view-compute` against a real coordinator, for each network,
//! with wallets and keys made by the real tools (tests/fixtures/WALLETS.md).

#![cfg(unix)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{self, Server, TestResult};
use polaris::api::Pod;
use serde_json::Value;

const PASSWORD: &str = "never-leave-this-machine-7731";

/// A miner machine: POLARIS_HOME and a user home holding the fixture wallets and keys.
struct Miner {
    home: tempfile::TempDir,
    user: tempfile::TempDir,
    ssh_port: u16,
}

impl Miner {
    fn new(with_wallets: bool) -> Result<Self, Box<dyn std::error::Error>> {
        let miner = Self {
            home: tempfile::tempdir()?,
            user: tempfile::tempdir()?,
            ssh_port: common::services::free_port()?,
        };
        if with_wallets {
            let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
            copy_dir(
                &fixtures.join("bittensor"),
                &miner.user.path().join(".bittensor"),
            )?;
            copy_dir(
                &fixtures.join("commune/key"),
                &miner.user.path().join(".commune/key"),
            )?;
        }
        Ok(miner)
    }

    /// A coordinator in a home of its own (returned, to live as long as it) and a miner, with
    /// the fixture wallets and keys when `with_wallets`.
    fn with_coordinator(
        with_wallets: bool,
    ) -> Result<(tempfile::TempDir, Server, Self), Box<dyn std::error::Error>> {
        let (server_home, server) = common::coordinator()?;
        Ok((server_home, server, Self::new(with_wallets)?))
    }

    fn polaris(&self, api: &str, args: &[&str]) -> Command {
        let mut command = common::polaris(self.home.path());
        command
            .args(args)
            // The user's home, with the wallets and keys (or none).
            .env("HOME", self.user.path())
            .env("SERVER_URL", api)
            .env("POLARIS_LOCATION", "Testville, TS")
            .env("POLARIS_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1")
            .env("SSH_PASSWORD", PASSWORD)
            // A port nothing listens on: the result never depends on this machine's sshd.
            .env("SSH_PORT", self.ssh_port.to_string());
        command
    }

    fn record(&self) -> Result<Value, Box<dyn std::error::Error>> {
        Ok(serde_json::from_slice(&std::fs::read(
            self.home.path().join("registration.json"),
        )?)?)
    }
}

impl Miner {
    /// A shell line that runs `polaris ARGS` with only this miner's environment (nothing of the
    /// test's own), prints `EXIT=<status>` and keeps the terminal open for reading.
    fn terminal_command(&self, api: &str, args: &str) -> String {
        format!(
            "env -i PATH=\"$PATH\" HOME='{}' POLARIS_HOME='{}' SERVER_URL='{}' \
             POLARIS_LOCATION='Testville, TS' POLARIS_NVML_LIBRARY=/nonexistent \
             SSH_PASSWORD='{PASSWORD}' SSH_PORT={} TERM=xterm '{}' register {args}; \
             echo EXIT=$?; sleep 60",
            self.user.path().display(),
            self.home.path().display(),
            api,
            self.ssh_port,
            env!("CARGO_BIN_EXE_polaris"),
        )
    }
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

async fn pod(server: &Server, record: &Value) -> Result<Value, Box<dyn std::error::Error>> {
    let miner_id = record["miner_id"].as_str().ok_or("no miner id")?;
    let token = record["token"].as_str().ok_or("no token")?;
    Ok(reqwest::Client::new()
        .get(format!("{}/miners/{miner_id}", server.api))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?)
}

fn ss58_of(path: &Path, key: &str) -> Result<String, Box<dyn std::error::Error>> {
    let value: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    Ok(value[key].as_str().ok_or("no address")?.to_owned())
}

#[tokio::test]
async fn standard_registration_saves_a_private_record_and_never_the_password() -> TestResult {
    let (server_home, server, miner) = Miner::with_coordinator(false)?;
    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "alice",
        "--yes",
    ];
    let out = ok(&miner.polaris(&server.api, &args).output()?);
    assert!(out.contains("System Information"), "{out}");
    assert!(out.contains("Registration Complete"), "{out}");
    assert!(out.contains("Important: Save your Miner ID"), "{out}");
    let record = miner.record()?;
    let miner_id = record["miner_id"].as_str().ok_or("no id")?;
    assert!(out.contains(&format!("Miner ID: {miner_id}")), "{out}");
    let path = miner.home.path().join("registration.json");
    assert_eq!(
        std::fs::metadata(&path)?.permissions().mode() & 0o777,
        0o600
    );
    let keys = miner.home.path().join("keys");
    assert_eq!(
        std::fs::metadata(&keys)?.permissions().mode() & 0o777,
        0o700
    );
    let key = keys.join("id_ed25519");
    assert_eq!(std::fs::metadata(&key)?.permissions().mode() & 0o777, 0o600);
    // SSH access was not asked (a script, --yes): off, and nothing written down for it.
    assert!(!miner.home.path().join(".env").exists());
    assert!(!out.contains("SSH access by key"), "{out}");

    let pod = pod(&server, &record).await?;
    assert_eq!(pod["name"], "alice");
    assert_eq!(pod["compute_resources"][0]["resource_type"], "CPU");

    // The password is in the environment, and nowhere else: not in any file of the miner or
    // of the coordinator (database and logs included).
    drop(server);
    for file in common::files_under(miner.home.path())
        .into_iter()
        .chain(common::files_under(server_home.path()))
    {
        let bytes = std::fs::read(&file)?;
        assert!(
            !text(&bytes).contains(PASSWORD),
            "{} holds SSH_PASSWORD",
            file.display()
        );
    }
    Ok(())
}

#[tokio::test]
async fn bittensor_registration_sends_the_wallet_made_by_bittensor_wallet() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(true)?;
    let args = [
        "register",
        "--network",
        "bittensor",
        "--username",
        "bob-1",
        "--wallet",
        "miner",
        "--hotkey",
        "second",
        "--testnet",
        "--uid",
        "17",
        "--yes",
    ];
    let mut command = miner.polaris(&server.api, &args);
    command.args(["--ssh-access", "keys"]);
    let out = ok(&command.output()?);
    assert!(out.contains("Network: Bittensor Network"), "{out}");
    // The flag is saved as the setting, and said.
    assert!(
        out.contains("SSH access by key: keys (POLARIS_SSH_ACCESS"),
        "{out}"
    );
    let dotenv = std::fs::read_to_string(miner.home.path().join(".env"))?;
    assert!(
        dotenv.lines().any(|l| l == "POLARIS_SSH_ACCESS=keys"),
        "{dotenv}"
    );
    assert!(out.contains("Subnet: netuid 100 (testnet)"), "{out}");
    let wallet = miner.user.path().join(".bittensor/wallets/miner");
    let hotkey = ss58_of(&wallet.join("hotkeys/secondpub.txt"), "ss58Address")?;
    let coldkey = ss58_of(&wallet.join("coldkeypub.txt"), "ss58Address")?;
    let details = pod(&server, &miner.record()?).await?["bittensor_details"].clone();
    assert_eq!(details["hotkey"], hotkey.as_str());
    assert_eq!(details["coldkey"], coldkey.as_str());
    assert_eq!(details["wallet_name"], "miner");
    assert_eq!(details["netuid"], 100);
    assert_eq!(details["network"], "testnet");
    assert_eq!(details["miner_uid"], 17);
    assert_eq!(miner.record()?["bittensor"]["hotkey_ss58"], hotkey.as_str());
    Ok(())
}

#[tokio::test]
async fn commune_registration_sends_the_key_made_by_comx() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(true)?;
    let args = [
        "register",
        "--network",
        "commune",
        "--username",
        "carol",
        "--key",
        "spare",
        "--yes",
    ];
    let out = ok(&miner.polaris(&server.api, &args).output()?);
    assert!(out.contains("Subnet: netuid 33 (mainnet)"), "{out}");
    let key: Value = serde_json::from_slice(&std::fs::read(
        miner.user.path().join(".commune/key/spare.json"),
    )?)?;
    let data: Value = serde_json::from_str(key["data"].as_str().ok_or("no data")?)?;
    let details = pod(&server, &miner.record()?).await?["commune_details"].clone();
    assert_eq!(details["wallet_address"], data["ss58_address"]);
    assert_eq!(details["wallet_name"], "spare");
    assert_eq!(details["netuid"], 33);
    Ok(())
}

#[tokio::test]
async fn every_bad_answer_is_a_clear_usage_error_that_changes_nothing() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(true)?;
    let cases: &[(&[&str], &str)] = &[
        (
            &["--network", "standard", "--username", "ab", "--yes"],
            "3 to 32 characters",
        ),
        (
            &["--network", "standard", "--username", "bad name!", "--yes"],
            "letters, digits",
        ),
        (
            &[],
            "pass --network, --username and --yes: there is no terminal",
        ),
        (&["--network", "standard", "--yes"], "pass --username"),
        (&["--username", "alice", "--yes"], "pass --network"),
        (
            &["--network", "standard", "--username", "alice"],
            "pass --yes",
        ),
        (
            &[
                "--network",
                "bittensor",
                "--username",
                "alice",
                "--wallet",
                "nope",
                "--yes",
            ],
            "found: backup, miner",
        ),
        (
            &[
                "--network",
                "bittensor",
                "--username",
                "alice",
                "--wallet",
                "miner",
                "--hotkey",
                "x",
                "--yes",
            ],
            "found: default, second",
        ),
        (
            &["--network", "bittensor", "--username", "alice", "--yes"],
            "pass --wallet",
        ),
        (
            &[
                "--network",
                "commune",
                "--username",
                "alice",
                "--key",
                "nope",
                "--yes",
            ],
            "found: miner, spare",
        ),
        (
            &[
                "--network",
                "standard",
                "--username",
                "alice",
                "--wallet",
                "miner",
                "--yes",
            ],
            "--wallet does not apply to --network standard",
        ),
        (
            &[
                "--network",
                "bittensor",
                "--username",
                "alice",
                "--key",
                "miner",
                "--yes",
            ],
            "--key does not apply to --network bittensor",
        ),
    ];
    for (args, expected) in cases {
        let output = miner
            .polaris(&server.api, &[&["register"][..], args].concat())
            .output()?;
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let always_needed = ["--network", "--username", "--yes"];
        if !always_needed.iter().all(|flag| args.contains(flag)) {
            // Those missing are said at once, before the hardware table (the wallet flags
            // depend on the wallets found, so they come after it).
            assert!(
                output.stdout.is_empty(),
                "{args:?}: {}",
                text(&output.stdout)
            );
        }
        assert!(
            !miner.home.path().join("registration.json").exists(),
            "{args:?}"
        );
        assert!(!miner.home.path().join("keys").exists(), "{args:?}");
    }
    let listed: Value = reqwest::Client::new()
        .get(format!("{}/miners", server.api))
        .bearer_auth(&server.admin_token)
        .send()
        .await?
        .json()
        .await?;
    let miners = listed["miners"].as_array().ok_or("no list")?;
    assert!(miners.is_empty(), "nothing was registered: {listed}");
    Ok(())
}

#[test]
fn no_wallet_says_how_to_make_one() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let args = [
        "register",
        "--network",
        "bittensor",
        "--username",
        "dave",
        "--yes",
    ];
    let output = miner.polaris(&server.api, &args).output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("btcli wallet create"), "{stderr}");
    let args = [
        "register",
        "--network",
        "commune",
        "--username",
        "dave",
        "--yes",
    ];
    let stderr = text(&miner.polaris(&server.api, &args).output()?.stderr);
    assert!(stderr.contains("comx key create"), "{stderr}");
    assert!(
        common::files_under(miner.home.path())
            .iter()
            .all(|f| !f.ends_with("registration.json"))
    );
    Ok(())
}

#[tokio::test]
async fn re_registration_asks_first_and_replaces_only_when_told() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let first = [
        "register",
        "--network",
        "standard",
        "--username",
        "erin",
        "--yes",
    ];
    ok(&miner.polaris(&server.api, &first).output()?);
    let before = miner.record()?;

    let again = ["register", "--network", "standard", "--username", "erin2"];
    let output = miner.polaris(&server.api, &again).output()?;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("--yes"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(miner.record()?, before, "kept as it was");

    let replace = [
        "register",
        "--network",
        "standard",
        "--username",
        "erin2",
        "--yes",
    ];
    ok(&miner.polaris(&server.api, &replace).output()?);
    let after = miner.record()?;
    assert_ne!(after["miner_id"], before["miner_id"]);
    assert_eq!(after["username"], "erin2");
    Ok(())
}

/// A registration.json that no longer parses: register says so before the table, in the words
/// status and view-compute use, registers anew with --yes and keeps the damaged bytes.
#[tokio::test]
async fn a_damaged_registration_is_named_then_replaced_and_kept_aside() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let damaged = b"{\"miner_id\": \"half-writ";
    std::fs::write(miner.home.path().join("registration.json"), damaged)?;
    let view = miner.polaris(&server.api, &["view-compute"]).output()?;
    assert!(!view.status.success());
    let said =
        "registration.json is damaged: restore it, or run `polaris register` again to replace it";
    assert!(text(&view.stderr).contains(said), "{}", text(&view.stderr));

    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "gwen",
        "--yes",
    ];
    let output = miner.polaris(&server.api, &args).output()?;
    let out = ok(&output);
    let err = text(&output.stderr);
    assert!(err.contains(said), "{err}");
    assert!(
        err.contains("registering now replaces it and keeps the damaged file as"),
        "{err}"
    );
    assert!(out.contains("Registration Complete"), "{out}");
    let record = miner.record()?;
    assert_eq!(record["username"], "gwen");
    assert_eq!(
        pod(&server, &record).await?["id"],
        record["miner_id"],
        "the coordinator has it"
    );
    let kept = std::fs::read(miner.home.path().join("registration.json.damaged"))?;
    assert_eq!(kept, damaged, "the damaged bytes are kept");
    Ok(())
}

#[test]
fn a_coordinator_that_is_down_is_named_and_nothing_is_written() -> TestResult {
    let miner = Miner::new(false)?;
    let port = common::services::free_port()?;
    let api = format!("http://127.0.0.1:{port}/api/v1");
    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "frank",
        "--yes",
    ];
    let output = miner.polaris(&api, &args).output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach the coordinator"), "{stderr}");
    assert!(stderr.contains(&api), "{stderr}");
    assert!(!miner.home.path().join("registration.json").exists());
    assert!(!miner.home.path().join("keys").exists());
    Ok(())
}

#[tokio::test]
async fn view_compute_shows_the_pod_as_the_coordinator_lists_it() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;

    let unregistered = miner.polaris(&server.api, &["view-compute"]).output()?;
    assert_eq!(unregistered.status.code(), Some(1));
    assert!(text(&unregistered.stderr).contains("polaris register"));

    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "gina",
        "--yes",
    ];
    ok(&miner.polaris(&server.api, &args).output()?);
    let record = miner.record()?;
    let table = ok(&miner.polaris(&server.api, &["view-compute"]).output()?);
    for expected in [
        "Pod Details",
        "Compute Resources",
        "Price/Hr",
        "gina",
        "Testville, TS",
        "CPU Name:",
        "Total CPUs:",
        "$0.00",
    ] {
        assert!(table.contains(expected), "{expected}: {table}");
    }
    let resource = record["resource_ids"][0].as_str().ok_or("no resource")?;
    assert!(table.contains(resource), "{table}");

    let json = ok(&miner
        .polaris(&server.api, &["view-compute", "--json"])
        .output()?);
    let pod: Pod = serde_json::from_str(&json)?;
    assert_eq!(Some(pod.id.as_str()), record["miner_id"].as_str());
    assert_eq!(pod.compute_resources.len(), 1);

    let other = miner
        .polaris(&server.api, &["view-compute", "--miner-id", "someone-else"])
        .output()?;
    assert_eq!(other.status.code(), Some(1));
    assert!(text(&other.stderr).contains("POLARIS_ADMIN_TOKEN"));
    Ok(())
}

/// The interactive path on a real terminal (tmux): arrow keys, a refused username, a
/// wallet, a hotkey and testnet, through to "Registration Complete".
#[test]
fn the_prompts_lead_from_start_to_registration_complete() -> TestResult {
    use std::time::Duration;
    let (_server_home, server, miner) = Miner::with_coordinator(true)?;
    let command = miner.terminal_command(&server.api, "");
    let Some(tmux) = common::services::Tmux::start(&command, miner.home.path())? else {
        return Ok(());
    };
    let wait = Duration::from_secs(20);
    tmux.wait_for("Do you want to proceed with registration?", wait)?;
    tmux.send(&["Enter"])?;
    tmux.wait_for("Select registration type:", wait)?;
    tmux.send(&["Enter"])?; // Bittensor Network, the first choice
    tmux.wait_for("Enter your desired username:", wait)?;
    tmux.send(&["ab", "Enter"])?;
    tmux.wait_for("3 to 32 characters", wait)?;
    // Type only once the prompt is drawn again (its terminal mode is set by then).
    tmux.wait_for_count("Enter your desired username:", 2, wait)?;
    tmux.send(&["tmux_user", "Enter"])?;
    tmux.wait_for("Let validators log in over SSH with keys", wait)?;
    tmux.send(&["y", "Enter"])?;
    tmux.wait_for("Select a wallet (coldkey):", wait)?;
    tmux.send(&["Down", "Enter"])?; // backup, then miner
    tmux.wait_for("Select a hotkey of miner:", wait)?;
    tmux.send(&["Down", "Enter"])?; // second
    tmux.wait_for("Select the network:", wait)?;
    tmux.send(&["Down", "Enter"])?; // Testnet (netuid 100)
    let screen = tmux.wait_for("EXIT=", wait)?;
    assert!(screen.contains("Registration Complete"), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    let record = miner.record()?;
    assert_eq!(record["username"], "tmux_user");
    assert_eq!(record["bittensor"]["wallet_name"], "miner");
    assert_eq!(record["bittensor"]["hotkey_name"], "second");
    assert_eq!(record["bittensor"]["netuid"], 100);
    // The SSH answer is a setting from now on.
    let dotenv = std::fs::read_to_string(miner.home.path().join(".env"))?;
    assert!(
        dotenv.lines().any(|l| l == "POLARIS_SSH_ACCESS=keys"),
        "{dotenv}"
    );
    Ok(())
}

/// The GPU columns, with the original tool's GPU registration body (tests/fixtures/original).
#[tokio::test]
async fn view_compute_shows_gpu_specs() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/miners/", server.api))
        .json(&common::fixture("registration_gpu.json", ""))
        .send()
        .await?
        .json()
        .await?;
    let record = serde_json::json!({
        "miner_id": answer["miner_id"],
        "token": answer["token"],
        "username": "gpu-miner",
        "network": "standard",
        "server_url": server.api,
        "resource_ids": answer["added_resources"],
        "registered_at": "2026-11-25T00:00:00Z",
    });
    std::fs::write(
        miner.home.path().join("registration.json"),
        serde_json::to_vec(&record)?,
    )?;
    let table = ok(&miner.polaris(&server.api, &["view-compute"]).output()?);
    let gpu = &common::fixture("registration_gpu.json", "")["compute_resources"][0]["gpu_specs"];
    let resource = answer["added_resources"][0].as_str().ok_or("no resource")?;
    for expected in [
        format!("{resource} ┆ GPU "),
        format!("GPU Name: {}", gpu["gpu_name"].as_str().ok_or("no name")?),
        format!(
            "Memory: {}",
            gpu["memory_size"].as_str().ok_or("no memory")?
        ),
        format!(
            "Clock Speed: {}",
            gpu["clock_speed"].as_str().ok_or("no clock")?
        ),
        "CUDA Cores:".to_owned(),
    ] {
        assert!(table.contains(&expected), "{expected}: {table}");
    }
    Ok(())
}

/// Declining to replace an existing registration on the terminal keeps it.
#[tokio::test]
async fn the_prompt_keeps_an_existing_registration_by_default() -> TestResult {
    use std::time::Duration;
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "hana",
        "--yes",
    ];
    ok(&miner.polaris(&server.api, &args).output()?);
    let before = miner.record()?;
    let command = miner.terminal_command(&server.api, "");
    let Some(tmux) = common::services::Tmux::start(&command, miner.home.path())? else {
        return Ok(());
    };
    let wait = Duration::from_secs(20);
    let screen = tmux.wait_for("Do you want to proceed with a new registration?", wait)?;
    assert_eq!(
        screen.matches("Existing Registration").count(),
        1,
        "shown once: {screen}"
    );
    assert!(
        screen.contains(before["miner_id"].as_str().unwrap_or("?")),
        "{screen}"
    );
    tmux.send(&["Enter"])?; // the default: no
    let screen = tmux.wait_for("EXIT=", wait)?;
    assert!(screen.contains("Using existing registration."), "{screen}");
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert_eq!(miner.record()?, before);
    Ok(())
}

#[test]
fn facts_the_coordinator_would_refuse_stop_before_anything_is_sent() -> TestResult {
    let (_server_home, server, miner) = Miner::with_coordinator(false)?;
    let long_location = "x".repeat(210);
    let args = [
        "register",
        "--network",
        "standard",
        "--username",
        "ivan",
        "--yes",
    ];
    let output = miner
        .polaris(&server.api, &args)
        .env("POLARIS_LOCATION", &long_location)
        .output()?;
    assert_eq!(
        output.status.code(),
        Some(1),
        "not a usage error: no flag can fix it"
    );
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot be sent"), "{stderr}");
    assert!(stderr.contains("location"), "{stderr}");
    assert!(!miner.home.path().join("registration.json").exists());
    Ok(())
}

/// On a terminal too, a wrong flag is final: it exits 2 instead of asking the same flag again.
#[test]
fn a_wrong_flag_on_a_terminal_is_a_usage_error() -> TestResult {
    use std::time::Duration;
    let (_server_home, server, miner) = Miner::with_coordinator(true)?;
    let command = miner.terminal_command(
        &server.api,
        "--network bittensor --username alice --wallet nope --yes",
    );
    let Some(tmux) = common::services::Tmux::start(&command, miner.home.path())? else {
        return Ok(());
    };
    let screen = tmux.wait_for("EXIT=", Duration::from_secs(20))?;
    assert!(screen.contains("EXIT=2"), "{screen}");
    assert_eq!(screen.matches("no wallet \"nope\"").count(), 1, "{screen}");
    Ok(())
}
