//! The one table of key bindings. Key dispatch, the `?` help page and the bottom hint bar are
//! all read from [`BINDINGS`], so a key's help can never disagree with what it does.
//!
//! A key is looked up in the innermost context first (a popup, a text field, the current tab)
//! and then in [`Context::Global`]; a text field takes every printable character before any
//! binding sees it, so typing `q` into a username types a `q`.

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Global,
    Overview,
    Register,
    Compute,
    Processes,
    Logs,
    /// A text field has the keyboard (wizard username, log search, a wallet name).
    Input,
    /// A yes/no question in a popup.
    Confirm,
    /// A popup that shows text (help, details, command output).
    Viewer,
}

impl Context {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Global => "Everywhere",
            Self::Overview => "Overview",
            Self::Register => "Register",
            Self::Compute => "Compute",
            Self::Processes => "Processes",
            Self::Logs => "Logs",
            Self::Input => "Typing",
            Self::Confirm => "Confirmation",
            Self::Viewer => "Popups",
        }
    }
}

/// What a key asks for; tabs and popups interpret it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Quit,
    ForceQuit,
    Suspend,
    Help,
    NextTab,
    PrevTab,
    Tab(u8),
    ToggleMouse,
    Back,
    Select,
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    Refresh,
    StartAgent,
    Register,
    Sort,
    SortReverse,
    Bench,
    Start,
    Stop,
    Restart,
    UpdateSubnet,
    SwitchSource,
    Search,
    NextMatch,
    PrevMatch,
    LevelFilter,
    Wrap,
    Follow,
    Decline,
    Create,
    Yes,
    No,
    // Text editing.
    DeleteBack,
    DeleteForward,
    Left,
    Right,
    Home,
    End,
    Clear,
}

/// One key as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub(crate) code: KeyCode,
    pub(crate) modifiers: KeyModifiers,
}

const fn key(code: KeyCode) -> Key {
    Key {
        code,
        modifiers: KeyModifiers::NONE,
    }
}

const fn ch(c: char) -> Key {
    key(KeyCode::Char(c))
}

const fn ctrl(c: char) -> Key {
    Key {
        code: KeyCode::Char(c),
        modifiers: KeyModifiers::CONTROL,
    }
}

impl Key {
    /// Whether a key event from the terminal is this key. Shift is part of the character for
    /// letters (`G` arrives as Shift+G on some terminals and as plain `G` on others).
    fn matches(&self, event: &KeyEvent) -> bool {
        if self.code != event.code {
            return false;
        }
        let relevant = KeyModifiers::CONTROL | KeyModifiers::ALT;
        match self.code {
            KeyCode::Char(_) | KeyCode::BackTab => {
                (event.modifiers & relevant) == (self.modifiers & relevant)
            }
            _ => event.modifiers == self.modifiers,
        }
    }

    /// How the help page and hint bar write it.
    pub(crate) fn label(&self) -> String {
        let name = match self.code {
            KeyCode::Char(' ') => "Space".to_owned(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Enter => "Enter".to_owned(),
            KeyCode::Esc => "Esc".to_owned(),
            KeyCode::Tab => "Tab".to_owned(),
            KeyCode::BackTab => "Shift-Tab".to_owned(),
            KeyCode::Up => "↑".to_owned(),
            KeyCode::Down => "↓".to_owned(),
            KeyCode::Left => "←".to_owned(),
            KeyCode::Right => "→".to_owned(),
            KeyCode::PageUp => "PgUp".to_owned(),
            KeyCode::PageDown => "PgDn".to_owned(),
            KeyCode::Home => "Home".to_owned(),
            KeyCode::End => "End".to_owned(),
            KeyCode::Backspace => "Backspace".to_owned(),
            KeyCode::Delete => "Del".to_owned(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            format!("Ctrl-{name}")
        } else {
            name
        }
    }
}

pub(crate) struct Binding {
    pub(crate) context: Context,
    pub(crate) keys: &'static [Key],
    pub(crate) command: Command,
    pub(crate) help: &'static str,
    /// Shown in the bottom hint bar (the help page shows every binding).
    pub(crate) hint: bool,
}

const fn bind(
    context: Context,
    keys: &'static [Key],
    command: Command,
    help: &'static str,
    hint: bool,
) -> Binding {
    Binding {
        context,
        keys,
        command,
        help,
        hint,
    }
}

use Command as C;
use Context as X;
use KeyCode as K;

/// Every binding. Order matters only for display.
pub(crate) const BINDINGS: &[Binding] = &[
    // Popups.
    bind(
        X::Confirm,
        &[ch('y'), key(K::Enter)],
        C::Yes,
        "confirm",
        true,
    ),
    bind(
        X::Confirm,
        &[ch('n'), ch('q'), key(K::Esc)],
        C::No,
        "cancel",
        true,
    ),
    bind(
        X::Viewer,
        &[key(K::Esc), ch('q'), key(K::Enter)],
        C::Back,
        "close",
        true,
    ),
    bind(X::Viewer, &[key(K::Up), ch('k')], C::Up, "scroll up", false),
    bind(
        X::Viewer,
        &[key(K::Down), ch('j')],
        C::Down,
        "scroll down",
        false,
    ),
    bind(X::Viewer, &[key(K::PageUp)], C::PageUp, "page up", false),
    bind(
        X::Viewer,
        &[key(K::PageDown), ch(' ')],
        C::PageDown,
        "page down",
        false,
    ),
    bind(X::Viewer, &[ch('g'), key(K::Home)], C::Top, "top", false),
    bind(
        X::Viewer,
        &[ch('G'), key(K::End)],
        C::Bottom,
        "bottom",
        false,
    ),
    // Text fields.
    bind(X::Input, &[key(K::Enter)], C::Select, "accept", true),
    bind(X::Input, &[key(K::Esc)], C::Back, "back", true),
    bind(
        X::Input,
        &[key(K::Backspace)],
        C::DeleteBack,
        "delete left",
        false,
    ),
    bind(
        X::Input,
        &[key(K::Delete)],
        C::DeleteForward,
        "delete right",
        false,
    ),
    bind(X::Input, &[key(K::Left)], C::Left, "cursor left", false),
    bind(X::Input, &[key(K::Right)], C::Right, "cursor right", false),
    bind(
        X::Input,
        &[key(K::Home), ctrl('a')],
        C::Home,
        "start of line",
        false,
    ),
    bind(
        X::Input,
        &[key(K::End), ctrl('e')],
        C::End,
        "end of line",
        false,
    ),
    bind(X::Input, &[ctrl('u')], C::Clear, "clear", false),
    // Overview.
    bind(
        X::Overview,
        &[ch('s'), key(K::Enter)],
        C::StartAgent,
        "start the agent",
        true,
    ),
    bind(X::Overview, &[ch('r')], C::Register, "register", true),
    bind(
        X::Overview,
        &[ch('R')],
        C::Refresh,
        "ask the coordinator now",
        false,
    ),
    // Register (the wizard).
    bind(
        X::Register,
        &[key(K::Enter)],
        C::Select,
        "choose / continue",
        true,
    ),
    bind(X::Register, &[key(K::Esc)], C::Back, "back", true),
    bind(X::Register, &[key(K::Up), ch('k')], C::Up, "up", false),
    bind(
        X::Register,
        &[key(K::Down), ch('j')],
        C::Down,
        "down",
        false,
    ),
    bind(X::Register, &[key(K::PageUp)], C::PageUp, "page up", false),
    bind(
        X::Register,
        &[key(K::PageDown)],
        C::PageDown,
        "page down",
        false,
    ),
    bind(X::Register, &[ch('n')], C::Decline, "decline", false),
    bind(
        X::Register,
        &[ch('c')],
        C::Create,
        "create a wallet or key",
        false,
    ),
    bind(X::Register, &[ch('r')], C::Refresh, "retry", false),
    // Compute.
    bind(
        X::Compute,
        &[key(K::Up), ch('k')],
        C::Up,
        "previous resource",
        false,
    ),
    bind(
        X::Compute,
        &[key(K::Down), ch('j')],
        C::Down,
        "next resource",
        false,
    ),
    bind(X::Compute, &[ch('g'), key(K::Home)], C::Top, "first", false),
    bind(
        X::Compute,
        &[ch('G'), key(K::End)],
        C::Bottom,
        "last",
        false,
    ),
    bind(X::Compute, &[key(K::Enter)], C::Select, "details", true),
    bind(X::Compute, &[ch('s')], C::Sort, "sort by next column", true),
    bind(
        X::Compute,
        &[ch('S')],
        C::SortReverse,
        "reverse the order",
        false,
    ),
    bind(X::Compute, &[ch('b')], C::Bench, "measure disk speed", true),
    bind(X::Compute, &[ch('r')], C::Refresh, "refresh", true),
    // Processes.
    bind(
        X::Processes,
        &[key(K::Up), ch('k')],
        C::Up,
        "previous process",
        false,
    ),
    bind(
        X::Processes,
        &[key(K::Down), ch('j')],
        C::Down,
        "next process",
        false,
    ),
    bind(X::Processes, &[ch('s')], C::Start, "start", true),
    bind(X::Processes, &[ch('x')], C::Stop, "stop", true),
    bind(X::Processes, &[ch('r')], C::Restart, "restart", true),
    bind(
        X::Processes,
        &[ch('u')],
        C::UpdateSubnet,
        "update subnet",
        true,
    ),
    // Logs.
    bind(
        X::Logs,
        &[key(K::Up), ch('k')],
        C::Up,
        "scroll up (pauses follow)",
        false,
    ),
    bind(
        X::Logs,
        &[key(K::Down), ch('j')],
        C::Down,
        "scroll down",
        false,
    ),
    bind(
        X::Logs,
        &[key(K::PageUp), ctrl('u')],
        C::PageUp,
        "page up",
        false,
    ),
    bind(
        X::Logs,
        &[key(K::PageDown), ctrl('d')],
        C::PageDown,
        "page down",
        false,
    ),
    bind(
        X::Logs,
        &[ch('g'), key(K::Home)],
        C::Top,
        "oldest line",
        false,
    ),
    bind(
        X::Logs,
        &[ch('G'), key(K::End)],
        C::Follow,
        "follow new lines",
        true,
    ),
    bind(
        X::Logs,
        &[ch('c')],
        C::SwitchSource,
        "agent / compute_subnet",
        true,
    ),
    bind(X::Logs, &[ch('/')], C::Search, "search", true),
    bind(X::Logs, &[ch('n')], C::NextMatch, "next match", false),
    bind(X::Logs, &[ch('N')], C::PrevMatch, "previous match", false),
    bind(
        X::Logs,
        &[ch('f')],
        C::LevelFilter,
        "level filter (agent log)",
        false,
    ),
    bind(X::Logs, &[ch('w')], C::Wrap, "wrap long lines", false),
    // Everywhere.
    bind(X::Global, &[ch('?'), key(K::F(1))], C::Help, "help", true),
    bind(
        X::Global,
        &[ch('q')],
        C::Quit,
        "quit (or close a popup)",
        true,
    ),
    bind(X::Global, &[ctrl('c')], C::ForceQuit, "quit at once", false),
    bind(
        X::Global,
        &[ctrl('z')],
        C::Suspend,
        "suspend (fg resumes)",
        false,
    ),
    bind(X::Global, &[key(K::Tab)], C::NextTab, "next tab", false),
    bind(
        X::Global,
        &[key(K::BackTab)],
        C::PrevTab,
        "previous tab",
        false,
    ),
    bind(X::Global, &[ch('1')], C::Tab(1), "Overview", false),
    bind(X::Global, &[ch('2')], C::Tab(2), "Register", false),
    bind(X::Global, &[ch('3')], C::Tab(3), "Compute", false),
    bind(X::Global, &[ch('4')], C::Tab(4), "Processes", false),
    bind(X::Global, &[ch('5')], C::Tab(5), "Logs", false),
    bind(
        X::Global,
        &[ch('m')],
        C::ToggleMouse,
        "mouse on/off (off lets you select text)",
        false,
    ),
    bind(X::Global, &[key(K::Esc)], C::Back, "back", false),
];

/// What a key press means here: the command, or (in a text field) a character to type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meaning {
    Command(Command),
    Type(char),
}

/// Looks `event` up in `contexts` (innermost first), then the global bindings. Key releases
/// and repeats of non-movement keys are ignored (Windows reports both press and release).
pub(crate) fn lookup(event: &KeyEvent, contexts: &[Context]) -> Option<Meaning> {
    if event.kind == KeyEventKind::Release {
        return None;
    }
    let typing = contexts.first() == Some(&Context::Input);
    if typing
        && let KeyCode::Char(c) = event.code
        && !event
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
    {
        return Some(Meaning::Type(c));
    }
    let found = contexts
        .iter()
        .chain(std::iter::once(&Context::Global))
        .find_map(|context| {
            BINDINGS
                .iter()
                .filter(|b| b.context == *context)
                .find(|b| b.keys.iter().any(|k| k.matches(event)))
        })?;
    // Ctrl-C must quit even where a popup or field would take the key; `q` in a text field
    // never gets here (it was typed above).
    Some(Meaning::Command(found.command))
}

/// The hint bar's entries for `contexts`: `(keys, help)`, leaving out commands that `offered`
/// says would do nothing now (the help page still lists them).
pub(crate) fn hints(
    contexts: &[Context],
    offered: impl Fn(Command) -> bool,
) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    for context in contexts.iter().chain(std::iter::once(&Context::Global)) {
        for binding in BINDINGS
            .iter()
            .filter(|b| b.context == *context && b.hint && offered(b.command))
        {
            // A key (or a help) already shown by an inner context is not shown twice.
            let keys = keys_label(binding);
            if out.iter().any(|(k, help)| {
                *help == binding.help
                    || binding
                        .keys
                        .iter()
                        .any(|key| k.split('/').any(|part| part == key.label()))
            }) {
                continue;
            }
            out.push((keys, binding.help));
        }
    }
    out
}

/// `a/b` for a binding's keys.
pub(crate) fn keys_label(binding: &Binding) -> String {
    binding
        .keys
        .iter()
        .map(Key::label)
        .collect::<Vec<_>>()
        .join("/")
}

/// The help page: one section per context, innermost first, then the global one.
pub(crate) fn help_sections(
    contexts: &[Context],
) -> Vec<(&'static str, Vec<(String, &'static str)>)> {
    let mut sections = Vec::new();
    for context in contexts.iter().chain(std::iter::once(&Context::Global)) {
        let rows: Vec<_> = BINDINGS
            .iter()
            .filter(|b| b.context == *context)
            .map(|b| (keys_label(b), b.help))
            .collect();
        if !rows.is_empty() && !sections.iter().any(|(t, _)| *t == context.title()) {
            sections.push((context.title(), rows));
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    #[test]
    fn inner_contexts_win_and_global_keys_still_work() {
        let q = press(KeyCode::Char('q'), KeyModifiers::NONE);
        assert_eq!(
            lookup(&q, &[Context::Confirm]),
            Some(Meaning::Command(Command::No)),
            "a popup takes q first"
        );
        assert_eq!(
            lookup(&q, &[Context::Overview]),
            Some(Meaning::Command(Command::Quit))
        );
        let ctrl_c = press(KeyCode::Char('c'), KeyModifiers::CONTROL);
        for context in [Context::Input, Context::Confirm, Context::Logs] {
            assert_eq!(
                lookup(&ctrl_c, &[context]),
                Some(Meaning::Command(Command::ForceQuit)),
                "{context:?}"
            );
        }
    }

    #[test]
    fn a_text_field_types_characters_that_are_bindings_elsewhere() {
        for c in ['q', '1', '?', 'j', 'G'] {
            let event = press(KeyCode::Char(c), KeyModifiers::NONE);
            assert_eq!(lookup(&event, &[Context::Input]), Some(Meaning::Type(c)));
        }
        let enter = press(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(
            lookup(&enter, &[Context::Input, Context::Register]),
            Some(Meaning::Command(Command::Select))
        );
    }

    #[test]
    fn releases_are_ignored_and_shifted_letters_match() {
        let mut release = press(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(lookup(&release, &[Context::Overview]), None);
        let shifted = press(KeyCode::Char('G'), KeyModifiers::SHIFT);
        assert_eq!(
            lookup(&shifted, &[Context::Logs]),
            Some(Meaning::Command(Command::Follow))
        );
    }

    #[test]
    fn every_context_key_is_bound_once() {
        // Two bindings for one key in one context would make one of them dead.
        for (i, a) in BINDINGS.iter().enumerate() {
            for b in &BINDINGS[i + 1..] {
                if a.context != b.context {
                    continue;
                }
                for key in a.keys {
                    assert!(
                        !b.keys.contains(key),
                        "{} is bound twice in {:?}",
                        key.label(),
                        a.context
                    );
                }
            }
        }
    }

    #[test]
    fn help_and_hints_come_from_the_table() {
        let sections = help_sections(&[Context::Logs]);
        assert_eq!(sections[0].0, "Logs");
        assert!(
            sections[0]
                .1
                .iter()
                .any(|(keys, help)| keys == "/" && *help == "search")
        );
        assert_eq!(sections.last().map(|s| s.0), Some("Everywhere"));
        let hints_now = hints(&[Context::Logs], |_| true);
        assert!(hints_now.iter().any(|(keys, _)| keys == "G/End"));
        assert!(hints_now.iter().any(|(_, help)| *help == "help"));
        let without_follow = hints(&[Context::Logs], |c| c != Command::Follow);
        assert!(!without_follow.iter().any(|(keys, _)| keys == "G/End"));
    }
}
