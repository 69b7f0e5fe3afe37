//! Publishing one event and waiting for the broker's acknowledgement: the
//! idempotent, batching, compressing producer behind every request.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use platform::kafka::{KafkaSettings, ObservedContext};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::events::{WriteAcknowledged, WriteFailed};
use crate::metrics::{Delivery, ProducerMetrics};

/// Where an acknowledged message landed, and how long after
/// `message.timeout.ms` librdkafka may take to report a message timed out:
/// the outbox relay's, shared with every publisher.
pub use store::relay::{Delivered, REPORT_LAG};

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

/// The current producer, its generation (bumped on each rebuild), when it
/// was built and last had a write acknowledged, and the last write the
/// brokers failed (timed out or refused).
struct Current {
    generation: u64,
    producer: FutureProducer<ObservedContext>,
    built: Instant,
    last_ack: Instant,
    last_failure: Option<(Instant, String)>,
}

/// How long a write the brokers failed keeps the service not ready, unless
/// a write is acknowledged since: long enough for a load balancer's probe
/// to see it, short enough that a replica all traffic was taken from is
/// tried again.
pub const FAILED_WRITE_HOLD: Duration = Duration::from_secs(30);

/// The brokers failed the last write and acknowledged none since: a
/// cluster that answers metadata requests may still take no write (two of
/// three replicas down, say), and only a write tells.
#[derive(Debug, thiserror::Error)]
#[error("the last write, {ago:?} ago, failed ({cause}) and none was acknowledged since")]
pub struct LastWriteFailed {
    /// How long ago.
    pub ago: Duration,
    /// Why it failed.
    pub cause: String,
}

/// One long-lived producer shared by every request. An idempotent producer
/// that hits a fatal error (for example fenced after the cluster lost its
/// producer state) cannot be used again, and one whose producer id the
/// brokers no longer know (a cluster rebuilt from scratch) times out every
/// write; either is replaced by a new producer, so the service recovers
/// without a restart.
#[derive(Clone)]
pub struct Publisher {
    current: Arc<RwLock<Current>>,
    settings: KafkaSettings,
    context: ObservedContext,
    metrics: ProducerMetrics,
    timeout: Duration,
}

/// Settings that make `202` mean "stored on every in-sync replica, once".
/// Each one can be overridden by its `KAFKA_*` variable. Public so that
/// benchmarks measure the broker's limit with the service's own settings.
pub fn defaults(timeout: &str) -> [(&'static str, &str); 9] {
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
        let context = ObservedContext::default();
        let producer = create(settings, timeout, &context)?;
        Ok(Self {
            current: Arc::new(RwLock::new(Current {
                generation: 0,
                producer,
                built: Instant::now(),
                last_ack: Instant::now(),
                last_failure: None,
            })),
            settings: settings.clone(),
            context,
            metrics,
            timeout,
        })
    }

    fn producer(&self) -> (u64, FutureProducer<ObservedContext>) {
        let current = match self.current.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        (current.generation, current.producer.clone())
    }

    /// Replaces the producer of `generation` if it failed fatally, or if it
    /// has had no acknowledgement for two write timeouts while the brokers
    /// keep timing out or refusing its writes (at most once per two
    /// timeouts, however many requests saw the failure). Refusals count:
    /// a cluster restarted from its storage may refuse every write of an
    /// idempotent producer whose sequence it lost track of (Tansu answers
    /// UNKNOWN_SERVER_ERROR forever), while a new producer id is accepted.
    fn replace_if_stuck(
        &self,
        generation: u64,
        producer: &FutureProducer<ObservedContext>,
        broker_failed: bool,
    ) {
        let fatal = producer.client().fatal_error();
        if fatal.is_none() && !broker_failed {
            return;
        }
        let Ok(mut current) = self.current.write() else {
            return;
        };
        let patience = self.timeout * 2;
        let stuck = broker_failed
            && current.last_ack.elapsed() > patience
            && current.built.elapsed() > patience;
        if current.generation != generation || (fatal.is_none() && !stuck) {
            return;
        }
        match create(&self.settings, self.timeout, &self.context) {
            Ok(fresh) => {
                match &fatal {
                    Some((code, reason)) => {
                        tracing::warn!(?code, %reason, "producer failed fatally; replaced by a new one")
                    }
                    None => tracing::warn!(
                        "no write acknowledged for {patience:?} (writes timing out or refused); producer replaced by a new one"
                    ),
                }
                self.metrics.replaced(fatal.is_some());
                current.producer = fresh;
                current.generation += 1;
                current.built = Instant::now();
            }
            Err(e) => tracing::error!(error = %e, "cannot replace the producer"),
        }
    }

    fn acknowledged(&self) {
        if let Ok(mut current) = self.current.write() {
            current.last_ack = Instant::now();
            current.last_failure = None;
        }
    }

    fn broker_failed(&self, error: &PublishError) {
        if let Ok(mut current) = self.current.write() {
            current.last_failure = Some((Instant::now(), error.to_string()));
        }
    }

    /// `Err` while the last write the brokers failed is under
    /// [`FAILED_WRITE_HOLD`] old and no write was acknowledged since.
    pub fn writes_succeed(&self) -> Result<(), LastWriteFailed> {
        let current = match self.current.read() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        match &current.last_failure {
            Some((at, cause)) if at.elapsed() < FAILED_WRITE_HOLD => Err(LastWriteFailed {
                ago: at.elapsed(),
                cause: cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// The bound on each write (`PRODUCE_TIMEOUT_MS`).
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What librdkafka last reported on its own, for start-up diagnostics.
    pub fn context(&self) -> &ObservedContext {
        &self.context
    }

    /// Sends one message and waits for its acknowledgement, never longer
    /// than the configured timeout (`PRODUCE_TIMEOUT_MS`).
    pub async fn publish(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivered, PublishError> {
        self.publish_within(topic, key, payload, headers, self.timeout)
            .await
    }

    /// Like [`Publisher::publish`], but waits for librdkafka's own verdict
    /// on the message (delivered, or timed out after `message.timeout.ms`),
    /// up to [`REPORT_LAG`] past the timeout. For the outbox relay: a write
    /// it gave up on at the timeout could still be delivered a moment
    /// later, and the row, published again, would reach the topic twice.
    pub async fn publish_until_verdict(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Delivered, PublishError> {
        self.publish_within(topic, key, payload, headers, self.timeout + REPORT_LAG)
            .await
    }

    async fn publish_within(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        headers: OwnedHeaders,
        wait: Duration,
    ) -> Result<Delivered, PublishError> {
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let started = Instant::now();
        let (generation, producer) = self.producer();
        let delivery = match producer.send_result(record) {
            Ok(delivery) => delivery,
            Err((error, _)) => return Err(self.not_queued(topic, error, generation, &producer)),
        };
        let result = self.acknowledgement(&producer, delivery, wait).await;
        match &result {
            Ok(_) => {
                self.acknowledged();
                WriteAcknowledged {
                    topic,
                    took: started.elapsed(),
                }
                .emit(&self.metrics);
            }
            Err(e) => self.not_acknowledged(topic, e, generation, &producer),
        }
        result
    }

    /// A write librdkafka did not even queue: its local queue is full, or
    /// the producer failed.
    fn not_queued(
        &self,
        topic: &str,
        error: KafkaError,
        generation: u64,
        producer: &FutureProducer<ObservedContext>,
    ) -> PublishError {
        let queue_full = error.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull);
        WriteFailed {
            topic,
            outcome: if queue_full {
                Delivery::Rejected
            } else {
                Delivery::Failed
            },
        }
        .emit(&self.metrics);
        self.replace_if_stuck(generation, producer, false);
        if queue_full {
            PublishError::QueueFull
        } else {
            PublishError::Broker(error)
        }
    }

    /// The broker's answer to a queued write, within `wait`.
    async fn acknowledgement(
        &self,
        producer: &FutureProducer<ObservedContext>,
        delivery: DeliveryFuture,
        wait: Duration,
    ) -> Result<Delivered, PublishError> {
        self.metrics
            .queue_depth
            .set(i64::from(producer.in_flight_count()));
        // librdkafka scans for timed-out messages about once a second, so
        // its own report may come up to a second after message.timeout.ms:
        // a request's bound is this timer, not librdkafka's.
        let outcome = tokio::time::timeout(wait, delivery).await;
        self.metrics
            .queue_depth
            .set(i64::from(producer.in_flight_count()));
        match outcome {
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
        }
    }

    /// Records a queued write the brokers did not acknowledge, and replaces
    /// the producer if that shows it stuck.
    fn not_acknowledged(
        &self,
        topic: &str,
        error: &PublishError,
        generation: u64,
        producer: &FutureProducer<ObservedContext>,
    ) {
        WriteFailed {
            topic,
            outcome: Delivery::Failed,
        }
        .emit(&self.metrics);
        let broker_failed = matches!(error, PublishError::Timeout(_) | PublishError::Broker(_));
        if broker_failed {
            self.broker_failed(error);
        }
        self.replace_if_stuck(generation, producer, broker_failed);
    }

    /// Whether the brokers answer a metadata request for `topic` in time.
    pub async fn ready(&self, topic: &str, timeout: Duration) -> Result<(), KafkaError> {
        let (_, producer) = self.producer();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = producer.client().fetch_metadata(Some(&topic), timeout)?;
            match metadata.topics().first().and_then(|t| t.error()) {
                Some(e) => Err(KafkaError::MetadataFetch(e.into())),
                None => Ok(()),
            }
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }

    /// Waits until every queued message is acknowledged or `timeout` passes.
    pub async fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        let (_, producer) = self.producer();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|_| KafkaError::Canceled)?
    }
}

/// The outbox relay publishes through the same producer as the requests,
/// waiting for librdkafka's verdict on each row.
impl store::relay::Publish for Publisher {
    type Error = PublishError;

    async fn deliver(&self, message: store::relay::Message<'_>) -> Result<Delivered, PublishError> {
        let headers = platform::kafka::owned_headers(message.headers.iter().map(|(k, v)| (k, v)));
        self.publish_until_verdict(message.topic, message.key, message.value, headers)
            .await
    }

    fn verdict_within(&self) -> Duration {
        self.timeout + REPORT_LAG
    }
}

fn create(
    settings: &KafkaSettings,
    timeout: Duration,
    context: &ObservedContext,
) -> Result<FutureProducer<ObservedContext>, KafkaError> {
    let timeout_ms = timeout.as_millis().to_string();
    settings
        .client_config(&defaults(&timeout_ms))
        .create_with_context(context.clone())
}
