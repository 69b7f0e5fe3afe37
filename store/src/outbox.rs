//! The outbox table (`migrations/outbox`): its set-up and what the
//! operator tool and the relay's gauges read of it. The rows are written
//! and relayed by the producer (`producer::outbox`).

use std::time::Duration;

use sqlx::PgPool;

/// Creates the table if it is missing (one replica at a time: the
/// migrator holds an advisory lock). When the migration is applied no DDL
/// runs: `CREATE INDEX IF NOT EXISTS` locks the table before it finds the
/// index, and would wait behind the row locks of a dead relay's open
/// transaction until the server ends it, failing this replica's start.
pub async fn prepare(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    crate::schema::outbox().run(pool).await
}

/// Rows waiting in the outbox of `pool` and the oldest one's age, seconds,
/// within `deadline` (see [`crate::db::within`]).
pub async fn backlog(pool: &PgPool, deadline: Duration) -> Result<(i64, f64), sqlx::Error> {
    crate::db::within(
        pool,
        deadline,
        |e| e,
        || no_answer(deadline),
        async |conn| {
            let row = sqlx::query!(
                r#"SELECT count(*) AS "rows!",
                          COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0)
                              AS "oldest_seconds!"
                   FROM outbox"#
            )
            .fetch_one(conn)
            .await?;
            Ok((row.rows, row.oldest_seconds))
        },
    )
    .await
}

/// The error of a call to the outbox's database that got no answer within
/// `deadline`.
pub fn no_answer(deadline: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer from the outbox database within {deadline:?}"),
    ))
}
