//! Group commit: requests' rows written together, one transaction per
//! group, each request told how its rows' commit went.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use store::outbox::{shard_of, NewRow};

use super::within;
use crate::record::Record;

/// Transactions writing requests' rows at once: each takes every request
/// waiting when it starts (group commit), so the cost of a commit is shared
/// by the requests that arrived during the previous one.
pub(super) const WRITERS: usize = 4;

/// Most rows one group-commit transaction takes.
pub(super) const MAX_GROUP_ROWS: usize = 2_000;

/// One request's rows, owned, with where to say how their commit went.
pub(super) struct Job {
    pub(super) rows: Vec<Row>,
    pub(super) done: oneshot::Sender<Result<(), Arc<sqlx::Error>>>,
}

/// One row to insert.
pub(super) struct Row {
    shard: i32,
    topic: String,
    key: String,
    headers: serde_json::Value,
    value: Vec<u8>,
}

impl From<&Record<'_>> for Row {
    fn from(e: &Record<'_>) -> Self {
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

/// One writer: takes the jobs waiting (at least one), inserts all their
/// rows in one statement (one transaction), and tells each job.
pub(super) async fn write_groups(
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
        let rows = rows.map(|r| NewRow {
            shard: r.shard,
            topic: &r.topic,
            key: &r.key,
            headers: &r.headers,
            value: &r.value,
        });
        let result = within(&pool, timeout, async |conn| {
            store::outbox::insert(conn, rows).await
        })
        .await;
        let result = result.map_err(Arc::new);
        for job in group {
            let _ = job.done.send(result.clone());
        }
    }
}
