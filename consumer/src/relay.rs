//! The consumer's outbox: each applied order change leaves its
//! `orders-state` message in the `outbox` table of the consumer's own
//! database, in the change's transaction, and the outbox relay
//! ([`store::relay`], the one the producer runs in outbox mode) publishes
//! it, in id order per key, through the idempotent, `acks=all` producer
//! here, and deletes it once the broker acknowledged it.

use std::sync::RwLock;
use std::time::Duration;

use platform::kafka::{KafkaSettings, ObservedContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use store::relay::{Delivered, Message, Publish, REPORT_LAG};

/// The bound on each message the relay publishes (`message.timeout.ms`),
/// as for dead letters.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Client id of the relay's producer.
const CLIENT_ID: &str = "pubsubkafka-consumer-relay";

/// The relay's producer, and how many times it was replaced.
struct Current {
    generation: u64,
    producer: FutureProducer<ObservedContext>,
}

/// The producer the relay publishes through: idempotent, `acks=all`, its
/// settings overridable by the `KAFKA_*` variables like every client of
/// the consumer. One that failed fatally (an idempotent producer the
/// cluster lost track of, say) cannot send again, and is replaced by a
/// new one, so the relay recovers without a restart.
pub struct StatePublisher {
    current: RwLock<Current>,
    settings: KafkaSettings,
    timeout: Duration,
}

impl StatePublisher {
    /// A producer of `settings` whose every message is bounded by `timeout`.
    pub fn new(settings: &KafkaSettings, timeout: Duration) -> Result<Self, KafkaError> {
        Ok(Self {
            current: RwLock::new(Current {
                generation: 0,
                producer: create(settings, timeout)?,
            }),
            settings: settings.clone(),
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

    /// Replaces the producer of `generation` if it failed fatally (once,
    /// however many sends saw it).
    fn replace_if_fatal(&self, generation: u64, producer: &FutureProducer<ObservedContext>) {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return;
        };
        let Ok(mut current) = self.current.write() else {
            return;
        };
        if current.generation != generation {
            return;
        }
        match create(&self.settings, self.timeout) {
            Ok(fresh) => {
                tracing::warn!(?code, %reason, "outbox relay's producer failed fatally; replaced by a new one");
                current.producer = fresh;
                current.generation += 1;
            }
            Err(e) => tracing::error!(error = %e, "cannot replace the outbox relay's producer"),
        }
    }
}

impl Publish for StatePublisher {
    type Error = KafkaError;

    async fn deliver(&self, message: Message<'_>) -> Result<Delivered, KafkaError> {
        let (generation, producer) = self.producer();
        let record = FutureRecord::to(message.topic)
            .key(message.key)
            .payload(message.value)
            .headers(platform::kafka::owned_headers(
                message.headers.iter().map(|(k, v)| (k, v)),
            ));
        let verdict = match producer.send_result(record) {
            Err((error, _)) => Err(error),
            // librdkafka's own verdict comes within message.timeout.ms and
            // its scan for timed-out messages; the timer only guards
            // against a report that never comes.
            Ok(delivery) => match tokio::time::timeout(self.verdict_within(), delivery).await {
                Err(_) => Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageTimedOut,
                )),
                Ok(Err(_canceled)) => Err(KafkaError::Canceled),
                Ok(Ok(Err((error, _)))) => Err(error),
                Ok(Ok(Ok(stored))) => Ok(Delivered {
                    partition: stored.partition,
                    offset: stored.offset,
                }),
            },
        };
        if verdict.is_err() {
            self.replace_if_fatal(generation, &producer);
        }
        verdict
    }

    fn verdict_within(&self) -> Duration {
        self.timeout + REPORT_LAG
    }
}

fn create(
    settings: &KafkaSettings,
    timeout: Duration,
) -> Result<FutureProducer<ObservedContext>, KafkaError> {
    let timeout_ms = timeout.as_millis().to_string();
    settings
        .client_config(&[
            ("client.id", CLIENT_ID),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("compression.type", "lz4"),
            ("message.timeout.ms", &timeout_ms),
        ])
        .create_with_context(ObservedContext::default())
}
