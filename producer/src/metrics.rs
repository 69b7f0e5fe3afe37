//! The producer's metrics, registered once; handlers only increment.

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
    /// Messages handed to librdkafka and not yet acknowledged.
    pub queue_depth: IntGauge,
}

impl ProducerMetrics {
    /// Registers the metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let messages = IntCounterVec::new(
            Opts::new(
                "kafka_producer_messages_total",
                "Messages published, by topic and outcome",
            ),
            &["topic", "outcome"],
        )?;
        let produce_duration = HistogramVec::new(
            HistogramOpts::new(
                "kafka_producer_produce_duration_seconds",
                "Time from send to the broker's acknowledgement",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["topic"],
        )?;
        let queue_depth = IntGauge::new(
            "kafka_producer_queue_depth",
            "Messages waiting in the producer queue for an acknowledgement",
        )?;
        registry.register(Box::new(messages.clone()))?;
        registry.register(Box::new(produce_duration.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Self {
            messages,
            produce_duration,
            queue_depth,
        })
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
