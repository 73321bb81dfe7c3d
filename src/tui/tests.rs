//! Screens and keys of the dashboard, without a terminal: the app is fed actions and drawn on
//! ratatui's `TestBackend`, and each screen is pinned by an insta snapshot. Times are fixed
//! (the app's clock is set) and ids are made up, so the snapshots do not move.

use chrono::{DateTime, TimeZone, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use super::action::{Action, Effect, Job, JobResult};
use super::app::{App, Setup, Tab};
use super::log_buffer::{LogLine, Tag};
use super::services::agent_link::{AgentLink, Down};
use super::services::coordinator::{CoordinatorView, Health, Registration};
use super::services::log_feed::{Feed, FeedEvent, Source};
use super::services::sampler::MachineUsage;
use super::theme::Theme;
use super::widgets::popup::Popup;
use super::wizard::{Facts, Phase};
use crate::agent::control::Snapshot;
use crate::register::engine::Context;
use crate::register::record::RegistrationRecord;
use crate::register::wallets::{BittensorWallet, CommuneKey, Hotkey};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

fn app() -> App {
    let setup = Setup {
        home: "/home/miner/.polaris".into(),
        standalone: true,
        server_url: "http://127.0.0.1:8420/api/v1".into(),
        relay: None,
        compute_repo: Some("https://example.org/compute-subnet.git".into()),
        log_lines: 1000,
    };
    let mut app = App::new(setup, Theme::plain());
    app.now = now();
    app
}

fn act(app: &mut App, action: Action) -> Vec<Effect> {
    app.update_at(action)
}

fn key(app: &mut App, code: KeyCode) -> Vec<Effect> {
    act(app, Action::Key(KeyEvent::new(code, KeyModifiers::NONE)))
}

fn chars(app: &mut App, text: &str) {
    for c in text.chars() {
        key(app, KeyCode::Char(c));
    }
}

fn screen(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = match Terminal::new(TestBackend::new(width, height)) {
        Ok(terminal) => terminal,
        Err(err) => panic!("test terminal: {err}"),
    };
    if let Err(err) = terminal.draw(|frame| app.draw(frame)) {
        panic!("draw: {err}");
    }
    terminal.backend().to_string()
}

fn snapshot(compute: serde_json::Value) -> Snapshot {
    let value = json!({
        "agent_pid": 4242,
        "started_at": "2026-12-01T11:55:00Z",
        "compute_configured": !compute.is_null(),
        "compute": compute,
        "heartbeat": {
            "miner_id": "mnr_TEST_0001",
            "last_ack": "2026-12-01T11:59:57Z",
            "last_rtt_ms": 1.8,
            "acknowledged": 30,
            "failures": 0,
            "last_error": null
        },
        "coordinator": "http://127.0.0.1:8420/api/v1",
        "version": "0.1.0"
    });
    match serde_json::from_value(value) {
        Ok(s) => s,
        Err(err) => panic!("snapshot fixture: {err}"),
    }
}

fn running_compute() -> serde_json::Value {
    json!({
        "phase": "running", "pid": 4250, "started_at": "2026-12-01T11:58:00Z", "restarts": 2,
        "last_exit": {"code": 1, "signal": null, "at": "2026-12-01T11:57:59Z"},
        "crash_looping": false, "spawn_error": null
    })
}

fn record() -> RegistrationRecord {
    let value = json!({
        "miner_id": "mnr_TEST_0001", "token": "never-shown", "username": "alice",
        "network": "standard", "server_url": "http://127.0.0.1:8420/api/v1",
        "resource_ids": ["res-cpu-1"], "registered_at": "2026-12-01T11:00:00Z"
    });
    match serde_json::from_value(value) {
        Ok(r) => r,
        Err(err) => panic!("record fixture: {err}"),
    }
}

fn pod() -> crate::api::Pod {
    let value = json!({
        "id": "mnr_TEST_0001", "name": "alice", "location": "Lisbon, PT",
        "description": "Standard Registration registered via the Polaris CLI",
        "created_at": "2026-12-01T11:00:00Z", "updated_at": "2026-12-01T11:00:00Z",
        "status": "pending_verification", "heartbeat_status": "online",
        "last_seen": "2026-12-01T11:59:57Z",
        "compute_resources": [
            {"id": "res-gpu-1", "resource_type": "GPU", "location": "Lisbon, PT", "hourly_price": 1.5,
             "ram": "125.80GB", "storage": {"type": "NVME", "capacity": "1863.02GB", "read_speed": "3500MB/s", "write_speed": "2900MB/s"},
             "gpu_specs": {"gpu_name": "NVIDIA H200", "memory_size": "141.00GB", "cuda_cores": 16896, "clock_speed": "1980MHz", "uuid": "GPU-0000-TEST"}},
            {"id": "res-cpu-1", "resource_type": "CPU", "location": "Lisbon, PT", "hourly_price": 0.0,
             "ram": "125.80GB", "storage": {"type": "NVME", "capacity": "1863.02GB"},
             "cpu_specs": {"cpu_name": "AMD EPYC 9654", "total_cpus": 192, "threads_per_core": 2, "cpu_max_mhz": 3700.0}}
        ]
    });
    match serde_json::from_value(value) {
        Ok(p) => p,
        Err(err) => panic!("pod fixture: {err}"),
    }
}

fn registered(app: &mut App) {
    let mut view = CoordinatorView::new(app.setup.server_url.clone());
    view.health = Health::Up { rtt_ms: 2.0 };
    view.registration = Registration::Present(Box::new(record()));
    view.pod = Some(pod());
    act(app, Action::Coordinator(Box::new(view)));
}

fn unregistered(app: &mut App) {
    let mut view = CoordinatorView::new(app.setup.server_url.clone());
    view.health = Health::Up { rtt_ms: 2.0 };
    view.registration = Registration::Missing;
    act(app, Action::Coordinator(Box::new(view)));
}

fn usage() -> MachineUsage {
    let mut usage = MachineUsage {
        samples: 40,
        memory_used: 40 << 30,
        memory_total: 128 << 30,
        disk_used: 300 << 30,
        disk_total: 1863 << 30,
        ..MachineUsage::default()
    };
    for i in 0..40u64 {
        usage.cpu.0.push_back((i * 7) % 100);
        usage.memory.0.push_back(31);
        usage.disk.0.push_back(16);
    }
    usage.gpu_note = Some("no NVIDIA driver (libnvidia-ml.so.1 not loaded)".into());
    usage
}

fn agent_up(app: &mut App, compute: serde_json::Value) {
    act(
        app,
        Action::Agent(AgentLink::Up(Box::new(snapshot(compute)))),
    );
}

fn agent_down(app: &mut App) {
    act(
        app,
        Action::Agent(AgentLink::Down {
            why: Down::NotRunning,
            since: now(),
        }),
    );
}

#[test]
fn overview_registered_with_the_agent_up() {
    let mut app = app();
    registered(&mut app);
    agent_up(&mut app, running_compute());
    act(&mut app, Action::Usage(Box::new(usage())));
    insta::assert_snapshot!(screen(&mut app, 120, 30));
}

/// The tunnel's line as the agent publishes it: up with its address, then down with the reason
/// and the next try.
#[test]
fn overview_shows_the_tunnel_up_then_down() {
    let mut app = app();
    app.setup.relay = Some("ssh://tunnel@relay.example.net:2222".into());
    registered(&mut app);
    let mut with_tunnel = snapshot(running_compute());
    let tunnel = json!({
        "relay": "relay.example.net:2222",
        "target": "127.0.0.1:22",
        "state": "up",
        "port": 20417,
        "address": "ssh://miner@relay.example.net:20417",
        "since": "2026-12-01T11:58:00Z",
        "host_key": "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
        "sessions": 1,
        "last_probe": "2026-12-01T11:59:40Z"
    });
    with_tunnel.tunnel = match serde_json::from_value(tunnel) {
        Ok(t) => Some(t),
        Err(err) => panic!("tunnel fixture: {err}"),
    };
    // With SSH access by key on, the Services box counts the keys the coordinator let in.
    with_tunnel.ssh_access = Some(crate::agent::control::SshAccess {
        user: "miner".into(),
        keys: vec![crate::api::AuthorizedKey {
            fingerprint: "SHA256:npyRrFbj6R/2BZlaet8hJYfwjGGcAYtrnRKI62oOJwE".into(),
            comment: Some("validator 5F3s".into()),
            expires_at: None,
        }],
    });
    act(
        &mut app,
        Action::Agent(AgentLink::Up(Box::new(with_tunnel.clone()))),
    );
    act(&mut app, Action::Usage(Box::new(usage())));
    insta::assert_snapshot!(screen(&mut app, 120, 30));
    if let Some(t) = with_tunnel.tunnel.as_mut() {
        t.phase = crate::agent::tunnel::Phase::Down {
            reason: "the session ended: early eof".into(),
            retry_at: now() + chrono::Duration::seconds(2),
        };
    }
    act(
        &mut app,
        Action::Agent(AgentLink::Up(Box::new(with_tunnel))),
    );
    let down = screen(&mut app, 120, 30);
    assert!(
        down.contains(
            "✖ down: the session ended: early eof; retrying relay.example.net:2222 in 2s"
        ),
        "{down}"
    );
}

#[test]
fn overview_not_registered_and_the_agent_down_offers_to_start_it() {
    let mut app = app();
    unregistered(&mut app);
    agent_down(&mut app);
    assert!(
        matches!(app.popups.last(), Some(Popup::Confirm { .. })),
        "the start offer"
    );
    insta::assert_snapshot!(screen(&mut app, 120, 30));
    // The offer is made once: declined, it does not come back with the next update.
    key(&mut app, KeyCode::Esc);
    agent_down(&mut app);
    assert!(app.popups.is_empty());
    insta::assert_snapshot!(
        "overview_agent_down_after_declining",
        screen(&mut app, 120, 30)
    );
}

#[test]
fn accepting_the_offer_starts_the_agent() {
    let mut app = app();
    agent_down(&mut app);
    let effects = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::StartAgent)]),
        "{effects:?}"
    );
    assert!(app.busy.is_some(), "a spinner shows while it starts");
}

#[test]
fn overview_with_the_coordinator_down_keeps_working() {
    let mut app = app();
    let mut view = CoordinatorView::new(app.setup.server_url.clone());
    view.health = Health::Down {
        error: "connection refused".into(),
        retry_at: now() + chrono::Duration::seconds(4),
    };
    view.registration = Registration::Present(Box::new(record()));
    act(&mut app, Action::Coordinator(Box::new(view)));
    agent_up(&mut app, running_compute());
    insta::assert_snapshot!(screen(&mut app, 120, 30));
}

#[test]
fn standalone_the_coordinator_is_down_with_the_agent_not_beside_it() {
    let mut app = app();
    assert!(app.setup.standalone);
    let mut view = CoordinatorView::new(app.setup.server_url.clone());
    view.health = Health::Down {
        error: "connection refused".into(),
        retry_at: now() + chrono::Duration::seconds(4),
    };
    act(&mut app, Action::Coordinator(Box::new(view.clone())));
    agent_down(&mut app);
    let text = screen(&mut app, 120, 30);
    assert!(
        text.contains("down with the agent, which hosts it"),
        "{text}"
    );
    assert!(!text.contains("connection refused"), "{text}");
    // Once the agent runs, a silent coordinator is a fault of its own again.
    agent_up(&mut app, running_compute());
    act(&mut app, Action::Coordinator(Box::new(view)));
    let text = screen(&mut app, 120, 30);
    assert!(text.contains("no answer: connection refused"), "{text}");
}

#[test]
fn a_damaged_registration_says_what_to_do() {
    let mut app = app();
    let mut view = CoordinatorView::new(app.setup.server_url.clone());
    view.registration = Registration::Damaged(
        "/home/miner/.polaris/registration.json is damaged: restore it, or run `polaris register` again to replace it".into(),
    );
    act(&mut app, Action::Coordinator(Box::new(view)));
    agent_up(&mut app, serde_json::Value::Null);
    let text = screen(&mut app, 120, 30);
    assert!(text.contains("registration.json cannot be read"), "{text}");
    assert!(text.contains("run `polaris register` again"), "{text}");
}

/// The Heartbeats box says what the agent says: a damaged registration, a refused miner, an
/// unreachable coordinator, figures that come late.
#[test]
fn the_heartbeats_box_tells_a_damaged_registration_a_refusal_and_late_figures_apart() {
    let mut app = app();
    registered(&mut app);
    let mut show = |heartbeat: serde_json::Value| {
        let mut snapshot = snapshot(serde_json::Value::Null);
        snapshot.heartbeat = match serde_json::from_value(heartbeat) {
            Ok(h) => h,
            Err(err) => panic!("heartbeat fixture: {err}"),
        };
        act(&mut app, Action::Agent(AgentLink::Up(Box::new(snapshot))));
        screen(&mut app, 120, 30)
    };
    let damaged = show(json!({
        "miner_id": "mnr_TEST_0001", "acknowledged": 30, "failures": 0,
        "last_ack": "2026-12-01T11:59:00Z",
        "registration_problem": "/home/miner/.polaris/registration.json is damaged: restore it, or run `polaris register` again to replace it"
    }));
    assert!(
        damaged.contains("✖ stopped: registration damaged"),
        "{damaged}"
    );
    assert!(!damaged.contains("✔ acknowledged"), "{damaged}");
    let refused = show(json!({
        "miner_id": "mnr_TEST_0001", "acknowledged": 30, "failures": 4,
        "last_error": {"kind": "refused", "status": 401,
                       "message": "the coordinator does not know this miner (401 Unauthorized): run `polaris register` again"}
    }));
    assert!(refused.contains("✖ refused (4 in a row)"), "{refused}");
    let unreachable = show(json!({
        "miner_id": "mnr_TEST_0001", "acknowledged": 30, "failures": 2,
        "last_error": {"kind": "unreachable", "status": null,
                       "message": "http://127.0.0.1:8420/api/v1/heart_beat unreachable: connection refused"}
    }));
    assert!(
        unreachable.contains("✖ coordinator unreachable (2 in a row)"),
        "{unreachable}"
    );
    let late = show(json!({
        "miner_id": "mnr_TEST_0001", "acknowledged": 30, "failures": 0,
        "last_ack": "2026-12-01T11:59:57Z",
        "sampling_problem": "this machine's figures did not come within 2s"
    }));
    assert!(late.contains("✔ acknowledged"), "{late}");
    assert!(
        late.contains("⚠ this machine's figures did not come within 2s"),
        "{late}"
    );
}

fn context() -> Context {
    // SSH access is set already (a setting), so the flows below are not asked about it.
    let info = json!({
        "location": "Lisbon, PT",
        "compute_resources": [{
            "id": "res-cpu-1", "resource_type": "CPU", "ram": "15.68GB",
            "storage": {"type": "SSD", "capacity": "467.91GB", "password": "hunter2"},
            "cpu_specs": {"total_cpus": 8, "online_cpus": "0-7", "cpu_name": "AMD EPYC"}
        }]
    });
    Context {
        existing: None,
        system_info: match serde_json::from_value(info) {
            Ok(i) => i,
            Err(err) => panic!("system info fixture: {err}"),
        },
        bittensor_wallets: vec![
            BittensorWallet {
                name: "backup".into(),
                coldkey_ss58: None,
                hotkeys: vec![Hotkey {
                    name: "default".into(),
                    ss58: None,
                }],
            },
            BittensorWallet {
                name: "miner".into(),
                coldkey_ss58: Some("5DxvopyTBNpoBdAQ7nKNqKNkkL7Map7LptJYuD4JCCXfyjbu".into()),
                hotkeys: vec![
                    Hotkey {
                        name: "default".into(),
                        ss58: Some("5GbQQkrZxQWM5DTANdNGvKrWfaPMXXfQMN88Xo6JQymqUngd".into()),
                    },
                    Hotkey {
                        name: "second".into(),
                        ss58: Some("5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX".into()),
                    },
                ],
            },
        ],
        commune_keys: vec![CommuneKey {
            name: "miner".into(),
            ss58: None,
        }],
        ssh_access: Some(crate::config::SshAccess::Off),
    }
}

fn facts(context: &Context) -> Facts {
    let wire = json!({
        "location": context.system_info.location,
        "compute_resources": context.system_info.compute_resources,
    });
    let mut rows = Vec::new();
    crate::register::display::flatten(&wire, "", &mut rows);
    Facts {
        rows,
        warnings: vec![],
        ssh_warning: Some("no SSH server answers on port 22: validators cannot verify this miner until one does; registering anyway.".into()),
        user_home: "/nonexistent-home".into(),
        btcli: false,
        comx: false,
    }
}

/// The wizard on the Register tab, prepared (as the Prepare job would leave it).
fn wizard() -> App {
    let mut app = app();
    unregistered(&mut app);
    agent_up(&mut app, serde_json::Value::Null);
    key(&mut app, KeyCode::Char('2'));
    let effects = key(&mut app, KeyCode::Enter);
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::Prepare)]),
        "{effects:?}"
    );
    let context = context();
    let facts = facts(&context);
    app.wizard.begin(context, facts);
    app
}

#[test]
fn the_wizard_walks_a_bittensor_registration_step_by_step() {
    let mut app = app();
    unregistered(&mut app);
    key(&mut app, KeyCode::Char('2'));
    insta::assert_snapshot!("wizard_0_start", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("wizard_1_preparing", screen(&mut app, 100, 30));
    let context = context();
    let facts = facts(&context);
    app.wizard.begin(context, facts);
    let info = screen(&mut app, 100, 30);
    assert!(!info.contains("hunter2"), "secrets are masked:\n{info}");
    insta::assert_snapshot!("wizard_2_system_information", info);
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("wizard_3_network", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter); // Bittensor, the first choice
    chars(&mut app, "a b");
    insta::assert_snapshot!(
        "wizard_4_username_refused_as_typed",
        screen(&mut app, 100, 30)
    );
    for _ in 0..3 {
        key(&mut app, KeyCode::Backspace);
    }
    chars(&mut app, "alice_01");
    insta::assert_snapshot!("wizard_5_username_valid", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!("wizard_6_wallet", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!("wizard_7_hotkey", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Down);
    insta::assert_snapshot!("wizard_8_chain", screen(&mut app, 100, 30));
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("wizard_9_review", screen(&mut app, 100, 30));
    let effects = key(&mut app, KeyCode::Enter);
    let Some(Effect::Spawn(Job::Submit(plan))) = effects.first() else {
        panic!("submits: {effects:?}");
    };
    let facts = plan
        .bittensor
        .as_ref()
        .map(|b| (b.wallet_name.as_str(), b.hotkey_name.as_str(), b.netuid));
    assert_eq!(facts, Some(("miner", "second", 100)));
    insta::assert_snapshot!("wizard_10_submitting", screen(&mut app, 100, 30));
    act(
        &mut app,
        Action::Job(JobResult::Submitted(Err(
            "cannot reach the coordinator at http://127.0.0.1:8420/api/v1: connection refused"
                .into(),
        ))),
    );
    insta::assert_snapshot!("wizard_11_submit_failed", screen(&mut app, 100, 30));
    let effects = key(&mut app, KeyCode::Char('r'));
    assert!(
        matches!(effects.first(), Some(Effect::Spawn(Job::Submit(_)))),
        "a retry, not a dead end"
    );
    let mut done = record();
    done.network = crate::register::record::Network::Bittensor;
    act(
        &mut app,
        Action::Job(JobResult::Submitted(Ok(Box::new(done)))),
    );
    let text = screen(&mut app, 100, 30);
    assert!(
        text.contains("Registration Complete") && text.contains("Important: Save your Miner ID"),
        "{text}"
    );
    assert!(!text.contains("never-shown"), "the token is not shown");
    insta::assert_snapshot!("wizard_12_done", text);
}

#[test]
fn back_never_loses_an_answer_typed_before() {
    let mut app = wizard();
    key(&mut app, KeyCode::Enter); // system information
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter); // Standard
    chars(&mut app, "carol");
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(app.wizard.phase, Phase::Review(_)),
        "{:?}",
        app.wizard.phase
    );
    key(&mut app, KeyCode::Esc);
    assert!(matches!(
        app.wizard.phase,
        Phase::Asking(crate::register::engine::Question::Username)
    ));
    assert_eq!(
        app.wizard.username.text(),
        "carol",
        "the typed name is still there"
    );
    key(&mut app, KeyCode::Esc);
    assert!(matches!(
        app.wizard.phase,
        Phase::Asking(crate::register::engine::Question::Network)
    ));
    let network = crate::register::engine::Question::Network;
    assert_eq!(
        app.wizard.selected(&network),
        2,
        "Standard is still highlighted"
    );
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    assert!(
        matches!(app.wizard.phase, Phase::Review(_)),
        "{:?}",
        app.wizard.phase
    );
}

#[test]
fn no_wallet_shows_the_command_to_run() {
    let mut context = context();
    context.bittensor_wallets.clear();
    let facts = facts(&context);
    let mut bare = app();
    unregistered(&mut bare);
    key(&mut bare, KeyCode::Char('2'));
    key(&mut bare, KeyCode::Enter);
    bare.wizard.begin(context, facts);
    key(&mut bare, KeyCode::Enter);
    key(&mut bare, KeyCode::Enter);
    chars(&mut bare, "alice");
    key(&mut bare, KeyCode::Enter);
    let text = screen(&mut bare, 100, 24);
    assert!(
        text.contains("btcli wallet create --wallet.hotkey default --wallet.name NAME"),
        "{text}"
    );
    insta::assert_snapshot!("wizard_no_wallet", text);
}

#[test]
fn a_coordinator_that_is_down_gives_a_retry() {
    let mut app = app();
    key(&mut app, KeyCode::Char('2'));
    key(&mut app, KeyCode::Enter);
    act(&mut app, Action::Job(JobResult::Prepared(Err("cannot reach the coordinator at http://127.0.0.1:8420/api/v1 (connection refused): start it with `polaris server`, or set SERVER_URL".into()))));
    insta::assert_snapshot!(screen(&mut app, 100, 20));
    let effects = key(&mut app, KeyCode::Char('r'));
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::Prepare)]),
        "{effects:?}"
    );
}

#[test]
fn compute_lists_the_pod_sorts_and_shows_details() {
    let mut app = app();
    registered(&mut app);
    key(&mut app, KeyCode::Char('3'));
    assert_eq!(app.tab, Tab::Compute);
    insta::assert_snapshot!("compute_pod", screen(&mut app, 120, 24));
    key(&mut app, KeyCode::Char('s')); // by Type
    let text = screen(&mut app, 120, 24);
    let cpu = text.find("res-cpu-1").unwrap_or(usize::MAX);
    let gpu = text.find("res-gpu-1").unwrap_or(0);
    assert!(cpu < gpu, "CPU sorts before GPU by type:\n{text}");
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    let details = screen(&mut app, 120, 24);
    assert!(
        details.contains("gpu_specs.uuid") && details.contains("GPU-0000-TEST"),
        "{details}"
    );
    insta::assert_snapshot!("compute_details", details);
    key(&mut app, KeyCode::Char('q'));
    assert!(
        app.popups.is_empty() && !app.quit,
        "q closes the popup first"
    );
}

#[test]
fn the_disk_benchmark_asks_then_shows_its_gauge() {
    let mut app = app();
    registered(&mut app);
    key(&mut app, KeyCode::Char('3'));
    key(&mut app, KeyCode::Char('b'));
    assert!(matches!(app.popups.last(), Some(Popup::Confirm { .. })));
    let effects = key(&mut app, KeyCode::Char('y'));
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::Bench)]),
        "{effects:?}"
    );
    act(
        &mut app,
        Action::Job(JobResult::BenchProgress {
            phase: crate::inventory::bench::Phase::Write,
            fraction: 0.4,
        }),
    );
    insta::assert_snapshot!("compute_bench_running", screen(&mut app, 100, 24));
}

#[test]
fn processes_show_both_and_confirm_before_stopping() {
    let mut app = app();
    registered(&mut app);
    agent_up(&mut app, running_compute());
    let effects = key(&mut app, KeyCode::Char('4'));
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Measure(i) if i == &vec![(4242, false), (4250, true)])),
        "{effects:?}"
    );
    let mut u = usage();
    u.processes = vec![
        super::services::sampler::ProcessUsage {
            pid: 4242,
            cpu_percent: 0.1,
            rss_bytes: 12 << 20,
            processes: 1,
        },
        super::services::sampler::ProcessUsage {
            pid: 4250,
            cpu_percent: 97.5,
            rss_bytes: 3 << 30,
            processes: 4,
        },
    ];
    act(&mut app, Action::Usage(Box::new(u)));
    insta::assert_snapshot!("processes_running", screen(&mut app, 120, 20));
    key(&mut app, KeyCode::Down);
    let effects = key(&mut app, KeyCode::Char('r'));
    assert!(
        effects.is_empty(),
        "nothing happens before the confirmation"
    );
    insta::assert_snapshot!("processes_confirm_restart", screen(&mut app, 120, 20));
    let effects = key(&mut app, KeyCode::Char('y'));
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::RestartCompute)]),
        "{effects:?}"
    );
}

#[test]
fn processes_say_when_compute_subnet_crash_loops() {
    let mut app = app();
    agent_up(
        &mut app,
        json!({
            "phase": "backoff", "pid": null, "started_at": "2026-12-01T11:59:50Z", "restarts": 9,
            "last_exit": {"code": 2, "signal": null, "at": "2026-12-01T11:59:51Z"},
            "crash_looping": true, "spawn_error": null, "next_start_at": "2026-12-01T12:00:32Z"
        }),
    );
    key(&mut app, KeyCode::Char('4'));
    let text = screen(&mut app, 120, 20);
    assert!(text.contains("crash-looping, retry in 32s"), "{text}");
    insta::assert_snapshot!("processes_crash_looping", text);
}

#[test]
fn processes_with_the_agent_down() {
    let mut app = app();
    agent_down(&mut app);
    app.popups.clear();
    key(&mut app, KeyCode::Char('4'));
    insta::assert_snapshot!(screen(&mut app, 120, 20));
    let effects = key(&mut app, KeyCode::Char('s'));
    assert!(
        matches!(effects.as_slice(), [Effect::Spawn(Job::StartAgent)]),
        "{effects:?}"
    );
}

fn log_line(second: u32, tag: &str, text: &str) -> Feed {
    let raw = format!("2026-12-01T11:59:{second:02}.000Z {tag} | {text}");
    Feed {
        generation: 1,
        event: FeedEvent::Line(LogLine::parse(&raw, Tag::Stdout)),
    }
}

#[test]
fn logs_follow_pause_and_search() {
    let mut app = app();
    agent_up(&mut app, running_compute());
    let effects = key(&mut app, KeyCode::Char('5'));
    assert!(
        effects.iter().any(|e| matches!(
            e,
            Effect::FollowLogs {
                source: Source::Compute,
                generation: 1
            }
        )),
        "{effects:?}"
    );
    let mut lines: Vec<Feed> = (0..30)
        .map(|i| log_line(i, "stdout", &format!("epoch {i} loss 0.{i:02}")))
        .collect();
    lines.push(log_line(15, "stderr", "WARNING: disk nearly full"));
    // A feed that was replaced: its lines are ignored.
    lines.push(Feed {
        generation: 0,
        event: FeedEvent::Line(LogLine::parse("stale", Tag::Stdout)),
    });
    act(&mut app, Action::Logs(lines));
    insta::assert_snapshot!("logs_following", screen(&mut app, 100, 20));
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Up);
    act(
        &mut app,
        Action::Logs(vec![log_line(59, "stdout", "epoch 99 done")]),
    );
    let paused = screen(&mut app, 100, 20);
    assert!(paused.contains("paused — 1 new line "), "{paused}");
    key(&mut app, KeyCode::Char('/'));
    chars(&mut app, "disk");
    key(&mut app, KeyCode::Enter);
    insta::assert_snapshot!("logs_search", screen(&mut app, 100, 20));
    key(&mut app, KeyCode::Char('G'));
    assert!(app.logs.buffer.is_following());
}

#[test]
fn help_comes_from_the_keymap_and_popups_take_keys_first() {
    let mut app = app();
    agent_up(&mut app, serde_json::Value::Null);
    key(&mut app, KeyCode::Char('5'));
    key(&mut app, KeyCode::Char('?'));
    let text = screen(&mut app, 100, 40);
    assert!(
        text.contains("agent / compute_subnet") && text.contains("Everywhere"),
        "{text}"
    );
    insta::assert_snapshot!("help_on_logs", text);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.popups.is_empty() && !app.quit);
    key(&mut app, KeyCode::Char('q'));
    assert!(app.quit, "q quits once no popup is open");
}

#[test]
fn ctrl_c_quits_from_anywhere_and_tab_cycles() {
    let mut app = wizard();
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Enter);
    chars(&mut app, "q1?"); // typed into the username, not commands
    assert_eq!(app.wizard.username.text(), "q1?");
    assert!(!app.quit);
    key(&mut app, KeyCode::Tab);
    assert_eq!(app.tab, Tab::Compute);
    key(&mut app, KeyCode::BackTab);
    key(&mut app, KeyCode::BackTab);
    assert_eq!(app.tab, Tab::Overview);
    act(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    );
    assert!(app.quit);
}

#[test]
fn a_tiny_terminal_gets_a_notice_not_a_crash() {
    let mut app = app();
    registered(&mut app);
    agent_up(&mut app, running_compute());
    insta::assert_snapshot!("too_small_60x15", screen(&mut app, 60, 15));
    let tiny = screen(&mut app, 20, 5);
    assert!(tiny.contains("Terminal too"), "{tiny}");
    for tab in ['2', '3', '4', '5'] {
        key(&mut app, KeyCode::Char(tab));
        let _ = screen(&mut app, 20, 5);
        let _ = screen(&mut app, 64, 16);
    }
}

#[test]
fn the_farewell_says_the_agent_keeps_running() {
    let mut app = app();
    agent_up(&mut app, serde_json::Value::Null);
    assert!(app.farewell().contains("keeps running (PID 4242)"));
    assert!(app.farewell().contains("polaris stop"));
    agent_down(&mut app);
    assert!(app.farewell().contains("not running"));
}

#[test]
fn idle_updates_do_not_redraw_hidden_tabs() {
    let mut app = app();
    key(&mut app, KeyCode::Char('3'));
    app.take_dirty();
    act(&mut app, Action::Usage(Box::new(usage())));
    assert!(!app.take_dirty(), "the load is not drawn on Compute");
    assert_eq!(app.next_tick(), None, "no timer where nothing ages");
    key(&mut app, KeyCode::Char('1'));
    assert_eq!(app.next_tick(), Some(std::time::Duration::from_secs(1)));
}
