//! The outbox table (`migrations/outbox`): its set-up, its shards, and
//! every statement on it: the writers' insert, the relay's lock, read and
//! delete, and what the operator tool and the gauges read. When and how
//! the rows are written and relayed is a relay's (`crate::relay`).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

/// Shards of the outbox: how many relays can publish at once. Fixed: a
/// key's shard must not change while it has rows waiting.
pub const SHARDS: i32 = 32;

/// The advisory-lock class of outbox shards
/// (`pg_try_advisory_xact_lock(class, shard)`).
pub const LOCK_CLASS: i32 = 0x0b0c;

/// The shard of `key`: FNV-1a, stable across builds and machines.
pub fn shard_of(key: &str) -> i32 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    // SHARDS is positive and small: the remainder fits.
    i32::try_from(hash % SHARDS.unsigned_abs() as u64).unwrap_or(0)
}

/// One row to write.
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    /// Its key's shard ([`shard_of`]).
    pub shard: i32,
    /// The topic to publish to.
    pub topic: &'a str,
    /// The message key.
    pub key: &'a str,
    /// The headers, as a JSON array of `[name, value]` pairs, in order.
    pub headers: &'a serde_json::Value,
    /// The encoded value.
    pub value: &'a [u8],
}

/// Writes `rows` in one statement: every row or none.
pub async fn insert<'a>(
    conn: &mut PgConnection,
    rows: impl Iterator<Item = NewRow<'a>> + Clone,
) -> Result<(), sqlx::Error> {
    let shards: Vec<i32> = rows.clone().map(|r| r.shard).collect();
    let topics: Vec<&str> = rows.clone().map(|r| r.topic).collect();
    let keys: Vec<&str> = rows.clone().map(|r| r.key).collect();
    let headers: Vec<&serde_json::Value> = rows.clone().map(|r| r.headers).collect();
    let values: Vec<&[u8]> = rows.map(|r| r.value).collect();
    // Bound as arrays of borrowed values, which the query macros do not
    // take: checked by the tests that write and relay rows instead.
    sqlx::query(
        "INSERT INTO outbox (shard, topic, key, headers, value)
         SELECT * FROM UNNEST($1::int[], $2::text[], $3::text[], $4::jsonb[], $5::bytea[])",
    )
    .bind(&shards)
    .bind(&topics)
    .bind(&keys)
    .bind(&headers)
    .bind(&values)
    .execute(conn)
    .await
    .map(drop)
}

/// Takes `shard`'s lock for the transaction `tx` is in, unless another
/// session holds it: whether it was taken.
pub async fn try_lock_shard(tx: &mut PgConnection, shard: i32) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT pg_try_advisory_xact_lock($1, $2) AS "locked!""#,
        LOCK_CLASS,
        shard
    )
    .fetch_one(tx)
    .await
}

/// One row waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Its id: the order rows of a shard are published in.
    pub id: i64,
    /// The topic.
    pub topic: String,
    /// The key.
    pub key: String,
    /// The headers, as written.
    pub headers: serde_json::Value,
    /// The value.
    pub value: Vec<u8>,
}

/// The oldest `limit` rows of `shard` for `topics`, oldest first.
pub async fn waiting(
    tx: &mut PgConnection,
    shard: i32,
    topics: &[String],
    limit: i64,
) -> Result<Vec<Waiting>, sqlx::Error> {
    sqlx::query_as!(
        Waiting,
        "SELECT id, topic, key, headers, value FROM outbox
         WHERE shard = $1 AND topic = ANY($3) ORDER BY id LIMIT $2",
        shard,
        limit,
        topics
    )
    .fetch_all(tx)
    .await
}

/// Deletes the rows `ids` (published and acknowledged).
pub async fn delete(tx: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", ids)
        .execute(tx)
        .await
        .map(drop)
}

/// Whether the table answers.
pub async fn probe(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT 1 AS one FROM outbox LIMIT 0")
        .fetch_optional(conn)
        .await
        .map(drop)
}

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
    backlog_of(pool, None, deadline).await
}

/// Like [`backlog`], of the rows for `topics` only (all when `None`): what
/// one relay publishes, when services share a database.
pub async fn backlog_of(
    pool: &PgPool,
    topics: Option<&[String]>,
    deadline: Duration,
) -> Result<(i64, f64), sqlx::Error> {
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
                   FROM outbox WHERE $1::text[] IS NULL OR topic = ANY($1)"#,
                topics
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_has_the_same_shard_and_keys_spread_over_all() {
        assert_eq!(shard_of("order-1"), shard_of("order-1"));
        // Pinned: a change would reorder keys with rows waiting across a deploy.
        assert_eq!(shard_of(""), 5);
        let mut seen = [0usize; SHARDS as usize];
        for n in 0..3200 {
            let s = shard_of(&uuid::Uuid::from_u128(n).to_string());
            assert!((0..SHARDS).contains(&s));
            seen[s as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }
}
