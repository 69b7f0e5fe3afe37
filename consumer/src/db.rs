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

/// What to do about a migration that failed for a common set-up mistake
/// (a missing role or database, a wrong password, a role that may not
/// create tables, no server), naming the user and database of `url`;
/// `None` for other failures.
pub fn advice(error: &sqlx::migrate::MigrateError, url: &str) -> Option<String> {
    use sqlx::migrate::MigrateError;
    let error = match error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => e,
        _ => return None,
    };
    let options: PgConnectOptions = url.parse().ok()?;
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    let advice = match error {
        sqlx::Error::Database(e) => match e.code().as_deref() {
            Some("28000") if e.message().contains("role") => format!(
                "the role {user:?} does not exist on this server: create it \
                 (CREATE ROLE \"{user}\" LOGIN PASSWORD '...') and give it the database \
                 (ALTER DATABASE \"{database}\" OWNER TO \"{user}\"), or correct the user in DATABASE_URL"
            ),
            Some("28P01") => format!("the password in DATABASE_URL is not the password of role {user:?}"),
            Some("3D000") => format!(
                "the database {database:?} does not exist: CREATE DATABASE \"{database}\" OWNER \"{user}\""
            ),
            Some("42501") => format!(
                "role {user:?} may not create the consumer's tables: make it the owner of the database \
                 (ALTER DATABASE \"{database}\" OWNER TO \"{user}\") or GRANT CREATE ON SCHEMA public TO \"{user}\" \
                 (PostgreSQL 15 and later no longer grant that to every role)"
            ),
            _ => return None,
        },
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => format!(
            "no PostgreSQL answered at {}:{}: is it running, and is that the host and port of DATABASE_URL?",
            options.get_host(),
            options.get_port()
        ),
        _ => return None,
    };
    Some(advice)
}
