//! Tab 2, Register: draws the wizard's current step (the rules are `register::engine`'s, the
//! state is `tui::wizard`'s).

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Paragraph, Wrap};

use crate::register::engine::{Plan, Question, Stop};
use crate::register::record::{self, Network};
use crate::register::session;
use crate::tui::app::App;
use crate::tui::theme::Theme;
use crate::tui::widgets::input::TextInput;
use crate::tui::wizard::Phase;

use super::spinner;

fn page(title: &str) -> Block<'static> {
    Block::bordered()
        .border_type(BorderType::Rounded)
        .title(format!(" Register · {title} "))
}

fn key_line(theme: &Theme, items: &[(&str, &str)]) -> Line<'static> {
    let mut spans = Vec::new();
    for (key, what) in items {
        spans.push(Span::styled((*key).to_owned(), theme.key));
        spans.push(Span::raw(format!(" {what}   ")));
    }
    Line::from(spans)
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let w = &app.wizard;
    match &w.phase {
        Phase::Start => {
            let mut lines = vec![
                Line::styled("Register this machine with the coordinator", t.title),
                Line::raw(""),
                Line::raw(format!("Coordinator: {}", w.server_url)),
                Line::raw(
                    "Polaris reads this machine's hardware, shows you exactly what it will send, asks",
                ),
                Line::raw(
                    "for the network (Bittensor, Commune or Standard) and a username, and registers.",
                ),
                Line::raw(
                    "Nothing is sent or saved before the review page; SSH passwords are never sent.",
                ),
                Line::raw(""),
            ];
            if let Some(record) = app.coordinator.registration.record() {
                lines.push(Line::styled(
                    format!(
                        "Registered now as {} ({}, miner {}).",
                        record.username,
                        record.network.label(),
                        record.miner_id
                    ),
                    t.ok,
                ));
                lines.push(Line::raw(""));
            }
            lines.push(key_line(t, &[("Enter", "begin")]));
            frame.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(page("start")),
                area,
            );
        }
        Phase::Preparing => busy(
            app,
            frame,
            area,
            &format!(
                "Reading this machine's hardware and asking the coordinator at {}…",
                w.server_url
            ),
        ),
        Phase::Submitting => busy(
            app,
            frame,
            area,
            &format!("Registering with {}…", w.server_url),
        ),
        Phase::PrepareFailed(why) => failure(
            t,
            frame,
            area,
            "cannot register",
            why,
            &[("r", "try again"), ("Esc", "back")],
        ),
        Phase::SubmitFailed(why) => failure(
            t,
            frame,
            area,
            "registration failed",
            &format!("{why}\nNothing was saved on this machine."),
            &[("r", "try again"), ("Esc", "back to the review")],
        ),
        Phase::Asking(question) => asking(app, frame, area, question),
        Phase::Stopped(stop) => stopped(app, frame, area, stop),
        Phase::Creating(maker) => {
            let lines = vec![
                Line::raw(format!(
                    "Name for the new {} (`{}` asks for its password and shows the mnemonic):",
                    maker.what, maker.tool
                )),
                Line::raw(""),
            ];
            let [text, field, keys] = Layout::vertical([
                Constraint::Length(3),
                Constraint::Length(1),
                Constraint::Min(0),
            ])
            .areas(page("create").inner(area));
            frame.render_widget(page("create"), area);
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text);
            input(frame, field, &w.new_name, t);
            frame.render_widget(
                Paragraph::new(key_line(
                    t,
                    &[("Enter", &format!("run {}", maker.tool)), ("Esc", "back")],
                )),
                keys,
            );
        }
        Phase::Review(plan) => review(app, frame, area, plan),
        Phase::External(maker) => busy(
            app,
            frame,
            area,
            &format!("{} is running on the terminal…", maker.tool),
        ),
        Phase::Done(record) => {
            let mut lines = vec![Line::styled("✔ Registration Complete", t.ok)];
            for line in crate::register::display::registration_complete(record)
                .lines()
                .skip(1)
            {
                let style = if line.starts_with("Important") {
                    t.warn
                } else {
                    t.text
                };
                lines.push(Line::styled(line.to_owned(), style));
            }
            lines.push(Line::raw(format!(
                "Saved to {} (keep it private: it holds this miner's token).",
                record::path(&app.setup.home).display()
            )));
            lines.push(Line::raw(""));
            lines.push(Line::raw("The agent sends the first heartbeat within a few seconds: watch it on the Overview (1)."));
            frame.render_widget(
                Paragraph::new(lines)
                    .wrap(Wrap { trim: false })
                    .block(page("done")),
                area,
            );
        }
        Phase::Ended(text) => {
            let lines = vec![
                Line::raw(text.clone()),
                Line::raw(""),
                key_line(t, &[("Enter", "start over")]),
            ];
            frame.render_widget(Paragraph::new(lines).block(page("ended")), area);
        }
    }
}

fn busy(app: &App, frame: &mut Frame, area: Rect, what: &str) {
    let line = Line::styled(format!("{} {what}", spinner(app)), app.theme.accent);
    frame.render_widget(
        Paragraph::new(line)
            .wrap(Wrap { trim: false })
            .block(page("working")),
        area,
    );
}

fn failure(
    t: &Theme,
    frame: &mut Frame,
    area: Rect,
    title: &str,
    why: &str,
    keys: &[(&str, &str)],
) {
    let mut lines = vec![
        Line::styled(format!("✖ {}", capital(title)), t.bad),
        Line::raw(""),
    ];
    lines.extend(why.lines().map(|l| Line::raw(l.to_owned())));
    lines.push(Line::raw(""));
    lines.push(key_line(t, keys));
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(page(title)),
        area,
    );
}

fn capital(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// A one-line field with its cursor.
fn input(frame: &mut Frame, area: Rect, field: &TextInput, t: &Theme) {
    let text = format!("> {}", field.text());
    frame.render_widget(Paragraph::new(Span::styled(text, t.title)), area);
    let x = area.x + 2 + u16::try_from(field.cursor()).unwrap_or(0);
    frame.set_cursor_position(Position::new(x.min(area.right().saturating_sub(1)), area.y));
}

fn step_title(question: &Question) -> &'static str {
    match question {
        Question::ReplaceExisting { .. } => "existing registration",
        Question::ConfirmSystemInfo => "system information",
        Question::Network => "network",
        Question::Username => "username",
        Question::SshAccess => "SSH access",
        Question::BittensorWallet => "wallet",
        Question::BittensorHotkey { .. } => "hotkey",
        Question::CommuneKey => "key",
        Question::Chain { .. } => "mainnet or testnet",
    }
}

fn asking(app: &App, frame: &mut Frame, area: Rect, question: &Question) {
    let t = &app.theme;
    let w = &app.wizard;
    let outer = page(step_title(question));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let warnings = w.facts.warnings.len() as u16;
    let [head, body, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(3),
        Constraint::Length(2 + warnings),
    ])
    .areas(inner);
    let mut head_lines = vec![Line::styled(question.prompt(), t.title)];
    if let Question::ReplaceExisting { miner_id, username } = question {
        head_lines.push(Line::raw(format!(
            "Existing Registration — Miner ID: {miner_id}, Username: {username}"
        )));
    }
    frame.render_widget(Paragraph::new(head_lines), head);
    let keys: Vec<(&str, &str)> = match question {
        Question::ConfirmSystemInfo => {
            let rows = &w.facts.rows;
            let width = rows
                .iter()
                .map(|(k, _)| k.chars().count())
                .max()
                .unwrap_or(0)
                .min(52);
            let lines: Vec<Line> = rows
                .iter()
                .skip(w.scroll)
                .map(|(k, v)| {
                    Line::from(vec![
                        Span::styled(format!("{k:<width$}  "), t.dim),
                        Span::raw(v.clone()),
                    ])
                })
                .collect();
            let title = format!(
                " System Information ({} fields; secrets masked) ",
                rows.len()
            );
            frame.render_widget(
                Paragraph::new(lines).block(Block::bordered().title(title)),
                body,
            );
            vec![
                ("Enter", "proceed"),
                ("↑/↓ PgUp/PgDn", "scroll"),
                ("n", "decline"),
                ("Esc", "back"),
            ]
        }
        Question::Username => {
            let [field, verdict] =
                Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(body);
            input(frame, field, &w.username, t);
            let verdict_line = match (w.username_problem(), &w.error) {
                (_, Some(error)) => Line::styled(format!("✖ {error}"), t.bad),
                (Some(problem), None) => Line::styled(format!("✖ {problem}"), t.bad),
                (None, None) if w.username.text().is_empty() => {
                    Line::styled("3 to 32 of A-Z a-z 0-9 _ -", t.dim)
                }
                (None, None) => Line::styled("✔ a valid username", t.ok),
            };
            frame.render_widget(
                Paragraph::new(verdict_line).wrap(Wrap { trim: false }),
                verdict,
            );
            vec![("Enter", "accept"), ("Esc", "back")]
        }
        _ => {
            let options = w.options(question);
            let selected = w.selected(question);
            let mut lines = Vec::new();
            // Details line up in one column after the longest label.
            let width = options
                .iter()
                .map(|c| c.label.chars().count())
                .max()
                .unwrap_or(0);
            for (i, choice) in options.iter().enumerate() {
                let marker = if i == selected { "▶ " } else { "  " };
                let style = if i == selected { t.selected } else { t.text };
                let mut spans = vec![Span::styled(format!("{marker}{}", choice.label), style)];
                if let Some(detail) = &choice.detail {
                    let pad = width - choice.label.chars().count();
                    spans.push(Span::styled(format!("{:pad$}   {detail}", ""), t.dim));
                }
                lines.push(Line::from(spans));
            }
            if let Some(error) = &w.error {
                lines.push(Line::raw(""));
                lines.push(Line::styled(format!("✖ {error}"), t.bad));
            }
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), body);
            vec![("↑/↓", "choose"), ("Enter", "select"), ("Esc", "back")]
        }
    };
    let mut foot_lines: Vec<Line> = w
        .facts
        .warnings
        .iter()
        .map(|w| Line::styled(format!("warning: {w}"), t.warn))
        .collect();
    foot_lines.push(Line::raw(""));
    foot_lines.push(key_line(t, &keys));
    frame.render_widget(Paragraph::new(foot_lines), foot);
}

fn stopped(app: &App, frame: &mut Frame, area: Rect, stop: &Stop) {
    let t = &app.theme;
    let mut lines = Vec::new();
    match session::maker_for(stop, &app.wizard.facts.user_home) {
        Some((maker, dir)) => {
            lines.push(Line::styled(
                format!("✖ No {} found in {}.", maker.what, dir.display()),
                t.bad,
            ));
            lines.push(Line::raw(""));
            lines.push(Line::raw("Create one with:"));
            lines.push(Line::styled(format!("  {}", maker.hint()), t.title));
            lines.push(Line::raw(""));
            if app.wizard.facts.installed(maker) {
                lines.push(key_line(
                    t,
                    &[
                        ("c", &format!("create one with {} now", maker.tool)),
                        ("Esc", "back"),
                    ],
                ));
            } else {
                lines.push(Line::raw(format!(
                    "({} is not installed here: install it, or pick another network.)",
                    maker.tool
                )));
                lines.push(key_line(t, &[("Esc", "back")]));
            }
        }
        None => lines.push(Line::raw("Registration stopped.")),
    }
    if let Some(error) = &app.wizard.error {
        lines.push(Line::styled(format!("✖ {error}"), t.bad));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(page("no wallet")),
        area,
    );
}

fn review(app: &App, frame: &mut Frame, area: Rect, plan: &Plan) {
    let t = &app.theme;
    let row = |k: &str, v: String| {
        Line::from(vec![Span::styled(format!("{k:<14}"), t.dim), Span::raw(v)])
    };
    let mut lines = vec![
        Line::styled("Review: this is what will be sent", t.title),
        Line::raw(""),
    ];
    lines.push(row("Coordinator", app.wizard.server_url.clone()));
    lines.push(row("Network", plan.network.label().to_owned()));
    lines.push(row("Username", plan.request.name.clone()));
    lines.push(row(
        "Location",
        plan.request
            .location
            .clone()
            .unwrap_or_else(|| "Unknown".to_owned()),
    ));
    lines.push(row(
        "Resources",
        plan.request
            .compute_resources
            .iter()
            .map(|r| format!("{} {}", r.resource_type, r.id))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    if let Some(b) = &plan.bittensor {
        lines.push(row(
            "Wallet",
            format!(
                "{} ({})",
                b.wallet_name,
                b.coldkey_ss58.as_deref().unwrap_or("address not readable")
            ),
        ));
        lines.push(row(
            "Hotkey",
            format!(
                "{} ({})",
                b.hotkey_name,
                b.hotkey_ss58.as_deref().unwrap_or("address not readable")
            ),
        ));
        lines.push(row(
            "Subnet",
            format!("netuid {} ({})", b.netuid, b.chain.as_str()),
        ));
    }
    if let Some(c) = &plan.commune {
        lines.push(row(
            "Key",
            format!(
                "{} ({})",
                c.key_name,
                c.ss58.as_deref().unwrap_or("address not readable")
            ),
        ));
        lines.push(row(
            "Subnet",
            format!("netuid {} ({})", c.netuid, c.chain.as_str()),
        ));
    }
    if plan.network == Network::Standard {
        lines.push(row("Subnet", "none (Standard registration)".to_owned()));
    }
    lines.push(Line::raw(""));
    if let Some(warning) = &app.wizard.facts.ssh_warning {
        lines.push(Line::styled(format!("warning: {warning}"), t.warn));
        lines.push(Line::raw(""));
    }
    lines.push(key_line(t, &[("Enter", "register"), ("Esc", "back")]));
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .wrap(Wrap { trim: false })
            .block(page("review")),
        area,
    );
}
