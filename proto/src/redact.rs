//! Keeping customer data out of error texts. Decoder errors (serde, Avro,
//! uuid) quote the value they choked on, and that value may be a name or an
//! address; error texts end up in logs and in `dlq-error-message` headers.
//! [`reason`] rebuilds a decoder's error from what it may say: the words
//! decoders use to name a rule, the contract's own field names and enum
//! symbols, and positions; every other word is a fragment of the value and
//! becomes `…`. So an error says *where* and *which rule*, never *what*,
//! however the value is quoted (a value holding backticks or quotes cannot
//! end a quotation early and put the rest of itself in clear).
//! [`scrub`] is for the errors of the database and the broker, whose texts
//! are not built from customer values but may quote one: it replaces every
//! quoted value with `…`, except the name of one of the envelope's headers
//! (a name the contract fixes, never customer data, and what an operator
//! needs to read in a `missing_header` dead letter).

use std::collections::HashSet;
use std::sync::OnceLock;

/// The contract's own identifiers (field names and enum symbols of every
/// schema version), which may stay quoted in an error.
fn identifiers() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = HashSet::new();
        for source in crate::schemas::ALL.iter().flat_map(|list| list.iter()) {
            if let Ok(schema) = serde_json::from_str::<serde_json::Value>(source) {
                collect(&schema, &mut names);
            }
        }
        names
    })
}

fn collect(value: &serde_json::Value, names: &mut HashSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(name)) = map.get("name") {
                names.insert(name.clone());
            }
            if let Some(serde_json::Value::Array(symbols)) = map.get("symbols") {
                names.extend(symbols.iter().filter_map(|s| s.as_str().map(str::to_owned)));
            }
            map.values().for_each(|v| collect(v, names));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, names)),
        _ => {}
    }
}

/// Words decoders (serde, serde_json, prost, apache-avro, uuid, chrono and
/// the contract's own checks) use to name what is wrong. Lower case; a word
/// of an error is kept when its lower case is here.
const VOCABULARY: &[&str] = &[
    "a",
    "after",
    "all",
    "an",
    "and",
    "any",
    "are",
    "array",
    "at",
    "be",
    "before",
    "bool",
    "boolean",
    "buffer",
    "but",
    "byte",
    "bytes",
    "can",
    "cannot",
    "char",
    "character",
    "characters",
    "colon",
    "column",
    "comma",
    "contains",
    "control",
    "could",
    "data",
    "decimal",
    "decode",
    "delimited",
    "digit",
    "digits",
    "double",
    "duplicate",
    "empty",
    "encoded",
    "end",
    "enum",
    "eof",
    "error",
    "escape",
    "exceeded",
    "expected",
    "failed",
    "field",
    "fields",
    "find",
    "fixed",
    "float",
    "floating",
    "for",
    "found",
    "from",
    "group",
    "hex",
    "i32",
    "i64",
    "ident",
    "in",
    "index",
    "input",
    "int",
    "integer",
    "invalid",
    "is",
    "key",
    "leading",
    "length",
    "limit",
    "line",
    "list",
    "long",
    "lone",
    "map",
    "match",
    "matching",
    "message",
    "missing",
    "must",
    "negative",
    "newtype",
    "no",
    "not",
    "null",
    "number",
    "object",
    "of",
    "one",
    "option",
    "or",
    "out",
    "overflow",
    "parse",
    "parsing",
    "point",
    "range",
    "read",
    "reached",
    "record",
    "recursion",
    "resolve",
    "schema",
    "sequence",
    "size",
    "string",
    "struct",
    "surrogate",
    "tag",
    "the",
    "timestamp",
    "too",
    "trailing",
    "tuple",
    "type",
    "u32",
    "u64",
    "underflow",
    "unexpected",
    "union",
    "unit",
    "unknown",
    "utf",
    "utf8",
    "uuid",
    "value",
    "values",
    "variant",
    "variants",
    "varint",
    "was",
    "while",
    "wire",
    "with",
    "zero",
    "json",
    "protobuf",
    "avro",
    "to",
    "as",
    "on",
    "by",
    "has",
    "have",
    "than",
    "more",
    "less",
    "only",
    "non",
    "valid",
    "without",
    "within",
    "into",
    "does",
    "did",
    "this",
    "that",
    "it",
    "its",
    "when",
    "between",
    "mismatch",
    "required",
    "allowed",
    "exceeds",
    "greater",
    "smaller",
    "maximum",
    "minimum",
    "max",
    "min",
    "precision",
    "scale",
    "rfc",
    "such",
    "optional",
    "prefix",
    "followed",
    "premature",
    "invalid_type",
    "i8",
    "i16",
    "u8",
    "u16",
    "f32",
    "f64",
    "str",
    "vec",
    "some",
    "none",
    "true",
    "false",
    "lengthdelimited",
    "sixtyfourbit",
    "thirtytwobit",
    "startgroup",
    "endgroup",
];

/// Words after which a number is a position or a size, not a value.
const POSITIONS: &[&str] = &[
    "line", "column", "length", "index", "limit", "tag", "position",
];

/// Whether `word` may appear in an error: a decoder's word or the
/// contract's identifier.
fn allowed(word: &str) -> bool {
    VOCABULARY.contains(&word.to_ascii_lowercase().as_str()) || identifiers().contains(word)
}

/// A decoder's error `text` rebuilt from its rule words, the contract's
/// identifiers and its positions: a double-quoted value goes whole, and
/// every other word that is not a rule word or identifier (a fragment of a
/// value, however quoted) is `…`, runs of them one `…`. Punctuation stays
/// (it says nothing of the value); any other character goes. A value in
/// backticks, which decoders do not escape, can keep a word of
/// [`VOCABULARY`] or an identifier in clear, never anything else.
pub fn reason(text: &str) -> String {
    // Values in double quotes (escaped inside, so they cannot end early)
    // go whole first, vocabulary words and all.
    let text = scrub(text);
    let text = text.as_str();
    let mut rebuilt = Rebuilt::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c == '…' {
            rebuilt.hide();
        } else if is_word_char(c) {
            let mut end = at + c.len_utf8();
            while let Some(&(i, n)) = chars.peek() {
                if !is_word_char(n) {
                    break;
                }
                end = i + n.len_utf8();
                chars.next();
            }
            rebuilt.word(&text[at..end]);
        } else {
            rebuilt.punctuation(c);
        }
    }
    rebuilt.finish()
}

/// Whether `c` belongs to a word (a rule word, an identifier, a number or
/// a fragment of a value).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// An error text as [`reason`] rebuilds it, word by word.
struct Rebuilt {
    out: String,
    /// Punctuation and spaces after a hidden word: written only if a kept
    /// word follows, so that a value's own quotes and spaces vanish with it.
    pending: String,
    /// Whether the last word was hidden (its `…` written already).
    hiding: bool,
    /// The last kept word, in lower case (a number after a position word
    /// such as `line` stays).
    previous: String,
}

impl Rebuilt {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            out: String::with_capacity(capacity),
            pending: String::new(),
            hiding: false,
            previous: String::new(),
        }
    }

    /// A hidden word (or a `…` already there): one `…` for a run of them.
    fn hide(&mut self) {
        if !self.hiding {
            self.out.push('…');
        }
        self.pending.clear();
        self.hiding = true;
        self.previous.clear();
    }

    /// Punctuation and spaces stay (held back after a hidden word); any
    /// other character goes.
    fn punctuation(&mut self, c: char) {
        if c.is_ascii_punctuation() || c == ' ' {
            if self.hiding {
                self.pending.push(c);
            } else {
                self.out.push(c);
            }
        }
    }

    /// Keeps `word` if it is a position, a rule word or an identifier;
    /// hides it otherwise.
    fn word(&mut self, word: &str) {
        let keep = if word.bytes().all(|b| b.is_ascii_digit()) {
            !self.hiding && (POSITIONS.contains(&self.previous.as_str()) || self.out.ends_with('['))
        } else {
            allowed(word)
        };
        if keep {
            self.out.push_str(&self.pending);
            self.pending.clear();
            self.out.push_str(word);
            self.hiding = false;
            self.previous = word.to_ascii_lowercase();
        } else {
            self.hide();
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str(&self.pending);
        self.out
    }
}

/// A field path of a decoder's error (`customer.address.city`,
/// `items[2].sku`): segments that are contract identifiers or indices stay,
/// any other (a key the sender chose) is `…`.
pub fn path(text: &str) -> String {
    if text == "." {
        return text.to_owned();
    }
    reason(text)
}

/// The envelope's header names ([`crate::headers`]): quoted in an error,
/// they stay (`missing or unreadable header "content-type"`). A value equal
/// to one of them shows no more than the contract does.
const HEADER_NAMES: &[&str] = &[
    crate::headers::CONTENT_TYPE,
    crate::headers::SCHEMA_VERSION,
    crate::headers::EVENT_TYPE,
    crate::headers::CORRELATION_ID,
    crate::headers::TRACEPARENT,
    crate::headers::TRACESTATE,
    crate::headers::CONTENT_FINGERPRINT,
];

/// `text` with every `"…"` quoted value that is not one of the envelope's
/// header names ([`HEADER_NAMES`]), every `` `…` `` quoted value that is not
/// one of the contract's identifiers, and every list of byte values
/// replaced by `…`.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['"', '`', '[']) {
        out.push_str(&rest[..at]);
        let quote = rest.as_bytes()[at];
        let body = &rest[at + 1..];
        let end = match quote {
            b'"' => closing_quote(body),
            b'`' => body.find('`'),
            _ => body.find(']').filter(|&e| is_byte_list(&body[..e])),
        };
        let Some(end) = end else {
            if quote == b'[' {
                out.push('[');
                rest = body;
                continue;
            }
            // An unterminated quote: everything after it may be the value.
            out.push(char::from(quote));
            out.push('…');
            return out;
        };
        let inner = &body[..end];
        let keep = match quote {
            b'`' => identifiers().contains(inner),
            b'"' => HEADER_NAMES.contains(&inner),
            _ => false,
        };
        let close = if quote == b'[' {
            ']'
        } else {
            char::from(quote)
        };
        out.push(char::from(quote));
        out.push_str(if keep { inner } else { "…" });
        out.push(close);
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The index of the `"` that ends a quoted value starting at `body`,
/// skipping backslash escapes.
fn closing_quote(body: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, b) in body.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' => escaped = true,
            b'"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// `12, 0, 255`: bytes printed by a `Debug` impl (one number alone is an
/// index, as in `items[0]`).
fn is_byte_list(inner: &str) -> bool {
    inner.contains(',')
        && inner
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b',' | b' '))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoders_error_keeps_its_rule_and_field_names_and_loses_the_value() {
        assert_eq!(
            reason("unknown variant `q`Ada Lovelace`q`, expected one of `unknown`, `in_stock`"),
            "unknown variant `…`, expected one of `unknown`, `in_stock`"
        );
        assert_eq!(
            reason(
                r#"invalid type: string "Ada \"the\" Countess", expected u32 at line 1 column 52"#
            ),
            r#"invalid type: string "…", expected u32 at line 1 column 52"#
        );
        assert_eq!(
            reason("missing field `sku` at items[0]"),
            "missing field `sku` at items[0]"
        );
        assert_eq!(
            reason("invalid value: integer `5551234`, expected a string"),
            "invalid value: integer `…`, expected a string"
        );
        assert_eq!(
            reason("failed to decode Protobuf message: OrderEvent.customer: invalid wire type: ThirtyTwoBit (expected LengthDelimited)"),
            "failed to decode Protobuf message: OrderEvent.customer: invalid wire type: ThirtyTwoBit (expected LengthDelimited)"
        );
        assert_eq!(path("customer.address.city"), "customer.address.city");
        assert_eq!(path("items[3].sku"), "items[3].sku");
        assert_eq!(path("customer.AdaLovelace"), "customer.…");
        assert_eq!(path("."), ".");
    }

    #[test]
    fn the_lifecycle_schemas_names_stay() {
        assert_eq!(
            reason("missing field `tracking_number` at history[2].occurred_at"),
            "missing field `tracking_number` at history[2].occurred_at"
        );
        assert_eq!(
            reason("unknown variant `refunded`, expected one of `cancelled`, `fraud_suspected`"),
            "unknown variant `…`, expected one of `cancelled`, `fraud_suspected`"
        );
        assert_eq!(
            reason("failed to decode Protobuf message: OrderChange.change: Cancellation.reason: invalid varint"),
            "failed to decode Protobuf message: OrderChange.change: Cancellation.reason: invalid varint"
        );
    }

    #[test]
    fn quoted_values_go_and_contract_names_stay() {
        assert_eq!(
            scrub(r#"invalid type: string "Ada \"the\" Countess", expected u32"#),
            r#"invalid type: string "…", expected u32"#
        );
        assert_eq!(
            scrub("missing field `sku` at items[0]"),
            "missing field `sku` at items[0]",
            "a field name and an index are not customer data"
        );
        assert_eq!(
            scrub("unknown variant `ada`, expected one of `unknown`, `in_stock`"),
            "unknown variant `…`, expected one of `unknown`, `in_stock`"
        );
        assert_eq!(
            scrub("Value Bytes([65, 100, 97]) is not a string"),
            "Value Bytes([…]) is not a string"
        );
        assert_eq!(scrub(r#"cut "ada@example.com"#), "cut \"…");
        assert_eq!(scrub("plain words"), "plain words");
        assert_eq!(
            scrub(r#"missing or unreadable header "content-type""#),
            r#"missing or unreadable header "content-type""#,
            "a header's name is the contract's, not customer data"
        );
        assert_eq!(
            scrub(r#"missing or unreadable header "content-type; x""#),
            r#"missing or unreadable header "…""#,
            "only a name, whole, stays"
        );
        assert_eq!(scrub("[unclosed and \"x\""), "[unclosed and \"…\"");
    }
}
