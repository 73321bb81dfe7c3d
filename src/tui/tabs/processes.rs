//! Tab 4, Processes: the agent and compute_subnet — PID, state, uptime, restarts, last exit,
//! CPU and memory (compute_subnet's whole process tree) — and starting, stopping, restarting
//! and updating them. Anything that stops a process asks first.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Paragraph, Row, Table, TableState, Wrap};

use crate::agent::supervisor::{Exit, Phase};
use crate::inventory::units::human;
use crate::tui::action::{Effect, Job};
use crate::tui::app::App;
use crate::tui::keymap::Command;
use crate::tui::widgets::popup::Popup;

use super::{ago, short_duration};

const AGENT: usize = 0;
const COMPUTE: usize = 1;

fn exit_text(exit: &Exit) -> String {
    match (exit.code, exit.signal) {
        (Some(code), _) => format!("exit code {code}"),
        (_, Some(signal)) => format!("signal {signal}"),
        _ => "unknown".to_owned(),
    }
}

/// compute_subnet's state in a table cell: running / restarting in N s / crash-looping /
/// stopped.
fn short_state(app: &App, state: Option<&crate::agent::supervisor::State>) -> String {
    let Some(c) = state else {
        return "… starting".to_owned();
    };
    let next = || {
        c.next_start_at
            .map(|at| short_duration((at - app.now).num_seconds().max(0)))
            .unwrap_or_else(|| "a moment".to_owned())
    };
    match c.phase {
        Phase::Running => "✔ running".to_owned(),
        Phase::Backoff if c.crash_looping => format!("✖ crash-looping, retry in {}", next()),
        Phase::Backoff => format!("… restarting in {}", next()),
        Phase::Stopped => "– stopped (s starts it)".to_owned(),
        Phase::Stopping => "… stopping".to_owned(),
        Phase::Starting if c.spawn_error.is_some() => "✖ cannot start".to_owned(),
        Phase::Starting => "… starting".to_owned(),
    }
}

pub(crate) fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let snapshot = app.agent.snapshot().cloned();
    let compute_running = snapshot
        .as_ref()
        .and_then(|s| s.compute.as_ref())
        .is_some_and(|c| c.pid.is_some());
    let configured = snapshot.as_ref().is_some_and(|s| s.compute_configured);
    let row = app.processes_selected;
    let refuse = |app: &mut App, text: &str| {
        app.popups.push(Popup::message("Not now", text.to_owned()));
        Vec::new()
    };
    match (command, row) {
        (Command::Up, _) => app.processes_selected = AGENT,
        (Command::Down, _) => app.processes_selected = COMPUTE,
        (Command::Start, AGENT) if snapshot.is_none() && app.busy.is_none() => return app.run(Job::StartAgent),
        (Command::Start, AGENT) => return refuse(app, "The agent is already running."),
        (Command::Start, _) if snapshot.is_none() => return refuse(app, "Start the agent first: it runs compute_subnet."),
        (Command::Start, _) if !configured => return refuse(app, "compute_subnet is not configured: set POLARIS_COMPUTE_CMD (and POLARIS_COMPUTE_DIR) for the agent, then restart it."),
        (Command::Start, _) if compute_running => return refuse(app, "compute_subnet is already running."),
        (Command::Start, _) => return app.run(Job::StartCompute),
        (Command::Stop, AGENT) if snapshot.is_some() => app.popups.push(Popup::confirm(
            "Stop the agent?",
            "Heartbeats stop (the coordinator is told this miner is going offline), compute_subnet stops with it, \
             and in standalone mode the local coordinator stops too."
                .to_owned(),
            Job::StopAgent,
        )),
        (Command::Stop, AGENT) => return refuse(app, "The agent is not running."),
        (Command::Stop, _) if compute_running => app.popups.push(Popup::confirm(
            "Stop compute_subnet?",
            "The agent stops its whole process tree (SIGTERM, then SIGKILL after 10 s) and does not restart it until you start it again. \
             Heartbeats go on."
                .to_owned(),
            Job::StopCompute,
        )),
        (Command::Stop, _) => return refuse(app, "compute_subnet is not running."),
        (Command::Restart, AGENT) => return refuse(app, "To restart the agent, stop it (x) and start it (s)."),
        (Command::Restart, _) if snapshot.is_some() && configured => app.popups.push(Popup::confirm(
            "Restart compute_subnet?",
            "The agent stops its whole process tree and starts it again at once.".to_owned(),
            Job::RestartCompute,
        )),
        (Command::Restart, _) => return refuse(app, "compute_subnet is not configured, or the agent is not running."),
        (Command::UpdateSubnet, _) => match &app.setup.compute_repo {
            Some(repo) => app.popups.push(Popup::confirm(
                "Update compute_subnet?",
                format!("Fetch and fast-forward {repo} (local changes are refused, never lost), then restart compute_subnet if it runs."),
                Job::UpdateSubnet,
            )),
            None => return refuse(app, "Set POLARIS_COMPUTE_REPO (the git URL) and POLARIS_COMPUTE_DIR (where it lives) first."),
        },
        _ => {}
    }
    Vec::new()
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let [table_area, detail] =
        Layout::vertical([Constraint::Length(6), Constraint::Min(0)]).areas(area);
    let snapshot = app.agent.snapshot();
    let usage_of = |pid: Option<u32>| {
        let found = pid.and_then(|pid| app.usage.processes.iter().find(|u| u.pid == pid));
        match found {
            Some(u) => (format!("{:.1}", u.cpu_percent), human(u.rss_bytes)),
            None if pid.is_some() => ("…".to_owned(), "…".to_owned()),
            None => ("—".to_owned(), "—".to_owned()),
        }
    };
    let agent_row = match snapshot {
        Some(s) => {
            let (cpu, rss) = usage_of(Some(s.agent_pid));
            vec![
                "polaris (agent)".to_owned(),
                s.agent_pid.to_string(),
                "✔ running".to_owned(),
                ago(app, s.started_at),
                "—".to_owned(),
                "—".to_owned(),
                cpu,
                rss,
            ]
        }
        None => vec![
            "polaris (agent)".to_owned(),
            "—".to_owned(),
            "✖ stopped".to_owned(),
            "—".to_owned(),
            "—".to_owned(),
            "—".to_owned(),
            "—".to_owned(),
            "—".to_owned(),
        ],
    };
    let compute = snapshot.and_then(|s| s.compute.as_ref());
    let compute_state = match (snapshot, compute) {
        (None, _) => "– agent down".to_owned(),
        (Some(s), _) if !s.compute_configured => "– not configured".to_owned(),
        (Some(_), c) => short_state(app, c),
    };
    let (cpu, rss) = usage_of(compute.and_then(|c| c.pid));
    let compute_row = vec![
        "compute_subnet".to_owned(),
        compute
            .and_then(|c| c.pid)
            .map_or_else(|| "—".to_owned(), |p| p.to_string()),
        compute_state,
        compute
            .filter(|c| c.phase == Phase::Running)
            .and_then(|c| c.started_at)
            .map_or_else(|| "—".to_owned(), |at| ago(app, at)),
        compute.map_or_else(|| "—".to_owned(), |c| c.restarts.to_string()),
        compute.and_then(|c| c.last_exit.as_ref()).map_or_else(
            || "—".to_owned(),
            |e| format!("{}, {} ago", exit_text(e), ago(app, e.at)),
        ),
        cpu,
        rss,
    ];
    let header = Row::new([
        "Process",
        "PID",
        "State",
        "Uptime",
        "Restarts",
        "Last exit",
        "CPU %",
        "Memory",
    ])
    .style(t.title);
    let widths = [
        Constraint::Length(16),
        Constraint::Length(8),
        Constraint::Min(24),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(20),
        Constraint::Length(6),
        Constraint::Length(10),
    ];
    let rows = [agent_row, compute_row].map(|cells| Row::new(cells.into_iter().map(Cell::from)));
    let table = Table::new(rows, widths)
        .header(header)
        .row_highlight_style(t.selected)
        .block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .title(" Processes "),
        );
    let mut state = TableState::default().with_selected(Some(app.processes_selected));
    frame.render_stateful_widget(table, table_area, &mut state);
    let mut lines = Vec::new();
    if let Some(u) = compute
        .and_then(|c| c.pid)
        .and_then(|pid| app.usage.processes.iter().find(|u| u.pid == pid))
    {
        lines.push(Line::styled(
            format!(
                "compute_subnet's CPU and memory are its whole process tree: {} processes now.",
                u.processes
            ),
            t.dim,
        ));
    }
    if let Some(c) = compute {
        if let Some(why) = &c.spawn_error {
            lines.push(Line::styled(
                format!("✖ compute_subnet could not be started: {why}"),
                t.bad,
            ));
        }
        if c.crash_looping {
            lines.push(Line::styled("✖ compute_subnet keeps exiting soon after it starts: see its stderr on the Logs tab (5).", t.bad));
        }
    }
    lines.push(Line::from(vec![
        Span::styled("Logs ", t.dim),
        Span::raw(format!(
            "{}/logs (compute_subnet_stdout.log, compute_subnet_stderr.log, polaris_stdout.log)",
            app.setup.home.display()
        )),
    ]));
    lines.push(Line::styled(
        "Quitting the dashboard leaves both running; `polaris stop` stops them.",
        t.dim,
    ));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), detail);
}
