//! Rows in PostgreSQL's `COPY … FROM STDIN` text format, the cheapest way
//! to hand the server many rows: one line per row, fields separated by
//! tabs, `\N` for NULL, and a backslash before each backslash, tab,
//! newline and carriage return inside a value (see the `COPY` page of the
//! PostgreSQL manual, "Text Format").

use std::fmt::{self, Display, Write as _};

/// The rows of one `COPY`, encoded as they are added.
#[derive(Debug, Default)]
pub struct CopyRows {
    data: Vec<u8>,
    rows: usize,
    /// Whether the current row has a field yet (the next one needs a tab).
    in_row: bool,
}

/// Writes what it is given into `data`, escaped for the text format.
struct Escaped<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s.as_bytes();
        while let Some(at) = rest
            .iter()
            .position(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r'))
        {
            self.0.extend_from_slice(&rest[..at]);
            self.0.extend_from_slice(match rest[at] {
                b'\\' => b"\\\\",
                b'\t' => b"\\t",
                b'\n' => b"\\n",
                _ => b"\\r",
            });
            rest = &rest[at + 1..];
        }
        self.0.extend_from_slice(rest);
        Ok(())
    }
}

impl CopyRows {
    fn separate(&mut self) {
        if self.in_row {
            self.data.push(b'\t');
        }
        self.in_row = true;
    }

    /// Adds a field: `value` as it displays.
    pub fn field(&mut self, value: impl Display) -> &mut Self {
        self.separate();
        // Writing into a Vec cannot fail.
        let _ = write!(Escaped(&mut self.data), "{value}");
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

    /// Ends the current row.
    pub fn end_row(&mut self) {
        self.data.push(b'\n');
        self.rows += 1;
        self.in_row = false;
    }

    /// Rows ended so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The encoded rows.
    pub fn data(&self) -> &[u8] {
        &self.data
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

    #[test]
    fn separators_and_escapes() {
        let mut rows = CopyRows::default();
        rows.field("a\tb")
            .field(12)
            .optional(None::<&str>)
            .end_row();
        rows.field("back\\slash\nline\r").end_row();
        assert_eq!(
            rows.data(),
            b"a\\tb\t12\t\\N\nback\\\\slash\\nline\\r\n".as_slice()
        );
        assert_eq!(rows.rows(), 2);
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
            for row in &table {
                for field in row {
                    rows.optional(field.as_deref());
                }
                rows.end_row();
            }
            prop_assert_eq!(rows.rows(), table.len());
            prop_assert_eq!(parse(rows.data()), table);
        }
    }
}
