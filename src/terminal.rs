//! Text made safe for a terminal.
//!
//! Much of what sipcheck prints comes from the peer: a `From` header, a Call-ID, a reason
//! phrase, a whole SIP message in the trace. A peer that puts an escape or a bell in those
//! must not be able to clear the screen, move the cursor or print a line of its own (a fake
//! `PASS`): every control character of text output is shown as an escape (`\x1b`), and so
//! are the Unicode marks that reorder the text around them (`\u{202e}`). Line feeds and tabs
//! stay as they are.

use std::borrow::Cow;
use std::io::{self, Write};

/// True for a character a terminal must not be given raw.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every control character (but line feed and tab) and every bidirectional
/// mark escaped: `\x1b` for those below U+0100, `\u{202e}` for the others.
#[must_use]
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if u32::from(c) < 0x100 {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    Cow::Owned(out)
}

/// A writer of text for a terminal: what goes through it comes out with
/// [`escape_controls`] applied, a line at a time (a character cut in two by the writes that
/// carry it is escaped whole). Not for JSON: its strings are escaped by JSON itself.
pub struct TerminalWriter<W: Write> {
    inner: W,
    pending: Vec<u8>,
}

impl<W: Write> TerminalWriter<W> {
    /// Text written to `inner`, escaped.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }

    /// Write out `len` bytes of the pending text, escaped.
    fn emit(&mut self, len: usize) -> io::Result<()> {
        let text = String::from_utf8_lossy(&self.pending[..len]);
        let escaped = escape_controls(&text);
        self.inner.write_all(escaped.as_bytes())?;
        self.pending.drain(..len);
        Ok(())
    }
}

impl<W: Write> Write for TerminalWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // Only the new bytes are searched: a line written in many small pieces costs
        // linear time.
        if let Some(end) = buf.iter().rposition(|&b| b == b'\n') {
            let len = self.pending.len() - (buf.len() - end - 1);
            self.emit(len)?;
        }
        Ok(buf.len())
    }

    /// Write out what is pending, but for a character not yet complete.
    fn flush(&mut self) -> io::Result<()> {
        let len = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        if len > 0 {
            self.emit(len)?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for TerminalWriter<W> {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let len = self.pending.len();
            let _ = self.emit(len);
        }
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("a\x1b[2Jb\x07c\rd\x7fe\u{9b}f\u{202e}g"),
            "a\\x1b[2Jb\\x07c\\x0dd\\x7fe\\x9bf\\u{202e}g"
        );
        assert_eq!(escape_controls("é ✓ 日本"), "é ✓ 日本");
    }

    #[test]
    fn a_writer_escapes_text_written_in_pieces() {
        let mut sink = Vec::new();
        {
            let mut w = TerminalWriter::new(&mut sink);
            let text = "call 1 from \x1b[2J\x07é\nFAIL\r\nlast \u{9b}";
            for b in text.bytes() {
                w.write_all(&[b]).unwrap();
                w.flush().unwrap();
            }
        }
        assert_eq!(
            String::from_utf8(sink).unwrap(),
            "call 1 from \\x1b[2J\\x07é\nFAIL\\x0d\nlast \\x9b"
        );
    }
}
