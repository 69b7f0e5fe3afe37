//! Keeping customer data out of error texts. Decoder errors (serde, Avro,
//! uuid) quote the value they choked on, and that value may be a name or an
//! address; error texts end up in logs and in `dlq-error-message` headers.
//! [`scrub`] replaces every quoted value with `…`, keeping only the names of
//! the contract's own fields and enum symbols, so an error still says
//! *where* and *which rule*, never *what*.

use std::collections::HashSet;
use std::sync::OnceLock;

/// The contract's own identifiers (field names and enum symbols of every
/// schema version), which may stay quoted in an error.
fn identifiers() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names = HashSet::new();
        for source in crate::avro::ORDER_SCHEMAS
            .iter()
            .chain(crate::avro::USER_SCHEMAS.iter())
        {
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

/// `text` with every `"…"` quoted value, every `` `…` `` quoted value that is
/// not one of the contract's identifiers, and every list of byte values
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
        let keep = quote == b'`' && identifiers().contains(inner);
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
        assert_eq!(scrub("[unclosed and \"x\""), "[unclosed and \"…\"");
    }
}
