//! Outbox mode (`PRODUCER_MODE=outbox`): an accepted event is a row of the
//! `outbox` table, committed before `202`, and a relay in every replica
//! publishes the rows with the idempotent producer and deletes them once
//! the broker acknowledged them. A broker outage no longer refuses orders;
//! a database outage does (`503`).
//!
//! Order per key, with any number of relays: each row's shard is a hash of
//! its key (one of [`SHARDS`]), and a relay publishes a shard's rows only
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

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use sqlx::{Connection, PgConnection, PgPool};
use store::db::{PoolSpec, SessionGuards};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use platform::metrics::register;

use crate::publish::Publisher;

/// Shards of the outbox: how many relays can publish at once. Fixed: a
/// key's shard must not change while it has rows waiting.
pub const SHARDS: i32 = 32;

/// The advisory-lock class of outbox shards (`pg_try_advisory_xact_lock(class, shard)`).
pub const LOCK_CLASS: i32 = 0x0b0c;

/// Longest a relay's pass over one shard takes when it gets answers: its
/// statements (each within `write_timeout`, the sessions' statement
/// timeout) and the broker's acknowledgements (within `produce_timeout`).
/// It is also how long the server lets a relay's session sit idle in its
/// transaction, so a dead relay's shard is free again within this of its
/// last statement.
pub fn relay_deadline(write_timeout: Duration, produce_timeout: Duration) -> Duration {
    write_timeout * 4 + produce_timeout + Duration::from_secs(1)
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

/// The shard of `key`: FNV-1a, stable across builds and machines.
pub fn shard_of(key: &str) -> i32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // SHARDS is positive and small: the remainder fits.
    i32::try_from(hash % SHARDS.unsigned_abs() as u64).unwrap_or(0)
}

/// The outbox could not take a request's events.
#[derive(Debug, thiserror::Error)]
#[error("outbox database unavailable: {0}")]
pub struct OutboxUnavailable(pub String);

/// One event to write.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its key.
    pub key: String,
    /// Its envelope headers, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The request's trace-context headers, after them (shared by every
    /// event of a request, not copied into each).
    pub trace: &'a [(&'static str, String)],
    /// Its encoded value.
    pub value: Vec<u8>,
}

impl Entry<'_> {
    /// Every header, envelope then trace context.
    pub fn all_headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.headers
            .iter()
            .chain(self.trace)
            .map(|(name, value)| (*name, value.as_str()))
    }
}

/// The outbox's metrics.
#[derive(Clone)]
pub struct OutboxMetrics {
    /// Rows waiting.
    pub depth: IntGauge,
    /// Age of the oldest row waiting, seconds (0 when empty).
    pub oldest_age: Gauge,
    written: IntCounterVec,
    relayed: IntCounter,
    held: IntCounter,
    failures: IntCounterVec,
}

impl OutboxMetrics {
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
            written: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "outbox_writes_total",
                        "Events written to the outbox, by outcome (written, failed)",
                    ),
                    &["outcome"],
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

/// Transactions writing requests' rows at once: each takes every request
/// waiting when it starts (group commit), so the cost of a commit is shared
/// by the requests that arrived during the previous one.
const WRITERS: usize = 4;

/// Most rows one group-commit transaction takes.
const MAX_GROUP_ROWS: usize = 2_000;

/// One request's rows, owned, with where to say how their commit went.
struct Job {
    rows: Vec<Row>,
    done: oneshot::Sender<Result<(), String>>,
}

/// One row to insert.
struct Row {
    shard: i32,
    topic: String,
    key: String,
    headers: serde_json::Value,
    value: Vec<u8>,
}

impl From<&Entry<'_>> for Row {
    fn from(e: &Entry<'_>) -> Self {
        Self {
            shard: shard_of(&e.key),
            topic: e.topic.to_owned(),
            key: e.key.clone(),
            headers: serde_json::Value::Array(
                e.all_headers()
                    .map(|(k, v)| serde_json::json!([k, v]))
                    .collect(),
            ),
            value: e.value.clone(),
        }
    }
}

/// The outbox table: where requests write.
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    timeout: Duration,
    metrics: OutboxMetrics,
    jobs: mpsc::Sender<Job>,
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
        let (jobs, queue) = mpsc::channel(MAX_GROUP_ROWS * WRITERS);
        let queue = Arc::new(tokio::sync::Mutex::new(queue));
        for _ in 0..WRITERS {
            tokio::spawn(write_groups(pool.clone(), timeout, Arc::clone(&queue)));
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
    pub async fn write(&self, entries: &[Entry<'_>]) -> Result<(), OutboxUnavailable> {
        let (done, committed) = oneshot::channel();
        let job = Job {
            rows: entries.iter().map(Row::from).collect(),
            done,
        };
        let queued_and_committed = async {
            self.jobs
                .send(job)
                .await
                .map_err(|_| "the outbox writers stopped".to_owned())?;
            committed
                .await
                .map_err(|_| "the outbox writer stopped".to_owned())?
        };
        let outcome = match tokio::time::timeout(self.timeout, queued_and_committed).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OutboxUnavailable(e)),
            Err(_) => Err(OutboxUnavailable(format!(
                "no commit within {:?}",
                self.timeout
            ))),
        };
        let label = if outcome.is_ok() { "written" } else { "failed" };
        self.metrics
            .written
            .with_label_values(&[label])
            .inc_by(entries.len() as u64);
        outcome
    }

    /// Whether the table answers.
    pub async fn ready(&self) -> Result<(), sqlx::Error> {
        within(&self.pool, self.timeout, async |conn| {
            sqlx::query("SELECT 1 FROM outbox LIMIT 0")
                .execute(conn)
                .await
                .map(drop)
        })
        .await
    }

    /// Rows waiting and the oldest one's age, seconds.
    pub async fn backlog(&self) -> Result<(i64, f64), sqlx::Error> {
        store::outbox::backlog(&self.pool, self.timeout).await
    }
}

/// One writer: takes the jobs waiting (at least one), inserts all their
/// rows in one statement (one transaction), and tells each job.
async fn write_groups(
    pool: PgPool,
    timeout: Duration,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
) {
    loop {
        let mut group = Vec::new();
        {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut rows = first.rows.len();
            group.push(first);
            while rows < MAX_GROUP_ROWS {
                match queue.try_recv() {
                    Ok(job) => {
                        rows += job.rows.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        // A job whose request gave up (timed out) is still written: its
        // client may have seen 503 and send it again, which the consumer's
        // deduplication makes harmless.
        let rows = group.iter().flat_map(|j| &j.rows);
        let result = within(&pool, timeout, async |conn| insert(conn, rows).await).await;
        let result = result.map_err(|e| e.to_string());
        for job in group {
            let _ = job.done.send(result.clone());
        }
    }
}

async fn insert<'a>(
    conn: &mut PgConnection,
    rows: impl Iterator<Item = &'a Row> + Clone,
) -> Result<(), sqlx::Error> {
    let shards: Vec<i32> = rows.clone().map(|r| r.shard).collect();
    let topics: Vec<&str> = rows.clone().map(|r| r.topic.as_str()).collect();
    let keys: Vec<&str> = rows.clone().map(|r| r.key.as_str()).collect();
    let headers: Vec<&serde_json::Value> = rows.clone().map(|r| &r.headers).collect();
    let values: Vec<&[u8]> = rows.map(|r| r.value.as_slice()).collect();
    // One statement is one transaction: every row or none.
    sqlx::query(
        "INSERT INTO outbox (shard, topic, key, headers, value)
         SELECT * FROM UNNEST($1::int[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])",
    )
    .bind(&shards)
    .bind(&topics)
    .bind(&keys)
    .bind(&headers)
    .bind(&values)
    .execute(conn)
    .await
    .map(drop)
}

/// How the relay works.
#[derive(Debug, Clone, Copy)]
pub struct RelaySettings {
    /// `OUTBOX_RELAY_BATCH`: most rows of a shard published per pass.
    pub batch: i64,
    /// `OUTBOX_RELAY_CONCURRENCY`: shards published at once.
    pub concurrency: usize,
    /// `OUTBOX_RELAY_POLL_MS`: wait after a pass that found nothing.
    pub poll: Duration,
}

/// One row read for publishing.
#[derive(sqlx::FromRow)]
struct Waiting {
    id: i64,
    topic: String,
    key: String,
    headers: serde_json::Value,
    value: Vec<u8>,
}

fn header_pairs(headers: &serde_json::Value) -> Vec<(String, String)> {
    headers
        .as_array()
        .map(|pairs| {
            pairs
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_owned(), p[1].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default()
}

/// The relay of one replica.
pub struct Relay {
    outbox: Outbox,
    publisher: Publisher,
    settings: RelaySettings,
}

impl Relay {
    /// A relay publishing `outbox` through `publisher`.
    pub fn new(outbox: Outbox, publisher: Publisher, settings: RelaySettings) -> Self {
        Self {
            outbox,
            publisher,
            settings,
        }
    }

    /// Relays until `stop`; then finishes the shards it is publishing.
    pub async fn run(self, stop: CancellationToken) {
        let relay = Arc::new(self);
        let gauges = tokio::spawn(Arc::clone(&relay).watch_backlog(stop.clone()));
        let mut start: i32 = rand_start();
        let mut db_wait = Duration::from_millis(100);
        while !stop.is_cancelled() {
            let order: Vec<i32> = (0..SHARDS).map(|i| (start + i) % SHARDS).collect();
            start = (start + 1) % SHARDS;
            let mut passes = futures::stream::iter(order)
                .map(|shard| {
                    let relay = Arc::clone(&relay);
                    async move { relay.relay_shard(shard).await }
                })
                .buffer_unordered(relay.settings.concurrency);
            let (mut relayed, mut failed_db) = (0usize, false);
            while let Some(pass) = passes.next().await {
                match pass {
                    Ok(n) => relayed += n,
                    Err(e) => {
                        if !failed_db {
                            tracing::warn!(error = %e, "outbox relay: database failed; retrying");
                        }
                        relay
                            .outbox
                            .metrics
                            .failures
                            .with_label_values(&["database"])
                            .inc();
                        failed_db = true;
                    }
                }
            }
            let wait = if failed_db {
                db_wait = (db_wait * 2).min(Duration::from_secs(5));
                db_wait
            } else {
                db_wait = Duration::from_millis(100);
                if relayed == 0 {
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

    /// Publishes up to a batch of `shard`'s rows if no other relay holds
    /// it; returns how many were acknowledged and deleted.
    async fn relay_shard(&self, shard: i32) -> Result<usize, sqlx::Error> {
        // Its statements, each bounded by the server's statement timeout,
        // and the publishing, bounded by the producer's.
        let deadline = relay_deadline(self.outbox.timeout, self.publisher.timeout());
        within(&self.outbox.pool, deadline, async |conn| {
            self.publish_shard(conn, shard).await
        })
        .await
    }

    async fn publish_shard(
        &self,
        conn: &mut PgConnection,
        shard: i32,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = conn.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(shard)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            tx.rollback().await?;
            self.outbox.metrics.held.inc();
            return Ok(0);
        }
        let rows: Vec<Waiting> = sqlx::query_as(
            "SELECT id, topic, key, headers, value FROM outbox
             WHERE shard = $1 ORDER BY id LIMIT $2",
        )
        .bind(shard)
        .bind(self.settings.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        // Every send is queued, in id order, before any acknowledgement is
        // awaited: the idempotent producer keeps that order per partition.
        let sends: FuturesUnordered<_> = rows
            .iter()
            .enumerate()
            .map(|(i, row)| async move {
                let headers = platform::kafka::owned_headers(header_pairs(&row.headers));
                let result = self
                    .publisher
                    .publish(&row.topic, &row.key, &row.value, headers)
                    .await;
                (i, result)
            })
            .collect();
        let results: Vec<_> = sends.collect().await;
        let mut done: Vec<i64> = Vec::with_capacity(rows.len());
        let mut failed = 0u64;
        for (i, result) in results {
            match result {
                Ok(_) => done.push(rows[i].id),
                Err(_) => failed += 1,
            }
        }
        if failed > 0 {
            self.outbox
                .metrics
                .failures
                .with_label_values(&["publish"])
                .inc_by(failed);
        }
        if done.is_empty() {
            // Nothing acknowledged: nothing to delete (and no table lock to
            // wait for).
            tx.rollback().await?;
            return Ok(0);
        }
        sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
            .bind(&done)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.outbox.metrics.relayed.inc_by(done.len() as u64);
        Ok(done.len())
    }

    /// Keeps the depth and age gauges current, every second.
    async fn watch_backlog(self: Arc<Self>, stop: CancellationToken) {
        let mut last_warned = Instant::now() - Duration::from_secs(60);
        while !stop.is_cancelled() {
            match self.outbox.backlog().await {
                Ok((depth, age)) => {
                    self.outbox.metrics.depth.set(depth);
                    self.outbox.metrics.oldest_age.set(age);
                }
                Err(e) if last_warned.elapsed() > Duration::from_secs(30) => {
                    tracing::warn!(error = %e, "outbox backlog unknown");
                    last_warned = Instant::now();
                }
                Err(_) => {}
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
    fn a_key_always_has_the_same_shard_and_keys_spread_over_all() {
        assert_eq!(shard_of("order-1"), shard_of("order-1"));
        // Pinned: a change would reorder keys with rows waiting across a deploy.
        assert_eq!(shard_of(""), 5);
        let mut seen = [0usize; SHARDS as usize];
        for n in 0..3200 {
            let s = shard_of(&uuid::Uuid::from_u128(n).to_string());
            assert!((0..SHARDS).contains(&s));
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }

    #[test]
    fn headers_come_back_in_order_and_junk_is_dropped() {
        let stored = serde_json::json!([
            ["content-type", "application/json"],
            ["a", "b"],
            [1, 2],
            "x"
        ]);
        assert_eq!(
            header_pairs(&stored),
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("a".to_owned(), "b".to_owned())
            ]
        );
        assert!(header_pairs(&serde_json::json!({})).is_empty());
    }
}
