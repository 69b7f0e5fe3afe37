//! What the consumer does, as internal events: each one counts itself and
//! writes its own log line, so an outcome is a single statement where it
//! happens, its labels come from closed sets, and every count goes to the
//! topic of the message it is about.

use std::time::Duration;

use tracing::Level;

use crate::dead_letter::Delivery;
use crate::failure::{Failure, FailureClass};
use crate::metrics::{ConsumerMetrics, Counted};
use crate::partition::Partition;

/// An event that counts and logs itself.
pub trait InternalEvent {
    /// Records the event.
    fn emit(self, metrics: &ConsumerMetrics);
}

/// Where a message was read.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// A message was read.
#[derive(Debug)]
pub struct Consumed<'a> {
    /// Its topic.
    pub topic: &'a str,
}

impl InternalEvent for Consumed<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.messages(self.topic, Counted::Consumed, 1);
    }
}

/// An event was stored for the first time.
#[derive(Debug)]
pub struct Persisted<'a> {
    /// The message.
    pub at: At<'a>,
    /// Its trace, repeated on the line so that a search by trace id finds
    /// it whatever the span context.
    pub trace_id: Option<&'a str>,
}

impl InternalEvent for Persisted<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.messages(self.at.topic, Counted::Persisted, 1);
        tracing::debug!(
            target: platform::telemetry::CONSUMER_MESSAGES,
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            trace_id = self.trace_id.unwrap_or(""),
            "event persisted"
        );
    }
}

/// An event was found stored with the same content (a redelivery).
#[derive(Debug)]
pub struct AlreadyStored<'a> {
    /// The message.
    pub at: At<'a>,
}

impl InternalEvent for AlreadyStored<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.messages(self.at.topic, Counted::Duplicate, 1);
        tracing::debug!(
            target: platform::telemetry::CONSUMER_MESSAGES,
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            "event already stored; nothing to do"
        );
    }
}

/// A message went to its DLQ (or, refused even reduced, was passed over).
#[derive(Debug)]
pub struct DeadLettered<'a> {
    /// The message.
    pub at: At<'a>,
    /// Why.
    pub failure: &'a Failure,
    /// How the DLQ took it.
    pub delivery: &'a Delivery,
    /// Size of its value.
    pub bytes: usize,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        let (at, failure) = (self.at, self.failure);
        match self.delivery {
            Delivery::Whole(_) => {}
            Delivery::Reduced(_) => {
                metrics.dead_letter_reduced(at.topic);
                tracing::warn!(
                    topic = at.topic,
                    partition = at.partition,
                    offset = at.offset,
                    bytes = self.bytes,
                    "dead letter too large to write whole: written reduced"
                );
            }
            Delivery::Dropped(error) => {
                metrics.dead_letter_dropped(at.topic);
                tracing::error!(
                    topic = at.topic,
                    partition = at.partition,
                    offset = at.offset,
                    %error,
                    error_class = failure.class.as_str(),
                    "the dead-letter topic refused this message even reduced: passed over"
                );
                return;
            }
        }
        if failure.class == FailureClass::Conflict {
            metrics.messages(at.topic, Counted::Conflict, 1);
        }
        metrics.messages(at.topic, Counted::DeadLettered, 1);
        metrics.dead_letter(at.topic, failure);
        tracing::warn!(
            topic = at.topic,
            partition = at.partition,
            offset = at.offset,
            error_kind = failure.kind.as_str(),
            error_class = failure.class.as_str(),
            retries = failure.retries,
            "message dead-lettered"
        );
    }
}

/// A message's outcome is final: how long it took, how old it is, and the
/// retries it needed.
#[derive(Debug)]
pub struct Finished<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// From receipt to outcome.
    pub processing: Duration,
    /// From its Kafka timestamp to its outcome, when it has one.
    pub age_seconds: Option<f64>,
    /// Transient failures retried.
    pub retries: u32,
}

impl InternalEvent for Finished<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.messages(self.topic, Counted::Retried, u64::from(self.retries));
        metrics.timings(self.topic, self.processing.as_secs_f64(), self.age_seconds);
    }
}

/// The database is unreachable for everyone: consumption paused.
#[derive(Debug)]
pub struct CircuitOpened<'a> {
    /// The failure that decided it (scrubbed).
    pub reason: &'a str,
}

impl InternalEvent for CircuitOpened<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.circuit_open.set(1);
        tracing::event!(
            Level::ERROR,
            reason = self.reason,
            "database unreachable: pausing consumption"
        );
    }
}

/// A probe succeeded: consumption resumes.
#[derive(Debug)]
pub struct CircuitClosed;

impl InternalEvent for CircuitClosed {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.circuit_open.set(0);
        tracing::info!("database reachable again: resuming consumption");
    }
}

/// The DLQ flood guard holds a partition instead of dead-lettering its
/// message (again, when a retry failed too).
#[derive(Debug)]
pub struct FloodHeld<'a> {
    /// The message that would have been dead-lettered.
    pub at: At<'a>,
    /// Why it would have been.
    pub failure: &'a Failure,
    /// What tripped the guard.
    pub tripped: crate::flood::Tripped,
    /// The wait before one message is tried again.
    pub retry_after: Duration,
}

impl InternalEvent for FloodHeld<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        metrics.flood_trip(self.at.topic, self.at.partition);
        tracing::error!(
            topic = self.at.topic,
            partition = self.at.partition,
            offset = self.at.offset,
            error_kind = self.failure.kind.as_str(),
            error_class = self.failure.class.as_str(),
            in_row = self.tripped.in_row,
            in_window = self.tripped.in_window,
            window = self.tripped.window,
            retry_after = ?self.retry_after,
            "too many dead letters on this partition: holding it instead of dead-lettering its stream (DLQ flood guard)"
        );
    }
}

/// A held partition handled a message without a dead letter: it goes on.
#[derive(Debug)]
pub struct FloodReleased<'a> {
    /// The partition.
    pub partition: &'a Partition,
}

impl InternalEvent for FloodReleased<'_> {
    fn emit(self, metrics: &ConsumerMetrics) {
        let Partition { topic, index } = self.partition;
        metrics.flood_release(topic, *index);
        tracing::warn!(
            topic,
            partition = index,
            "a held partition handled a message again: the DLQ flood guard lets it go on"
        );
    }
}
