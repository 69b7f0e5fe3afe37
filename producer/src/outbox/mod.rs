//! Outbox mode (`PRODUCER_MODE=outbox`): an accepted event is a row of the
//! `outbox` table, committed before `202`, and a relay in every replica
//! publishes the rows with the idempotent producer and deletes them once
//! the broker acknowledged them. A broker outage no longer refuses orders;
//! a database outage does (`503`).
//!
//! Order per key, with any number of relays: each row's shard is a hash of
//! its key (one of [`store::outbox::SHARDS`]), and a relay publishes a shard's rows only
//! inside a transaction holding that shard's advisory lock, oldest first,
//! and deletes them before the lock goes with the commit. So one relay at
//! a time publishes a key, and the next one starts after every row the
//! previous one published was acknowledged and deleted. A relay killed
//! mid-batch, or cut off from the database, leaves its rows: the server
//! ends its transaction, and with it the shard's lock, within
//! [`relay_deadline`] of its last statement (the session's
//! `idle_in_transaction_session_timeout`, even when the path to the dead
//! relay still answers the server's keepalives, as a pooler or proxy
//! does). The next holder publishes the rows again, and the consumer's
//! event-id deduplication makes the copies harmless. Meanwhile other relays
//! count the shard as held (`outbox_shards_held_total`) and the age of its
//! oldest row grows (`outbox_oldest_age_seconds`, alerted on).

mod metrics;
mod relay;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use store::db::{PoolSpec, SessionGuards};
use tokio::sync::{mpsc, oneshot};

use crate::record::Record;

pub use metrics::OutboxMetrics;
pub use relay::{Relay, RelaySettings};

/// Longest a relay's pass over one shard takes when it gets answers: its
/// statements (each within `write_timeout`, the sessions' statement
/// timeout) and the broker's acknowledgements (librdkafka's verdict,
/// within `produce_timeout` and [`crate::publish::REPORT_LAG`]). It is
/// also how long the server lets a relay's session sit idle in its
/// transaction, so a dead relay's shard is free again within this of its
/// last statement.
pub fn relay_deadline(write_timeout: Duration, produce_timeout: Duration) -> Duration {
    write_timeout * 4 + produce_timeout + crate::publish::REPORT_LAG + Duration::from_secs(1)
}

/// Runs `work` on a connection of `pool` within `deadline` (see
/// [`store::db::within`]).
async fn within<T>(
    pool: &PgPool,
    deadline: Duration,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    store::db::within(
        pool,
        deadline,
        |e| e,
        || store::outbox::no_answer(deadline),
        work,
    )
    .await
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

    /// Creates the table if it is missing (see [`store::outbox::prepare`]).
    pub async fn prepare(&self) -> Result<(), sqlx::migrate::MigrateError> {
        store::outbox::prepare(&self.pool).await
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
