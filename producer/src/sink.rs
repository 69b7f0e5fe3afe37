//! Where accepted events go, chosen once at start-up: straight to the
//! broker (direct mode), or into the outbox table that the relay publishes
//! from (outbox mode). The handlers and the readiness probe ask the sink;
//! neither tests the mode again.

use std::time::Duration;

use platform::http::{NotReady, Readiness};

use crate::error::ApiError;
use crate::outbox::Outbox;
use crate::publish::{Delivered, Publisher};
use crate::record::Record;

/// The destination of accepted events.
#[derive(Clone)]
pub enum Sink {
    /// Published at once; `202` after the broker's acknowledgement.
    Broker {
        /// The one producer.
        publisher: Publisher,
        /// The topic whose metadata answers the readiness probe.
        probe_topic: String,
    },
    /// Written to the outbox table; `202` after its commit.
    Outbox(Outbox),
}

impl Sink {
    /// Stores `records`: in the outbox (one transaction), or published,
    /// each awaited. Each record's broker position when published (`None`
    /// in the outbox). The outer error is the outbox's (all or none); the
    /// broker answers for each record.
    pub async fn store(
        &self,
        records: &[Record<'_>],
    ) -> Result<Vec<Result<Option<Delivered>, ApiError>>, ApiError> {
        match self {
            Sink::Outbox(outbox) => {
                outbox.write(records).await?;
                Ok(records.iter().map(|_| Ok(None)).collect())
            }
            // Every send is queued before any acknowledgement is awaited,
            // so the producer batches them as it batches concurrent
            // requests.
            Sink::Broker { publisher, .. } => Ok(futures::future::join_all(
                records.iter().map(|record| publish(publisher, record)),
            )
            .await
            .into_iter()
            .map(|r| r.map(Some))
            .collect()),
        }
    }
}

/// Publishes `record` and waits for the broker's acknowledgement.
async fn publish(publisher: &Publisher, record: &Record<'_>) -> Result<Delivered, ApiError> {
    let delivered = publisher
        .publish(
            record.topic,
            &record.key,
            &record.value,
            platform::kafka::owned_headers(record.all_headers()),
        )
        .await?;
    // Debug: a line per request would cost more than the request's own
    // work at high rates; metrics count every outcome.
    tracing::debug!(
        target: platform::telemetry::PRODUCER_REQUESTS,
        topic = record.topic,
        partition = delivered.partition,
        offset = delivered.offset,
        "event published"
    );
    Ok(delivered)
}

/// Direct mode: ready while the brokers answer a metadata request for the
/// probe topic and have not failed the last write (see
/// [`crate::publish::FAILED_WRITE_HOLD`]). Outbox mode: ready while the
/// outbox table answers (a broker outage must not take the replicas out of
/// service: that is what the mode is for).
impl Readiness for Sink {
    async fn check(&self) -> Result<(), NotReady> {
        match self {
            Sink::Broker {
                publisher,
                probe_topic,
            } => {
                publisher
                    .writes_succeed()
                    .map_err(|e| NotReady::new("brokers", e))?;
                publisher
                    .ready(probe_topic, Duration::from_secs(2))
                    .await
                    .map_err(|e| NotReady::new("brokers", e))
            }
            Sink::Outbox(outbox) => outbox
                .ready()
                .await
                .map_err(|e| NotReady::new("outbox database", e)),
        }
    }
}
