//! Reading request headers, for the modules that check a request
//! ([`crate::admission`]) and the one that turns it into an event
//! ([`crate::intake`]).

use axum::http::HeaderMap;

/// The trimmed text of header `name`, if present, readable and not empty.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}
