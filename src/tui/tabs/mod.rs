//! The frame around every tab — tab bar, mode line, hint bar, popups, the "too small" notice —
//! and one module per tab. A tab draws from the app's state and turns commands into effects;
//! it never opens a socket or a file.

pub(crate) mod compute;
pub(crate) mod logs;
pub(crate) mod overview;
pub(crate) mod processes;
pub(crate) mod register;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::app::{App, MIN_HEIGHT, MIN_WIDTH, Tab};
use super::keymap;

const SPINNER: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

pub(crate) fn spinner(app: &App) -> &'static str {
    SPINNER[app.spin % SPINNER.len()]
}

/// ` 1 Overview ` … as drawn in the tab bar, with where each starts.
fn tab_labels() -> Vec<(Tab, String)> {
    Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, tab)| (*tab, format!(" {} {} ", i + 1, tab.title())))
        .collect()
}

/// Which tab a click in the tab bar's column hits.
pub(crate) fn tab_at(column: u16) -> Option<Tab> {
    let mut x = "Polaris ".len() as u16;
    for (tab, label) in tab_labels() {
        let width = label.chars().count() as u16;
        if (x..x + width).contains(&column) {
            return Some(tab);
        }
        x += width + 1;
    }
    None
}

pub(crate) fn draw(app: &mut App, frame: &mut Frame) {
    let area = frame.area();
    app.too_small = area.width < MIN_WIDTH || area.height < MIN_HEIGHT;
    if app.too_small {
        let text = format!(
            "Terminal too small: need {MIN_WIDTH}×{MIN_HEIGHT}, have {}×{}.\nEnlarge it, or press q to quit.",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(text).wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    let [bar, mode, body, hints] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_tab_bar(app, frame, bar);
    draw_mode_line(app, frame, mode);
    match app.tab {
        Tab::Overview => overview::draw(app, frame, body),
        Tab::Register => register::draw(app, frame, body),
        Tab::Compute => compute::draw(app, frame, body),
        Tab::Processes => processes::draw(app, frame, body),
        Tab::Logs => logs::draw(app, frame, body),
    }
    draw_hints(app, frame, hints);
    let theme = app.theme;
    let spin = spinner(app);
    for popup in &mut app.popups {
        popup.draw(frame, &theme, spin);
    }
}

fn draw_tab_bar(app: &App, frame: &mut Frame, area: Rect) {
    let mut spans = vec![Span::styled("Polaris ", app.theme.title)];
    for (tab, label) in tab_labels() {
        let style = if tab == app.tab {
            app.theme.tab_active
        } else {
            app.theme.dim
        };
        spans.push(Span::styled(label, style));
        spans.push(Span::raw(" "));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// Which coordinator this is, and the latest notice.
fn draw_mode_line(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let mode = if app.setup.standalone {
        format!("standalone: local coordinator at {}", app.setup.server_url)
    } else {
        format!("remote coordinator: {} (SERVER_URL)", app.setup.server_url)
    };
    let mut spans = vec![Span::styled(mode, theme.dim)];
    if let Some(busy) = &app.busy {
        spans.push(Span::raw("  "));
        spans.push(Span::styled(
            format!("{} {busy}", spinner(app)),
            theme.accent,
        ));
    } else if let Some(notice) = &app.notice {
        spans.push(Span::raw("  "));
        let style = if notice.error { theme.bad } else { theme.ok };
        spans.push(Span::styled(notice.text.clone(), style));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_hints(app: &App, frame: &mut Frame, area: Rect) {
    let theme = &app.theme;
    let mut spans = Vec::new();
    for (keys, help) in keymap::hints(&app.contexts(), |command| app.offers(command)) {
        spans.push(Span::styled(keys, theme.key));
        spans.push(Span::raw(format!(" {help}  ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// "3s", "4m 10s", "2h 5m", "3d 4h": an age or a duration as people read it.
pub(crate) fn short_duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    }
}

pub(crate) fn ago(app: &App, at: chrono::DateTime<chrono::Utc>) -> String {
    short_duration((app.now - at).num_seconds())
}
