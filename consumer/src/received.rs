//! A message as the worker holds it from being read until it is settled:
//! with its own span (continuing the producer's trace) and the time it was
//! read.

use std::time::Instant;

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Timestamp;
use tracing::Span;

use crate::pending::Placed;

/// One message's span (continuing the producer's trace) and receive time.
pub(crate) struct Received {
    /// The message.
    pub(crate) message: OwnedMessage,
    /// Its span, a root continuing the producer's trace.
    pub(crate) span: Span,
    /// The trace it continues, if its headers name one.
    pub(crate) trace_id: Option<String>,
    /// When it was read.
    pub(crate) at: Instant,
}

/// `message`, just read, with its span and the time.
pub(crate) fn received(message: OwnedMessage) -> Received {
    // A root span: never the child of whatever happens to be current.
    let span = tracing::info_span!(
        parent: None,
        "consume",
        topic = message.topic(),
        partition = message.partition(),
        offset = message.offset(),
        trace_id = tracing::field::Empty,
    );
    platform::trace::continue_from(&span, |name| {
        platform::kafka::header(&message, name).map(str::to_owned)
    });
    let trace_id = platform::trace::ids(&span).map(|(trace_id, _)| trace_id);
    if let Some(trace_id) = &trace_id {
        span.record("trace_id", trace_id.as_str());
    }
    Received {
        message,
        span,
        trace_id,
        at: Instant::now(),
    }
}

/// How long ago `message` was produced (or appended), in seconds.
pub(crate) fn age_seconds(message: &OwnedMessage) -> Option<f64> {
    match message.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => {
            Some((chrono::Utc::now().timestamp_millis() - ms) as f64 / 1000.0)
        }
        Timestamp::NotAvailable => None,
    }
}

impl Placed for Received {
    fn topic(&self) -> &str {
        self.message.topic()
    }
    fn partition(&self) -> i32 {
        self.message.partition()
    }
    fn bytes(&self) -> usize {
        self.message.payload().map_or(0, <[u8]>::len) + self.message.key().map_or(0, <[u8]>::len)
    }
    fn read_at(&self) -> Instant {
        self.at
    }
}
