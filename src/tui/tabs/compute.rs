//! Tab 3, Compute: the pod as the coordinator lists it (registered), or this machine's own
//! inventory (not yet), in the original's columns; sortable, with a details popup per resource
//! and the disk benchmark.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Cell, Paragraph, Row, Table, TableState};

use crate::api::ComputeResource;
use crate::tui::action::{Effect, Job};
use crate::tui::app::App;
use crate::tui::keymap::Command;
use crate::tui::widgets::popup::Popup;

const COLUMNS: [&str; 7] = [
    "ID", "Type", "Location", "Price/Hr", "RAM", "Storage", "Specs",
];

/// Where the rows come from.
pub(crate) enum Rows {
    Coordinator(Vec<ComputeResource>),
    Local(Vec<ComputeResource>),
    Waiting(String),
}

pub(crate) fn rows(app: &App) -> Rows {
    if app.coordinator.registration.record().is_some() {
        return match &app.coordinator.pod {
            Some(pod) => Rows::Coordinator(pod.compute_resources.clone()),
            None => Rows::Waiting(app.coordinator.pod_error.clone().unwrap_or_else(|| {
                format!("asking {} for this miner's pod…", app.coordinator.url)
            })),
        };
    }
    match &app.inventory {
        Some(Ok(inventory)) => {
            Rows::Local(crate::inventory::to_system_info(inventory).compute_resources)
        }
        Some(Err(why)) => Rows::Waiting(format!("cannot read this machine's inventory: {why}")),
        None => Rows::Waiting("reading this machine's hardware…".to_owned()),
    }
}

/// Numbers compare as numbers ("8GB" < "16GB"), the rest as text.
fn sort_key(cell: &str) -> (f64, String) {
    let digits: String = cell
        .trim_start_matches('$')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (
        digits.parse().unwrap_or(f64::NEG_INFINITY),
        cell.to_lowercase(),
    )
}

fn sorted(app: &App, resources: Vec<ComputeResource>) -> Vec<(ComputeResource, Vec<String>)> {
    let mut rows: Vec<_> = resources
        .into_iter()
        .map(|r| {
            let cells = r.table_cells();
            (r, cells)
        })
        .collect();
    let column = app.compute.sort.min(COLUMNS.len() - 1);
    rows.sort_by(|a, b| {
        let (ka, kb) = (sort_key(&a.1[column]), sort_key(&b.1[column]));
        ka.0.total_cmp(&kb.0).then_with(|| ka.1.cmp(&kb.1))
    });
    if app.compute.reverse {
        rows.reverse();
    }
    rows
}

fn resources_of(rows: Rows) -> Vec<ComputeResource> {
    match rows {
        Rows::Coordinator(r) | Rows::Local(r) => r,
        Rows::Waiting(_) => Vec::new(),
    }
}

pub(crate) fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let resources = sorted(app, resources_of(rows(app)));
    let last = resources.len().saturating_sub(1);
    let c = &mut app.compute;
    match command {
        Command::Up => c.selected = c.selected.saturating_sub(1),
        Command::Down => c.selected = (c.selected + 1).min(last),
        Command::Top => c.selected = 0,
        Command::Bottom => c.selected = last,
        Command::Sort => c.sort = (c.sort + 1) % COLUMNS.len(),
        Command::SortReverse => c.reverse = !c.reverse,
        Command::Select => {
            if let Some((resource, _)) = resources.get(c.selected.min(last)) {
                let popup = details(app, resource);
                app.popups.push(popup);
            }
        }
        Command::Bench => {
            let text = format!(
                "Measure the sequential write and read speed of the disk holding {}?\n\
                 It writes at most 512 MiB there for about 3 s (the file is removed at once) and keeps the result for registration.",
                app.setup.home.display()
            );
            app.popups
                .push(Popup::confirm("Measure disk speed", text, Job::Bench));
        }
        Command::Refresh => return vec![Effect::PokeCoordinator, Effect::Spawn(Job::Inventory)],
        _ => {}
    }
    Vec::new()
}

/// Every fact about a resource, and (it is this machine) the local inventory's own.
fn details(app: &App, resource: &ComputeResource) -> Popup {
    let mut rows = Vec::new();
    if let Ok(value) = serde_json::to_value(resource) {
        crate::register::display::flatten(&value, "", &mut rows);
    }
    if let Some(Ok(inventory)) = &app.inventory {
        let info = crate::inventory::to_system_info(inventory);
        for key in [
            "disks",
            "memory",
            "network",
            "limits",
            "gpu_status",
            "disk_bench",
            "machine",
        ] {
            if let Some(value) = info.extra.get(key) {
                crate::register::display::flatten(value, &format!("this machine.{key}"), &mut rows);
            }
        }
    }
    Popup::details(
        format!("{} {}", resource.resource_type.to_uppercase(), resource.id),
        rows,
    )
}

pub(crate) fn draw(app: &App, frame: &mut Frame, area: Rect) {
    let t = &app.theme;
    let [head, table_area] =
        Layout::vertical([Constraint::Length(3), Constraint::Min(3)]).areas(area);
    let source = rows(app);
    let head_lines = match (&source, &app.coordinator.pod) {
        (Rows::Coordinator(_), Some(pod)) => vec![
            Line::from(vec![
                Span::styled("Pod ", t.dim),
                Span::styled(pod.id.clone(), t.title),
                Span::raw(format!(
                    "  {}  ·  {}",
                    pod.name,
                    pod.location.as_deref().unwrap_or("N/A")
                )),
            ]),
            Line::from(vec![
                Span::styled("status ", t.dim),
                Span::raw(pod.status.as_str().to_owned()),
                Span::styled("  heartbeat ", t.dim),
                Span::raw(
                    pod.heartbeat_status
                        .clone()
                        .unwrap_or_else(|| "N/A".to_owned()),
                ),
                Span::styled("  created ", t.dim),
                Span::raw(pod.created_at.format("%Y-%m-%d %H:%M UTC").to_string()),
            ]),
        ],
        (Rows::Local(_), _) => vec![
            Line::styled(
                "Not registered: this machine's own inventory, as registration would send it.",
                t.warn,
            ),
            Line::styled("Press b to measure the disk speed first.", t.dim),
        ],
        (Rows::Waiting(why), _) => vec![Line::styled(why.clone(), t.dim)],
        _ => Vec::new(),
    };
    frame.render_widget(Paragraph::new(head_lines), head);
    let resources = sorted(app, resources_of(source));
    let header = Row::new(COLUMNS.iter().enumerate().map(|(i, name)| {
        let arrow = if i == app.compute.sort {
            if app.compute.reverse { " ▼" } else { " ▲" }
        } else {
            ""
        };
        Cell::from(format!("{name}{arrow}"))
    }))
    .style(t.title);
    let body: Vec<Row> = resources
        .iter()
        .map(|(_, cells)| {
            let height = cells.iter().map(|c| c.lines().count()).max().unwrap_or(1) as u16;
            Row::new(cells.iter().map(|c| Cell::from(c.clone()))).height(height)
        })
        .collect();
    let widths = [
        Constraint::Length(36),
        Constraint::Length(5),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(18),
        Constraint::Min(20),
    ];
    let table = Table::new(body, widths)
        .header(header)
        .row_highlight_style(t.selected)
        .block(
            Block::bordered()
                .border_type(BorderType::Rounded)
                .title(" Compute Resources "),
        );
    let mut state = TableState::default().with_selected(
        (!resources.is_empty())
            .then_some(app.compute.selected.min(resources.len().saturating_sub(1))),
    );
    frame.render_stateful_widget(table, table_area, &mut state);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_as_numbers() {
        assert!(sort_key("8.00GB").0 < sort_key("16.00GB").0);
        assert!(sort_key("$0.50").0 < sort_key("$2.00").0);
        assert_eq!(sort_key("GPU").0, f64::NEG_INFINITY);
    }
}
