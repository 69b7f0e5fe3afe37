//! One PostgreSQL call with a deadline measured here, not only the server's
//! `statement_timeout`: behind a path that swallows packets (a dead NAT, a
//! firewall that drops, a hung pooler) an answer may never come, and the
//! server's own timer cannot help.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};

/// Runs `work` on a connection of `pool` within `deadline`, acquiring
/// included. Past it, `timed_out()` is the error and the connection is
/// closed, never reused (a connection that swallowed a request may answer
/// it later, or never). `failed` turns a failed acquisition into the
/// caller's error.
pub async fn within<T, E>(
    pool: &PgPool,
    deadline: Duration,
    failed: impl FnOnce(sqlx::Error) -> E,
    timed_out: impl FnOnce() -> E,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, E>,
) -> Result<T, E> {
    let started = tokio::time::Instant::now();
    let mut conn: PoolConnection<Postgres> =
        match tokio::time::timeout(deadline, pool.acquire()).await {
            Ok(conn) => conn.map_err(failed)?,
            Err(_) => return Err(timed_out()),
        };
    let left = deadline.saturating_sub(started.elapsed());
    match tokio::time::timeout(left, work(&mut *conn)).await {
        Ok(done) => done,
        Err(_) => {
            conn.close_on_drop();
            Err(timed_out())
        }
    }
}
