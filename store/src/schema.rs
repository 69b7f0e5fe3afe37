//! The schema, as migrations compiled in: the consumer's tables
//! (`migrations/read_model`: orders, users, the event store, rejections),
//! applied by the consumer at start-up, and the outbox
//! (`migrations/outbox`), applied by the producer in outbox mode and by the
//! consumer (whose outbox carries `orders-state`). Applied
//! migrations are skipped, so a restart is a no-op; concurrent starts
//! wait for each other (the migrator holds an advisory lock).
//!
//! The two sets may share a database (the outbox beside the consumer's
//! tables): each ignores the other's rows of `_sqlx_migrations`.

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgPool;

/// The consumer's tables.
pub fn read_model() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/read_model");
    migrator.set_ignore_missing(true);
    migrator
}

/// The outbox table.
pub fn outbox() -> Migrator {
    let mut migrator = sqlx::migrate!("./migrations/outbox");
    migrator.set_ignore_missing(true);
    migrator
}

/// Applies every pending migration of the consumer's tables, and of the
/// outbox beside them: the consumer publishes each order's state through
/// it.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    read_model().run(pool).await?;
    outbox().run(pool).await
}

/// What to do about a migration that failed for a common set-up mistake
/// (a missing role or database, a wrong password, a role that may not
/// create tables, no server), naming the user and database of `url`;
/// `None` for other failures.
pub fn advice(error: &MigrateError, url: &str) -> Option<String> {
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
