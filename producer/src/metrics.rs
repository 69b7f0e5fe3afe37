//! The producer's metrics, registered once; handlers only increment.

use platform::metrics::{register, LATENCY_BUCKETS};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

/// Outcome label of `kafka_producer_messages_total`.
#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// The broker acknowledged the write.
    Acked,
    /// The write failed or timed out.
    Failed,
    /// The local queue was full; nothing was sent.
    Rejected,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Acked => "acked",
            Outcome::Failed => "failed",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Every metric of the producer.
#[derive(Clone)]
pub struct ProducerMetrics {
    messages: IntCounterVec,
    produce_duration: HistogramVec,
    replaced: IntCounterVec,
    /// Messages handed to librdkafka and not yet acknowledged.
    pub queue_depth: IntGauge,
}

impl ProducerMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            messages: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_producer_messages_total",
                        "Messages published, by topic and outcome",
                    ),
                    &["topic", "outcome"],
                )?,
            )?,
            produce_duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "kafka_producer_produce_duration_seconds",
                        "Time from send to the broker's acknowledgement",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["topic"],
                )?,
            )?,
            replaced: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "kafka_producer_replaced_total",
                        "Producers replaced by a new one, by reason (fatal: a fatal \
                         idempotence error; stuck: no write acknowledged for two timeouts)",
                    ),
                    &["reason"],
                )?,
            )?,
            queue_depth: register(
                registry,
                IntGauge::new(
                    "kafka_producer_queue_depth",
                    "Messages waiting in the producer queue for an acknowledgement",
                )?,
            )?,
        })
    }

    /// Counts one replacement of the producer.
    pub fn replaced(&self, fatal: bool) {
        self.replaced
            .with_label_values(&[if fatal { "fatal" } else { "stuck" }])
            .inc();
    }

    /// Counts one message of `topic`.
    pub fn message(&self, topic: &str, outcome: Outcome) {
        self.messages
            .with_label_values(&[topic, outcome.label()])
            .inc();
    }

    /// Records the time one acknowledged write took.
    pub fn produce_seconds(&self, topic: &str, seconds: f64) {
        self.produce_duration
            .with_label_values(&[topic])
            .observe(seconds);
    }
}
