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
//!
//! With `DATABASE_MIGRATE=false` a service applies nothing and only checks
//! ([`check`], [`check_outbox`]) that every migration it was built with is
//! applied, reading `_sqlx_migrations`: its role then needs no DDL rights,
//! and `consumer migrate` / `producer migrate` (the Helm chart's migrations
//! Job) apply them with a role that has.

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

/// Why a service may not run on its database's schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// Migrations this build needs are not applied (or failed partway).
    #[error(
        "the database schema is not migrated: {} of this version not applied ({}); \
         apply them with `{apply_with}` (the Helm chart's migrations Job: migrations.job.enabled) \
         as a role that may create tables, or start with DATABASE_MIGRATE=true",
        missing.len(), missing.join(", ")
    )]
    NotMigrated {
        /// Each one's version and description.
        missing: Vec<String>,
        /// The command that applies them.
        apply_with: &'static str,
    },
    /// An applied migration is not the one this build has.
    #[error(
        "migration {version} ({description}) was applied with other contents than this version's: \
         the database belongs to another build; do not run this one on it"
    )]
    Changed {
        /// Its version.
        version: i64,
        /// Its description.
        description: String,
    },
    /// The applied migrations could not be read.
    #[error(
        "cannot read the applied migrations (table _sqlx_migrations; the role needs SELECT on it): {0}"
    )]
    Unreadable(#[source] sqlx::Error),
}

/// Checks, reading only, that every migration of the consumer's tables and
/// of the outbox beside them is applied ([`migrate`]'s sets).
pub async fn check(pool: &PgPool) -> Result<(), SchemaError> {
    check_applied(pool, &[read_model(), outbox()], "consumer migrate").await
}

/// Checks, reading only, that the outbox's migrations are applied (the
/// producer's outbox mode).
pub async fn check_outbox(pool: &PgPool) -> Result<(), SchemaError> {
    check_applied(pool, &[outbox()], "producer migrate").await
}

/// Compares `_sqlx_migrations` with `sets`: a version missing, or recorded
/// as failed, is not applied; one whose checksum differs is another build's.
async fn check_applied(
    pool: &PgPool,
    sets: &[Migrator],
    apply_with: &'static str,
) -> Result<(), SchemaError> {
    let applied: std::collections::HashMap<i64, (Vec<u8>, bool)> = match sqlx::query_as::<
        _,
        (i64, Vec<u8>, bool),
    >(
        "SELECT version, checksum, success FROM _sqlx_migrations",
    )
    .fetch_all(pool)
    .await
    {
        Ok(rows) => rows.into_iter().map(|(v, c, s)| (v, (c, s))).collect(),
        // No table: nothing was ever applied.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P01") => Default::default(),
        Err(e) => return Err(SchemaError::Unreadable(e)),
    };
    let mut missing = Vec::new();
    for migration in sets.iter().flat_map(|set| set.iter()) {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        match applied.get(&migration.version) {
            Some((checksum, true)) if *checksum == *migration.checksum => {}
            Some((_, true)) => {
                return Err(SchemaError::Changed {
                    version: migration.version,
                    description: migration.description.to_string(),
                })
            }
            _ => missing.push(format!("{} {}", migration.version, migration.description)),
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SchemaError::NotMigrated {
            missing,
            apply_with,
        })
    }
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
