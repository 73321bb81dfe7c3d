//! The Logs tab's memory: a bounded ring of parsed log lines and the view over it (follow or
//! paused, search, level filter, wrap). Only the lines that fit the screen are ever turned into
//! widgets, so a full ring costs the same to draw as a short one.
//!
//! Bounds: at most `capacity` lines (10 000 by default), each cut to [`MAX_LINE_BYTES`], and
//! [`MAX_TOTAL_BYTES`] of text in all — a dashboard left open for weeks stays small.

use std::collections::VecDeque;

/// Longest line kept whole; the rest is cut with a note (a megabyte-long line stays drawable).
pub(crate) const MAX_LINE_BYTES: usize = 8 * 1024;
/// All text kept, whatever the line count.
pub(crate) const MAX_TOTAL_BYTES: usize = 16 << 20;
/// How far back a line may be merged in among newer ones (stdout and stderr interleave by a
/// few lines; a tail of [`super::services::log_feed::TAIL_LINES`] arrives in order).
const MAX_REORDER: usize = 4096;

/// Whose output a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tag {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "TRACE" => Self::Trace,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "WARN" => Self::Warn,
            "ERROR" => Self::Error,
            _ => return None,
        })
    }
}

/// Which lines the agent log shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum LevelFilter {
    #[default]
    All,
    AtLeast(Level),
}

impl LevelFilter {
    /// All → INFO+ → WARN+ → ERROR → All.
    pub(crate) fn next(self) -> Self {
        match self {
            Self::All => Self::AtLeast(Level::Info),
            Self::AtLeast(Level::Trace | Level::Debug | Level::Info) => Self::AtLeast(Level::Warn),
            Self::AtLeast(Level::Warn) => Self::AtLeast(Level::Error),
            Self::AtLeast(Level::Error) => Self::All,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::All => "all levels",
            Self::AtLeast(Level::Error) => "ERROR only",
            Self::AtLeast(Level::Warn) => "WARN and up",
            Self::AtLeast(_) => "INFO and up",
        }
    }

    fn passes(self, line: &LogLine) -> bool {
        match self {
            Self::All => true,
            // Lines without a level (continuations, panics) are kept: hiding them hides context.
            Self::AtLeast(min) => line.level.is_none_or(|l| l >= min),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogLine {
    /// The RFC 3339 stamp the agent wrote, or empty for a line without one.
    pub(crate) stamp: String,
    pub(crate) tag: Tag,
    pub(crate) level: Option<Level>,
    pub(crate) text: String,
}

impl LogLine {
    /// Parses one line of a Polaris log file: `2026-11-25T15:00:00.123Z stdout | text`.
    pub(crate) fn parse(raw: &str, fallback: Tag) -> Self {
        let (stamp, rest) = match raw.split_once(' ') {
            Some((stamp, rest)) if looks_like_stamp(stamp) => (stamp, rest),
            _ => ("", raw),
        };
        let (tag, text) = if let Some(text) = rest.strip_prefix("stdout | ") {
            (Tag::Stdout, text)
        } else if let Some(text) = rest.strip_prefix("stderr | ") {
            (Tag::Stderr, text)
        } else {
            (fallback, rest)
        };
        let level = text.split_whitespace().next().and_then(Level::parse);
        Self {
            stamp: stamp.to_owned(),
            tag,
            level,
            text: cut(text),
        }
    }

    fn bytes(&self) -> usize {
        self.stamp.len() + self.text.len()
    }

    /// `15:00:00.123` from the stamp.
    pub(crate) fn time(&self) -> &str {
        self.stamp.get(11..23).unwrap_or("")
    }
}

fn looks_like_stamp(word: &str) -> bool {
    word.len() >= 20
        && word.as_bytes()[0].is_ascii_digit()
        && word.as_bytes().get(10) == Some(&b'T')
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_LINE_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_LINE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{} … [{} bytes cut]", &text[..end], text.len() - end)
}

/// The ring and the view.
#[derive(Debug)]
pub(crate) struct LogBuffer {
    lines: VecDeque<LogLine>,
    capacity: usize,
    bytes: usize,
    /// Lines pushed out of the ring at the front (oldest), since the source was chosen.
    pub(crate) evicted: u64,
    /// Lines from the bottom the view is scrolled up; 0 follows new lines.
    scroll: usize,
    /// New lines that arrived while paused.
    pub(crate) unseen: u64,
    pub(crate) filter: LevelFilter,
    pub(crate) wrap: bool,
    pub(crate) query: Option<String>,
    /// [`match_count`](Self::match_count), kept until the lines or the query change.
    matches: std::cell::RefCell<Option<(String, usize)>>,
}

impl LogBuffer {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            evicted: 0,
            scroll: 0,
            unseen: 0,
            filter: LevelFilter::All,
            wrap: false,
            query: None,
            matches: std::cell::RefCell::new(None),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.lines.len()
    }

    pub(crate) fn is_following(&self) -> bool {
        self.scroll == 0
    }

    /// Empties the ring (another source was chosen); the view settings stay.
    pub(crate) fn clear(&mut self) {
        self.lines.clear();
        *self.matches.get_mut() = None;
        self.bytes = 0;
        self.evicted = 0;
        self.scroll = 0;
        self.unseen = 0;
    }

    /// Forgets the lines of one stream (it reconnected and sends its tail again).
    pub(crate) fn clear_tag(&mut self, tag: Tag) {
        self.lines.retain(|l| l.tag != tag);
        self.bytes = self.lines.iter().map(LogLine::bytes).sum();
        self.scroll = self.scroll.min(self.visible_count().saturating_sub(1));
        *self.matches.get_mut() = None;
    }

    /// Adds a line in time order (stdout and stderr arrive on two streams; their stamps merge
    /// them), dropping the oldest past the bounds.
    pub(crate) fn push(&mut self, line: LogLine) {
        let visible = self.filter.passes(&line);
        self.bytes += line.bytes();
        // Nearly every line is the newest: look from the back, and stop at once for those. The
        // look is bounded: after the clock stepped back, new lines land near the end rather
        // than all the way at the front (where they would be the first evicted).
        let mut at = self.lines.len();
        if !line.stamp.is_empty() {
            let floor = at.saturating_sub(MAX_REORDER);
            while at > floor && self.lines[at - 1].stamp > line.stamp {
                at -= 1;
            }
        }
        *self.matches.get_mut() = None;
        self.lines.insert(at, line);
        if !self.is_following() && visible {
            // Keep the same lines on screen while paused.
            self.scroll += 1;
            self.unseen += 1;
        }
        while self.lines.len() > self.capacity || self.bytes > MAX_TOTAL_BYTES {
            match self.lines.pop_front() {
                Some(old) => {
                    self.bytes -= old.bytes();
                    self.evicted += 1;
                }
                None => break,
            }
        }
        if self.scroll > 0 {
            self.scroll = self.scroll.min(self.visible_count().saturating_sub(1));
        }
    }

    fn visible_count(&self) -> usize {
        match self.filter {
            LevelFilter::All => self.lines.len(),
            filter => self.lines.iter().filter(|l| filter.passes(l)).count(),
        }
    }

    /// Scrolls up (positive) or down (negative) by `lines` visible lines.
    pub(crate) fn scroll_by(&mut self, lines: isize) {
        let max = self.visible_count().saturating_sub(1);
        self.scroll = self.scroll.saturating_add_signed(lines).min(max);
        if self.scroll == 0 {
            self.unseen = 0;
        }
    }

    pub(crate) fn follow(&mut self) {
        self.scroll = 0;
        self.unseen = 0;
    }

    pub(crate) fn top(&mut self) {
        self.scroll = self.visible_count().saturating_sub(1);
    }

    pub(crate) fn set_filter(&mut self, filter: LevelFilter) {
        self.filter = filter;
        *self.matches.get_mut() = None;
        self.follow();
    }

    /// Indexes (into the ring) of visible lines, newest first, starting at the view's bottom.
    fn newest_first(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.lines.len())
            .rev()
            .filter(|&i| self.filter.passes(&self.lines[i]))
            .skip(self.scroll)
    }

    /// The lines to draw in `rows` rows of `width` columns, oldest first, and how many rows the
    /// newest of them leaves empty at the bottom (none when the screen is full).
    pub(crate) fn window(
        &self,
        rows: usize,
        width: usize,
        render_width: impl Fn(&LogLine) -> usize,
    ) -> Vec<&LogLine> {
        let mut used = 0;
        let mut out = Vec::new();
        for i in self.newest_first() {
            let line = &self.lines[i];
            let height = if self.wrap && width > 0 {
                render_width(line).div_ceil(width).max(1)
            } else {
                1
            };
            if used + height > rows {
                break;
            }
            used += height;
            out.push(line);
            if used == rows {
                break;
            }
        }
        out.reverse();
        out
    }

    fn matches(&self, i: usize, needle: &str) -> bool {
        self.filter.passes(&self.lines[i])
            && self.lines[i].text.to_ascii_lowercase().contains(needle)
    }

    /// Moves the view so the nearest match older (`older`) or newer than the current bottom
    /// line is at the bottom; false when there is none.
    pub(crate) fn jump_to_match(&mut self, older: bool, include_current: bool) -> bool {
        let Some(query) = self.query.as_ref().filter(|q| !q.is_empty()) else {
            return false;
        };
        let needle = query.to_ascii_lowercase();
        let visible: Vec<usize> = (0..self.lines.len())
            .filter(|&i| self.filter.passes(&self.lines[i]))
            .collect();
        if visible.is_empty() {
            return false;
        }
        // Position (in visible lines, from the oldest) of the current bottom line.
        let bottom = visible.len().saturating_sub(1 + self.scroll);
        let found = if older {
            let start = if include_current {
                bottom
            } else {
                bottom.saturating_sub(1)
            };
            if !include_current && bottom == 0 {
                None
            } else {
                (0..=start)
                    .rev()
                    .find(|&p| self.matches(visible[p], &needle))
            }
        } else {
            (bottom + 1..visible.len()).find(|&p| self.matches(visible[p], &needle))
        };
        match found {
            Some(p) => {
                self.scroll = visible.len() - 1 - p;
                if self.scroll == 0 {
                    self.unseen = 0;
                }
                true
            }
            None => false,
        }
    }

    /// How many visible lines match the query.
    pub(crate) fn match_count(&self) -> usize {
        match self.query.as_ref().filter(|q| !q.is_empty()) {
            Some(query) => {
                let needle = query.to_ascii_lowercase();
                (0..self.lines.len())
                    .filter(|&i| self.matches(i, &needle))
                    .count()
            }
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(stamp_ms: u32, tag: Tag, text: &str) -> LogLine {
        let tag_word = match tag {
            Tag::Stdout => "stdout",
            Tag::Stderr => "stderr",
        };
        LogLine::parse(
            &format!("2026-12-01T10:00:00.{stamp_ms:03}Z {tag_word} | {text}"),
            Tag::Stdout,
        )
    }

    fn texts(buffer: &LogBuffer, rows: usize) -> Vec<String> {
        buffer
            .window(rows, 80, |l| l.text.len())
            .iter()
            .map(|l| l.text.clone())
            .collect()
    }

    #[test]
    fn lines_parse_into_stamp_tag_level_and_text() {
        let l = LogLine::parse(
            "2026-12-01T10:00:00.123Z stderr | WARN heartbeat late",
            Tag::Stdout,
        );
        assert_eq!(l.time(), "10:00:00.123");
        assert_eq!(l.tag, Tag::Stderr);
        assert_eq!(l.level, Some(Level::Warn));
        assert_eq!(l.text, "WARN heartbeat late");
        let bare = LogLine::parse("no stamp here", Tag::Stderr);
        assert_eq!(
            (bare.stamp.as_str(), bare.tag, bare.text.as_str()),
            ("", Tag::Stderr, "no stamp here")
        );
    }

    #[test]
    fn stdout_and_stderr_merge_in_time_order() {
        let mut buffer = LogBuffer::new(100);
        buffer.push(line(1, Tag::Stdout, "a"));
        buffer.push(line(3, Tag::Stdout, "c"));
        buffer.push(line(2, Tag::Stderr, "b"));
        assert_eq!(texts(&buffer, 10), ["a", "b", "c"]);
    }

    #[test]
    fn the_ring_keeps_the_newest_lines_and_cuts_huge_ones() {
        let mut buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push(line(i, Tag::Stdout, &format!("l{i}")));
        }
        assert_eq!(texts(&buffer, 10), ["l2", "l3", "l4"]);
        assert_eq!(buffer.evicted, 2);
        let huge = "x".repeat(5 << 20);
        buffer.push(line(9, Tag::Stdout, &huge));
        let kept = &buffer.window(1, 80, |l| l.text.len())[0].text;
        assert!(kept.len() < MAX_LINE_BYTES + 64, "{}", kept.len());
        assert!(kept.ends_with("bytes cut]"));
    }

    #[test]
    fn scrolling_up_pauses_and_counts_new_lines_until_follow() {
        let mut buffer = LogBuffer::new(100);
        for i in 0..10 {
            buffer.push(line(i, Tag::Stdout, &format!("l{i}")));
        }
        buffer.scroll_by(3);
        assert!(!buffer.is_following());
        assert_eq!(texts(&buffer, 2), ["l5", "l6"]);
        buffer.push(line(50, Tag::Stdout, "new"));
        assert_eq!(texts(&buffer, 2), ["l5", "l6"], "the view stays put");
        assert_eq!(buffer.unseen, 1);
        buffer.follow();
        assert_eq!(texts(&buffer, 2), ["l9", "new"]);
        assert_eq!(buffer.unseen, 0);
    }

    #[test]
    fn search_jumps_between_matches_and_the_filter_hides_levels() {
        let mut buffer = LogBuffer::new(100);
        for (i, text) in [
            "INFO boot",
            "WARN disk",
            "INFO ok",
            "ERROR Disk gone",
            "INFO done",
        ]
        .iter()
        .enumerate()
        {
            buffer.push(line(i as u32, Tag::Stdout, text));
        }
        buffer.query = Some("disk".into());
        assert_eq!(buffer.match_count(), 2);
        assert!(buffer.jump_to_match(true, true));
        assert_eq!(texts(&buffer, 1), ["ERROR Disk gone"]);
        assert!(buffer.jump_to_match(true, false));
        assert_eq!(texts(&buffer, 1), ["WARN disk"]);
        assert!(!buffer.jump_to_match(true, false), "no older match");
        assert!(buffer.jump_to_match(false, false));
        assert_eq!(texts(&buffer, 1), ["ERROR Disk gone"]);
        buffer.set_filter(LevelFilter::AtLeast(Level::Warn));
        assert_eq!(texts(&buffer, 10), ["WARN disk", "ERROR Disk gone"]);
    }

    #[test]
    fn a_paused_view_on_a_full_ring_still_shows_lines() {
        let mut buffer = LogBuffer::new(5);
        for i in 0..5 {
            buffer.push(line(i, Tag::Stdout, &format!("l{i}")));
        }
        buffer.scroll_by(2);
        for i in 5..50 {
            buffer.push(line(i, Tag::Stdout, &format!("l{i}")));
        }
        assert!(
            !texts(&buffer, 3).is_empty(),
            "the view clamps to the oldest line kept"
        );
    }

    #[test]
    fn a_clock_stepped_back_does_not_drop_new_lines() {
        let mut buffer = LogBuffer::new(MAX_REORDER * 2);
        for i in 0..(MAX_REORDER + 10) {
            buffer.push(line(999, Tag::Stdout, &format!("before {i}")));
        }
        buffer.push(line(1, Tag::Stdout, "after the step"));
        let at = buffer.lines.iter().position(|l| l.text == "after the step");
        assert!(
            at.is_some_and(|i| i >= 10),
            "{at:?}: not at the front, where it would be evicted first"
        );
    }

    #[test]
    fn one_stream_reconnecting_forgets_only_its_own_lines() {
        let mut buffer = LogBuffer::new(100);
        buffer.push(line(1, Tag::Stdout, "out"));
        buffer.push(line(2, Tag::Stderr, "err"));
        buffer.clear_tag(Tag::Stderr);
        assert_eq!(texts(&buffer, 10), ["out"]);
    }

    #[test]
    fn wrapped_lines_take_several_rows() {
        let mut buffer = LogBuffer::new(100);
        buffer.wrap = true;
        buffer.push(line(1, Tag::Stdout, &"a".repeat(100)));
        buffer.push(line(2, Tag::Stdout, "short"));
        let window = buffer.window(3, 40, |l| l.text.len());
        assert_eq!(
            window.len(),
            1,
            "the 3-row line does not fit beside the short one"
        );
        assert_eq!(buffer.window(4, 40, |l| l.text.len()).len(), 2);
    }
}
