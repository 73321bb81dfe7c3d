//! A one-line text field: the text, a cursor, and the editing keys of the keymap's `Typing`
//! section. Kept by the screen that owns it, so going back to a step finds what was typed.

use crate::tui::keymap::Command;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TextInput {
    text: String,
    /// Cursor position in characters.
    cursor: usize,
    /// Longest text accepted, in characters (a paste of a whole file must not grow it).
    limit: usize,
}

impl TextInput {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            text: String::new(),
            cursor: 0,
            limit,
        }
    }

    pub(crate) fn with_text(limit: usize, text: &str) -> Self {
        let mut input = Self::new(limit);
        for c in text.chars() {
            input.insert(c);
        }
        input
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn cursor(&self) -> usize {
        self.cursor
    }

    fn byte_at(&self, chars: usize) -> usize {
        self.text
            .char_indices()
            .nth(chars)
            .map_or(self.text.len(), |(i, _)| i)
    }

    pub(crate) fn insert(&mut self, c: char) {
        if c.is_control() || self.text.chars().count() >= self.limit {
            return;
        }
        let at = self.byte_at(self.cursor);
        self.text.insert(at, c);
        self.cursor += 1;
    }

    /// Applies an editing command; false when it is not one.
    pub(crate) fn edit(&mut self, command: Command) -> bool {
        let len = self.text.chars().count();
        match command {
            Command::DeleteBack if self.cursor > 0 => {
                let at = self.byte_at(self.cursor - 1);
                self.text.remove(at);
                self.cursor -= 1;
            }
            Command::DeleteForward if self.cursor < len => {
                let at = self.byte_at(self.cursor);
                self.text.remove(at);
            }
            Command::Left => self.cursor = self.cursor.saturating_sub(1),
            Command::Right => self.cursor = (self.cursor + 1).min(len),
            Command::Home => self.cursor = 0,
            Command::End => self.cursor = len,
            Command::Clear => {
                self.text.clear();
                self.cursor = 0;
            }
            Command::DeleteBack | Command::DeleteForward => {}
            _ => return false,
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn editing_moves_the_cursor_by_characters() {
        let mut input = TextInput::with_text(32, "añb");
        assert_eq!(input.cursor(), 3);
        input.edit(Command::Left);
        input.edit(Command::DeleteBack);
        assert_eq!(input.text(), "ab");
        input.insert('x');
        assert_eq!(input.text(), "axb");
        input.edit(Command::Home);
        input.edit(Command::DeleteForward);
        assert_eq!(input.text(), "xb");
        input.edit(Command::Clear);
        assert_eq!((input.text(), input.cursor()), ("", 0));
    }

    #[test]
    fn the_limit_and_control_characters_are_kept_out() {
        let mut input = TextInput::new(3);
        for c in "ab\u{1b}cdef".chars() {
            input.insert(c);
        }
        assert_eq!(input.text(), "abc");
    }
}
