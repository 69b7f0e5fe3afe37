//! The outbox relay: publishes the rows of an `outbox` table
//! ([`crate::outbox`]) and deletes them once the broker acknowledged them.
//! One relay for every service that writes an outbox: the producer in
//! outbox mode (its accepted events) and the consumer (the `orders-state`
//! messages of each applied change). Each gives it its database, its
//! publisher (anything that implements [`Publish`]) and the registry its
//! metrics go to.
//!
//! Order per key, with any number of relays: each row's shard is a hash of
//! its key (one of [`SHARDS`]), and a relay publishes a shard's rows only
//! inside a transaction holding that shard's advisory lock, oldest first,
//! and deletes them before the lock goes with the commit. So one relay at
//! a time publishes a key, and the next one starts after every row the
//! previous one published was acknowledged and deleted. A relay killed
//! mid-batch, or cut off from the database, leaves its rows: the server
//! ends its transaction, and with it the shard's lock, within [`deadline`]
//! of its last statement (the sessions' `idle_in_transaction_session_timeout`,
//! [`session_guards`], even when the path to the dead relay still answers
//! the server's keepalives, as a pooler or proxy does). The next holder
//! publishes the rows again, and readers' event-id deduplication makes the
//! copies harmless. Meanwhile other relays count the shard as held
//! (`outbox_shards_held_total`) and the age of its oldest row grows
//! (`outbox_oldest_age_seconds`, alerted on).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use platform::backoff::Doubling;
use platform::metrics::register;
use platform::throttle::LogThrottle;
use platform::{ConfigError, Env};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sqlx::{Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

use crate::db::SessionGuards;
use crate::outbox::{self, Waiting, SHARDS};

/// How long after its own timeout (`message.timeout.ms`) librdkafka may
/// take to report a message timed out: it scans for them about once a
/// second. A publisher of the relay waits this much longer for its verdict.
pub const REPORT_LAG: Duration = Duration::from_millis(1_500);

/// Where an acknowledged message landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Partition of the topic.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
}

/// One row to publish, as the relay hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The key.
    pub key: &'a str,
    /// The headers, in order.
    pub headers: &'a [(String, String)],
    /// The value.
    pub value: &'a [u8],
}

/// What the relay publishes through.
pub trait Publish: Send + Sync + 'static {
    /// Why a message was not acknowledged.
    type Error: std::fmt::Display + Send;

    /// Publishes `message` and returns with the broker's verdict: where it
    /// was stored, or why not. It must not give a message up while it may
    /// still be delivered (a row given up is published again, and would
    /// reach the topic twice), and must answer within [`Publish::verdict_within`].
    /// The relay queues every message of a batch, in id order, before it
    /// awaits any: a publisher keeps that order per partition (an
    /// idempotent Kafka producer does).
    fn deliver(
        &self,
        message: Message<'_>,
    ) -> impl Future<Output = Result<Delivered, Self::Error>> + Send;

    /// The longest [`Publish::deliver`] takes (for librdkafka: its
    /// `message.timeout.ms` plus [`REPORT_LAG`]).
    fn verdict_within(&self) -> Duration;
}

/// Longest a relay's pass over one shard takes when it gets answers: its
/// statements (each within `statement_timeout`, the sessions' statement
/// timeout) and the broker's verdicts (within `verdict_within`, see
/// [`Publish::verdict_within`]). It is also how long the server lets a
/// relay's session sit idle in its transaction, so a dead relay's shard is
/// free again within this of its last statement.
pub fn deadline(statement_timeout: Duration, verdict_within: Duration) -> Duration {
    statement_timeout * 4 + verdict_within + Duration::from_secs(1)
}

/// The session guards of a pool a relay uses: statements bounded by
/// `statement_timeout`, and a transaction may pause for [`deadline`] while
/// the broker answers (nothing else pauses inside one).
pub fn session_guards(statement_timeout: Duration, verdict_within: Duration) -> SessionGuards {
    SessionGuards {
        idle_in_transaction: deadline(statement_timeout, verdict_within),
        ..SessionGuards::for_statements(statement_timeout)
    }
}

/// Runs `work` on a connection of the outbox's `pool` within `deadline`
/// (see [`crate::db::within`]; past it, [`outbox::no_answer`]).
pub async fn within<T>(
    pool: &PgPool,
    deadline: Duration,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, sqlx::Error> {
    crate::db::within(pool, deadline, |e| e, || outbox::no_answer(deadline), work).await
}

/// How the relay works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelaySettings {
    /// `OUTBOX_RELAY_BATCH`: most rows of a shard published per pass.
    pub batch: i64,
    /// `OUTBOX_RELAY_CONCURRENCY`: shards published at once.
    pub concurrency: usize,
    /// `OUTBOX_RELAY_POLL_MS`: wait after a pass that found nothing.
    pub poll: Duration,
}

impl RelaySettings {
    /// `OUTBOX_RELAY_BATCH` (default 500), `OUTBOX_RELAY_CONCURRENCY`
    /// (default 4) and `OUTBOX_RELAY_POLL_MS` (default 50).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            batch: env.number("OUTBOX_RELAY_BATCH", 500, 1..=10_000)?,
            concurrency: env.number("OUTBOX_RELAY_CONCURRENCY", 4, 1..=64)?,
            poll: env.millis("OUTBOX_RELAY_POLL_MS", 50, 1..=60_000)?,
        })
    }
}

/// The relay's metrics.
#[derive(Clone)]
pub struct RelayMetrics {
    depth: IntGauge,
    oldest_age: Gauge,
    relayed: IntCounter,
    held: IntCounter,
    failures: IntCounterVec,
}

impl RelayMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            depth: register(
                registry,
                IntGauge::new("outbox_depth", "Outbox rows waiting to be published")?,
            )?,
            oldest_age: register(
                registry,
                Gauge::new(
                    "outbox_oldest_age_seconds",
                    "Age of the oldest outbox row waiting (0 when empty)",
                )?,
            )?,
            relayed: register(
                registry,
                IntCounter::new(
                    "outbox_relayed_total",
                    "Outbox rows published, acknowledged and deleted",
                )?,
            )?,
            held: register(
                registry,
                IntCounter::new(
                    "outbox_shards_held_total",
                    "Relay passes that skipped a shard because another session held its lock \
                     (another replica relaying it, or a dead relay's session the database has \
                     not ended yet)",
                )?,
            )?,
            failures: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "outbox_publish_failures_total",
                        "Outbox rows the broker did not acknowledge (left to publish again), \
                         and relay passes the database failed, by kind",
                    ),
                    &["kind"],
                )?,
            )?,
        })
    }
}

/// The headers of a row, as written: a JSON array of `[name, value]`
/// pairs; and how many entries were not such a pair (or 1 when the column
/// is not an array), which the relay passes over but reports.
fn header_pairs(headers: &serde_json::Value) -> (Vec<(String, String)>, usize) {
    let Some(entries) = headers.as_array() else {
        return (Vec::new(), 1);
    };
    let pairs: Vec<_> = entries
        .iter()
        .filter_map(|p| match p.as_array()?.as_slice() {
            [name, value] => Some((name.as_str()?.to_owned(), value.as_str()?.to_owned())),
            _ => None,
        })
        .collect();
    let junk = entries.len() - pairs.len();
    (pairs, junk)
}

/// The relay of one replica over the outbox of one database.
pub struct Relay<P> {
    pool: PgPool,
    topics: Vec<String>,
    statement_timeout: Duration,
    publisher: P,
    settings: RelaySettings,
    metrics: RelayMetrics,
    warnings: LogThrottle,
}

/// What one round over every shard did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Round {
    /// Rows published, acknowledged and deleted.
    relayed: usize,
    /// Whether the database failed a pass.
    failed: bool,
}

impl<P: Publish> Relay<P> {
    /// A relay publishing the rows of the outbox of `pool` for `topics`
    /// through `publisher` (rows for other topics are another service's,
    /// when services share a database). The pool's statement timeout is
    /// `statement_timeout`, and its sessions may idle in a transaction for
    /// [`Relay::deadline`] (see [`session_guards`]).
    pub fn new(
        pool: PgPool,
        topics: Vec<String>,
        statement_timeout: Duration,
        publisher: P,
        settings: RelaySettings,
        metrics: RelayMetrics,
    ) -> Self {
        Self {
            pool,
            topics,
            statement_timeout,
            publisher,
            settings,
            metrics,
            warnings: LogThrottle::default(),
        }
    }

    /// The bound on one pass over a shard ([`deadline`]).
    pub fn deadline(&self) -> Duration {
        deadline(self.statement_timeout, self.publisher.verdict_within())
    }

    /// Relays until `stop`; then finishes the shards it is publishing.
    pub async fn run(self, stop: CancellationToken) {
        let relay = Arc::new(self);
        let gauges = tokio::spawn(Arc::clone(&relay).watch_backlog(stop.clone()));
        let mut start: i32 = rand_start();
        // After a failed round, 200 ms, doubling up to 5 s.
        let mut database_wait = Doubling::new(Duration::from_millis(200), Duration::from_secs(5));
        while !stop.is_cancelled() {
            let round = Arc::clone(&relay).round(start).await;
            start = (start + 1) % SHARDS;
            let wait = if round.failed {
                database_wait.take()
            } else {
                database_wait.reset();
                if round.relayed == 0 {
                    relay.settings.poll
                } else {
                    Duration::ZERO
                }
            };
            if !wait.is_zero() {
                tokio::select! {
                    () = stop.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
        let _ = gauges.await;
        tracing::info!("outbox relay stopped");
    }

    /// One pass over every shard, from `start`, `concurrency` at a time.
    async fn round(self: Arc<Self>, start: i32) -> Round {
        let order = (0..SHARDS).map(|i| (start + i) % SHARDS);
        let mut passes = futures::stream::iter(order)
            .map(|shard| {
                let relay = Arc::clone(&self);
                async move { relay.relay_shard(shard).await }
            })
            .buffer_unordered(self.settings.concurrency);
        let mut round = Round::default();
        while let Some(pass) = passes.next().await {
            match pass {
                Ok(n) => round.relayed += n,
                Err(e) => {
                    if let Some(held_back) = self.warnings.admit("database", Instant::now()) {
                        tracing::warn!(error = %e, held_back, "outbox relay: database failed; retrying");
                    }
                    self.metrics.failures.with_label_values(&["database"]).inc();
                    round.failed = true;
                }
            }
        }
        round
    }

    /// Publishes up to a batch of `shard`'s rows if no other relay holds
    /// it; returns how many were acknowledged and deleted.
    async fn relay_shard(&self, shard: i32) -> Result<usize, sqlx::Error> {
        within(&self.pool, self.deadline(), async |conn| {
            self.publish_shard(conn, shard).await
        })
        .await
    }

    /// Inside one transaction holding `shard`'s lock: reads a batch,
    /// publishes it and deletes what the broker acknowledged, before the
    /// lock goes with the commit.
    async fn publish_shard(
        &self,
        conn: &mut PgConnection,
        shard: i32,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = conn.begin().await?;
        if !outbox::try_lock_shard(&mut tx, shard).await? {
            tx.rollback().await?;
            self.metrics.held.inc();
            return Ok(0);
        }
        let rows = outbox::waiting(&mut tx, shard, &self.topics, self.settings.batch).await?;
        let done = self.publish(&rows).await;
        if done.is_empty() {
            // Nothing read, or nothing acknowledged: nothing to delete
            // (and no table lock to wait for).
            tx.rollback().await?;
            return Ok(0);
        }
        outbox::delete(&mut tx, &done).await?;
        tx.commit().await?;
        self.metrics.relayed.inc_by(done.len() as u64);
        Ok(done.len())
    }

    /// Publishes `rows`; returns the ids the broker acknowledged. Every
    /// send is queued, in id order, before any acknowledgement is awaited:
    /// the idempotent producer keeps that order per partition.
    async fn publish(&self, rows: &[Waiting]) -> Vec<i64> {
        let sends: FuturesUnordered<_> = rows
            .iter()
            .map(|row| async move {
                let (headers, junk) = header_pairs(&row.headers);
                if junk > 0 {
                    // Only this crate writes the column: a row edited by
                    // hand, or a defect. Its valid headers still go out.
                    self.metrics
                        .failures
                        .with_label_values(&["malformed_headers"])
                        .inc();
                    tracing::error!(id = row.id, junk, "outbox row with malformed headers");
                }
                let result = self
                    .publisher
                    .deliver(Message {
                        topic: &row.topic,
                        key: &row.key,
                        headers: &headers,
                        value: &row.value,
                    })
                    .await;
                (row.id, result)
            })
            .collect();
        let results: Vec<_> = sends.collect().await;
        let mut acknowledged = Vec::with_capacity(results.len());
        let mut failed = 0u64;
        for (id, result) in results {
            match result {
                Ok(_) => acknowledged.push(id),
                Err(e) => {
                    failed += 1;
                    if let Some(held_back) = self.warnings.admit("publish", Instant::now()) {
                        tracing::warn!(error = %e, held_back, "outbox relay: a row was not acknowledged; it stays to publish again");
                    }
                }
            }
        }
        if failed > 0 {
            self.metrics
                .failures
                .with_label_values(&["publish"])
                .inc_by(failed);
        }
        acknowledged
    }

    /// Keeps the depth and age gauges current, every second.
    async fn watch_backlog(self: Arc<Self>, stop: CancellationToken) {
        let warnings = LogThrottle::new(Duration::from_secs(30));
        while !stop.is_cancelled() {
            match outbox::backlog_of(&self.pool, Some(&self.topics), self.statement_timeout).await {
                Ok((depth, age)) => {
                    self.metrics.depth.set(depth);
                    self.metrics.oldest_age.set(age);
                }
                Err(e) => {
                    if let Some(held_back) = warnings.admit("backlog", Instant::now()) {
                        tracing::warn!(error = %e, held_back, "outbox backlog unknown");
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Where a relay starts its round, so that replicas start apart.
fn rand_start() -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    i32::try_from(nanos % SHARDS.unsigned_abs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_come_back_in_order_and_junk_is_counted() {
        let stored = serde_json::json!([
            ["content-type", "application/json"],
            ["a", "b"],
            [1, 2],
            "x"
        ]);
        assert_eq!(
            header_pairs(&stored),
            (
                vec![
                    ("content-type".to_owned(), "application/json".to_owned()),
                    ("a".to_owned(), "b".to_owned())
                ],
                2
            )
        );
        assert_eq!(header_pairs(&serde_json::json!([["a", "b", "c"]])).1, 1);
        assert_eq!(header_pairs(&serde_json::json!({})), (Vec::new(), 1));
        assert_eq!(header_pairs(&serde_json::json!([])), (Vec::new(), 0));
    }

    #[test]
    fn a_dead_relays_shard_is_free_within_its_statements_and_the_brokers_verdict() {
        let verdict = Duration::from_millis(3000) + REPORT_LAG;
        let guards = session_guards(Duration::from_millis(1500), verdict);
        assert_eq!(guards.statement, Duration::from_millis(1500));
        assert_eq!(guards.idle_in_transaction, Duration::from_millis(11_500));
        assert_eq!(
            guards.idle_in_transaction,
            deadline(Duration::from_millis(1500), verdict)
        );
    }

    #[test]
    fn relay_settings_default_and_name_their_variable() {
        let defaults = RelaySettings::from_env(&Env::default()).expect("defaults");
        assert_eq!(
            defaults,
            RelaySettings {
                batch: 500,
                concurrency: 4,
                poll: Duration::from_millis(50),
            }
        );
        for (var, value) in [
            ("OUTBOX_RELAY_BATCH", "0"),
            ("OUTBOX_RELAY_CONCURRENCY", "65"),
            ("OUTBOX_RELAY_POLL_MS", "soon"),
        ] {
            let err = RelaySettings::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }
}
