//! Tab 1, Overview: this miner, its heartbeats, the agent and compute_subnet in one line each,
//! the tunnel, and this machine's load with a sparkline of the last minutes.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph, Sparkline, Wrap};

use crate::agent::heartbeat::FailureKind;
use crate::agent::supervisor::Phase;
use crate::inventory::units::human;
use crate::tui::app::App;
use crate::tui::services::agent_link::{AgentLink, Down};
use crate::tui::services::coordinator::{Health, Registration};
use crate::tui::services::sampler::Series;

use super::{ago, short_duration};

fn block(title: &str) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Rounded)
        .title(format!(" {title} "))
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let gpus = app.usage.gpus.len() as u16;
    let [top, services, rest] = Layout::vertical([
        Constraint::Length(7),
        Constraint::Length(6),
        Constraint::Min(5 + gpus),
    ])
    .areas(area);
    // The machine box is as tall as its graphs need, so no empty frame fills the screen.
    let [machine, _] = Layout::vertical([
        Constraint::Length(machine_height(app, rest.height)),
        Constraint::Min(0),
    ])
    .areas(rest);
    let [miner, beats] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
    draw_miner(app, frame, miner);
    draw_heartbeats(app, frame, beats);
    draw_services(app, frame, services);
    draw_machine(app, frame, machine);
}

fn field<'a>(app: &App, name: &'a str, value: impl Into<Span<'a>>) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<12}"), app.theme.dim),
        value.into(),
    ])
}

fn draw_miner(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let c = &app.coordinator;
    let mut lines = Vec::new();
    match &c.registration {
        Registration::Present(record) => {
            lines.push(field(
                app,
                "Miner ID",
                Span::styled(record.miner_id.clone(), t.title),
            ));
            lines.push(field(app, "Username", record.username.clone()));
            lines.push(field(app, "Network", record.network.label()));
        }
        Registration::Missing => {
            lines.push(Line::styled("Not registered yet.", t.warn));
            lines.push(Line::from(vec![
                Span::raw("Press "),
                Span::styled("r", t.key),
                Span::raw(" to register this machine."),
            ]));
            lines.push(Line::raw(""));
        }
        Registration::Damaged(why) => {
            lines.push(Line::styled("✖ registration.json cannot be read:", t.bad));
            lines.push(Line::raw(why.clone()));
        }
        Registration::Unknown => lines.push(Line::styled("reading registration.json…", t.dim)),
    }
    lines.push(field(app, "Coordinator", c.url.clone()));
    let hosted_by_a_stopped_agent =
        app.setup.standalone && matches!(app.agent, AgentLink::Down { .. });
    let health = match &c.health {
        Health::Unknown => Span::styled("asking…", t.dim),
        // Standalone, the agent hosts the coordinator: its silence is no separate fault.
        Health::Down { .. } if hosted_by_a_stopped_agent => {
            Span::styled("– down with the agent, which hosts it", t.dim)
        }
        Health::Up { rtt_ms } => Span::styled(format!("✔ answers ({rtt_ms:.0} ms)"), t.ok),
        Health::Down { error, retry_at } => Span::styled(
            format!(
                "✖ no answer: {error}; next try in {}",
                short_duration((*retry_at - app.now).num_seconds().max(0))
            ),
            t.bad,
        ),
    };
    lines.push(field(app, "", health));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block("This miner")),
        area,
    );
}

fn draw_heartbeats(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let mut lines = Vec::new();
    match app.agent.snapshot() {
        Some(snapshot) => {
            let beat = &snapshot.heartbeat;
            match (&beat.last_ack, &beat.last_error, &beat.registration_problem) {
                (_, _, Some(why)) => {
                    lines.push(Line::styled("✖ stopped: registration damaged", t.bad));
                    lines.push(Line::raw(why.clone()));
                }
                (_, Some(error), _) if beat.failures > 0 => {
                    // A refused miner needs the user; an unreachable coordinator usually not.
                    let headline = match error.kind {
                        FailureKind::Refused => "✖ refused",
                        FailureKind::Unreachable => "✖ coordinator unreachable",
                        FailureKind::Rejected | FailureKind::BadAnswer => "✖ failing",
                    };
                    lines.push(Line::styled(
                        format!("{headline} ({} in a row)", beat.failures),
                        t.bad,
                    ));
                    lines.push(Line::raw(error.message.clone()));
                }
                (Some(at), _, _) => {
                    lines.push(Line::styled(
                        format!("✔ acknowledged {} ago", ago(app, *at)),
                        t.ok,
                    ));
                    lines.push(field(
                        app,
                        "round trip",
                        beat.last_rtt_ms
                            .map_or_else(|| "—".to_owned(), |ms| format!("{ms:.1} ms")),
                    ));
                    lines.push(field(
                        app,
                        "since start",
                        format!("{} acknowledged", beat.acknowledged),
                    ));
                }
                (None, _, _) if beat.miner_id.is_none() => {
                    lines.push(Line::styled("waiting for registration", t.warn));
                    lines.push(Line::raw("they start once this machine is registered"));
                }
                (None, _, _) => lines.push(Line::styled("no heartbeat acknowledged yet", t.warn)),
            }
            if let Some(why) = &beat.sampling_problem {
                lines.push(Line::styled(format!("⚠ {why}"), t.warn));
            }
        }
        None => lines.push(Line::styled("none: the agent is not running", t.warn)),
    }
    if let Some(pod) = &app.coordinator.pod {
        let status = pod
            .heartbeat_status
            .clone()
            .unwrap_or_else(|| "unknown".to_owned());
        let style = if status == "online" { t.ok } else { t.warn };
        lines.push(field(
            app,
            "coordinator",
            Span::styled(format!("sees this miner {status}"), style),
        ));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(block("Heartbeats")),
        area,
    );
}

fn draw_services(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let agent = match &app.agent {
        AgentLink::Connecting => Span::styled("… looking for it", t.dim),
        AgentLink::Up(s) => Span::styled(
            format!(
                "✔ running, PID {}, up {}",
                s.agent_pid,
                ago(app, s.started_at)
            ),
            t.ok,
        ),
        AgentLink::Down {
            why: Down::Failing(why),
            ..
        } => Span::styled(format!("✖ not answering properly: {why}"), t.bad),
        AgentLink::Down { .. } => {
            Span::styled("✖ not running — press s (or Enter) to start it", t.bad)
        }
    };
    let compute = match app.agent.snapshot() {
        None => Span::styled("– unknown while the agent is down", t.dim),
        Some(s) if !s.compute_configured => {
            Span::styled("– not configured (POLARIS_COMPUTE_CMD)", t.dim)
        }
        Some(s) => compute_line(app, s.compute.as_ref()),
    };
    let tunnel = match (app.agent.snapshot(), &app.setup.relay) {
        (Some(s), _) if s.tunnel.is_some() => tunnel_line(app, s.tunnel.as_ref()),
        (_, None) => Span::styled("– not configured (POLARIS_RELAY)", t.dim),
        (None, Some(_)) => Span::styled("– down with the agent, which keeps it", t.dim),
        (Some(_), Some(_)) => Span::styled(
            "– POLARIS_RELAY is set, but the agent started without it: restart the agent",
            t.warn,
        ),
    };
    let ssh = match app.agent.snapshot().map(|s| s.ssh_access.as_ref()) {
        None => Span::styled("– unknown while the agent is down", t.dim),
        Some(None) => Span::styled(
            "– off (POLARIS_SSH_ACCESS=keys lets validators in by key)",
            t.dim,
        ),
        Some(Some(access)) => Span::styled(
            match access.keys.len() {
                1 => format!("✔ 1 key may log in as {}", access.user),
                n => format!("✔ {n} keys may log in as {}", access.user),
            },
            t.ok,
        ),
    };
    let lines = vec![
        field(app, "agent", agent),
        field(app, "compute", compute),
        field(app, "tunnel", tunnel),
        field(app, "ssh keys", ssh),
    ];
    frame.render_widget(Paragraph::new(lines).block(block("Services")), area);
}

/// The tunnel's state in a few words, in the colour of its health.
fn tunnel_line(app: &App, state: Option<&crate::agent::tunnel::State>) -> Span<'static> {
    let t = &app.theme;
    let Some(tunnel) = state else {
        return Span::styled("– not configured (POLARIS_RELAY)", t.dim);
    };
    let summary = tunnel.summary(app.now);
    match tunnel.phase {
        crate::agent::tunnel::Phase::Up { .. } => Span::styled(format!("✔ {summary}"), t.ok),
        crate::agent::tunnel::Phase::Connecting { .. } => {
            Span::styled(format!("… {summary}"), t.dim)
        }
        _ => Span::styled(format!("✖ {summary}"), t.bad),
    }
}

/// compute_subnet's state in a few words (also used by the Processes tab).
pub(crate) fn compute_line(
    app: &App,
    state: Option<&crate::agent::supervisor::State>,
) -> Span<'static> {
    let t = &app.theme;
    let Some(c) = state else {
        return Span::styled("– starting", t.dim);
    };
    match (c.phase, c.pid) {
        (Phase::Running, Some(pid)) => Span::styled(
            format!(
                "✔ running, PID {pid}{}, restarts {}",
                c.started_at
                    .map(|at| format!(", up {}", ago(app, at)))
                    .unwrap_or_default(),
                c.restarts
            ),
            t.ok,
        ),
        (Phase::Backoff, _) => {
            let when = c
                .next_start_at
                .map(|at| {
                    format!(
                        " in {}",
                        short_duration((at - app.now).num_seconds().max(0))
                    )
                })
                .unwrap_or_default();
            let what = if c.crash_looping {
                "✖ crash-looping, restarting"
            } else {
                "… restarting"
            };
            Span::styled(
                format!("{what}{when} (restarts {})", c.restarts),
                if c.crash_looping { t.bad } else { t.warn },
            )
        }
        (Phase::Stopped, _) => Span::styled("– stopped (start it on Processes)", t.warn),
        (Phase::Stopping, _) => Span::styled("… stopping", t.warn),
        (_, _) => match &c.spawn_error {
            Some(why) => Span::styled(format!("✖ cannot start: {why}"), t.bad),
            None => Span::styled("… starting", t.dim),
        },
    }
}

/// The machine box's graphs: CPU, memory, the data disk and each GPU.
fn graphs(app: &App) -> u16 {
    3 + app.usage.gpus.len() as u16
}

/// With no GPU, one more line says why there is none.
fn note_rows(app: &App) -> u16 {
    u16::from(app.usage.gpus.is_empty())
}

/// The most rows one graph gets.
const GRAPH_ROWS: u16 = 3;

/// Rows each graph gets in a box at most `height` tall (borders included): as many as fit, from
/// 1 to [`GRAPH_ROWS`].
fn graph_rows(app: &App, height: u16) -> u16 {
    let spare = height.saturating_sub(2 + note_rows(app));
    (spare / graphs(app)).clamp(1, GRAPH_ROWS)
}

fn machine_height(app: &App, height: u16) -> u16 {
    if app.usage.samples == 0 {
        return 3;
    }
    let lines = graphs(app) * graph_rows(app, height) + note_rows(app);
    (lines + 2).min(height)
}

fn usage_row(app: &App, frame: &mut Frame, area: Rect, label: &str, text: String, series: &Series) {
    let [left, right] =
        Layout::horizontal([Constraint::Length(44), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(field(app, label, text)), left);
    let values = series.values();
    let fit = usize::from(right.width);
    let shown = &values[values.len().saturating_sub(fit)..];
    frame.render_widget(
        Sparkline::default()
            .data(shown)
            .max(100)
            .style(app.theme.accent),
        right,
    );
}

fn draw_machine(app: &App, frame: &mut Frame, area: Rect) {
    let u = &app.usage;
    let outer = block("This machine (last minutes)");
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    if u.samples == 0 {
        frame.render_widget(
            Paragraph::new(Line::styled("measuring…", app.theme.dim)),
            inner,
        );
        return;
    }
    let mut rows = vec![
        (
            "CPU",
            u.cpu
                .last()
                .map_or_else(|| "—".to_owned(), |p| format!("{p:>3}%")),
            &u.cpu,
        ),
        (
            "Memory",
            format!(
                "{:>3}%  {} of {}",
                u.memory.last().unwrap_or(0),
                human(u.memory_used),
                human(u.memory_total)
            ),
            &u.memory,
        ),
        (
            "Data disk",
            format!(
                "{:>3}%  {} of {}",
                u.disk.last().unwrap_or(0),
                human(u.disk_used),
                human(u.disk_total)
            ),
            &u.disk,
        ),
    ];
    let gpu_labels: Vec<String> = (0..u.gpus.len()).map(|i| format!("GPU {i}")).collect();
    for (gpu, label) in u.gpus.iter().zip(&gpu_labels) {
        let temp = gpu
            .temperature
            .map(|c| format!(", {c}°C"))
            .unwrap_or_default();
        rows.push((
            label.as_str(),
            format!(
                "{:>3}%  {} of {}{temp}",
                gpu.utilisation.last().unwrap_or(0),
                human(gpu.memory_used),
                human(gpu.memory_total)
            ),
            &gpu.utilisation,
        ));
    }
    let tall = graph_rows(app, area.height);
    let mut constraints = vec![Constraint::Length(tall); rows.len()];
    constraints.push(Constraint::Min(0));
    let areas = Layout::vertical(constraints).split(inner);
    for (i, (label, text, series)) in rows.into_iter().enumerate() {
        usage_row(app, frame, areas[i], label, text, series);
    }
    if u.gpus.is_empty()
        && let Some(note) = &u.gpu_note
        && let Some(last) = areas.last()
    {
        frame.render_widget(
            Paragraph::new(field(
                app,
                "GPUs",
                Span::styled(format!("none — {note}"), app.theme.dim),
            )),
            *last,
        );
    }
}
