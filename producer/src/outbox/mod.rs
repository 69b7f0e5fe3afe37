//! Outbox mode (`PRODUCER_MODE=outbox`): an accepted event is a row of the
//! `outbox` table, committed before `202`, and a relay in every replica
//! ([`store::relay`], which says how order per key and a dead relay's rows
//! are taken care of) publishes the rows with the idempotent producer and
//! deletes them once the broker acknowledged them. A broker outage no
//! longer refuses orders; a database outage does (`503`).

mod metrics;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use store::db::{PoolSpec, SessionGuards};
use store::relay::within;
use tokio::sync::{mpsc, oneshot};

use crate::publish::Publisher;
use crate::record::Record;

pub use metrics::OutboxMetrics;
pub use store::relay::{Relay, RelaySettings};

/// Longest a relay's pass over one shard takes when it gets answers (see
/// [`store::relay::deadline`]): its statements, each within
/// `write_timeout`, and librdkafka's verdicts, within `produce_timeout`
/// and [`crate::publish::REPORT_LAG`]. It is also how long the server lets
/// a relay's session sit idle in its transaction, so a dead relay's shard
/// is free again within this of its last statement.
pub fn relay_deadline(write_timeout: Duration, produce_timeout: Duration) -> Duration {
    store::relay::deadline(write_timeout, produce_timeout + crate::publish::REPORT_LAG)
}

/// The outbox could not take a request's events.
#[derive(Debug, thiserror::Error)]
pub enum OutboxUnavailable {
    /// Their transaction failed.
    #[error("outbox database unavailable: {0}")]
    Database(#[source] Arc<sqlx::Error>),
    /// It did not commit within the write timeout.
    #[error("outbox database unavailable: no commit within {0:?}")]
    NoCommit(Duration),
    /// The writers are gone (the service is stopping).
    #[error("outbox database unavailable: the outbox writers stopped")]
    WritersStopped,
}

/// The outbox table: where requests write.
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    timeout: Duration,
    metrics: OutboxMetrics,
    jobs: mpsc::Sender<writer::Job>,
}

impl Outbox {
    /// A lazily connecting pool to `url` of `size` connections; every write
    /// is bounded by `timeout` (then `503`). The server ends a session idle
    /// in a transaction for `relay_pause` (see [`relay_deadline`]): a relay's
    /// transaction pauses while the broker acknowledges its batch, and
    /// nothing else pauses inside one.
    pub fn new(
        url: &str,
        size: u32,
        timeout: Duration,
        relay_pause: Duration,
        metrics: OutboxMetrics,
    ) -> Result<Self, sqlx::Error> {
        let pool = store::db::pool(
            url,
            PoolSpec {
                application: "pubsubkafka-producer",
                max_connections: size,
                acquire: timeout,
                guards: SessionGuards {
                    idle_in_transaction: relay_pause,
                    ..SessionGuards::for_statements(timeout)
                },
            },
        )?;
        let (jobs, queue) = mpsc::channel(writer::MAX_GROUP_ROWS * writer::WRITERS);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..writer::WRITERS {
            tokio::spawn(writer::write_groups(
                pool.clone(),
                timeout,
                Arc::clone(&queue),
            ));
        }
        Ok(Self {
            pool,
            timeout,
            metrics,
            jobs,
        })
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The metrics.
    pub fn metrics(&self) -> &OutboxMetrics {
        &self.metrics
    }

    /// The relay of this outbox's rows for `topics`, publishing through
    /// `publisher`.
    pub fn relay(
        &self,
        topics: Vec<String>,
        publisher: Publisher,
        settings: RelaySettings,
    ) -> Relay<Publisher> {
        Relay::new(
            self.pool.clone(),
            topics,
            self.timeout,
            publisher,
            settings,
            self.metrics.relay().clone(),
        )
    }

    /// Creates the table if it is missing (see [`store::outbox::prepare`]).
    pub async fn prepare(&self) -> Result<(), sqlx::migrate::MigrateError> {
        store::outbox::prepare(&self.pool).await
    }

    /// Checks, reading only, that the table's migrations are applied (see
    /// [`store::schema::check_outbox`]).
    pub async fn check(&self) -> Result<(), store::schema::SchemaError> {
        store::schema::check_outbox(&self.pool).await
    }

    /// Writes `entries` in one transaction (with other requests' rows):
    /// all or none, within the write timeout.
    pub async fn write(&self, entries: &[Record<'_>]) -> Result<(), OutboxUnavailable> {
        let (done, committed) = oneshot::channel();
        let job = writer::Job {
            rows: entries.iter().map(writer::Row::from).collect(),
            done,
        };
        let queued_and_committed = async {
            self.jobs
                .send(job)
                .await
                .map_err(|_| OutboxUnavailable::WritersStopped)?;
            committed
                .await
                .map_err(|_| OutboxUnavailable::WritersStopped)?
                .map_err(OutboxUnavailable::Database)
        };
        let outcome = tokio::time::timeout(self.timeout, queued_and_committed)
            .await
            .unwrap_or(Err(OutboxUnavailable::NoCommit(self.timeout)));
        let label = if outcome.is_ok() { "written" } else { "failed" };
        self.metrics
            .written
            .with_label_values(&[label])
            .inc_by(entries.len() as u64);
        outcome
    }

    /// Whether the table answers.
    pub async fn ready(&self) -> Result<(), sqlx::Error> {
        within(&self.pool, self.timeout, store::outbox::probe).await
    }

    /// Rows waiting and the oldest one's age, seconds.
    pub async fn backlog(&self) -> Result<(i64, f64), sqlx::Error> {
        store::outbox::backlog(&self.pool, self.timeout).await
    }
}
