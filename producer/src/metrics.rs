//! The producer's metrics, registered once; handlers only increment.

use platform::metrics::{register, LATENCY_BUCKETS};
use std::sync::Arc;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// What became of a message: the `outcome` label of `kafka_producer_messages_total`.
#[derive(Debug, Clone, Copy)]
pub enum Delivery {
    /// The broker acknowledged the write.
    Acked,
    /// The write failed or timed out.
    Failed,
    /// The local queue was full; nothing was sent.
    Rejected,
}

impl Delivery {
    fn label(self) -> &'static str {
        match self {
            Delivery::Acked => "acked",
            Delivery::Failed => "failed",
            Delivery::Rejected => "rejected",
        }
    }
}

/// The series every acknowledged write of one topic touches, looked up
/// once: a label lookup hashes its values and takes a lock, on every
/// request otherwise.
struct TopicSeries {
    topic: String,
    acked: IntCounter,
    seconds: Histogram,
}

/// Every metric of the producer.
#[derive(Clone)]
pub struct ProducerMetrics {
    messages: IntCounterVec,
    produce_duration: HistogramVec,
    hot: Arc<[TopicSeries]>,
    replaced: IntCounterVec,
    /// Messages handed to librdkafka and not yet acknowledged.
    pub queue_depth: IntGauge,
}

impl ProducerMetrics {
    /// Registers the metrics in `registry`, with the series of `topics`
    /// (the ones written to) ready.
    pub fn register(registry: &Registry, topics: &[&str]) -> Result<Self, prometheus::Error> {
        let messages = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "kafka_producer_messages_total",
                    "Messages published, by topic and outcome",
                ),
                &["topic", "outcome"],
            )?,
        )?;
        let produce_duration = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "kafka_producer_produce_duration_seconds",
                    "Time from send to the broker's acknowledgement",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["topic"],
            )?,
        )?;
        let hot = topics
            .iter()
            .map(|topic| TopicSeries {
                topic: (*topic).to_owned(),
                acked: messages.with_label_values(&[topic, Delivery::Acked.label()]),
                seconds: produce_duration.with_label_values(&[topic]),
            })
            .collect();
        Ok(Self {
            messages,
            produce_duration,
            hot,
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

    fn hot(&self, topic: &str) -> Option<&TopicSeries> {
        self.hot.iter().find(|s| s.topic == topic)
    }

    /// Counts one message of `topic`.
    pub fn message(&self, topic: &str, outcome: Delivery) {
        match (outcome, self.hot(topic)) {
            (Delivery::Acked, Some(series)) => series.acked.inc(),
            _ => self
                .messages
                .with_label_values(&[topic, outcome.label()])
                .inc(),
        }
    }

    /// Records the time one acknowledged write took.
    pub fn produce_seconds(&self, topic: &str, seconds: f64) {
        match self.hot(topic) {
            Some(series) => series.seconds.observe(seconds),
            None => self
                .produce_duration
                .with_label_values(&[topic])
                .observe(seconds),
        }
    }
}
