//! W3C trace context across process boundaries: into and out of HTTP and
//! Kafka headers, so one trace runs HTTP -> Kafka -> consumer -> PostgreSQL.

use std::collections::HashMap;

use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Map<'a>(&'a mut HashMap<String, String>);

impl Injector for Map<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// `traceparent` (and `tracestate` when set) of `span`, to send onwards.
pub fn inject(span: &Span) -> HashMap<String, String> {
    let mut headers = HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut Map(&mut headers))
    });
    headers
}

/// Makes `span` a child of the trace context found by `lookup`, if any.
pub fn continue_from(span: &Span, lookup: impl Fn(&str) -> Option<String>) {
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| Some((name.to_owned(), lookup(name)?)))
        .collect();
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The W3C trace id and span id of `span`, if it is being traced.
pub fn ids(span: &Span) -> Option<(String, String)> {
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}
