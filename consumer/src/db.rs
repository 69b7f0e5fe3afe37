//! The database: connection pool and migrations (run on every start-up;
//! applied migrations are skipped, so a restart is a no-op).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations under `consumer/migrations`, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Server-side bounds of every session of the consumer.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// `statement_timeout`: a statement running longer fails.
    pub statement: Duration,
    /// `lock_timeout`: waiting longer for a row lock fails.
    pub lock: Duration,
    /// `idle_in_transaction_session_timeout`: the server ends a session that
    /// sits in an open transaction this long. The consumer never pauses
    /// inside a transaction, so this only ends the transactions of clients
    /// that are gone: after the client gave up on a connection whose path
    /// died, its transaction would otherwise hold its row locks (and block
    /// the redelivery of its events) until the server noticed, hours later.
    pub idle_in_transaction: Duration,
}

/// Opens a pool to `url` without connecting yet (the circuit breaker, not
/// start-up, decides what an unreachable database means). Statements, lock
/// waits and abandoned transactions are bounded by the server, so a stuck
/// row fails as a transient error instead of stalling its partition.
pub fn pool(url: &str, max_connections: u32, limits: SessionLimits) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    // sqlx sets no TCP keepalive or user timeout on its sockets; the
    // server's side of each connection gets them instead, so that it drops a
    // client that vanished (within about a minute, not the kernel's hours)
    // and with it whatever that session held. The client's side is bounded
    // by the deadlines of `persist::Store`.
    let options = options.application_name("pubsubkafka-consumer").options([
        ("statement_timeout", ms(limits.statement)),
        ("lock_timeout", ms(limits.lock)),
        (
            "idle_in_transaction_session_timeout",
            ms(limits.idle_in_transaction),
        ),
        ("tcp_keepalives_idle", "30".to_owned()),
        ("tcp_keepalives_interval", "10".to_owned()),
        ("tcp_keepalives_count", "3".to_owned()),
        ("tcp_user_timeout", ms(limits.idle_in_transaction)),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(options))
}

/// Applies every pending migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
