//! Rows in PostgreSQL's `COPY … FROM STDIN` text format, the cheapest way
//! to hand the server many rows: one line per row, fields separated by
//! tabs, `\N` for NULL, and a backslash before each backslash, tab,
//! newline and carriage return inside a value (see the `COPY` page of the
//! PostgreSQL manual, "Text Format").

use std::fmt::{self, Display, Write as _};
use std::io;

/// The rows of one `COPY`, encoded as they are added.
#[derive(Debug, Default)]
pub struct CopyRows {
    data: Vec<u8>,
    rows: usize,
}

/// The row being written: its fields go straight into the rows' data.
#[derive(Debug)]
pub struct Row<'a> {
    data: &'a mut Vec<u8>,
    /// Whether the row has a field yet (the next one needs a tab).
    started: bool,
}

/// Appends `bytes` to `data`, escaped for the text format. The escaped
/// bytes are ASCII, never part of a multi-byte UTF-8 sequence, so UTF-8
/// text may be escaped byte by byte.
fn escape(data: &mut Vec<u8>, mut bytes: &[u8]) {
    while let Some(at) = bytes
        .iter()
        .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
    {
        data.extend_from_slice(&bytes[..at]);
        data.extend_from_slice(match bytes[at] {
            b'\\' => b"\\\\",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            _ => b"\\r",
        });
        bytes = &bytes[at + 1..];
    }
    data.extend_from_slice(bytes);
}

/// Writes what it is given into the data, escaped.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        escape(self.0, s.as_bytes());
        Ok(())
    }
}

impl io::Write for Escaped<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        escape(self.0, bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CopyRows {
    /// Adds one row, its fields written by `fill`. If `fill` fails, the
    /// fields it wrote are taken back: the rows hold whole rows only.
    pub fn row<E>(&mut self, fill: impl FnOnce(&mut Row<'_>) -> Result<(), E>) -> Result<(), E> {
        let start = self.data.len();
        let mut row = Row {
            data: &mut self.data,
            started: false,
        };
        match fill(&mut row) {
            Ok(()) => {
                self.data.push(b'\n');
                self.rows += 1;
                Ok(())
            }
            Err(e) => {
                self.data.truncate(start);
                Err(e)
            }
        }
    }

    /// Rows added so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The encoded rows.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

impl Row<'_> {
    fn separate(&mut self) {
        if self.started {
            self.data.push(b'\t');
        }
        self.started = true;
    }

    /// Adds a field: `value` as it displays.
    pub fn field(&mut self, value: impl Display) -> &mut Self {
        self.separate();
        // Writing into a Vec cannot fail.
        let _ = write!(Escaped(self.data), "{value}");
        self
    }

    /// Adds a field that may be NULL.
    pub fn optional(&mut self, value: Option<impl Display>) -> &mut Self {
        match value {
            Some(value) => self.field(value),
            None => {
                self.separate();
                self.data.extend_from_slice(b"\\N");
                self
            }
        }
    }

    /// Adds a field: `value` as JSON, serialised straight into the row.
    pub fn json(&mut self, value: &impl serde::Serialize) -> Result<&mut Self, serde_json::Error> {
        self.separate();
        serde_json::to_writer(Escaped(self.data), value)?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reads the text format back, as the server does.
    fn parse(data: &[u8]) -> Vec<Vec<Option<String>>> {
        let text = std::str::from_utf8(data).expect("utf-8");
        let mut rows = Vec::new();
        for line in text.split_terminator('\n') {
            let fields = line
                .split('\t')
                .map(|raw| {
                    if raw == "\\N" {
                        return None;
                    }
                    let mut out = String::new();
                    let mut chars = raw.chars();
                    while let Some(c) = chars.next() {
                        if c != '\\' {
                            out.push(c);
                            continue;
                        }
                        out.push(match chars.next() {
                            Some('t') => '\t',
                            Some('n') => '\n',
                            Some('r') => '\r',
                            Some('\\') => '\\',
                            other => panic!("unexpected escape {other:?}"),
                        });
                    }
                    Some(out)
                })
                .collect();
            rows.push(fields);
        }
        rows
    }

    fn ok(row: &mut Row<'_>) -> Result<(), ()> {
        let _ = row;
        Ok(())
    }

    #[test]
    fn separators_and_escapes() {
        let mut rows = CopyRows::default();
        let filled = rows.row(|r| {
            r.field("a\tb").field(12).optional(None::<&str>);
            ok(r)
        });
        assert_eq!(filled, Ok(()));
        let filled = rows.row(|r| {
            r.field("back\\slash\nline\r")
                .json(&["tab\there"])
                .map_err(drop)?;
            ok(r)
        });
        assert_eq!(filled, Ok(()));
        assert_eq!(
            rows.data(),
            b"a\\tb\t12\t\\N\nback\\\\slash\\nline\\r\t[\"tab\\\\there\"]\n".as_slice()
        );
        assert_eq!(rows.rows(), 2);
    }

    #[test]
    fn a_row_that_fails_is_taken_back_whole() {
        let mut rows = CopyRows::default();
        assert_eq!(rows.row(|r| ok(r.field("kept"))), Ok(()));
        let failed = rows.row(|r| {
            r.field("half").field("written");
            Err("a field could not be had")
        });
        assert_eq!(failed, Err("a field could not be had"));
        assert_eq!(rows.data(), b"kept\n".as_slice());
        assert_eq!(rows.rows(), 1);
    }

    proptest! {
        /// Any rows of any text (tabs, newlines, backslashes, `\N` and
        /// `\.` spelled out, any Unicode) read back field for field.
        #[test]
        fn any_rows_read_back_as_they_were(
            table in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::option::of(prop_oneof![
                        "[\\\\\t\n\r.N a-z]{0,12}",
                        "\\PC{0,40}",
                        Just("\\N".to_owned()),
                        Just("\\.".to_owned()),
                    ]),
                    1..6,
                ),
                0..8,
            )
        ) {
            let mut rows = CopyRows::default();
            for (n, row) in table.iter().enumerate() {
                let filled = rows.row(|r| {
                    for field in row {
                        r.optional(field.as_deref());
                    }
                    ok(r)
                });
                prop_assert_eq!(filled, Ok(()));
                // A failing row between any two leaves no trace.
                let failed = rows.row(|r| {
                    r.field(n).optional(row[0].as_deref());
                    Err(())
                });
                prop_assert_eq!(failed, Err(()));
            }
            prop_assert_eq!(rows.rows(), table.len());
            prop_assert_eq!(parse(rows.data()), table);
        }
    }
}
