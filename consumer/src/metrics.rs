//! The consumer's metrics, registered once; the loop only increments.

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use platform::metrics::{register, LATENCY_BUCKETS};

use crate::failure::Failure;

/// What a message was counted as: the `outcome` label of
/// `kafka_consumer_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// Read from the topic.
    Consumed,
    /// Stored for the first time.
    Persisted,
    /// Found already stored with the same content (a redelivery).
    Duplicate,
    /// Found already stored with other content (and dead-lettered).
    Conflict,
    /// A transient failure was retried.
    Retried,
    /// Written to the DLQ.
    DeadLettered,
}

impl Counted {
    /// Every outcome.
    pub const ALL: [Counted; 6] = [
        Counted::Consumed,
        Counted::Persisted,
        Counted::Duplicate,
        Counted::Conflict,
        Counted::Retried,
        Counted::DeadLettered,
    ];

    fn label(self) -> &'static str {
        match self {
            Counted::Consumed => "consumed",
            Counted::Persisted => "persisted",
            Counted::Duplicate => "duplicate",
            Counted::Conflict => "conflict",
            Counted::Retried => "retried",
            Counted::DeadLettered => "dead_lettered",
        }
    }
}

/// Every metric of the consumer.
#[derive(Clone)]
pub struct ConsumerMetrics {
    messages: IntCounterVec,
    dead_letters: IntCounterVec,
    reduced: IntCounterVec,
    dropped: IntCounterVec,
    processing: HistogramVec,
    end_to_end: HistogramVec,
    /// 1 while the circuit breaker is open.
    pub circuit_open: IntGauge,
    /// Messages behind the high watermark, per partition (librdkafka's view).
    pub lag: IntGaugeVec,
    /// 1 while the DLQ flood guard holds the partition.
    flood_held: IntGaugeVec,
    flood_trips: IntCounterVec,
}

impl ConsumerMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let latency = |name: &str, help: &str| {
            HistogramVec::new(
                HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                &["topic"],
            )
        };
        Ok(Self {
            messages: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_consumer_messages_total",
                        "Messages handled, by topic and outcome (consumed, persisted, duplicate, conflict, retried, dead_lettered)",
                    ),
                    &["topic", "outcome"],
                )?,
            )?,
            dead_letters: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_dlq_messages_total",
                        "Messages sent to a dead-letter topic, by source topic and error",
                    ),
                    &["topic", "error_kind", "error_class"],
                )?,
            )?,
            reduced: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_dlq_reduced_total",
                        "Dead letters too large to write whole, written reduced (value cut, dlq-value-truncated)",
                    ),
                    &["topic"],
                )?,
            )?,
            dropped: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_dlq_dropped_total",
                        "Messages the dead-letter topic refused even reduced: passed over, kept nowhere",
                    ),
                    &["topic"],
                )?,
            )?,
            processing: register(
                registry,
                latency(
                    "kafka_processing_duration_seconds",
                    "Time from receiving a message to its outcome (persisted or dead-lettered)",
                )?,
            )?,
            end_to_end: register(
                registry,
                latency(
                    "kafka_end_to_end_latency_seconds",
                    "Time from the message's Kafka timestamp to its outcome",
                )?,
            )?,
            circuit_open: register(
                registry,
                IntGauge::new(
                    "kafka_consumer_circuit_open",
                    "1 while consumption is paused because the database is unreachable",
                )?,
            )?,
            lag: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "kafka_consumer_lag",
                        "Messages between the committed position and the high watermark",
                    ),
                    &["group", "topic", "partition"],
                )?,
            )?,
            flood_held: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "kafka_consumer_dlq_flood_held",
                        "1 while the DLQ flood guard holds the partition instead of dead-lettering its messages",
                    ),
                    &["topic", "partition"],
                )?,
            )?,
            flood_trips: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_consumer_dlq_flood_trips_total",
                        "Times the DLQ flood guard held a partition (again)",
                    ),
                    &["topic"],
                )?,
            )?,
        })
    }

    /// Records the flood guard holding `topic`/`partition`.
    pub fn flood_trip(&self, topic: &str, partition: i32) {
        self.flood_trips.with_label_values(&[topic]).inc();
        self.flood_held
            .with_label_values(&[topic, &partition.to_string()])
            .set(1);
    }

    /// Records the flood guard letting `topic`/`partition` go on.
    pub fn flood_release(&self, topic: &str, partition: i32) {
        self.flood_held
            .with_label_values(&[topic, &partition.to_string()])
            .set(0);
    }

    /// Exports every outcome of `topics` at 0 until counted: a series
    /// that appears only with its first message reads as "not exported" to
    /// a dashboard or the console, and a rate over it misses its start.
    pub fn start_at_zero(&self, topics: &[String]) {
        for topic in topics {
            for outcome in Counted::ALL {
                self.messages.with_label_values(&[topic, outcome.label()]);
            }
        }
    }

    /// Counts `n` messages of `topic` with `outcome`.
    pub fn messages(&self, topic: &str, outcome: Counted, n: u64) {
        if n > 0 {
            self.messages
                .with_label_values(&[topic, outcome.label()])
                .inc_by(n);
        }
    }

    /// Counts one dead letter of `topic`.
    pub fn dead_letter(&self, topic: &str, failure: &Failure) {
        self.dead_letters
            .with_label_values(&[topic, failure.kind.as_str(), failure.class.as_str()])
            .inc();
    }

    /// Counts one dead letter of `topic` written reduced.
    pub fn dead_letter_reduced(&self, topic: &str) {
        self.reduced.with_label_values(&[topic]).inc();
    }

    /// Counts one message of `topic` the DLQ refused for good.
    pub fn dead_letter_dropped(&self, topic: &str) {
        self.dropped.with_label_values(&[topic]).inc();
    }

    /// Records one message's processing time and end-to-end latency.
    pub fn timings(&self, topic: &str, processing_seconds: f64, end_to_end_seconds: Option<f64>) {
        self.processing
            .with_label_values(&[topic])
            .observe(processing_seconds);
        if let Some(seconds) = end_to_end_seconds {
            self.end_to_end
                .with_label_values(&[topic])
                .observe(seconds.max(0.0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::Encoder;

    #[test]
    fn every_outcome_is_exported_at_zero_before_the_first_message() {
        let registry = Registry::new();
        let metrics = ConsumerMetrics::register(&registry).expect("register");
        metrics.start_at_zero(&["orders".to_owned()]);
        let mut body = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut body)
            .expect("encode");
        let text = String::from_utf8_lossy(&body);
        for outcome in Counted::ALL {
            let series = format!(
                "kafka_consumer_messages_total{{outcome=\"{}\",topic=\"orders\"}} 0",
                outcome.label()
            );
            assert!(text.contains(&series), "no {series} in:\n{text}");
        }
    }
}
