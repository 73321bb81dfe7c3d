//! Every colour and emphasis the dashboard uses, in one place. `NO_COLOR` (any non-empty value,
//! as no-color.org asks) turns colours off; states are never told by colour alone, so every
//! style here is paired with a glyph or a word where it is used.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Theme {
    pub(crate) text: Style,
    pub(crate) dim: Style,
    pub(crate) title: Style,
    pub(crate) accent: Style,
    pub(crate) ok: Style,
    pub(crate) warn: Style,
    pub(crate) bad: Style,
    pub(crate) selected: Style,
    pub(crate) tab_active: Style,
    pub(crate) key: Style,
    pub(crate) highlight: Style,
    pub(crate) colour: bool,
}

impl Theme {
    /// The theme for this process: plain when `NO_COLOR` is set.
    pub(crate) fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        if no_color {
            Self::plain()
        } else {
            Self::coloured()
        }
    }

    /// ANSI colours only (no RGB), so light and dark terminals both keep their own palette.
    pub(crate) fn coloured() -> Self {
        let base = Style::default();
        Self {
            text: base,
            dim: base.fg(Color::DarkGray),
            title: base.add_modifier(Modifier::BOLD),
            accent: base.fg(Color::Cyan),
            ok: base.fg(Color::Green),
            warn: base.fg(Color::Yellow),
            bad: base.fg(Color::Red).add_modifier(Modifier::BOLD),
            selected: base.add_modifier(Modifier::REVERSED),
            tab_active: base
                .fg(Color::Cyan)
                .add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            key: base.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            highlight: base.fg(Color::Black).bg(Color::Yellow),
            colour: true,
        }
    }

    /// No colour at all: emphasis by bold, underline and reverse video.
    pub(crate) fn plain() -> Self {
        let base = Style::default();
        Self {
            text: base,
            dim: base,
            title: base.add_modifier(Modifier::BOLD),
            accent: base,
            ok: base,
            warn: base.add_modifier(Modifier::BOLD),
            bad: base.add_modifier(Modifier::BOLD),
            selected: base.add_modifier(Modifier::REVERSED),
            tab_active: base.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
            key: base.add_modifier(Modifier::BOLD),
            highlight: base.add_modifier(Modifier::REVERSED),
            colour: false,
        }
    }
}
