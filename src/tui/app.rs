//! The dashboard's state and its one entry for change: [`App::update`] takes an [`Action`] and
//! returns the [`Effect`]s for the loop to carry out. Drawing reads the state and never waits.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{KeyEvent, MouseButton, MouseEvent, MouseEventKind};
use ratatui::Frame;

use crate::inventory::Inventory;
use crate::tui::services::agent_link::{AgentLink, Down};
use crate::tui::services::coordinator::CoordinatorView;
use crate::tui::services::log_feed::{FeedEvent, Source};
use crate::tui::services::sampler::MachineUsage;

use super::action::{Action, Effect, Job, JobResult};
use super::keymap::{self, Command, Context, Meaning};
use super::log_buffer::{LevelFilter, LogBuffer};
use super::tabs;
use super::theme::Theme;
use super::widgets::input::TextInput;
use super::widgets::popup::{Outcome, Popup};
use super::wizard::Wizard;

/// Smallest screen the dashboard draws on; below it a notice says so.
pub(crate) const MIN_WIDTH: u16 = 64;
pub(crate) const MIN_HEIGHT: u16 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tab {
    Overview,
    Register,
    Compute,
    Processes,
    Logs,
}

impl Tab {
    pub(crate) const ALL: [Tab; 5] = [
        Tab::Overview,
        Tab::Register,
        Tab::Compute,
        Tab::Processes,
        Tab::Logs,
    ];

    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Overview => "Overview",
            Self::Register => "Register",
            Self::Compute => "Compute",
            Self::Processes => "Processes",
            Self::Logs => "Logs",
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }

    fn context(self) -> Context {
        match self {
            Self::Overview => Context::Overview,
            Self::Register => Context::Register,
            Self::Compute => Context::Compute,
            Self::Processes => Context::Processes,
            Self::Logs => Context::Logs,
        }
    }
}

/// Facts about this set-up that do not change while the dashboard runs.
#[derive(Debug, Clone)]
pub(crate) struct Setup {
    pub(crate) home: PathBuf,
    /// No SERVER_URL: the agent hosts the coordinator.
    pub(crate) standalone: bool,
    pub(crate) server_url: String,
    pub(crate) relay: Option<String>,
    pub(crate) compute_repo: Option<String>,
    pub(crate) log_lines: usize,
}

/// Compute tab: the selected row and the sort.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ComputeView {
    pub(crate) selected: usize,
    pub(crate) sort: usize,
    pub(crate) reverse: bool,
}

pub(crate) struct LogsView {
    pub(crate) source: Source,
    pub(crate) generation: u64,
    pub(crate) buffer: LogBuffer,
    /// Why the stream is not flowing, when it is not.
    pub(crate) interrupted: Option<String>,
    /// The `/` field while it is open.
    pub(crate) search: Option<TextInput>,
    pub(crate) started: bool,
}

/// A short message in the status line, gone after a few seconds.
#[derive(Debug, Clone)]
pub(crate) struct Notice {
    pub(crate) text: String,
    pub(crate) error: bool,
    pub(crate) until: DateTime<Utc>,
}

pub(crate) struct App {
    pub(crate) setup: Setup,
    pub(crate) theme: Theme,
    pub(crate) tab: Tab,
    pub(crate) now: DateTime<Utc>,
    pub(crate) agent: AgentLink,
    pub(crate) coordinator: CoordinatorView,
    pub(crate) usage: MachineUsage,
    pub(crate) inventory: Option<Result<Box<Inventory>, String>>,
    pub(crate) popups: Vec<Popup>,
    pub(crate) wizard: Wizard,
    pub(crate) compute: ComputeView,
    pub(crate) processes_selected: usize,
    pub(crate) logs: LogsView,
    /// An agent start or stop under way: what it is.
    pub(crate) busy: Option<String>,
    pub(crate) notice: Option<Notice>,
    pub(crate) mouse: bool,
    /// Frames of the spinner shown so far.
    pub(crate) spin: usize,
    offered_start: bool,
    /// Benchmark and update jobs under way.
    jobs_running: Vec<std::mem::Discriminant<Job>>,
    /// The last frame was the "too small" notice: popups are hidden, so q must still quit.
    pub(crate) too_small: bool,
    pub(crate) quit: bool,
    dirty: bool,
}

impl App {
    pub(crate) fn new(setup: Setup, theme: Theme) -> Self {
        let server_url = setup.server_url.clone();
        let log_lines = setup.log_lines;
        Self {
            setup,
            theme,
            tab: Tab::Overview,
            now: Utc::now(),
            agent: AgentLink::Connecting,
            coordinator: CoordinatorView::new(server_url.clone()),
            usage: MachineUsage::default(),
            inventory: None,
            popups: Vec::new(),
            wizard: Wizard::new(server_url),
            compute: ComputeView::default(),
            processes_selected: 0,
            logs: LogsView {
                source: Source::Compute,
                generation: 0,
                buffer: LogBuffer::new(log_lines),
                interrupted: None,
                search: None,
                started: false,
            },
            busy: None,
            notice: None,
            mouse: false,
            spin: 0,
            offered_start: false,
            too_small: false,
            jobs_running: Vec::new(),
            quit: false,
            dirty: true,
        }
    }

    /// What the app asks for once, at start.
    pub(crate) fn start(&mut self) -> Vec<Effect> {
        vec![Effect::Spawn(Job::Inventory)]
    }

    /// Whether a redraw is due, and clears the flag.
    pub(crate) fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// When the next timer is needed: often while a spinner turns, each second while the
    /// screen shows ages, never otherwise (no redraws for nothing).
    pub(crate) fn next_tick(&self) -> Option<Duration> {
        let spinning = self.busy.is_some()
            || (self.tab == Tab::Register && self.wizard.is_busy())
            || self.popups.iter().any(Popup::is_working);
        if spinning {
            Some(Duration::from_millis(100))
        } else if matches!(self.tab, Tab::Overview | Tab::Processes) || self.notice.is_some() {
            Some(Duration::from_secs(1))
        } else {
            None
        }
    }

    /// The key contexts that apply now, innermost first.
    pub(crate) fn contexts(&self) -> Vec<Context> {
        if let Some(popup) = self.popups.last() {
            return vec![popup.context()];
        }
        match self.tab {
            Tab::Register => self.wizard.contexts(),
            Tab::Logs if self.logs.search.is_some() => vec![Context::Input, Context::Logs],
            tab => vec![tab.context()],
        }
    }

    /// Whether a hinted command would do something now: the hint bar leaves out the rest.
    pub(crate) fn offers(&self, command: Command) -> bool {
        match command {
            Command::StartAgent => !self.agent_running() && self.busy.is_none(),
            Command::Follow => !self.logs.buffer.is_following(),
            _ => true,
        }
    }

    pub(crate) fn agent_running(&self) -> bool {
        matches!(self.agent, AgentLink::Up(_))
    }

    fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice {
            text: text.into(),
            error,
            until: self.now + chrono::Duration::seconds(if error { 10 } else { 5 }),
        });
    }

    pub(crate) fn update(&mut self, action: Action) -> Vec<Effect> {
        self.now = Utc::now();
        self.update_at(action)
    }

    /// [`update`](Self::update) with the clock already set (tests fix `now`).
    pub(crate) fn update_at(&mut self, action: Action) -> Vec<Effect> {
        self.dirty = true;
        match action {
            Action::Key(key) => self.key(key),
            Action::Mouse(mouse) => self.mouse(mouse),
            Action::Resize => Vec::new(),
            Action::Tick => {
                self.spin = self.spin.wrapping_add(1);
                if self.notice.as_ref().is_some_and(|n| n.until <= self.now) {
                    self.notice = None;
                }
                Vec::new()
            }
            Action::Agent(link) => self.agent_changed(link),
            Action::Coordinator(view) => {
                self.coordinator = *view;
                Vec::new()
            }
            Action::Usage(usage) => {
                // The load is only drawn on Overview and Processes.
                self.dirty = matches!(self.tab, Tab::Overview | Tab::Processes);
                self.usage = *usage;
                Vec::new()
            }
            Action::Logs(events) => {
                self.dirty = self.tab == Tab::Logs;
                for feed in events {
                    if feed.generation != self.logs.generation {
                        continue;
                    }
                    match feed.event {
                        FeedEvent::Reset(tag) => self.logs.buffer.clear_tag(tag),
                        FeedEvent::Line(line) => {
                            self.logs.interrupted = None;
                            self.logs.buffer.push(line);
                        }
                        FeedEvent::Interrupted(why) => self.logs.interrupted = Some(why),
                    }
                }
                Vec::new()
            }
            Action::Job(result) => self.job_done(result),
            Action::Quit => {
                self.quit = true;
                Vec::new()
            }
        }
    }

    fn agent_changed(&mut self, link: AgentLink) -> Vec<Effect> {
        let mut effects = Vec::new();
        if matches!(
            link,
            AgentLink::Down {
                why: Down::NotRunning,
                ..
            }
        ) && !self.offered_start
            && self.busy.is_none()
        {
            self.offered_start = true;
            let what = if self.setup.standalone {
                format!(
                    "It sends this machine's heartbeats, runs compute_subnet and hosts the local coordinator at {}.",
                    self.setup.server_url
                )
            } else {
                "It sends this machine's heartbeats and runs compute_subnet.".to_owned()
            };
            self.popups.push(Popup::confirm(
                "The agent is not running",
                format!("{what}\nIt keeps running when you quit the dashboard.\n\nStart it now?"),
                Job::StartAgent,
            ));
        }
        if matches!(link, AgentLink::Up(_)) {
            self.offered_start = true;
        }
        self.agent = link;
        effects.extend(self.measure());
        effects
    }

    /// What the Processes tab wants the sampler to measure.
    fn measure(&self) -> Vec<Effect> {
        let mut interest = Vec::new();
        if self.tab == Tab::Processes
            && let Some(snapshot) = self.agent.snapshot()
        {
            interest.push((snapshot.agent_pid, false));
            if let Some(pid) = snapshot.compute.as_ref().and_then(|c| c.pid) {
                interest.push((pid, true));
            }
        }
        vec![Effect::Measure(interest)]
    }

    fn key(&mut self, key: KeyEvent) -> Vec<Effect> {
        if self.too_small && key.code == crossterm::event::KeyCode::Char('q') {
            self.quit = true;
            return Vec::new();
        }
        match keymap::lookup(&key, &self.contexts()) {
            Some(Meaning::Type(c)) => {
                match (self.tab, &mut self.logs.search) {
                    (Tab::Logs, Some(field)) => field.insert(c),
                    _ => self.wizard.type_char(c),
                }
                Vec::new()
            }
            Some(Meaning::Command(command)) => self.command(command),
            None => {
                self.dirty = false;
                Vec::new()
            }
        }
    }

    fn mouse(&mut self, mouse: MouseEvent) -> Vec<Effect> {
        match mouse.kind {
            MouseEventKind::ScrollUp => self.command(Command::Up),
            MouseEventKind::ScrollDown => self.command(Command::Down),
            MouseEventKind::Down(MouseButton::Left) if mouse.row == 0 => {
                match tabs::tab_at(mouse.column) {
                    Some(tab) => self.switch(tab),
                    None => Vec::new(),
                }
            }
            _ => {
                self.dirty = false;
                Vec::new()
            }
        }
    }

    fn switch(&mut self, tab: Tab) -> Vec<Effect> {
        self.tab = tab;
        let mut effects = self.measure();
        if tab == Tab::Logs && !self.logs.started {
            self.logs.started = true;
            effects.push(self.follow(self.logs.source));
        }
        effects
    }

    fn follow(&mut self, source: Source) -> Effect {
        self.logs.source = source;
        self.logs.generation += 1;
        self.logs.buffer.clear();
        self.logs.interrupted = None;
        if source == Source::Compute {
            self.logs.buffer.set_filter(LevelFilter::All);
        }
        Effect::FollowLogs {
            source,
            generation: self.logs.generation,
        }
    }

    fn command(&mut self, command: Command) -> Vec<Effect> {
        match command {
            Command::ForceQuit => {
                self.quit = true;
                return Vec::new();
            }
            Command::Suspend => return vec![Effect::Suspend],
            _ => {}
        }
        if let Some(popup) = self.popups.last_mut() {
            return match popup.handle(command) {
                Outcome::Keep => Vec::new(),
                Outcome::Close => {
                    self.popups.pop();
                    Vec::new()
                }
                Outcome::Run(job) => {
                    self.popups.pop();
                    self.run(job)
                }
            };
        }
        match command {
            Command::Quit if self.wizard.phase == super::wizard::Phase::Submitting => {
                // Between the coordinator's answer and registration.json lies the token:
                // quitting there would leave a miner nobody here can heartbeat for.
                self.notify(
                    "the registration is being sent: wait a moment (Ctrl-C quits anyway)",
                    true,
                );
                Vec::new()
            }
            Command::Quit => {
                self.quit = true;
                Vec::new()
            }
            Command::Help => {
                self.popups.push(Popup::help(&self.contexts()));
                Vec::new()
            }
            Command::NextTab => self.switch(Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()]),
            Command::PrevTab => {
                self.switch(Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()])
            }
            Command::Tab(n) => match Tab::ALL.get(usize::from(n).saturating_sub(1)) {
                Some(tab) => self.switch(*tab),
                None => Vec::new(),
            },
            Command::ToggleMouse => {
                self.mouse = !self.mouse;
                self.notify(
                    if self.mouse {
                        "Mouse on: wheel scrolls, clicks pick tabs (m turns it off to select text)"
                    } else {
                        "Mouse off: select and copy text as usual"
                    },
                    false,
                );
                vec![Effect::SetMouse(self.mouse)]
            }
            command => match self.tab {
                Tab::Overview => self.overview_command(command),
                Tab::Register => self.wizard.handle(command),
                Tab::Compute => tabs::compute::command(self, command),
                Tab::Processes => tabs::processes::command(self, command),
                Tab::Logs => self.logs_command(command),
            },
        }
    }

    /// Runs a job the user asked for (directly or by confirming).
    pub(crate) fn run(&mut self, job: Job) -> Vec<Effect> {
        // One benchmark and one update at a time, even after their popup was closed.
        let once = matches!(job, Job::Bench | Job::UpdateSubnet);
        if once && self.jobs_running.contains(&std::mem::discriminant(&job)) {
            self.notify("that is still running", true);
            return Vec::new();
        }
        if once {
            self.jobs_running.push(std::mem::discriminant(&job));
        }
        match &job {
            Job::StartAgent => self.busy = Some("Starting the agent…".to_owned()),
            Job::StopAgent => self.busy = Some("Stopping the agent…".to_owned()),
            Job::UpdateSubnet => self.popups.push(Popup::output("Update compute_subnet")),
            Job::Bench => self.popups.push(Popup::bench()),
            _ => {}
        }
        vec![Effect::Spawn(job)]
    }

    fn overview_command(&mut self, command: Command) -> Vec<Effect> {
        match command {
            Command::StartAgent if self.offers(Command::StartAgent) => self.run(Job::StartAgent),
            Command::StartAgent => {
                self.dirty = false;
                Vec::new()
            }
            Command::Register => {
                let mut effects = self.switch(Tab::Register);
                if matches!(self.wizard.phase, super::wizard::Phase::Start) {
                    effects.extend(self.wizard.handle(Command::Select));
                }
                effects
            }
            Command::Refresh => vec![Effect::PokeCoordinator],
            _ => Vec::new(),
        }
    }

    fn logs_command(&mut self, command: Command) -> Vec<Effect> {
        let page = 10;
        if let Some(field) = self.logs.search.as_mut() {
            match command {
                Command::Select => {
                    let query = field.text().to_owned();
                    self.logs.search = None;
                    self.logs.buffer.query = (!query.is_empty()).then_some(query);
                    if self.logs.buffer.query.is_some()
                        && !self.logs.buffer.jump_to_match(true, true)
                    {
                        self.notify("no line matches", true);
                    }
                }
                Command::Back => self.logs.search = None,
                other => {
                    field.edit(other);
                }
            }
            return Vec::new();
        }
        let buffer = &mut self.logs.buffer;
        match command {
            Command::Up => buffer.scroll_by(1),
            Command::Down => buffer.scroll_by(-1),
            Command::PageUp => buffer.scroll_by(page),
            Command::PageDown => buffer.scroll_by(-page),
            Command::Top => buffer.top(),
            Command::Follow => buffer.follow(),
            Command::Back => buffer.query = None,
            Command::Wrap => buffer.wrap = !buffer.wrap,
            Command::LevelFilter if self.logs.source == Source::Agent => {
                let next = buffer.filter.next();
                buffer.set_filter(next);
            }
            Command::LevelFilter => {
                self.notify("the level filter is for the agent log (c switches)", true)
            }
            Command::Search => {
                let current = buffer.query.clone().unwrap_or_default();
                self.logs.search = Some(TextInput::with_text(200, &current));
            }
            Command::NextMatch | Command::PrevMatch => {
                if !buffer.jump_to_match(command == Command::NextMatch, false) {
                    let what = if buffer.query.is_none() {
                        "no search: / starts one"
                    } else {
                        "no further match"
                    };
                    self.notify(what, true);
                }
            }
            Command::SwitchSource => {
                let other = self.logs.source.other();
                return vec![self.follow(other)];
            }
            _ => self.dirty = false,
        }
        Vec::new()
    }

    fn job_done(&mut self, result: JobResult) -> Vec<Effect> {
        match result {
            JobResult::AgentStarted(outcome) => {
                self.busy = None;
                match outcome {
                    Ok(started) if started.already_running => {
                        self.notify(
                            format!("The agent was already running (PID {}).", started.pid),
                            false,
                        );
                    }
                    Ok(started) => {
                        self.notify(format!("Agent started with PID {}.", started.pid), false)
                    }
                    Err(why) => self
                        .popups
                        .push(Popup::message("The agent did not start", why)),
                }
                vec![Effect::PokeAgent, Effect::PokeCoordinator]
            }
            JobResult::AgentStopped(outcome) => {
                self.busy = None;
                match outcome {
                    Ok(report) => {
                        let text = match (report.agent, report.compute) {
                            (None, _) => "The agent was not running.".to_owned(),
                            (Some(pid), None) => format!("Agent (PID {pid}) stopped."),
                            (Some(pid), Some(compute)) => format!(
                                "Agent (PID {pid}) and compute_subnet (PID {compute}) stopped."
                            ),
                        };
                        self.notify(text, false);
                    }
                    Err(why) => self
                        .popups
                        .push(Popup::message("The agent did not stop", why)),
                }
                vec![Effect::PokeAgent]
            }
            JobResult::Control(Ok(message)) => {
                self.notify(capitalised(&message), false);
                Vec::new()
            }
            JobResult::Control(Err(why)) => {
                self.popups.push(Popup::message("The agent refused", why));
                Vec::new()
            }
            JobResult::UpdateLine(line) => {
                if let Some(popup) = self.popups.iter_mut().rev().find(|p| p.is_output()) {
                    popup.push_line(line);
                }
                Vec::new()
            }
            JobResult::UpdateDone(outcome) => {
                self.jobs_running
                    .retain(|d| *d != std::mem::discriminant(&Job::UpdateSubnet));
                match self.popups.iter_mut().rev().find(|p| p.is_output()) {
                    Some(popup) => popup.finish(outcome),
                    None => {
                        if let Err(why) = outcome {
                            self.popups.push(Popup::message("The update failed", why));
                        }
                    }
                }
                Vec::new()
            }
            JobResult::BenchProgress { phase, fraction } => {
                if let Some(popup) = self.popups.iter_mut().rev().find(|p| p.is_bench()) {
                    popup.bench_progress(phase, fraction);
                } else {
                    self.dirty = false;
                }
                Vec::new()
            }
            JobResult::BenchDone(outcome) => {
                self.jobs_running
                    .retain(|d| *d != std::mem::discriminant(&Job::Bench));
                let text = outcome.map(|b| {
                    let read = match (b.read_mb_per_s, b.read_bypass) {
                        (Some(read), Some(how)) => format!("read {read:.0} MB/s ({})", how.describe()),
                        _ => "read not measured (the page cache cannot be bypassed here)".to_owned(),
                    };
                    format!(
                        "write {:.0} MB/s, {read}; {} MiB.\nKept in {}; registration sends it (register again to update a registered miner).",
                        b.write_mb_per_s,
                        b.bytes_written >> 20,
                        crate::inventory::bench::cache_path(&self.setup.home).display()
                    )
                });
                match self.popups.iter_mut().rev().find(|p| p.is_bench()) {
                    Some(popup) => popup.finish(text),
                    None => {
                        if let Err(why) = text {
                            self.popups
                                .push(Popup::message("The disk benchmark failed", why));
                        }
                    }
                }
                vec![Effect::Spawn(Job::Inventory)]
            }
            JobResult::Inventory(outcome) => {
                self.inventory = Some(outcome);
                Vec::new()
            }
            result @ (JobResult::Prepared(_)
            | JobResult::Submitted(_)
            | JobResult::HandedBack(_)) => self.wizard.on_result(result),
        }
    }

    /// The line printed after the dashboard has left the screen.
    pub(crate) fn farewell(&self) -> String {
        match self.agent.snapshot() {
            Some(snapshot) => format!(
                "The agent keeps running (PID {}): heartbeats and compute_subnet go on. Stop it with `polaris stop`.",
                snapshot.agent_pid
            ),
            None => {
                "The agent is not running. Start it with `polaris start` (or from the dashboard)."
                    .to_owned()
            }
        }
    }

    pub(crate) fn draw(&mut self, frame: &mut Frame) {
        tabs::draw(self, frame);
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => {
            first.to_uppercase().chain(chars).collect::<String>()
                + if text.ends_with('.') { "" } else { "." }
        }
        None => String::new(),
    }
}
