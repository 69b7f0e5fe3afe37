//! The relay: publishes each shard's rows in id order under the shard's
//! advisory lock, and deletes them once the broker acknowledged them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use platform::throttle::LogThrottle;
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use store::outbox::{self, Waiting, SHARDS};

use super::{relay_deadline, within, Outbox};
use crate::publish::Publisher;
use platform::backoff::Doubling;

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

/// What one round over every shard did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Round {
    /// Rows published, acknowledged and deleted.
    relayed: usize,
    /// Whether the database failed a pass.
    failed: bool,
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
        // After a failed round, 200 ms, doubling up to 5 s.
        let mut database_wait = Doubling::new(Duration::from_millis(200), Duration::from_secs(5));
        let warnings = LogThrottle::default();
        while !stop.is_cancelled() {
            let round = Arc::clone(&relay).round(start, &warnings).await;
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
    async fn round(self: Arc<Self>, start: i32, warnings: &LogThrottle) -> Round {
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
                    if let Some(held_back) = warnings.admit("database", Instant::now()) {
                        tracing::warn!(error = %e, held_back, "outbox relay: database failed; retrying");
                    }
                    self.outbox
                        .metrics
                        .failures
                        .with_label_values(&["database"])
                        .inc();
                    round.failed = true;
                }
            }
        }
        round
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
            self.outbox.metrics.held.inc();
            return Ok(0);
        }
        let rows = outbox::waiting(&mut tx, shard, self.settings.batch).await?;
        let done = self.publish(&rows).await;
        if done.is_empty() {
            // Nothing read, or nothing acknowledged: nothing to delete
            // (and no table lock to wait for).
            tx.rollback().await?;
            return Ok(0);
        }
        outbox::delete(&mut tx, &done).await?;
        tx.commit().await?;
        self.outbox.metrics.relayed.inc_by(done.len() as u64);
        Ok(done.len())
    }

    /// Publishes `rows`; returns the ids the broker acknowledged. Every
    /// send is queued, in id order, before any acknowledgement is awaited:
    /// the idempotent producer keeps that order per partition.
    async fn publish(&self, rows: &[Waiting]) -> Vec<i64> {
        let sends: FuturesUnordered<_> = rows
            .iter()
            .map(|row| async move {
                let headers = platform::kafka::owned_headers(header_pairs(&row.headers));
                let result = self
                    .publisher
                    .publish_until_verdict(&row.topic, &row.key, &row.value, headers)
                    .await;
                (row.id, result)
            })
            .collect();
        let results: Vec<_> = sends.collect().await;
        let failed = results.iter().filter(|(_, r)| r.is_err()).count() as u64;
        if failed > 0 {
            self.outbox
                .metrics
                .failures
                .with_label_values(&["publish"])
                .inc_by(failed);
        }
        results
            .into_iter()
            .filter_map(|(id, result)| result.ok().map(|_| id))
            .collect()
    }

    /// Keeps the depth and age gauges current, every second.
    async fn watch_backlog(self: Arc<Self>, stop: CancellationToken) {
        let warnings = LogThrottle::new(Duration::from_secs(30));
        while !stop.is_cancelled() {
            match self.outbox.backlog().await {
                Ok((depth, age)) => {
                    self.outbox.metrics.depth.set(depth);
                    self.outbox.metrics.oldest_age.set(age);
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
