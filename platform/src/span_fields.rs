//! Span fields for JSON log lines, kept as one JSON object that a later
//! `record` appends to. `tracing-subscriber`'s own `JsonFields` parses the
//! whole object and writes it again on every `record`, which a request
//! span pays several times per request whether or not a line is logged.
//!
//! A field recorded twice appears twice in the text; the JSON formatter
//! reads the object back with `serde_json`, which keeps the last value.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// The fields of a span as a JSON object (`{"name":value,...}`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AppendJsonFields;

/// Writes `"name":value` entries, comma separated, serialised in place.
#[derive(Default)]
struct Entries {
    out: Vec<u8>,
    failed: bool,
}

impl Entries {
    fn entry(&mut self, field: &Field, value: impl serde::Serialize) {
        if !self.out.is_empty() {
            self.out.push(b',');
        }
        // A string or a number cannot fail to serialise; a non-finite
        // float becomes `null`.
        let written = serde_json::to_writer(&mut self.out, field.name()).and_then(|()| {
            self.out.push(b':');
            serde_json::to_writer(&mut self.out, &value)
        });
        self.failed |= written.is_err();
    }
}

impl Visit for Entries {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        self.failed |= write!(text, "{value:?}").is_err();
        self.entry(field, text);
    }
}

/// The entries of `fields`, as JSON text without the braces.
fn entries(fields: impl RecordFields) -> Result<String, fmt::Error> {
    let mut entries = Entries::default();
    fields.record(&mut entries);
    if entries.failed {
        return Err(fmt::Error);
    }
    // serde_json writes UTF-8 only.
    String::from_utf8(entries.out).map_err(|_| fmt::Error)
}

impl<'writer> FormatFields<'writer> for AppendJsonFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        write!(writer, "{{{}}}", entries(fields)?)
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        let entries = entries(fields)?;
        if entries.is_empty() {
            return Ok(());
        }
        let object = &mut current.fields;
        if object.ends_with('}') {
            object.pop();
            if !object.ends_with('{') {
                object.push(',');
            }
        } else {
            // Nothing was written at creation.
            object.clear();
            object.push('{');
        }
        object.push_str(&entries);
        object.push('}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use proptest::prelude::*;
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The JSON lines logged by `work` under the service's log layout.
    fn logged(work: impl FnOnce()) -> Vec<Value> {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .fmt_fields(AppendJsonFields)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[test]
    fn fields_recorded_later_are_on_the_lines_logged_after() {
        let lines = logged(|| {
            let span = tracing::info_span!(
                "request",
                method = "POST",
                order_id = tracing::field::Empty,
                items = tracing::field::Empty
            );
            let _entered = span.enter();
            tracing::info!("before");
            span.record("order_id", "o-1");
            span.record("items", 3);
            tracing::info!("after");
            span.record("order_id", "o-2");
            tracing::info!("again");
        });
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["span"]["method"], "POST");
        assert!(lines[0]["span"].get("order_id").is_none());
        assert_eq!(lines[1]["span"]["order_id"], "o-1");
        assert_eq!(lines[1]["span"]["items"], 3);
        assert_eq!(lines[2]["span"]["order_id"], "o-2", "the last value wins");
    }

    #[test]
    fn a_span_created_without_values_takes_its_first_fields() {
        let lines = logged(|| {
            let span = tracing::info_span!("empty", late = tracing::field::Empty);
            let _entered = span.enter();
            span.record("late", true);
            tracing::info!("logged");
        });
        assert_eq!(lines[0]["span"]["late"], true);
        assert_eq!(lines[0]["span"]["name"], "empty");
    }

    proptest! {
        /// Any text (up to kilobytes, control characters and all) and any
        /// number, at creation or recorded later and recorded again and
        /// again, reads back as the last value given.
        #[test]
        fn any_value_round_trips(
            first in any::<String>(),
            later in prop::collection::vec("(?s).{0,5000}", 1..8),
            n in any::<i64>(),
            x in any::<f64>(),
        ) {
            let lines = logged(|| {
                let span = tracing::info_span!(
                    "s",
                    first = first.as_str(),
                    later = tracing::field::Empty,
                    n = tracing::field::Empty,
                    debug = tracing::field::Empty,
                );
                let _entered = span.enter();
                for value in &later {
                    span.record("later", value.as_str());
                }
                span.record("n", n);
                span.record("debug", tracing::field::debug(&x));
                tracing::info!("line");
            });
            prop_assert_eq!(lines.len(), 1);
            let span = &lines[0]["span"];
            prop_assert_eq!(span["first"].as_str(), Some(first.as_str()));
            prop_assert_eq!(span["later"].as_str(), later.last().map(String::as_str));
            prop_assert_eq!(span["n"].as_i64(), Some(n));
            let debug = format!("{x:?}");
            prop_assert_eq!(span["debug"].as_str(), Some(debug.as_str()));
        }
    }
}
