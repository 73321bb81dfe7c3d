//! Popups: help, confirmations before anything that stops a process, messages, a resource's
//! details, a command's output and the disk benchmark's gauge. The top popup takes every key
//! first (gitui's popup stack); its own keys come from the keymap's `Popups` and
//! `Confirmation` sections like every other key.

use ratatui::Frame;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, BorderType, Clear, Gauge, Paragraph, Wrap};

use crate::inventory::bench::Phase;
use crate::tui::action::Job;
use crate::tui::keymap::{self, Command, Context};
use crate::tui::theme::Theme;

pub(crate) enum Popup {
    Help {
        sections: Vec<(&'static str, Vec<(String, &'static str)>)>,
        scroll: usize,
    },
    Confirm {
        title: String,
        text: String,
        job: Option<Job>,
    },
    Message {
        title: String,
        text: String,
        scroll: usize,
    },
    Details {
        title: String,
        rows: Vec<(String, String)>,
        scroll: usize,
    },
    Output {
        title: String,
        lines: Vec<String>,
        done: Option<Result<String, String>>,
        scroll: usize,
    },
    Bench {
        phase: Option<Phase>,
        fraction: f64,
        done: Option<Result<String, String>>,
    },
}

/// What a key did to the popup.
pub(crate) enum Outcome {
    Keep,
    Close,
    Run(Job),
}

impl Popup {
    pub(crate) fn help(contexts: &[Context]) -> Self {
        Self::Help {
            sections: keymap::help_sections(contexts),
            scroll: 0,
        }
    }

    pub(crate) fn confirm(title: &str, text: String, job: Job) -> Self {
        Self::Confirm {
            title: title.to_owned(),
            text,
            job: Some(job),
        }
    }

    pub(crate) fn message(title: &str, text: String) -> Self {
        Self::Message {
            title: title.to_owned(),
            text,
            scroll: 0,
        }
    }

    pub(crate) fn details(title: String, rows: Vec<(String, String)>) -> Self {
        Self::Details {
            title,
            rows,
            scroll: 0,
        }
    }

    pub(crate) fn output(title: &str) -> Self {
        Self::Output {
            title: title.to_owned(),
            lines: Vec::new(),
            done: None,
            scroll: 0,
        }
    }

    pub(crate) fn bench() -> Self {
        Self::Bench {
            phase: None,
            fraction: 0.0,
            done: None,
        }
    }

    pub(crate) fn context(&self) -> Context {
        match self {
            Self::Confirm { .. } => Context::Confirm,
            _ => Context::Viewer,
        }
    }

    /// Still waiting for its job (a spinner turns).
    pub(crate) fn is_working(&self) -> bool {
        matches!(
            self,
            Self::Output { done: None, .. } | Self::Bench { done: None, .. }
        )
    }

    pub(crate) fn is_output(&self) -> bool {
        matches!(self, Self::Output { .. })
    }

    pub(crate) fn is_bench(&self) -> bool {
        matches!(self, Self::Bench { .. })
    }

    pub(crate) fn push_line(&mut self, line: String) {
        if let Self::Output { lines, .. } = self {
            lines.push(line);
        }
    }

    pub(crate) fn finish(&mut self, outcome: Result<String, String>) {
        match self {
            Self::Output { done, .. } | Self::Bench { done, .. } => *done = Some(outcome),
            _ => {}
        }
    }

    pub(crate) fn bench_progress(&mut self, now: Phase, at: f64) {
        if let Self::Bench {
            phase, fraction, ..
        } = self
        {
            *phase = Some(now);
            *fraction = at;
        }
    }

    fn scroll(&mut self) -> Option<&mut usize> {
        match self {
            Self::Help { scroll, .. }
            | Self::Message { scroll, .. }
            | Self::Details { scroll, .. }
            | Self::Output { scroll, .. } => Some(scroll),
            _ => None,
        }
    }

    pub(crate) fn handle(&mut self, command: Command) -> Outcome {
        if let Self::Confirm { job, .. } = self {
            return match command {
                Command::Yes => job.take().map_or(Outcome::Close, Outcome::Run),
                Command::No | Command::Back | Command::Quit => Outcome::Close,
                _ => Outcome::Keep,
            };
        }
        match command {
            Command::Back | Command::Quit => return Outcome::Close,
            Command::Help if matches!(self, Self::Help { .. }) => return Outcome::Close,
            _ => {}
        }
        if let Some(scroll) = self.scroll() {
            match command {
                Command::Up => *scroll = scroll.saturating_sub(1),
                Command::Down => *scroll = scroll.saturating_add(1),
                Command::PageUp => *scroll = scroll.saturating_sub(10),
                Command::PageDown => *scroll = scroll.saturating_add(10),
                Command::Top => *scroll = 0,
                Command::Bottom => *scroll = usize::MAX / 2,
                _ => {}
            }
        }
        Outcome::Keep
    }

    pub(crate) fn draw(&mut self, frame: &mut Frame, theme: &Theme, spinner: &str) {
        let area = frame.area();
        let (title, body, height): (String, Text<'static>, u16) = match self {
            Self::Help { sections, .. } => {
                let mut lines = Vec::new();
                for (title, rows) in sections.iter() {
                    lines.push(Line::styled((*title).to_owned(), theme.title));
                    for (keys, help) in rows {
                        lines.push(Line::from(vec![
                            Span::styled(format!("  {keys:<18}"), theme.key),
                            Span::raw((*help).to_owned()),
                        ]));
                    }
                    lines.push(Line::raw(""));
                }
                (
                    "Keys".to_owned(),
                    Text::from(lines),
                    area.height.saturating_sub(4),
                )
            }
            Self::Confirm { title, text, .. } => {
                let mut lines: Vec<Line> = text.lines().map(|l| Line::raw(l.to_owned())).collect();
                lines.push(Line::raw(""));
                lines.push(Line::from(vec![
                    Span::styled("y/Enter", theme.key),
                    Span::raw(" yes   "),
                    Span::styled("n/Esc", theme.key),
                    Span::raw(" no"),
                ]));
                let h = rows(lines.len()).saturating_add(4);
                (title.clone(), Text::from(lines), h)
            }
            Self::Message { title, text, .. } => {
                let mut lines: Vec<Line> = text.lines().map(|l| Line::raw(l.to_owned())).collect();
                lines.push(Line::raw(""));
                lines.push(Line::styled("Esc closes", theme.dim));
                let h = rows(lines.len()).saturating_add(6);
                (title.clone(), Text::from(lines), h)
            }
            Self::Details { title, rows, .. } => {
                let width = rows
                    .iter()
                    .map(|(k, _)| k.chars().count())
                    .max()
                    .unwrap_or(0)
                    .min(48);
                let lines: Vec<Line> = rows
                    .iter()
                    .map(|(k, v)| {
                        Line::from(vec![
                            Span::styled(format!("{k:<width$}  "), theme.dim),
                            Span::raw(v.clone()),
                        ])
                    })
                    .collect();
                (
                    title.clone(),
                    Text::from(lines),
                    area.height.saturating_sub(4),
                )
            }
            Self::Output {
                title, lines, done, ..
            } => {
                let mut text: Vec<Line> = lines.iter().map(|l| Line::raw(l.clone())).collect();
                match done {
                    None => text.push(Line::styled(format!("{spinner} working…"), theme.accent)),
                    Some(Ok(last)) => text.push(Line::styled(format!("✔ {last}"), theme.ok)),
                    Some(Err(why)) => text.push(Line::styled(format!("✖ {why}"), theme.bad)),
                }
                text.push(Line::styled("Esc closes", theme.dim));
                let h = rows(text.len())
                    .saturating_add(4)
                    .min(area.height.saturating_sub(4));
                (title.clone(), Text::from(text), h)
            }
            Self::Bench {
                phase,
                fraction,
                done,
            } => {
                let rect = centered(area, 70, 9);
                frame.render_widget(Clear, rect);
                let block = Block::bordered()
                    .border_type(BorderType::Rounded)
                    .title(" Disk speed ");
                let inner = block.inner(rect);
                frame.render_widget(block, rect);
                let [top, gauge, bottom] = Layout::vertical([
                    Constraint::Length(2),
                    Constraint::Length(1),
                    Constraint::Min(0),
                ])
                .areas(inner);
                let label = match phase {
                    None => "Preparing…",
                    Some(Phase::Write) => "Writing (fsync every 32 MiB)…",
                    Some(Phase::Read) => "Reading back, past the page cache…",
                };
                let head = match done {
                    None => format!("{spinner} {label}\nAt most 512 MiB and 1.5 s each way."),
                    Some(Ok(_)) => "✔ Measured.".to_owned(),
                    Some(Err(_)) => "✖ The benchmark failed.".to_owned(),
                };
                frame.render_widget(Paragraph::new(head), top);
                let ratio = if done.is_some() {
                    1.0
                } else {
                    fraction.clamp(0.0, 1.0)
                };
                frame.render_widget(
                    Gauge::default().gauge_style(theme.accent).ratio(ratio),
                    gauge,
                );
                let tail = match done {
                    Some(Ok(text)) | Some(Err(text)) => format!("{text}\nEsc closes"),
                    None => String::new(),
                };
                frame.render_widget(Paragraph::new(tail).wrap(Wrap { trim: false }), bottom);
                return;
            }
        };
        let rect = centered(area, 84, height.max(5));
        frame.render_widget(Clear, rect);
        let block = Block::bordered()
            .border_type(BorderType::Rounded)
            .title(format!(" {title} "))
            .title_style(theme.title);
        let inner_height = block.inner(rect).height as usize;
        let total = body.lines.len();
        let max_scroll = total.saturating_sub(inner_height);
        let scroll = match self.scroll() {
            Some(scroll) => {
                *scroll = (*scroll).min(max_scroll);
                *scroll
            }
            None => 0,
        };
        let paragraph = Paragraph::new(body)
            .block(block)
            .wrap(Wrap { trim: false })
            .scroll((u16::try_from(scroll).unwrap_or(u16::MAX), 0));
        frame.render_widget(paragraph, rect);
    }
}

fn rows(lines: usize) -> u16 {
    u16::try_from(lines).unwrap_or(u16::MAX)
}

/// A rectangle of at most `width` × `height` in the middle of `area`.
pub(crate) fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width.saturating_sub(2)).max(1);
    let height = height.min(area.height.saturating_sub(2)).max(1);
    let [row] = Layout::vertical([Constraint::Length(height)])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(row);
    rect
}
