//! What the producer does, as internal events: each one counts itself and
//! writes its own log line, so an outcome is one statement where it happens.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use platform::throttle::LogThrottle;

use crate::error::Refusal;
use crate::metrics::{Outcome, ProducerMetrics};

/// The broker acknowledged a write.
#[derive(Debug)]
pub struct WriteAcknowledged<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// From send to acknowledgement.
    pub took: Duration,
}

impl WriteAcknowledged<'_> {
    /// Records the event.
    pub fn emit(self, metrics: &ProducerMetrics) {
        metrics.message(self.topic, Outcome::Acked);
        metrics.produce_seconds(self.topic, self.took.as_secs_f64());
    }
}

/// A write was not acknowledged (failed, timed out, or not even queued).
#[derive(Debug)]
pub struct WriteFailed<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Failed or rejected.
    pub outcome: Outcome,
}

impl WriteFailed<'_> {
    /// Records the event.
    pub fn emit(self, metrics: &ProducerMetrics) {
        metrics.message(self.topic, self.outcome);
    }
}

/// A request was refused; logged by the middleware that finds the refusal
/// on the response (a conversion into a response must not log).
#[derive(Debug)]
pub struct RequestRefused<'a> {
    /// What the refusal said.
    pub refusal: &'a Refusal,
}

impl RequestRefused<'_> {
    /// Records the event: bugs as errors, outages once per kind every ten
    /// seconds (under load an outage fails every request), the client's own
    /// mistakes at debug.
    pub fn emit(self) {
        static OUTAGES: OnceLock<LogThrottle> = OnceLock::new();
        let Refusal { code, detail } = self.refusal;
        match *code {
            "internal" => tracing::error!(error = %detail, "request failed"),
            "broker_unavailable" | "producer_queue_full" => {
                let throttle = OUTAGES.get_or_init(LogThrottle::default);
                if let Some(suppressed) = throttle.admit(code, Instant::now()) {
                    tracing::warn!(error = %detail, suppressed, "event not accepted");
                }
            }
            _ => tracing::debug!(code, error = %detail, "request refused"),
        }
    }
}

/// Middleware around every request: its span (continuing the caller's W3C
/// trace, see [`request_span`]), its HTTP metrics, and the log line of the
/// refusal its answer carries, if any. One layer instead of three: each
/// layer costs every request a boxed future and a cloned service.
pub async fn observe(
    axum::extract::State(metrics): axum::extract::State<platform::http::HttpMetrics>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let span = request_span(&request);
    // Read once here, for the span's field and the handler's events.
    let trace = platform::trace::context(&span);
    if let Some(trace) = &trace {
        span.record("trace_id", trace.trace_id.as_str());
    }
    request
        .extensions_mut()
        .insert(crate::intake::Trace::from(trace));
    let observed = platform::http::Observed::start(&request);
    let response = next.run(request).instrument(span.clone()).await;
    metrics.observe(observed, response.status());
    if let Some(refusal) = response.extensions().get::<Refusal>() {
        span.in_scope(|| RequestRefused { refusal }.emit());
    }
    response
}

/// A span per request that continues the caller's W3C trace, if any; the
/// handlers record the order or user id, the correlation id and a batch's
/// size on it (one span per request: each costs the log and trace layers
/// work whether or not anything is logged in it).
fn request_span(request: &axum::extract::Request) -> tracing::Span {
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
