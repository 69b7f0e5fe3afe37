//! What the producer does, as internal events: each one counts itself and
//! writes its own log line, so an outcome is one statement where it happens.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use platform::throttle::LogThrottle;

use crate::metrics::{Delivery, ProducerMetrics};

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
        metrics.message(self.topic, Delivery::Acked);
        metrics.produce_seconds(self.topic, self.took.as_secs_f64());
    }
}

/// A write was not acknowledged (failed, timed out, or not even queued).
#[derive(Debug)]
pub struct WriteFailed<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Failed or rejected.
    pub outcome: Delivery,
}

impl WriteFailed<'_> {
    /// Records the event.
    pub fn emit(self, metrics: &ProducerMetrics) {
        metrics.message(self.topic, self.outcome);
    }
}

/// What a refused request leaves on its response for the logging middleware
/// ([`crate::middleware::observe`]), which reports it as [`RequestRefused`].
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The stable code of the answer, such as `validation_failed`.
    pub code: &'static str,
    /// What went wrong, for the log (never customer data: rules name fields).
    pub detail: String,
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
            _ => tracing::debug!(
                target: platform::telemetry::PRODUCER_REQUESTS,
                code,
                error = %detail,
                "request refused"
            ),
        }
    }
}
