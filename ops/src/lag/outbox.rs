//! `lag --outbox`: the producers' outbox (outbox mode) beside the lag: how
//! many rows wait to be published and how old the oldest one is.

use std::time::Duration;

use anyhow::Context;

/// The outbox's backlog, for `lag --outbox`.
#[derive(Debug, serde::Serialize)]
pub struct OutboxBacklog {
    /// Rows waiting to be published.
    pub rows: i64,
    /// Age of the oldest of them, in seconds.
    pub oldest_seconds: f64,
}

/// Reads the backlog of the outbox in the database at `url`.
pub async fn backlog(url: &str) -> anyhow::Result<OutboxBacklog> {
    let pool = store::db::pool(
        url,
        store::db::PoolSpec {
            application: "pubsubkafka-lag",
            max_connections: 1,
            acquire: Duration::from_secs(5),
            guards: store::db::SessionGuards::for_statements(Duration::from_secs(10)).read_only(),
        },
    )
    .context("OUTBOX_DATABASE_URL is not a PostgreSQL URL")?;
    let (rows, oldest_seconds) = store::outbox::backlog(&pool, Duration::from_secs(10))
        .await
        .with_context(|| {
            format!(
                "reading the outbox at {} (is it the database of PRODUCER_MODE=outbox?)",
                crate::dev::redact(url)
            )
        })?;
    pool.close().await;
    Ok(OutboxBacklog {
        rows,
        oldest_seconds,
    })
}
