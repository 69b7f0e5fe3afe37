//! W3C trace context across process boundaries: into and out of HTTP and
//! Kafka headers, so one trace runs HTTP -> Kafka -> consumer -> PostgreSQL.
//!
//! Read once per request or message: [`context`] asks the span for its
//! trace context once and gives both its ids (for logs and event
//! metadata) and the W3C headers to send onwards, written as
//! `TraceContextPropagator` writes them, without a map per call.
//!
//! A span's context is kept by OpenTelemetry's layer when spans are
//! exported, and otherwise by [`ContextLayer`]: the same ids, flags and
//! state as the SDK's default sampler would give, without building an
//! OpenTelemetry span (its attributes, events and end) that nothing would
//! read.

use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceState};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
use tracing::span::{Attributes, Id};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::{LookupSpan, Registry};

/// The trace context of a span: its ids, and the W3C headers that carry it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// The `traceparent` header value.
    pub traceparent: String,
    /// The `tracestate` header value, when the trace carries one.
    pub tracestate: Option<String>,
}

/// A span's context as [`ContextLayer`] keeps it, in the span's extensions.
struct Kept(SpanContext);

/// `read` of what [`ContextLayer`] keeps for `span`; `None` when that layer
/// is not installed or the span is disabled.
fn with_kept<T>(span: &Span, read: impl FnOnce(&mut Kept) -> T) -> Option<T> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let mut extensions = data.extensions_mut();
        extensions.get_mut::<Kept>().map(read)
    })
    .flatten()
}

/// `read` of the span context of `span`, if it is being traced.
fn with_span_context<T>(span: &Span, read: impl FnOnce(&SpanContext) -> T) -> Option<T> {
    let mut read = Some(read);
    if let Some(kept) = with_kept(span, |kept| {
        let read = read.take()?;
        kept.0.is_valid().then(|| read(&kept.0))
    }) {
        return kept;
    }
    let read = read?;
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| read(sc))
}

/// The trace context of `span`, if it is being traced.
pub fn context(span: &Span) -> Option<TraceContext> {
    with_span_context(span, |sc| {
        let trace_id = sc.trace_id().to_string();
        let span_id = sc.span_id().to_string();
        let flags = sc.trace_flags() & TraceFlags::SAMPLED;
        let traceparent = format!("00-{trace_id}-{span_id}-{:02x}", flags.to_u8());
        let tracestate = Some(sc.trace_state().header()).filter(|s| !s.is_empty());
        TraceContext {
            trace_id,
            span_id,
            traceparent,
            tracestate,
        }
    })
}

/// The W3C trace id and span id of `span`, if it is being traced.
pub fn ids(span: &Span) -> Option<(String, String)> {
    with_span_context(span, |sc| {
        (sc.trace_id().to_string(), sc.span_id().to_string())
    })
}

/// The context of a new span `span_id` under `parent`: the parent's
/// trace, state and sampling decision, or a new sampled trace without one,
/// as the SDK's default parent-based sampler decides.
fn descend(parent: Option<&SpanContext>, span_id: SpanId) -> SpanContext {
    match parent.filter(|p| p.is_valid()) {
        Some(p) => SpanContext::new(
            p.trace_id(),
            span_id,
            TraceFlags::default().with_sampled(p.is_sampled()),
            false,
            p.trace_state().clone(),
        ),
        None => SpanContext::new(
            RandomIdGenerator::default().new_trace_id(),
            span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
    }
}

/// Gives every span a W3C context when spans are not exported (see
/// [`descend`]); nothing else is kept or done per span.
#[derive(Debug, Default)]
pub struct ContextLayer;

impl<S> tracing_subscriber::Layer<S> for ContextLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let span_id = RandomIdGenerator::default().new_span_id();
        let kept = match span.parent() {
            Some(parent) => descend(parent.extensions().get::<Kept>().map(|k| &k.0), span_id),
            None => descend(None, span_id),
        };
        span.extensions_mut().insert(Kept(kept));
    }
}

/// The two W3C headers, as found by a lookup.
struct Carrier {
    traceparent: String,
    tracestate: Option<String>,
}

impl Extractor for Carrier {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "traceparent" => Some(&self.traceparent),
            "tracestate" => self.tracestate.as_deref(),
            _ => None,
        }
    }
    fn keys(&self) -> Vec<&str> {
        let mut keys = vec!["traceparent"];
        if self.tracestate.is_some() {
            keys.push("tracestate");
        }
        keys
    }
}

/// Makes `span` a child of the trace context found by `lookup`, if any.
/// Nothing is parsed when there is no `traceparent`.
pub fn continue_from(span: &Span, lookup: impl Fn(&str) -> Option<String>) {
    let Some(traceparent) = lookup("traceparent") else {
        return;
    };
    let carrier = Carrier {
        traceparent,
        tracestate: lookup("tracestate"),
    };
    let parent = opentelemetry::propagation::TextMapPropagator::extract(
        &TraceContextPropagator::new(),
        &carrier,
    );
    let caller = parent.span().span_context().clone();
    if !caller.is_valid() {
        return;
    }
    // Under [`ContextLayer`] the span keeps its own id and takes the
    // caller's trace; under OpenTelemetry's layer the caller becomes its
    // parent.
    let kept = with_kept(span, |kept| {
        kept.0 = descend(Some(&caller), kept.0.span_id())
    });
    if kept.is_none() {
        let _ = span.set_parent(parent);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::TracerProvider as _;
    use proptest::prelude::*;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Runs `work` under a subscriber that traces as the services do.
    fn traced<T>(work: impl FnOnce() -> T) -> T {
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, work)
    }

    /// Runs `work` under a subscriber that keeps contexts as the services
    /// do when no spans are exported.
    fn kept<T>(work: impl FnOnce() -> T) -> T {
        let subscriber = tracing_subscriber::registry().with(ContextLayer);
        tracing::subscriber::with_default(subscriber, work)
    }

    /// The context of a request span that continued `headers`.
    fn continued(headers: &[(&str, &str)]) -> Option<TraceContext> {
        let span = tracing::info_span!("request");
        continue_from(&span, lookup(headers));
        context(&span)
    }

    /// `context` with its own span id blanked, for comparing two spans.
    fn without_span_id(mut context: TraceContext) -> TraceContext {
        context.traceparent = context.traceparent.replace(&context.span_id, "-");
        context.span_id.clear();
        context
    }

    /// What the W3C propagator itself writes for `span`.
    fn propagated(span: &Span) -> HashMap<String, String> {
        let mut headers = HashMap::new();
        TraceContextPropagator::new().inject_context(&span.context(), &mut headers);
        headers
    }

    fn lookup<'a>(headers: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn a_caller_s_trace_continues_with_its_state() {
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
        let (context, written) = traced(|| {
            let span = tracing::info_span!("request");
            continue_from(
                &span,
                lookup(&[("traceparent", &parent), ("tracestate", "vendor=opaque-7")]),
            );
            (context(&span).expect("traced"), propagated(&span))
        });
        assert_eq!(context.trace_id, trace_id);
        assert_ne!(context.span_id, "00f067aa0ba902b7", "a span of its own");
        assert_eq!(Some(&context.traceparent), written.get("traceparent"));
        assert_eq!(context.tracestate.as_deref(), Some("vendor=opaque-7"));
        assert_eq!(
            context.tracestate.as_ref(),
            written.get("tracestate"),
            "as the propagator writes it"
        );
    }

    #[test]
    fn without_a_caller_a_new_trace_starts() {
        let (context, written) = traced(|| {
            let span = tracing::info_span!("request");
            continue_from(&span, lookup(&[("tracestate", "ignored=1")]));
            (context(&span).expect("traced"), propagated(&span))
        });
        assert_eq!(context.trace_id.len(), 32);
        assert_eq!(Some(&context.traceparent), written.get("traceparent"));
        assert_eq!(context.tracestate, None, "no state without a caller");
    }

    proptest! {
        /// Whatever a caller sends as `traceparent` and `tracestate` (of
        /// any length, truncated, extended, repeated members), the span's
        /// headers are the ones the W3C propagator would write, and a
        /// valid caller's trace id is kept.
        #[test]
        fn any_caller_header_gives_the_propagator_s_headers(
            traceparent in prop_oneof![
                any::<String>(),
                "(?s).{100,8000}",
                "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]",
                "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01](-[0-9a-z]{0,40})?",
                "[0-9a-f]{2}-[0-9a-fA-F]{30,33}-[0-9a-f]{15,17}-[0-9a-f]{1,3}",
            ],
            // Up to 40 members (the W3C limit is 32), members repeated, values
            // long, or any text.
            tracestate in prop_oneof![
                any::<String>(),
                "(?s).{100,8000}",
                "[a-z]{1,8}=[a-z0-9]{1,8}(,[a-z]{1,8}=[a-z0-9]{1,8}){0,39}",
                "(k=[a-z0-9]{1,200},){1,10}k=v",
            ],
        ) {
            let (context, written) = traced(|| {
                let span = tracing::info_span!("request");
                continue_from(&span, lookup(&[("traceparent", &traceparent), ("tracestate", &tracestate)]));
                (context(&span), propagated(&span))
            });
            let context = context.expect("every span is traced");
            prop_assert_eq!(Some(&context.traceparent), written.get("traceparent"));
            let written_state = written.get("tracestate").filter(|s| !s.is_empty());
            prop_assert_eq!(context.tracestate.as_ref(), written_state);
            let caller = TraceContextPropagator::new().extract(&Carrier {
                traceparent: traceparent.clone(),
                tracestate: Some(tracestate.clone()),
            });
            let caller = caller.span().span_context().clone();
            if caller.is_valid() {
                prop_assert_eq!(context.trace_id, caller.trace_id().to_string());
            }
        }

        /// Without an exporter the same caller headers (of any length,
        /// truncated, extended, members repeated) give the same trace id,
        /// flags and state as OpenTelemetry's layer gives (a span id of its
        /// own each), so a trace runs on the same whether or not its spans
        /// leave the process.
        #[test]
        fn kept_contexts_are_the_sdk_s(
            traceparent in prop_oneof![
                any::<String>(),
                "(?s).{100,8000}",
                "00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]",
                "00-[0-9a-f]{32}-[0-9a-f]{16}-0[01](-[0-9a-z]{0,40})?",
                "[0-9a-f]{2}-[0-9a-fA-F]{30,33}-[0-9a-f]{15,17}-[0-9a-f]{1,3}",
            ],
            tracestate in prop_oneof![
                any::<String>(),
                "(?s).{100,8000}",
                "[a-z]{1,8}=[a-z0-9]{1,8}(,[a-z]{1,8}=[a-z0-9]{1,8}){0,39}",
                "(k=[a-z0-9]{1,200},){1,10}k=v",
            ],
        ) {
            let headers = [("traceparent", traceparent.as_str()), ("tracestate", tracestate.as_str())];
            let sdk = traced(|| continued(&headers)).expect("traced");
            let own = kept(|| continued(&headers)).expect("kept");
            let caller = TraceContextPropagator::new().extract(&Carrier {
                traceparent: traceparent.clone(),
                tracestate: Some(tracestate.clone()),
            });
            if caller.span().span_context().is_valid() {
                prop_assert_eq!(without_span_id(own), without_span_id(sdk));
            } else {
                // Both started a trace of their own: only the form agrees.
                prop_assert_eq!(own.traceparent.len(), 55);
                prop_assert_eq!(own.tracestate, None);
                prop_assert_eq!(&own.traceparent[52..], &sdk.traceparent[52..]);
            }
        }
    }

    #[test]
    fn a_kept_context_continues_a_caller_and_passes_to_children() {
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let parent = format!("00-{trace_id}-00f067aa0ba902b7-01");
        let (request, child, root) = kept(|| {
            let span = tracing::info_span!("request");
            continue_from(
                &span,
                lookup(&[("traceparent", &parent), ("tracestate", "vendor=opaque-7")]),
            );
            let child = span.in_scope(|| context(&tracing::info_span!("write")));
            let root = span.in_scope(|| context(&tracing::info_span!(parent: None, "other")));
            (context(&span), child, root)
        });
        let request = request.expect("kept");
        assert_eq!(request.trace_id, trace_id);
        assert_eq!(
            request.traceparent,
            format!("00-{trace_id}-{}-01", request.span_id)
        );
        assert_eq!(request.tracestate.as_deref(), Some("vendor=opaque-7"));
        let child = child.expect("kept");
        assert_eq!(child.trace_id, trace_id, "a child is in its parent's trace");
        assert_ne!(child.span_id, request.span_id, "with a span of its own");
        assert_eq!(child.tracestate, request.tracestate);
        let root = root.expect("kept");
        assert_ne!(root.trace_id, trace_id, "a root span starts a trace");
        assert_eq!(root.tracestate, None);
    }

    #[test]
    fn an_unsampled_caller_stays_unsampled_either_way() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let headers = [("traceparent", parent)];
        for context in [traced(|| continued(&headers)), kept(|| continued(&headers))] {
            assert!(context.expect("traced").traceparent.ends_with("-00"));
        }
        let fresh = kept(|| continued(&[])).expect("kept");
        assert!(fresh.traceparent.ends_with("-01"), "a new trace is sampled");
    }
}
