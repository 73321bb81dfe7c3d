//! The agent's two contracts with other programs, pinned by snapshot tests (`snapshots/`):
//!
//! - the control socket's lines ([`control`]), read by the dashboard and by `polaris` commands
//!   that may be another version than the agent answering them;
//! - `polaris status --json` ([`StatusReport`]), read by people's scripts.
//!
//! Both serialize the agent's internal state structs (`heartbeat::State`, `supervisor::State`,
//! `tunnel::State`) directly, since a wire twin of each would be a copy that says nothing new.
//! These tests are what keeps an internal change from silently changing either contract: the
//! fixtures below set every field and name every variant, so a new field or variant fails to
//! compile here and a changed one fails a snapshot.
//!
//! When one fails: if the change is meant, bump [`control::PROTOCOL`] (the socket; an older peer
//! would misread the lines otherwise) and treat it as an API change of `status --json` (the
//! README documents its fields; the commit says what changed for scripts), then accept the new
//! snapshots (`cargo insta review`, or `INSTA_UPDATE=always cargo test --lib agent::contracts`).

use chrono::{DateTime, Utc};

use super::control::{self, Request, Response, Snapshot};
use super::heartbeat::{self, Failure, FailureKind};
use super::log_files::Process;
use super::status_report::StatusReport;
use super::supervisor::{self, Exit};
use super::tunnel;
use super::usage::Usage;

/// What a failed pin says (insta prints it above the diff).
const SOCKET_CHANGED: &str = "The control socket's lines changed shape. If that is meant, bump \
    control::PROTOCOL (an older dashboard or agent would misread them otherwise), then accept the \
    snapshots (cargo insta review). See src/agent/contracts.rs.";
const STATUS_CHANGED: &str = "The JSON of `polaris status --json` changed shape: that is an API \
    change for the scripts that read it. If it is meant, update the README and say so in the \
    commit (and bump control::PROTOCOL if the agent's snapshot inside changed), then accept the \
    snapshots (cargo insta review). See src/agent/contracts.rs.";

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or_default()
}

/// Every field set, none left to its default.
fn full_snapshot() -> Snapshot {
    Snapshot {
        agent_pid: 4242,
        version: "1.2.3".into(),
        started_at: at(0),
        compute_configured: true,
        compute: Some(supervisor::State {
            phase: supervisor::Phase::Backoff,
            pid: Some(4343),
            started_at: Some(at(10)),
            restarts: 3,
            last_exit: Some(Exit {
                code: Some(1),
                signal: Some(9),
                at: at(20),
            }),
            crash_looping: true,
            spawn_error: Some("sh: compute_subnet: not found".into()),
            next_start_at: Some(at(30)),
        }),
        heartbeat: heartbeat::State {
            miner_id: Some("m0".into()),
            last_ack: Some(at(40)),
            last_rtt_ms: Some(12.5),
            acknowledged: 17,
            failures: 2,
            last_error: Some(Failure {
                kind: FailureKind::Rejected,
                status: Some(503),
                message: "the coordinator answered 503".into(),
            }),
            registration_problem: Some("registration.json cannot be read".into()),
            sampling_problem: Some("GPU figures are late".into()),
        },
        coordinator: Some("http://127.0.0.1:8420/api/v1".into()),
        tunnel: Some(tunnel::State {
            relay: "relay.example:22".into(),
            target: "127.0.0.1:22".into(),
            phase: tunnel::Phase::Up {
                port: 40022,
                address: "ssh://renter@relay.example:40022".into(),
                since: at(50),
            },
            host_key: Some("SHA256:abc".into()),
            sessions: 2,
            last_probe: Some(at(60)),
        }),
        ssh_access: Some(control::SshAccess {
            user: "miner".into(),
            keys: vec![crate::api::AuthorizedKey {
                fingerprint: "SHA256:npyRrFbj6R/2BZlaet8hJYfwjGGcAYtrnRKI62oOJwE".into(),
                comment: Some("validator 5F3s".into()),
                expires_at: Some(at(70)),
            }],
        }),
    }
}

/// Every request and every answer the socket carries, one per line as sent.
fn every_line() -> Vec<String> {
    let requests = [
        Request::Status,
        Request::Stop,
        Request::RestartCompute,
        Request::StartCompute,
        Request::StopCompute,
        Request::Watch {
            protocol: control::PROTOCOL,
        },
        Request::Logs {
            process: Process::ComputeSubnet,
            stderr: true,
            lines: 100,
            follow: true,
        },
        Request::Logs {
            process: Process::Polaris,
            stderr: false,
            lines: 0,
            follow: false,
        },
    ];
    // A new variant must be added to the list above: this match stops compiling until it is.
    for request in &requests {
        match request {
            Request::Status
            | Request::Stop
            | Request::RestartCompute
            | Request::StartCompute
            | Request::StopCompute
            | Request::Watch { .. }
            | Request::Logs { .. } => {}
        }
    }
    let answers = [
        Response::Status(Box::new(full_snapshot())),
        Response::Done {
            message: "stopped".into(),
        },
        Response::Refused {
            message: "no such log".into(),
        },
        Response::Line {
            line: "a log line".into(),
        },
        Response::Hello {
            protocol: control::PROTOCOL,
            version: "1.2.3".into(),
        },
    ];
    for answer in &answers {
        match answer {
            Response::Status(_)
            | Response::Done { .. }
            | Response::Refused { .. }
            | Response::Line { .. }
            | Response::Hello { .. } => {}
        }
    }
    let requests = requests.iter().map(serde_json::to_string);
    let answers = answers.iter().map(serde_json::to_string);
    requests
        .chain(answers)
        .map(|line| line.unwrap_or_else(|err| panic!("cannot serialize a line: {err}")))
        .collect()
}

/// Every value of the enums inside a snapshot, beyond the one [`full_snapshot`] shows.
fn every_variant() -> Vec<String> {
    let phases = [
        supervisor::Phase::Starting,
        supervisor::Phase::Running,
        supervisor::Phase::Backoff,
        supervisor::Phase::Stopping,
        supervisor::Phase::Stopped,
    ];
    for phase in phases {
        match phase {
            supervisor::Phase::Starting
            | supervisor::Phase::Running
            | supervisor::Phase::Backoff
            | supervisor::Phase::Stopping
            | supervisor::Phase::Stopped => {}
        }
    }
    let kinds = [
        FailureKind::Unreachable,
        FailureKind::Refused,
        FailureKind::Rejected,
        FailureKind::BadAnswer,
    ];
    for kind in kinds {
        match kind {
            FailureKind::Unreachable
            | FailureKind::Refused
            | FailureKind::Rejected
            | FailureKind::BadAnswer => {}
        }
    }
    let tunnel_phases = [
        tunnel::Phase::Connecting { since: at(0) },
        tunnel::Phase::Up {
            port: 40022,
            address: "ssh://renter@relay.example:40022".into(),
            since: at(0),
        },
        tunnel::Phase::Down {
            reason: "connection refused".into(),
            retry_at: at(5),
        },
        tunnel::Phase::Stopped {
            reason: "the relay's host key changed".into(),
        },
    ];
    for phase in &tunnel_phases {
        match phase {
            tunnel::Phase::Connecting { .. }
            | tunnel::Phase::Up { .. }
            | tunnel::Phase::Down { .. }
            | tunnel::Phase::Stopped { .. } => {}
        }
    }
    let values = phases
        .iter()
        .map(serde_json::to_string)
        .chain(kinds.iter().map(serde_json::to_string))
        .chain(tunnel_phases.iter().map(serde_json::to_string));
    values
        .map(|value| value.unwrap_or_else(|err| panic!("cannot serialize a value: {err}")))
        .collect()
}

fn pretty(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|err| panic!("cannot serialize: {err}"))
}

/// The socket's shape, a fully populated snapshot first. When this fails, bump
/// [`control::PROTOCOL`] if the change is meant (see the module docs).
#[test]
fn the_control_socket_keeps_its_shape() {
    insta::with_settings!({ description => SOCKET_CHANGED }, {
        insta::assert_snapshot!("control_snapshot", pretty(&full_snapshot()));
        insta::assert_snapshot!("control_lines", every_line().join("\n"));
        insta::assert_snapshot!("control_variants", every_variant().join("\n"));
    });
}

/// `polaris status --json`'s shape, for a running agent and for none. When this fails, it is an
/// API change (see the module docs).
#[test]
fn status_json_keeps_its_shape() {
    let snapshot = full_snapshot();
    let problems = [
        "heartbeats stopped: registration.json cannot be read".to_owned(),
        "compute_subnet is crash-looping".to_owned(),
    ];
    let running = StatusReport {
        polaris: Some(&snapshot),
        compute_subnet_configured: true,
        compute_subnet_usage: Some(Usage {
            cpu_percent: 12.5,
            rss_bytes: 1 << 30,
            processes: 3,
        }),
        healthy: false,
        problems: &problems,
    };
    let not_running = StatusReport {
        polaris: None,
        compute_subnet_configured: false,
        compute_subnet_usage: None,
        healthy: false,
        problems: &["polaris is not running".to_owned()],
    };
    let json = |report: &StatusReport<'_>| {
        report
            .to_json()
            .unwrap_or_else(|err| panic!("cannot serialize the report: {err}"))
    };
    insta::with_settings!({ description => STATUS_CHANGED }, {
        insta::assert_snapshot!("status_json_running", json(&running));
        insta::assert_snapshot!("status_json_not_running", json(&not_running));
    });
}
