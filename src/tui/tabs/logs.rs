//! Tab 5, Logs: the agent's or compute_subnet's output as it is written (stdout and stderr
//! merged in time order, each line tagged), follow mode, search with highlights, a level filter
//! for the agent log, wrap. Only the lines that fit the screen are built into widgets.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Paragraph};

use crate::tui::app::App;
use crate::tui::log_buffer::{Level, LogLine, Tag};
use crate::tui::services::log_feed::Source;
use crate::tui::theme::Theme;

/// Columns before the text: `15:00:00.123 err │ `.
const PREFIX: usize = 19;

fn prefix_of(line: &LogLine, source: Source) -> String {
    let tag = match (source, line.tag) {
        (Source::Compute, Tag::Stdout) => "out",
        (Source::Compute, Tag::Stderr) => "err",
        (Source::Agent, Tag::Stdout) => "log",
        (Source::Agent, Tag::Stderr) => "err",
    };
    format!("{:<12} {tag} │ ", line.time())
}

/// The text with every (ASCII-case-insensitive) match of `query` highlighted.
fn highlighted<'a>(text: &'a str, query: Option<&str>, base: Style, mark: Style) -> Vec<Span<'a>> {
    let Some(query) = query.filter(|q| !q.is_empty()) else {
        return vec![Span::styled(text, base)];
    };
    let lower = text.to_ascii_lowercase();
    let needle = query.to_ascii_lowercase();
    let mut spans = Vec::new();
    let mut at = 0;
    while let Some(found) = lower[at..].find(&needle) {
        let start = at + found;
        let end = start + needle.len();
        if !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            break;
        }
        spans.push(Span::styled(&text[at..start], base));
        spans.push(Span::styled(&text[start..end], mark));
        at = end;
    }
    spans.push(Span::styled(&text[at..], base));
    spans
}

/// Spans cut into lines of `width` characters each.
fn rows_of(spans: Vec<Span<'_>>, width: usize) -> Vec<Line<'_>> {
    let mut rows = Vec::new();
    let mut row: Vec<Span> = Vec::new();
    let mut used = 0;
    for span in spans {
        let style = span.style;
        let mut rest: &str = &span.content;
        while !rest.is_empty() {
            let room = width - used;
            let cut = rest.char_indices().nth(room).map_or(rest.len(), |(i, _)| i);
            let (head, tail) = rest.split_at(cut);
            row.push(Span::styled(head.to_owned(), style));
            used += head.chars().count();
            rest = tail;
            if used == width {
                rows.push(Line::from(std::mem::take(&mut row)));
                used = 0;
            }
        }
    }
    if !row.is_empty() || rows.is_empty() {
        rows.push(Line::from(row));
    }
    rows
}

fn line_style(theme: &Theme, line: &LogLine) -> Style {
    match (line.level, line.tag) {
        (Some(Level::Error), _) => theme.bad,
        (Some(Level::Warn), _) => theme.warn,
        (_, Tag::Stderr) => theme.warn,
        _ => theme.text,
    }
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let logs = &app.logs;
    let buffer = &logs.buffer;
    let search_rows = u16::from(logs.search.is_some());
    let [head, body, search] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(search_rows),
    ])
    .areas(area);
    let mut spans = vec![
        Span::styled(logs.source.label().to_owned(), t.title),
        Span::raw("  "),
    ];
    if buffer.is_following() {
        spans.push(Span::styled("following", t.ok));
    } else {
        let plural = if buffer.unseen == 1 { "" } else { "s" };
        spans.push(Span::styled(
            format!("paused — {} new line{plural} (G follows)", buffer.unseen),
            t.warn,
        ));
    }
    if logs.source == Source::Agent {
        spans.push(Span::styled(format!("  {}", buffer.filter.label()), t.dim));
    }
    if buffer.wrap {
        spans.push(Span::styled("  wrap", t.dim));
    }
    if let Some(query) = &buffer.query {
        spans.push(Span::styled(
            format!("  /{query}: {} matches", buffer.match_count()),
            t.accent,
        ));
    }
    spans.push(Span::styled(
        format!("  {} lines kept (UTC times)", buffer.len()),
        t.dim,
    ));
    if let Some(why) = &logs.interrupted {
        spans.push(Span::styled(format!("  ✖ {why}; retrying"), t.bad));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), head);

    let block = Block::bordered().border_type(BorderType::Rounded);
    let inner = block.inner(body);
    frame.render_widget(block, body);
    let width = usize::from(inner.width);
    let rows = usize::from(inner.height);
    let query = buffer.query.as_deref();
    let window = buffer.window(rows, width, |l| PREFIX + l.text.chars().count());
    if window.is_empty() {
        let text = if logs.interrupted.is_some() {
            "No lines: the agent's log stream is not available (is the agent running?)."
        } else {
            "No lines yet."
        };
        frame.render_widget(Paragraph::new(Line::styled(text, t.dim)), inner);
    } else {
        let used: usize = if buffer.wrap {
            window
                .iter()
                .map(|l| {
                    (PREFIX + l.text.chars().count())
                        .div_ceil(width.max(1))
                        .max(1)
                })
                .sum()
        } else {
            window.len()
        };
        let mut lines: Vec<Line> = Vec::new();
        for line in &window {
            let mut spans = vec![Span::styled(prefix_of(line, logs.source), t.dim)];
            spans.extend(highlighted(
                &line.text,
                query,
                line_style(t, line),
                t.highlight,
            ));
            if buffer.wrap {
                // Cut into rows here, by the same count the window was measured with, so the
                // newest line is never pushed off the bottom by a wrap that came out longer.
                lines.extend(rows_of(spans, width.max(1)));
            } else {
                lines.push(Line::from(spans));
            }
        }
        // The newest line sits on the bottom row, as in a terminal.
        let top_gap = rows.saturating_sub(used) as u16;
        let area = Rect {
            y: inner.y + top_gap,
            height: inner.height - top_gap,
            ..inner
        };
        frame.render_widget(Paragraph::new(lines), area);
    }
    if let Some(field) = &logs.search {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::styled("/", t.key),
                Span::raw(field.text().to_owned()),
            ])),
            search,
        );
        let x = search.x + 1 + u16::try_from(field.cursor()).unwrap_or(0);
        frame.set_cursor_position(Position::new(
            x.min(search.right().saturating_sub(1)),
            search.y,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_rows_have_the_width_the_window_counted() {
        let spans = vec![Span::raw("abcd"), Span::raw("efghij")];
        let rows: Vec<String> = rows_of(spans, 4).iter().map(|l| l.to_string()).collect();
        assert_eq!(rows, ["abcd", "efgh", "ij"]);
    }

    #[test]
    fn matches_are_split_out_for_highlighting() {
        let base = Style::default();
        let spans = highlighted("Disk full; disk gone", Some("DISK"), base, base);
        let texts: Vec<&str> = spans.iter().map(|s| s.content.as_ref()).collect();
        assert_eq!(texts, ["", "Disk", " full; ", "disk", " gone"]);
    }
}
