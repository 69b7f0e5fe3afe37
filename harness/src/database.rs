//! A fresh database per test on the local PostgreSQL server (or on the
//! durable brokers' storage server).

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

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
    /// Creates `pubsubkafka_test_<random>`; fails with how to start the
    /// server when it is not running.
    pub async fn create() -> Self {
        Self::create_on(
            &server_url(),
            "Start it with `scripts/postgres.sh` or point TEST_DATABASE_SERVER \
             at a server where tests may create databases",
        )
        .await
    }

    /// Creates `pubsubkafka_test_<random>` on `server`; fails saying
    /// `how_to_start` when it is not running.
    pub async fn create_on(server: &str, how_to_start: &str) -> Self {
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| {
                panic!("cannot reach PostgreSQL at {server} ({e}). {how_to_start}")
            });
        let name = format!("pubsubkafka_test_{}", uuid::Uuid::new_v4().simple());
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
}

/// Polls `query` (a count) until it returns `expected` or `wait` passes;
/// returns the last count.
pub async fn wait_for_count(
    pool: &PgPool,
    query: &str,
    expected: i64,
    wait: std::time::Duration,
) -> i64 {
    let started = std::time::Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(query)
            .fetch_one(pool)
            .await
            .expect("count");
        if n >= expected || started.elapsed() > wait {
            return n;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
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
