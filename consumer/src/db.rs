//! The database: connection pool and migrations (run on every start-up;
//! applied migrations are skipped, so a restart is a no-op).

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations under `consumer/migrations`, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool to `url` without connecting yet (the circuit breaker, not
/// start-up, decides what an unreachable database means). Statements and
/// lock waits are bounded, so a stuck row fails as a transient error
/// instead of stalling its partition.
pub fn pool(
    url: &str,
    max_connections: u32,
    statement_timeout: Duration,
    lock_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.application_name("pubsubkafka-consumer").options([
        (
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        ),
        ("lock_timeout", format!("{}ms", lock_timeout.as_millis())),
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
