//! Finding the managed block in the bytes of an authorized_keys file and putting a new one in
//! its place. Everything outside the block is carried as the exact bytes read (a file that is not
//! UTF-8, CRLF line ends, a last line without a newline), so a rewrite can only change the block.

/// The block's first line.
pub(crate) const BEGIN: &str =
    "# BEGIN polaris managed keys: edited by the polaris agent, do not edit by hand";
/// The block's last line.
pub(crate) const END: &str = "# END polaris managed keys";

/// What marks a line as BEGIN or END. Matched on the start only, so that a marker whose tail was
/// edited still counts: a second, slightly different BEGIN must read as damage, not as text.
const BEGIN_TAG: &str = "BEGIN polaris managed keys";
const END_TAG: &str = "END polaris managed keys";

/// An authorized_keys file cut around its managed block.
#[derive(Debug)]
pub(super) struct Document<'a> {
    /// Everything before the BEGIN line, or the whole file when there is no block.
    before: &'a [u8],
    /// The lines between the markers, when there is a block.
    block: Option<Vec<BlockLine<'a>>>,
    /// Everything after the END line's newline.
    after: &'a [u8],
}

/// One line between the markers, without its line end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BlockLine<'a> {
    /// Counted from 1 in the whole file, for error messages.
    pub(super) number: usize,
    pub(super) text: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Begin,
    End,
}

impl<'a> Document<'a> {
    /// Cuts `bytes` around the block, or says what is wrong with its markers (no BEGIN for an
    /// END, two BEGINs, …) or with a line between them (not UTF-8).
    pub(super) fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        let mut begin: Option<(usize, usize, usize)> = None; // (line number, start, end)
        let mut end: Option<(usize, usize, usize)> = None;
        let mut offset = 0;
        for (index, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let number = index + 1;
            let span = (number, offset, offset + line.len());
            offset += line.len();
            match marker(line) {
                Some(Marker::Begin) => {
                    if let Some((first, ..)) = begin {
                        return Err(format!("two BEGIN markers, on lines {first} and {number}"));
                    }
                    if let Some((end_line, ..)) = end {
                        return Err(format!(
                            "the END marker on line {end_line} comes before the BEGIN on line \
                             {number}"
                        ));
                    }
                    begin = Some(span);
                }
                Some(Marker::End) => {
                    if let Some((first, ..)) = end {
                        return Err(format!("two END markers, on lines {first} and {number}"));
                    }
                    end = Some(span);
                }
                None => {}
            }
        }
        match (begin, end) {
            (None, None) => Ok(Self {
                before: bytes,
                block: None,
                after: &[],
            }),
            (Some((number, ..)), None) => {
                Err(format!("the BEGIN marker on line {number} has no END"))
            }
            (None, Some((number, ..))) => {
                Err(format!("the END marker on line {number} has no BEGIN"))
            }
            (Some((first, start, inner_start)), Some((_, inner_end, after))) => {
                let inner = &bytes[inner_start..inner_end];
                let mut lines = Vec::new();
                for (index, line) in inner.split_inclusive(|&b| b == b'\n').enumerate() {
                    let number = first + 1 + index;
                    let text = std::str::from_utf8(strip_line_end(line))
                        .map_err(|_| format!("line {number}, inside the block, is not UTF-8"))?;
                    lines.push(BlockLine { number, text });
                }
                Ok(Self {
                    before: &bytes[..start],
                    block: Some(lines),
                    after: &bytes[after..],
                })
            }
        }
    }

    /// The lines between the markers; none when the file has no block yet.
    pub(super) fn lines(&self) -> &[BlockLine<'a>] {
        self.block.as_deref().unwrap_or_default()
    }

    /// The file with `lines` as the block's content: in the block's place, or appended (after a
    /// newline if the file does not end with one) when there was none.
    pub(super) fn render(&self, lines: &[String]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.before.len() + self.after.len() + lines.iter().map(|l| l.len() + 1).sum::<usize>(),
        );
        out.extend_from_slice(self.before);
        if self.block.is_none() && !self.before.is_empty() && !self.before.ends_with(b"\n") {
            out.push(b'\n');
        }
        out.extend_from_slice(BEGIN.as_bytes());
        out.push(b'\n');
        for line in lines {
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(END.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(self.after);
        out
    }
}

fn strip_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `line` is one of our markers: `#`, then BEGIN or END and our words.
fn marker(line: &[u8]) -> Option<Marker> {
    let text = std::str::from_utf8(strip_line_end(line)).ok()?.trim();
    let rest = text.strip_prefix('#')?.trim_start();
    if rest.starts_with(BEGIN_TAG) {
        Some(Marker::Begin)
    } else if rest.starts_with(END_TAG) {
        Some(Marker::End)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(lines: &[&str]) -> String {
        let mut text = format!("{BEGIN}\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(END);
        text.push('\n');
        text
    }

    fn render(before: &str, lines: &[&str]) -> Result<String, String> {
        let document = Document::parse(before.as_bytes())?;
        let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        String::from_utf8(document.render(&lines)).map_err(|e| e.to_string())
    }

    #[test]
    fn a_file_without_a_block_gets_one_appended() -> Result<(), String> {
        assert_eq!(render("", &["k1"])?, block(&["k1"]));
        assert_eq!(
            render("mine\n", &["k1"])?,
            format!("mine\n{}", block(&["k1"]))
        );
        Ok(())
    }

    #[test]
    fn a_last_line_without_a_newline_gets_one_before_the_new_block() -> Result<(), String> {
        assert_eq!(
            render("mine", &["k1"])?,
            format!("mine\n{}", block(&["k1"]))
        );
        Ok(())
    }

    #[test]
    fn only_the_block_changes_and_the_rest_keeps_its_bytes() -> Result<(), String> {
        let before = "# mine\r\nssh-ed25519 AAAA me\r\n";
        let after = "\n# after, no newline at the end";
        let file = format!("{before}{}{after}", block(&["old 1", "old 2"]));
        let document = Document::parse(file.as_bytes())?;
        let texts: Vec<&str> = document.lines().iter().map(|l| l.text).collect();
        assert_eq!(texts, ["old 1", "old 2"]);
        assert_eq!(document.lines()[0].number, 4);
        let rendered = document.render(&["new".to_owned()]);
        assert_eq!(
            rendered,
            format!("{before}{}{after}", block(&["new"])).as_bytes()
        );
        Ok(())
    }

    #[test]
    fn bytes_that_are_not_utf8_outside_the_block_are_kept() -> Result<(), String> {
        let mut file = b"# caf\xe9\n".to_vec();
        file.extend_from_slice(block(&["k"]).as_bytes());
        file.extend_from_slice(b"\xff\xfe");
        let document = Document::parse(&file)?;
        let mut expected = b"# caf\xe9\n".to_vec();
        expected.extend_from_slice(block(&[]).as_bytes());
        expected.extend_from_slice(b"\xff\xfe");
        assert_eq!(document.render(&[]), expected);
        Ok(())
    }

    #[test]
    fn markers_with_crlf_or_an_edited_tail_are_still_markers() -> Result<(), String> {
        let file = "# BEGIN polaris managed keys (edited)\r\nk\r\n#END polaris managed keys\r\nx\n";
        let document = Document::parse(file.as_bytes())?;
        assert_eq!(document.lines().len(), 1);
        assert_eq!(document.lines()[0].text, "k");
        assert_eq!(
            document.render(&[]),
            format!("{}x\n", block(&[])).as_bytes()
        );
        Ok(())
    }

    #[test]
    fn damaged_markers_are_refused() {
        let begin = format!("{BEGIN}\n");
        let end = format!("{END}\n");
        let cases = [
            (
                format!("a\n{begin}k\n"),
                "the BEGIN marker on line 2 has no END",
            ),
            (format!("{end}k\n"), "the END marker on line 1 has no BEGIN"),
            (
                format!("{begin}{begin}{end}"),
                "two BEGIN markers, on lines 1 and 2",
            ),
            (
                format!("{begin}{end}{end}"),
                "two END markers, on lines 2 and 3",
            ),
            (
                format!("{end}{begin}"),
                "the END marker on line 1 comes before the BEGIN on line 2",
            ),
        ];
        for (file, expected) in cases {
            let problem = Document::parse(file.as_bytes()).err();
            assert_eq!(problem.as_deref(), Some(expected), "{file:?}");
        }
    }

    #[test]
    fn a_line_in_the_block_that_is_not_utf8_is_refused() {
        let mut file = format!("{BEGIN}\n").into_bytes();
        file.extend_from_slice(b"\xff\n");
        file.extend_from_slice(format!("{END}\n").as_bytes());
        let problem = Document::parse(&file).err();
        assert_eq!(
            problem.as_deref(),
            Some("line 2, inside the block, is not UTF-8")
        );
    }
}
