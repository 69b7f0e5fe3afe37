//! Reading request headers, for the modules that check a request
//! ([`crate::admission`]) and the one that turns it into an event
//! ([`crate::intake`]).

use axum::http::{header, HeaderMap};

/// The trimmed text of header `name`, if present, readable and not empty.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Why an `If-Match` header names no one version of the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IfMatchError {
    /// Neither `*` nor a list of entity tags (RFC 9110, section 13.1.1).
    #[error("is neither \"*\" nor an entity tag")]
    Malformed,
    /// `W/"3"`: a change depends on the exact version, which a weak tag
    /// does not name (`If-Match` compares strongly).
    #[error("is a weak entity tag (W/\"...\"), which never matches: send the strong tag")]
    Weak,
    /// `"2", "3"`: the change is conditional on one version.
    #[error("holds several entity tags: a change is conditional on one version")]
    Several,
    /// A strong tag that holds no version (`"abc"`, `"0"`, `"007"`): the
    /// read side's `ETag` is a positive decimal version in quotes.
    #[error("holds no version: an order's ETag is its version, a positive decimal such as \"3\"")]
    NotAVersion,
}

/// The version an order change is conditional on, from its `If-Match`:
/// `None` without the header or with `*` (no condition: any version of an
/// existing order; an unknown order is refused by the consumer either way),
/// else the one strong entity tag holding a positive decimal version, as
/// the read side's `ETag` (`"3"`) sends it.
///
/// Anything else is refused with `400`, not `412`. RFC 9110 (section
/// 13.1.1) has a value that is no list of entity tags, or a weak tag (which
/// strong comparison never matches), evaluate to false, answered by
/// `412 Precondition Failed`; but that is the answer of a server that
/// compared the tag with the current one. The producer compares nothing:
/// it carries the version to the consumer, which checks it against the
/// stored order (a mismatch is a `version_conflict` there). A `412` here
/// would tell a client that the order changed, and a client that reacts by
/// reading the new `ETag` and retrying with its own malformed header would
/// loop; `400` says the request's own form is wrong. A list of several
/// tags is valid HTTP ("any of them") that one expected version cannot
/// carry: also a `400`, saying so, rather than a guess at one of them.
pub fn if_match(headers: &HeaderMap) -> Result<Option<u32>, IfMatchError> {
    let mut lines = headers.get_all(header::IF_MATCH).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    // Header lines of one name are one list (RFC 9110, section 5.3).
    if lines.next().is_some() {
        return Err(IfMatchError::Several);
    }
    parse_if_match(first.to_str().map_err(|_| IfMatchError::Malformed)?)
}

/// [`if_match`] of one header value.
pub fn parse_if_match(value: &str) -> Result<Option<u32>, IfMatchError> {
    let value = value.trim_matches([' ', '\t']);
    if value == "*" {
        return Ok(None);
    }
    match entity_tags(value)
        .ok_or(IfMatchError::Malformed)?
        .as_slice()
    {
        [] => Err(IfMatchError::Malformed),
        [tag] => tag.version().map(Some),
        _ => Err(IfMatchError::Several),
    }
}

/// One entity tag: `[W/]"opaque"`.
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

impl EntityTag<'_> {
    /// The version a strong tag holds: canonical decimal digits (what the
    /// read side writes; strong comparison is by character, so `"03"`
    /// never matches `"3"`), from 1.
    fn version(&self) -> Result<u32, IfMatchError> {
        if self.weak {
            return Err(IfMatchError::Weak);
        }
        let digits = self.opaque;
        if digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IfMatchError::NotAVersion);
        }
        digits.parse().map_err(|_| IfMatchError::NotAVersion)
    }
}

/// The entity tags of a list (RFC 9110: `#entity-tag`, elements separated
/// by optional whitespace, a comma and optional whitespace, empty elements
/// allowed; `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`, where `etagc` is
/// any visible character but `"`, so a comma may be inside a tag), or
/// `None` when `value` is not such a list.
fn entity_tags(value: &str) -> Option<Vec<EntityTag<'_>>> {
    fn ows(s: &str) -> &str {
        s.trim_start_matches([' ', '\t'])
    }
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = ows(rest);
        if rest.is_empty() {
            return Some(tags);
        }
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
            continue;
        }
        let (weak, tag) = match rest.strip_prefix("W/") {
            Some(tag) => (true, tag),
            None => (false, rest),
        };
        let tag = tag.strip_prefix('"')?;
        let end = tag.find('"')?;
        let opaque = &tag[..end];
        if !opaque
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x7e).contains(&b))
        {
            return None;
        }
        tags.push(EntityTag { weak, opaque });
        rest = ows(&tag[end + 1..]);
        if !rest.is_empty() {
            rest = rest.strip_prefix(',')?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_strong_tag_holding_a_version_is_the_expected_version() {
        assert_eq!(parse_if_match("\"3\""), Ok(Some(3)));
        assert_eq!(parse_if_match(" \t\"12\" "), Ok(Some(12)));
        assert_eq!(parse_if_match("\"4294967295\""), Ok(Some(u32::MAX)));
        assert_eq!(parse_if_match("\"1\","), Ok(Some(1)), "an empty element");
        assert_eq!(parse_if_match("*"), Ok(None));
        assert_eq!(parse_if_match(" * "), Ok(None));
    }

    #[test]
    fn every_other_form_says_what_is_wrong() {
        use IfMatchError::*;
        for (value, why) in [
            ("", Malformed),
            (",", Malformed),
            ("3", Malformed),
            ("\"3", Malformed),
            ("'3'", Malformed),
            ("\"3\" \"4\"", Malformed),
            ("*, \"3\"", Malformed),
            ("**", Malformed),
            ("w/\"3\"", Malformed),
            ("\"a b\"", Malformed),
            ("W/\"3\"", Weak),
            ("\"3\", \"4\"", Several),
            ("\"3\",\"3\"", Several),
            ("W/\"3\", \"4\"", Several),
            ("\"0\"", NotAVersion),
            ("\"03\"", NotAVersion),
            ("\"-3\"", NotAVersion),
            ("\"+3\"", NotAVersion),
            ("\"3.0\"", NotAVersion),
            ("\"\"", NotAVersion),
            ("\"4294967296\"", NotAVersion),
            ("\"v3\"", NotAVersion),
            ("\"3,4\"", NotAVersion),
        ] {
            assert_eq!(parse_if_match(value), Err(why), "{value:?}");
        }
    }

    #[test]
    fn the_header_is_read_whole_across_its_lines() {
        let mut headers = HeaderMap::new();
        assert_eq!(if_match(&headers), Ok(None), "no header, no condition");
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(if_match(&headers), Ok(Some(7)));
        headers.append(header::IF_MATCH, HeaderValue::from_static("\"8\""));
        assert_eq!(if_match(&headers), Err(IfMatchError::Several));
        let mut opaque = HeaderMap::new();
        opaque.insert(
            header::IF_MATCH,
            HeaderValue::from_bytes(b"\"\xe9\"").expect("obs-text"),
        );
        assert_eq!(if_match(&opaque), Err(IfMatchError::Malformed));
    }

    proptest::proptest! {
        /// Whatever the value, reading it answers, and it is taken exactly
        /// when it is `*` or one canonical version in quotes.
        #[test]
        fn any_value_is_answered_and_only_one_version_taken(
            value in proptest::string::string_regex("[ \t]{0,2}(W/)?\"?[0-9a-z*,\" ]{0,14}\"?[ \t,]{0,2}")
                .expect("a pattern"),
            any in ".{0,40}",
        ) {
            for value in [&value, &any] {
                let version = value
                    .trim_matches([' ', '\t', ','])
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .filter(|v| !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<u32>().ok());
                let star = value.trim_matches([' ', '\t']) == "*";
                let expected = if star { Some(None) } else { version.map(Some) };
                proptest::prop_assert_eq!(parse_if_match(value).ok(), expected, "{:?}", value);
            }
        }
    }
}
