//! The middleware around every request of the API: its span, its
//! correlation id, its HTTP metrics and the log line of its refusal. Not an
//! event itself: it reports the [`crate::events::RequestRefused`] event it
//! finds.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::events::{Refusal, RequestRefused};
use crate::intake::{CorrelationId, Trace};

/// Middleware around every request: its span (continuing the caller's W3C
/// trace, see [`request_span`]), its correlation id (the caller's, else a
/// new one: on the span, in the events, and in `X-Correlation-ID` on every
/// answer, a refusal's as well as a `202`), its HTTP metrics, and the log
/// line of the refusal its answer carries, if any. The outermost layer, so
/// that no answer, of the admission layer, an extractor or the router's
/// fallback, goes without. One layer instead of four: each layer costs
/// every request a boxed future and a cloned service.
pub async fn observe(
    State(metrics): State<platform::http::HttpMetrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let span = request_span(&request);
    // Read once here, for the span's field and the handler's events.
    let trace = platform::trace::context(&span);
    if let Some(trace) = &trace {
        span.record("trace_id", trace.trace_id.as_str());
    }
    request.extensions_mut().insert(Trace::from(trace));
    let correlation = CorrelationId::of(request.headers());
    span.record("correlation_id", correlation.0.as_str());
    // Its bytes are visible ASCII (see `CorrelationId::of`): always a value.
    let header = HeaderValue::from_str(&correlation.0).ok();
    request.extensions_mut().insert(correlation);
    let observed = platform::http::Observed::start(&request);
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Some(value) = header {
        response.headers_mut().insert(CorrelationId::HEADER, value);
    }
    metrics.observe(observed, response.status());
    if let Some(refusal) = response.extensions().get::<Refusal>() {
        span.in_scope(|| RequestRefused { refusal }.emit());
    }
    response
}

/// A span per request that continues the caller's W3C trace, if any; the
/// handlers record the order or user id and a batch's size on it (one
/// span per request: each costs the log and trace layers work whether or
/// not anything is logged in it).
fn request_span(request: &Request) -> tracing::Span {
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
        order_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        correlation_id = tracing::field::Empty,
        items = tracing::field::Empty,
    );
    platform::trace::continue_from(&span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    span
}
