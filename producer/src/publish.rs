//! Publishing one event and waiting for the broker's acknowledgement: the
//! idempotent, batching, compressing producer behind every request.

use std::time::{Duration, Instant};

use platform::kafka::{KafkaSettings, ObservedContext};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics::{Outcome, ProducerMetrics};

/// Why a write was not acknowledged. Each one answers 503 with `Retry-After`.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// librdkafka's local queue is full: the broker is slower than intake.
    #[error("producer queue is full")]
    QueueFull,
    /// No acknowledgement within the configured bound (broker down or slow).
    #[error("no acknowledgement from the broker within {0:?}")]
    Timeout(Duration),
    /// The broker refused the write.
    #[error("broker refused the write: {0}")]
    Broker(KafkaError),
}

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition of the topic.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// One long-lived producer shared by every request.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer<ObservedContext>,
    context: ObservedContext,
    metrics: ProducerMetrics,
    timeout: Duration,
}

/// Settings that make `202` mean "stored on every in-sync replica, once".
/// Each one can be overridden by its `KAFKA_*` variable.
fn defaults(timeout: &str) -> [(&'static str, &str); 9] {
    [
        ("client.id", "pubsubkafka-producer"),
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("linger.ms", "5"),
        ("batch.size", "1000000"),
        ("compression.type", "lz4"),
        ("message.timeout.ms", timeout),
        ("queue.buffering.max.messages", "100000"),
        ("queue.buffering.max.kbytes", "65536"),
    ]
}

impl Publisher {
    /// Creates the producer; `timeout` bounds each write (`message.timeout.ms`).
    pub fn new(
        settings: &KafkaSettings,
        timeout: Duration,
        metrics: ProducerMetrics,
    ) -> Result<Self, KafkaError> {
        let timeout_ms = timeout.as_millis().to_string();
        let context = ObservedContext::default();
        let producer = settings
            .client_config(&defaults(&timeout_ms))
            .create_with_context(context.clone())?;
        Ok(Self {
            producer,
            context,
            metrics,
            timeout,
        })
    }

    /// What librdkafka last reported on its own, for start-up diagnostics.
    pub fn context(&self) -> &ObservedContext {
        &self.context
    }

    /// Sends one message and waits for its acknowledgement, never longer
    /// than the configured timeout (plus a second of slack for librdkafka's
    /// own timer to fire first).
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivered, PublishError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let started = Instant::now();
        let delivery = match self.producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((error, _)) => {
                let queue_full = error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull);
                self.metrics.message(
                    topic,
                    if queue_full {
                        Outcome::Rejected
                    } else {
                        Outcome::Failed
                    },
                );
                return Err(if queue_full {
                    PublishError::QueueFull
                } else {
                    PublishError::Broker(error)
                });
            }
        };
        self.metrics
            .queue_depth
            .set(i64::from(self.producer.in_flight_count()));
        let outcome = tokio::time::timeout(self.timeout + Duration::from_secs(1), delivery).await;
        self.metrics
            .queue_depth
            .set(i64::from(self.producer.in_flight_count()));
        let result = match outcome {
            Err(_) => Err(PublishError::Timeout(self.timeout)),
            Ok(Err(_canceled)) => Err(PublishError::Broker(KafkaError::Canceled)),
            Ok(Ok(Err((error, _)))) => Err(
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                    PublishError::Timeout(self.timeout)
                } else {
                    PublishError::Broker(error)
                },
            ),
            Ok(Ok(Ok(delivery))) => Ok(Delivered {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
        };
        match &result {
            Ok(_) => {
                self.metrics.message(topic, Outcome::Acked);
                self.metrics
                    .produce_seconds(topic, started.elapsed().as_secs_f64());
            }
            Err(_) => self.metrics.message(topic, Outcome::Failed),
        }
        result
    }

    /// Whether the brokers answer a metadata request for `topic` in time.
    pub async fn ready(&self, topic: &str, timeout: Duration) -> Result<(), String> {
        let producer = self.producer.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), timeout)
                .map_err(|e| format!("Kafka metadata unavailable: {e}"))
                .and_then(|m| match m.topics().first().and_then(|t| t.error()) {
                    Some(e) => Err(format!("topic {topic}: {e:?}")),
                    None => Ok(()),
                })
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits until every queued message is acknowledged or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }
}
