//! The database: connection pool and migrations (run on every start-up;
//! applied migrations are skipped, so a restart is a no-op).

use std::time::Duration;

use platform::db::{PoolSpec, SessionGuards};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

/// The migrations under `consumer/migrations`, compiled in.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Opens a pool to `url` without connecting yet (the circuit breaker, not
/// start-up, decides what an unreachable database means). Statements, lock
/// waits and abandoned transactions are bounded by the server (`guards`),
/// so a stuck row fails as a transient error instead of stalling its
/// partition. The consumer never pauses inside a transaction, so the
/// idle-in-transaction bound only ends the transactions of clients that are
/// gone: after the client gave up on a connection whose path died, its
/// transaction would otherwise hold its row locks (and block the
/// redelivery of its events) until the server noticed, hours later. The
/// client's side is bounded by the deadlines of `persist::Store`.
pub fn pool(url: &str, max_connections: u32, guards: SessionGuards) -> Result<PgPool, sqlx::Error> {
    platform::db::pool(
        url,
        PoolSpec {
            application: "pubsubkafka-consumer",
            max_connections,
            acquire: Duration::from_secs(3),
            guards,
        },
    )
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
