//! A fresh database per test on the local PostgreSQL server (or the one
//! `TEST_DATABASE_SERVER` names).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The prefix of every test database's name.
const PREFIX: &str = "pubsubkafka_test_";

/// How long a test database left behind (by a failed test, for study) is
/// kept before a later run drops it.
const KEPT_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest the sweep of stale test databases may take.
const SWEEP_DEADLINE: Duration = Duration::from_secs(30);

/// The server tests create their databases on.
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// A database made for one test.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    server: String,
}

impl TestDatabase {
    /// Creates `pubsubkafka_test_<secs>_<random>`; fails with how to start the
    /// server when it is not running.
    pub async fn create() -> Self {
        Self::create_on(
            &server_url(),
            "Start it with `scripts/postgres.sh` or point TEST_DATABASE_SERVER \
             at a server where tests may create databases",
        )
        .await
    }

    /// Creates `pubsubkafka_test_<secs>_<random>` on `server` (`secs`: its
    /// creation, in seconds since the epoch); fails saying `how_to_start`
    /// when it is not running. The first call of a process drops the test
    /// databases left on the server over a day ago.
    pub async fn create_on(server: &str, how_to_start: &str) -> Self {
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {server} ({e}). {how_to_start}")
            });
        static SWEPT: AtomicBool = AtomicBool::new(false);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if !SWEPT.swap(true, Ordering::SeqCst) {
            // Best effort, and never what holds a test up.
            let _ = tokio::time::timeout(SWEEP_DEADLINE, sweep(&mut admin, now)).await;
        }
        let name = format!(
            "{PREFIX}{}_{}",
            now.as_secs(),
            uuid::Uuid::new_v4().simple()
        );
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = format!("{server}/{name}");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .expect("connect to the test database");
        Self {
            name,
            url,
            pool,
            server: server.to_owned(),
        }
    }

    /// Drops the database (best effort: a failed test leaves it for study).
    pub async fn drop(self) {
        self.pool.close().await;
        if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", self.server)).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }

    /// Drops `role`, a role a test made on the server (after dropping the
    /// databases it has rights in: [`Self::drop`]).
    pub async fn drop_role(server: &str, role: &str) {
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("the test server");
        sqlx::query(&format!("DROP ROLE \"{role}\""))
            .execute(&mut admin)
            .await
            .expect("drop the role");
    }
}

/// Whether the test database `name` was made more than [`KEPT_FOR`] before
/// `now`. Names without a creation time are of the form before it: stale.
fn stale(name: &str, now: Duration) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    match rest
        .split_once('_')
        .and_then(|(secs, _)| secs.parse::<u64>().ok())
    {
        Some(made) => now.as_secs().saturating_sub(made) > KEPT_FOR.as_secs(),
        None => true,
    }
}

/// Drops the stale test databases (best effort).
async fn sweep(admin: &mut PgConnection, now: Duration) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE starts_with(datname, $1)",
    )
    .bind(PREFIX)
    .fetch_all(&mut *admin)
    .await
    else {
        return;
    };
    for name in names.into_iter().filter(|n| stale(n, now)) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut *admin)
            .await;
    }
}

/// Polls `query` (a count) until it returns `expected` or `wait` passes;
/// returns the last count.
pub async fn wait_for_count(
    pool: &PgPool,
    query: &str,
    expected: i64,
    wait: std::time::Duration,
) -> i64 {
    let last = std::cell::Cell::new(None);
    let what = format!("`{query}` to reach {expected}");
    let reached = crate::wait::eventually(wait, &what, || async {
        let n: i64 = sqlx::query_scalar(query)
            .fetch_one(pool)
            .await
            .map_err(|e| e.to_string())?;
        last.set(Some(n));
        if n >= expected {
            Ok(n)
        } else {
            Err(format!("{n}"))
        }
    })
    .await;
    match (reached, last.get()) {
        (Ok(n), _) => n,
        // Short of it: the count seen last, for the caller's assertion to
        // say how far short.
        (Err(_), Some(n)) => n,
        (Err(e), None) => panic!("the database never answered: {e}"),
    }
}

/// Holds an uncommitted `orders` row for `order_id` (roll the transaction
/// back to release it): the consumer's insert of that order then waits for
/// the row lock and times out, a real transient failure.
pub async fn lock_order(
    pool: &PgPool,
    order_id: uuid::Uuid,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, customer_name, customer_email, shipping_address, currency,
                             subtotal, total, item_count, event_id, schema_version, occurred_at, correlation_id)
         VALUES ($1, 'x', 'x', 'x', '{}', 'EUR', 1, 1, 1, gen_random_uuid(), 2, now(), 'lock')",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await
    .expect("lock row");
    tx
}

/// Rows waiting in the outbox of `pool` (through [`store::outbox::backlog`],
/// within 10 s).
pub async fn outbox_waiting(pool: &PgPool) -> i64 {
    let (rows, _) = store::outbox::backlog(pool, std::time::Duration::from_secs(10))
        .await
        .expect("the outbox's backlog");
    rows
}

/// Waits until no row waits in the outbox of `pool`, failing after `wait`.
pub async fn outbox_drained(pool: &PgPool, wait: std::time::Duration) {
    crate::wait::eventually(wait, "the outbox to drain", || async {
        match outbox_waiting(pool).await {
            0 => Ok(()),
            n => Err(format!("{n} rows still waiting")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_databases_over_a_day_old_are_stale() {
        let now = Duration::from_secs(1_800_000_000);
        let made = |secs: u64| format!("{PREFIX}{secs}_0123456789abcdef0123456789abcdef");
        assert!(!stale(&made(now.as_secs() - 60), now), "an hour's is kept");
        assert!(stale(&made(now.as_secs() - 25 * 3600), now));
        assert!(
            !stale(&made(now.as_secs() + 5), now),
            "a clock behind is not stale"
        );
        assert!(stale(
            &format!("{PREFIX}0123456789abcdef0123456789abcdef"),
            now
        ));
        assert!(!stale("pubsubkafka", now), "not a test database");
        assert!(!stale("tansu_storage", now));
    }
}
