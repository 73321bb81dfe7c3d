//! `polaris inventory` against this machine's own tools: lscpu, nproc, /proc/meminfo, lsblk and
//! df must agree with what we report; the JSON must register with a real coordinator; the disk
//! benchmark must leave nothing behind however it ends. Linux only: the reference tools are.

#![cfg(target_os = "linux")]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{self, TestResult, services};
use polaris::api::{RegistrationRequest, SystemInventory};
use serde_json::Value;

/// `polaris inventory ARGS` in `home`, with no coordinator (a closed port) unless `server` says.
fn inventory(home: &Path, server: Option<&str>, args: &[&str]) -> Command {
    let mut command = common::polaris(home);
    command
        .arg("inventory")
        .args(args)
        .env("POLARIS_LOCATION", "Testville, TS")
        .env("SERVER_URL", server.unwrap_or("http://127.0.0.1:9/api/v1"))
        .env("POLARIS_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1");
    command
}

fn json_of(output: &Output) -> Result<Value, Box<dyn std::error::Error>> {
    assert!(
        output.status.success(),
        "inventory failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn tool(program: &str, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .output()?;
    assert!(output.status.success(), "{program} {args:?} failed");
    Ok(String::from_utf8(output.stdout)?)
}

fn cpu_set(text: &str) -> BTreeSet<u64> {
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (u64, u64) = (lo.parse().unwrap_or(0), hi.parse().unwrap_or(0));
        set.extend(lo..=hi);
    }
    set
}

#[test]
fn cpu_facts_match_lscpu_and_nproc() -> TestResult {
    let home = tempfile::tempdir()?;
    let info = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    let cpu = &info["compute_resources"][0]["cpu_specs"];
    let lscpu: Value = serde_json::from_str(&tool("lscpu", &["-J"])?)?;
    let fields: BTreeMap<String, String> = lscpu["lscpu"]
        .as_array()
        .ok_or("lscpu -J has no list")?
        .iter()
        .filter_map(|f| {
            let name = f["field"].as_str()?.trim_end_matches(':').to_owned();
            Some((name, f["data"].as_str()?.to_owned()))
        })
        .collect();
    let field = |name: &str| fields.get(name).map(String::as_str);
    assert_eq!(field("Architecture"), cpu["architecture"].as_str());
    assert_eq!(field("Vendor ID"), cpu["vendor_id"].as_str());
    assert_eq!(field("Model name"), cpu["cpu_name"].as_str());
    assert_eq!(field("Byte Order"), cpu["byte_order"].as_str());
    assert_eq!(field("Address sizes"), cpu["address_sizes"].as_str());
    assert_eq!(field("CPU op-mode(s)"), cpu["op_modes"].as_str());
    for (name, key) in [
        ("CPU(s)", "total_cpus"),
        ("CPU family", "cpu_family"),
        ("Model", "model"),
        ("Stepping", "stepping"),
        ("Thread(s) per core", "threads_per_core"),
        ("Core(s) per socket", "cores_per_socket"),
        ("Socket(s)", "sockets"),
    ] {
        let ours = cpu[key].as_u64().map(|n| n.to_string());
        assert_eq!(field(name), ours.as_deref(), "lscpu {name} vs {key}");
    }
    for (name, key) in [
        ("CPU max MHz", "cpu_max_mhz"),
        ("CPU min MHz", "cpu_min_mhz"),
    ] {
        let theirs = field(name).and_then(|v| v.parse::<f64>().ok());
        match (theirs, cpu[key].as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1.0, "{name}: lscpu {a}, ours {b}"),
            (a, b) => assert_eq!(a.is_some(), b.is_some(), "{name}: lscpu {a:?}, ours {b:?}"),
        }
    }
    let online: BTreeSet<u64> = cpu["online_cpu_list"]
        .as_array()
        .ok_or("no online_cpu_list")?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let lscpu_online = cpu_set(field("On-line CPU(s) list").ok_or("no online list")?);
    assert_eq!(online, lscpu_online);
    assert_eq!(
        cpu_set(cpu["online_cpus"].as_str().ok_or("no online_cpus")?),
        online,
        "online_cpus and online_cpu_list name the same CPUs"
    );
    let nproc_all: u64 = tool("nproc", &["--all"])?.trim().parse()?;
    assert_eq!(cpu["total_cpus"].as_u64(), Some(nproc_all));
    let nproc: usize = tool("nproc", &[])?.trim().parse()?;
    assert!(
        nproc <= online.len(),
        "nproc {nproc} > online {}",
        online.len()
    );
    Ok(())
}

#[test]
fn memory_matches_proc_meminfo() -> TestResult {
    let home = tempfile::tempdir()?;
    let info = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    let meminfo = std::fs::read_to_string("/proc/meminfo")?;
    let kib = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let total = kib("MemTotal:").ok_or("no MemTotal")? * 1024;
    assert_eq!(info["memory"]["total_bytes"].as_u64(), Some(total));
    let gib = total as f64 / f64::from(1u32 << 30);
    assert_eq!(
        info["compute_resources"][0]["ram"].as_str(),
        Some(format!("{gib:.2}GB").as_str())
    );
    let available = info["memory"]["available_bytes"]
        .as_u64()
        .ok_or("no available")?;
    let now = kib("MemAvailable:").ok_or("no MemAvailable")? * 1024;
    let drift = available.abs_diff(now) as f64 / total as f64;
    assert!(drift < 0.1, "available {available} vs meminfo {now}");
    Ok(())
}

#[test]
fn disks_match_lsblk_and_free_space_matches_df() -> TestResult {
    let home = tempfile::tempdir()?;
    let info = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    let lsblk: Value = serde_json::from_str(&tool(
        "lsblk",
        &["-J", "-b", "-d", "-o", "NAME,SIZE,ROTA,TYPE"],
    )?)?;
    let virtual_prefixes = ["loop", "ram", "zram", "dm-", "md", "nbd"];
    let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
    let flag = |v: &Value| v.as_bool().or_else(|| Some(v.as_str()? == "1"));
    let theirs: BTreeSet<(String, u64, bool)> = lsblk["blockdevices"]
        .as_array()
        .ok_or("lsblk -J has no list")?
        .iter()
        .filter(|d| d["type"] == "disk")
        .filter_map(|d| {
            Some((
                d["name"].as_str()?.to_owned(),
                number(&d["size"])?,
                flag(&d["rota"])?,
            ))
        })
        .filter(|(name, size, _)| {
            *size > 0 && !virtual_prefixes.iter().any(|p| name.starts_with(p))
        })
        .collect();
    let ours: Vec<&Value> = info["disks"].as_array().ok_or("no disks")?.iter().collect();
    let names_and_sizes = |set: &BTreeSet<(String, u64, bool)>| -> BTreeSet<(String, u64)> {
        set.iter().map(|(n, s, _)| (n.clone(), *s)).collect()
    };
    let our_disks: BTreeSet<(String, u64, bool)> = ours
        .iter()
        .filter_map(|d| {
            Some((
                d["name"].as_str()?.to_owned(),
                d["size_bytes"].as_u64()?,
                false,
            ))
        })
        .collect();
    assert_eq!(
        names_and_sizes(&our_disks),
        names_and_sizes(&theirs),
        "disks (name, bytes)"
    );
    // The type agrees with the kernel's rotational flag wherever we name one.
    for disk in &ours {
        let name = disk["name"].as_str().unwrap_or_default();
        let rotational = theirs.iter().find(|(n, _, _)| n == name).map(|d| d.2);
        match disk["type"].as_str() {
            Some("HDD") => assert_eq!(rotational, Some(true), "{name}"),
            Some("SSD" | "NVME") => assert_eq!(rotational, Some(false), "{name}"),
            Some("Unknown") => {}
            other => panic!("{name}: unexpected type {other:?}"),
        }
    }
    let storage = &info["compute_resources"][0]["storage"];
    assert!(["NVME", "SSD", "HDD", "Unknown"].contains(&storage["type"].as_str().unwrap_or("")));
    assert!(
        storage["read_speed"].is_null(),
        "no speed claimed before --bench"
    );

    let df = tool(
        "df",
        &["-B1", "--output=size,avail", &home.path().to_string_lossy()],
    )?;
    let numbers: Vec<u64> = df
        .lines()
        .nth(1)
        .ok_or("df printed no row")?
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    let data = &info["data_dir"];
    assert_eq!(
        data["total_bytes"].as_u64(),
        numbers.first().copied(),
        "df size"
    );
    let free = data["available_bytes"].as_u64().ok_or("no free space")?;
    let df_free = *numbers.get(1).ok_or("no avail")?;
    assert!(
        free.abs_diff(df_free) < 1 << 30,
        "free {free} vs df {df_free}"
    );
    Ok(())
}

#[test]
fn no_nvidia_driver_means_no_gpu_and_no_error() -> TestResult {
    let home = tempfile::tempdir()?;
    let output = inventory(home.path(), None, &["--json"]).output()?;
    let info = json_of(&output)?;
    assert_eq!(info["gpu_status"]["count"], 0);
    let reason = info["gpu_status"]["reason"].as_str().ok_or("no reason")?;
    assert!(reason.starts_with("no NVIDIA driver"), "{reason}");
    let resources = info["compute_resources"].as_array().ok_or("no resources")?;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0]["resource_type"], "CPU");
    assert!(
        resources[0].get("gpu_specs").is_none(),
        "never a made-up GPU"
    );

    let table = inventory(home.path(), None, &[]).output()?;
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout)?;
    assert!(
        text.contains("GPUs        none — no NVIDIA driver"),
        "{text}"
    );
    Ok(())
}

#[test]
fn resource_ids_are_stable_across_runs() -> TestResult {
    let home = tempfile::tempdir()?;
    let first = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    let second = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    let id = |v: &Value| v["compute_resources"][0]["id"].as_str().map(str::to_owned);
    assert!(id(&first).is_some());
    assert_eq!(id(&first), id(&second));
    assert_eq!(
        first["machine"]["machine_id"],
        second["machine"]["machine_id"]
    );
    Ok(())
}

#[tokio::test]
async fn json_registers_with_a_real_coordinator() -> TestResult {
    let (_server_home, server) = common::coordinator()?;
    let home = tempfile::tempdir()?;
    let output = inventory(home.path(), Some(&server.api), &["--json"]).output()?;
    let text = String::from_utf8(output.stdout.clone())?;
    let system_info: SystemInventory = serde_json::from_str(&text)?;
    let raw = json_of(&output)?;
    assert_eq!(
        raw["network"]["public_ip"], "127.0.0.1",
        "public IP via /whoami"
    );
    assert_eq!(system_info.location.as_deref(), Some("Testville, TS"));

    let request = RegistrationRequest {
        name: "inventory-test".to_owned(),
        location: system_info.location.clone(),
        description: None,
        compute_resources: system_info.compute_resources.clone(),
        registration_type: None,
        relay_key: None,
    };
    let http = reqwest::Client::new();
    let answer = http
        .post(format!("{}/miners/", server.api))
        .json(&request)
        .send()
        .await?;
    assert_eq!(answer.status(), 201, "{}", answer.text().await?);
    let body: Value = answer.json().await?;
    let miner_id = body["miner_id"].as_str().ok_or("no miner id")?;
    let pod: Value = http
        .get(format!("{}/miners/{miner_id}", server.api))
        .bearer_auth(body["token"].as_str().ok_or("no token")?)
        .send()
        .await?
        .json()
        .await?;
    let resource = &pod["compute_resources"][0];
    assert_eq!(
        resource["id"].as_str(),
        Some(system_info.compute_resources[0].id.as_str())
    );
    assert!(
        resource["cpu_specs"]["online_cpu_list"].is_array(),
        "extra facts kept"
    );
    Ok(())
}

#[test]
fn check_reports_every_gate_against_real_ssh_and_coordinator() -> TestResult {
    let Some(sshd) = services::Sshd::start()? else {
        return Ok(());
    };
    let (_server_home, server) = common::coordinator()?;
    let home = tempfile::tempdir()?;
    // The test's sshd listens on loopback only, and the coordinator (on this machine) sees
    // loopback: without SSH_HOST registration would advertise the LAN address.
    let output = inventory(home.path(), Some(&server.api), &["--check", "--json"])
        .env("SSH_PORT", sshd.port.to_string())
        .env("SSH_HOST", "127.0.0.1")
        .output()?;
    let report: Value = serde_json::from_slice(&output.stdout)?;
    let gates = report["gates"].as_array().ok_or("no gates")?;
    let gate = |name: &str| gates.iter().find(|g| g["name"] == name).cloned();
    let ssh = gate("SSH port listening").ok_or("no SSH gate")?;
    assert_eq!(ssh["passed"], true, "{ssh}");
    assert!(
        ssh["detail"]
            .as_str()
            .unwrap_or("")
            .contains("SSH-2.0-OpenSSH"),
        "{ssh}"
    );
    assert_eq!(
        gate("coordinator reachable").ok_or("no gate")?["passed"],
        true
    );
    assert_eq!(gates.len(), 5);
    // The exit status follows the gates, whatever this machine's free space.
    let all = gates.iter().all(|g| g["passed"] == true);
    assert_eq!(report["passed"], all);
    assert_eq!(output.status.success(), all);

    // With SSH stopped and the coordinator gone, both gates fail and so does the command.
    let port = sshd.port;
    drop(sshd);
    drop(server);
    let output = inventory(home.path(), None, &["--check"])
        .env("SSH_PORT", port.to_string())
        .output()?;
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout)?;
    assert!(text.contains("FAIL  SSH port listening"), "{text}");
    assert!(text.contains("FAIL  coordinator reachable"), "{text}");
    Ok(())
}

/// `inventory --check --json` with SSH_* set as given and no coordinator; the report and the
/// SSH gate.
fn ssh_gate(
    home: &Path,
    env: &[(&str, String)],
) -> Result<(Value, Value), Box<dyn std::error::Error>> {
    let mut command = inventory(home, None, &["--check", "--json"]);
    // A fixed user: the login question is asked for it, whoever runs the tests.
    command.env("SSH_USER", "validator");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output()?;
    let report: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&output.stderr)))?;
    let gate = report["gates"]
        .as_array()
        .ok_or("no gates")?
        .iter()
        .find(|g| g["id"] == "ssh")
        .cloned()
        .ok_or("no SSH gate")?;
    Ok((report, gate))
}

const PASSWORD_WARNING: &str =
    "sshd allows password logins: set `PasswordAuthentication no` (validators log in with keys)";

#[test]
fn check_warns_when_sshd_allows_passwords() -> TestResult {
    for passwords in [true, false] {
        let Some(sshd) = services::Sshd::start_options(services::SshdOptions {
            passwords,
            ..Default::default()
        })?
        else {
            return Ok(());
        };
        let home = tempfile::tempdir()?;
        let env = [
            ("SSH_PORT", sshd.port.to_string()),
            ("SSH_HOST", "127.0.0.1".to_owned()),
        ];
        let (_, ssh) = ssh_gate(home.path(), &env)?;
        // A warning, not a failure: the gate still passes.
        assert_eq!(ssh["passed"], true, "passwords {passwords}: {ssh}");
        if passwords {
            assert_eq!(ssh["warning"], PASSWORD_WARNING, "{ssh}");
        } else {
            assert!(ssh["warning"].is_null(), "keys only: {ssh}");
        }

        // The text report shows it under the gate's line.
        let mut command = inventory(home.path(), None, &["--check"]);
        command.env("SSH_USER", "validator");
        for (key, value) in &env {
            command.env(key, value);
        }
        let text = String::from_utf8(command.output()?.stdout)?;
        assert!(text.contains("pass  SSH port listening"), "{text}");
        assert_eq!(
            text.contains(&format!("warning: {PASSWORD_WARNING}")),
            passwords,
            "{text}"
        );
    }
    Ok(())
}

#[test]
fn check_probes_the_address_registration_advertises() -> TestResult {
    let Some(sshd) = services::Sshd::start()? else {
        return Ok(());
    };
    let home = tempfile::tempdir()?;
    // sshd answers on 127.0.0.1; the advertised 127.0.0.2 (loopback too) has nothing on that
    // port. Loopback answering must not pass the gate.
    let env = [
        ("SSH_PORT", sshd.port.to_string()),
        ("SSH_HOST", "127.0.0.2".to_owned()),
    ];
    let (report, ssh) = ssh_gate(home.path(), &env)?;
    assert_eq!(ssh["passed"], false, "{ssh}");
    let detail = ssh["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with(&format!(
            "127.0.0.1 answers but the advertised 127.0.0.2:{} refuses: connection refused",
            sshd.port
        )),
        "{detail}"
    );
    assert!(ssh["warning"].is_null(), "nothing to log in to: {ssh}");
    assert_eq!(report["passed"], false);
    Ok(())
}

#[test]
fn check_with_a_relay_probes_what_the_tunnel_forwards_to() -> TestResult {
    let Some(sshd) = services::Sshd::start()? else {
        return Ok(());
    };
    let home = tempfile::tempdir()?;
    // Nothing on SSH_PORT or at the relay (the agent is not running): the tunnel's target is
    // what renters reach, and it answers.
    let relay_port = services::free_port()?;
    let remote_port = services::free_port()?;
    let target = format!("127.0.0.1:{}", sshd.port);
    let mut env = vec![
        ("SSH_PORT", services::free_port()?.to_string()),
        (
            "POLARIS_RELAY",
            format!("ssh://tunnel@127.0.0.1:{relay_port}"),
        ),
        ("POLARIS_RELAY_REMOTE_PORT", remote_port.to_string()),
        ("POLARIS_TUNNEL_TARGET", target.clone()),
    ];
    let (_, ssh) = ssh_gate(home.path(), &env)?;
    assert_eq!(ssh["passed"], true, "{ssh}");
    let detail = ssh["detail"].as_str().unwrap_or("");
    assert!(
        detail.starts_with(&format!(
            "the agent advertises the relay's ssh://validator@127.0.0.1:{remote_port}; \
             the tunnel forwards to {target}, which answers SSH-2.0-OpenSSH"
        )),
        "{detail}"
    );

    // The same relay, forwarding to a port where nothing listens: the gate fails and says where.
    let closed = format!("127.0.0.1:{}", services::free_port()?);
    env.retain(|(key, _)| *key != "POLARIS_TUNNEL_TARGET");
    env.push(("POLARIS_TUNNEL_TARGET", closed.clone()));
    let (_, ssh) = ssh_gate(home.path(), &env)?;
    assert_eq!(ssh["passed"], false, "{ssh}");
    let detail = ssh["detail"].as_str().unwrap_or("");
    assert!(
        detail.contains(&format!(
            "the tunnel forwards to {closed}, which refuses: connection refused"
        )),
        "{detail}"
    );
    Ok(())
}

/// The benchmark's test file is unlinked while open: a run killed by SIGKILL or SIGINT in the
/// middle leaves no file behind. We watch /proc to be sure the kill lands mid-benchmark.
#[test]
fn bench_leaves_no_file_when_killed() -> TestResult {
    for signal in ["-KILL", "-INT"] {
        let home = on_disk_home()?;
        let mut child = inventory(home.path(), None, &["--bench"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let fd_dir = format!("/proc/{}/fd", child.id());
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = false;
        while !seen && Instant::now() < deadline && child.try_wait()?.is_none() {
            seen = std::fs::read_dir(&fd_dir)
                .map(|entries| {
                    entries.flatten().any(|e| {
                        std::fs::read_link(e.path())
                            .map(|t| t.to_string_lossy().contains(".polaris-disk-bench-"))
                            .unwrap_or(false)
                    })
                })
                .unwrap_or(false);
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(seen, "never saw the benchmark's open test file");
        Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        let status = child.wait()?;
        assert!(!status.success(), "{signal}: the run was interrupted");
        let left: Vec<String> = walk(home.path());
        assert!(
            left.iter()
                .all(|p| !p.contains(".polaris-disk-bench-") && !p.ends_with("disk-bench.json")),
            "{signal}: files left: {left:?}"
        );
    }
    Ok(())
}

#[test]
fn bench_result_is_kept_and_sent() -> TestResult {
    let home = on_disk_home()?;
    let output = inventory(home.path(), None, &["--bench", "--json"]).output()?;
    let info = json_of(&output)?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("Disk speed: write"), "{stderr}");
    let storage = &info["compute_resources"][0]["storage"];
    for key in ["read_speed", "write_speed"] {
        let speed = storage[key].as_str().ok_or(key)?;
        assert!(speed.ends_with("MB/s"), "{speed}");
    }
    assert!(home.path().join("inventory/disk-bench.json").exists());
    assert!(
        walk(home.path())
            .iter()
            .all(|p| !p.contains(".polaris-disk-bench-"))
    );
    // A later run without --bench still reports the measured figures.
    let again = json_of(&inventory(home.path(), None, &["--json"]).output()?)?;
    assert_eq!(
        again["compute_resources"][0]["storage"]["read_speed"],
        storage["read_speed"]
    );
    Ok(())
}

#[test]
fn output_file_is_written_and_a_bad_path_is_a_clear_error() -> TestResult {
    let home = tempfile::tempdir()?;
    std::fs::create_dir(home.path().join("out"))?;
    let target = home.path().join("out/system_info.json");
    let output = inventory(home.path(), None, &["--output", &target.to_string_lossy()]).output()?;
    assert!(output.status.success());
    let written: SystemInventory = serde_json::from_slice(&std::fs::read(&target)?)?;
    assert_eq!(written.compute_resources.len(), 1);

    let blocker = home.path().join("a-file");
    std::fs::write(&blocker, "x")?;
    let bad = blocker.join("system_info.json");
    let output = inventory(home.path(), None, &["--output", &bad.to_string_lossy()]).output()?;
    // A file where the directory should be is refused as a usage error, before measuring.
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("no directory"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    Ok(())
}

#[test]
fn bench_shows_a_progress_bar_on_a_terminal() -> TestResult {
    // util-linux's `script` gives the command a pseudo-terminal, as a person's shell would.
    if Command::new("script").arg("--version").output().is_err() {
        services::missing_service("script (util-linux)", "it is not installed");
        return Ok(());
    }
    let home = on_disk_home()?;
    let command = format!("'{}' inventory --bench", env!("CARGO_BIN_EXE_polaris"));
    let output = common::cleared(Command::new("script"), home.path())
        .args(["-qec", &command, "/dev/null"])
        .env("POLARIS_LOCATION", "Testville, TS")
        .env("SERVER_URL", "http://127.0.0.1:9/api/v1")
        .env("POLARIS_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1")
        .env("TERM", "xterm")
        .output()?;
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(screen.contains("write  ["), "no write bar: {screen}");
    assert!(screen.contains("read   ["), "no read bar: {screen}");
    Ok(())
}

/// A POLARIS_HOME on the disk (under target/), not in a /tmp that may be tmpfs, where
/// `--bench` refuses to run.
fn on_disk_home() -> std::io::Result<tempfile::TempDir> {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
}

#[test]
fn bench_refuses_a_memory_filesystem_and_changes_nothing() -> TestResult {
    let mounts = std::fs::read_to_string("/proc/self/mounts")?;
    let Some(shm) = mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (point, kind) = (fields.nth(1)?, fields.next()?);
        (kind == "tmpfs" && point == "/dev/shm").then_some(point)
    }) else {
        eprintln!("skipped: /dev/shm is not a tmpfs here");
        return Ok(());
    };
    let home = tempfile::tempdir_in(shm)?;
    let output = inventory(home.path(), None, &["--bench"]).output()?;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr)?;
    assert!(stderr.contains("would be RAM's"), "{stderr}");
    assert!(walk(home.path()).is_empty(), "nothing written");
    Ok(())
}

fn walk(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            found.push(path.to_string_lossy().into_owned());
            if path.is_dir() {
                found.extend(walk(&path));
            }
        }
    }
    found
}
