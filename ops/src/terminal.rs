//! Text from messages, made safe to print. A key, a header or a value is
//! written by whoever may write the topic; printed raw, its escape
//! sequences would drive the operator's terminal (retitle it, clear the
//! screen, draw a fake "DLQ empty") and its bidirectional controls would
//! reorder what the operator reads. Every character that is not printable
//! text is shown as a `\uXXXX` escape instead, which is also a valid escape
//! inside a JSON string, so JSON output keeps its meaning.

use std::borrow::Cow;
use std::io::Write;

/// Whether `c` must not reach a terminal as it is: C0 controls but the
/// newline, DEL, C1 controls, and the bidirectional formatting characters.
fn unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n')
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}'
        )
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `text` with every unsafe character (and only those) as `\uXXXX`.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            // Every unsafe character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that passes everything through [`printable`]: the one way the
/// tool's output reaches its standard output.
pub struct Escaped<W: Write> {
    inner: W,
    /// The start of a character split between two writes.
    pending: Vec<u8>,
}

impl<W: Write> Escaped<W> {
    /// Escapes what is written to `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            pending: Vec::new(),
        }
    }
}

impl<W: Write> Write for Escaped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        let (text, rest) = match std::str::from_utf8(&self.pending) {
            Ok(text) => (printable(text).into_owned(), Vec::new()),
            Err(e) if e.error_len().is_none() => {
                // An incomplete character at the end: keep it for the next write.
                let (valid, rest) = self.pending.split_at(e.valid_up_to());
                let text = std::str::from_utf8(valid).unwrap_or_default();
                (printable(text).into_owned(), rest.to_vec())
            }
            Err(_) => (
                printable(&String::from_utf8_lossy(&self.pending)).into_owned(),
                Vec::new(),
            ),
        };
        self.inner.write_all(text.as_bytes())?;
        self.pending = rest;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            let text = printable(&String::from_utf8_lossy(&rest)).into_owned();
            self.inner.write_all(text.as_bytes())?;
        }
        self.inner.flush()
    }
}

/// The tool's standard output, escaped.
pub type Stdout = Escaped<std::io::StdoutLock<'static>>;

/// Writes a command's result to standard output. A reader that went away
/// (`| head`) is not an error: there is nobody left to tell.
pub fn emit(write: impl FnOnce(&mut Stdout) -> std::io::Result<()>) -> anyhow::Result<()> {
    // What the tool prints comes in part from messages: escaped, so that
    // none of it drives the terminal.
    let mut out = Escaped::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}

/// Writes `value` to standard output as pretty JSON (see [`emit`]).
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    emit(|out| writeln!(out, "{text}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_and_bidi_controls_are_shown_not_obeyed() {
        assert_eq!(
            printable("\u{1b}]0;owned\u{7}\u{1b}[2Jok"),
            "\\u001b]0;owned\\u0007\\u001b[2Jok"
        );
        assert_eq!(printable("a\u{9b}31mb"), "a\\u009b31mb");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u202efed");
        assert_eq!(printable("line\nnext\r"), "line\nnext\\u000d");
        assert!(matches!(printable("plain ünïcode ✓"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_stays_json_with_the_same_values() {
        let value = serde_json::json!({"key": "\u{9b}2J\u{202e}x\u{1b}"});
        let text = serde_json::to_string(&value).expect("json");
        let shown = printable(&text);
        let back: serde_json::Value = serde_json::from_str(&shown).expect("still JSON");
        assert_eq!(back, value);
    }

    proptest! {
        /// Whatever a message holds, what reaches the terminal has no
        /// control character but the newline, however the writes split it.
        #[test]
        fn nothing_unsafe_gets_through_a_split_write(
            text in any::<String>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            split in 0usize..64,
        ) {
            for input in [text.into_bytes(), bytes] {
                let mut out = Escaped::new(Vec::new());
                let at = split.min(input.len());
                out.write_all(&input[..at]).expect("write");
                out.write_all(&input[at..]).expect("write");
                out.flush().expect("flush");
                let shown = String::from_utf8(out.inner).expect("UTF-8 out");
                prop_assert!(!shown.chars().any(unsafe_char), "{shown:?}");
                if let Ok(text) = std::str::from_utf8(&input) {
                    prop_assert_eq!(shown, printable(text).into_owned());
                }
            }
        }
    }
}
