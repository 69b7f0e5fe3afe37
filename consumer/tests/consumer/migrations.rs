//! Migrations apply to a fresh database and re-apply as a no-op, against the
//! local PostgreSQL (DATABASE_URL's server, default postgres://localhost).

use crate::support::{self, Table};

#[tokio::test]
async fn migrations_apply_to_a_fresh_database_and_reapply_as_a_no_op() {
    let db = support::TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("first run");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        store::schema::read_model().iter().count() + store::schema::outbox().iter().count(),
        "the read model's and the outbox's (the consumer's order states)"
    );

    store::schema::migrate(&db.pool)
        .await
        .expect("second run is a no-op");
    let again: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(again, applied);

    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(
        tables.iter().any(|x| x == "outbox"),
        "no outbox in {tables:?}"
    );
    for t in Table::EVENT_TABLES.map(Table::name) {
        assert!(
            tables.iter().any(|x| x == t),
            "table {t} missing from {tables:?}"
        );
    }
    db.drop().await;
}

#[tokio::test]
async fn event_store_refuses_updates_and_deletes() {
    let db = support::context::migrated_database().await;
    sqlx::query(
        "INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type, payload,
                                  source_topic, source_partition, source_offset, occurred_at, correlation_id)
         VALUES (gen_random_uuid(), 'order.created', 'a', 2, 'application/json', '{}', 'orders', 0, 0, now(), 'c')",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let update = sqlx::query("UPDATE event_store SET aggregate_id = 'b'")
        .execute(&db.pool)
        .await;
    assert!(update.unwrap_err().to_string().contains("append-only"));
    let delete = sqlx::query("DELETE FROM event_store")
        .execute(&db.pool)
        .await;
    assert!(delete.is_err());
    let duplicate_pk: Result<_, _> =
        sqlx::query("INSERT INTO event_store SELECT * FROM event_store")
            .execute(&db.pool)
            .await;
    assert!(duplicate_pk.is_err(), "event ids are unique");
    db.drop().await;
}

#[tokio::test]
async fn consumer_sessions_carry_their_server_side_bounds() {
    let db = support::TestDatabase::create().await;
    let pool = consumer::db::pool(
        &db.url,
        1,
        store::db::SessionGuards {
            statement: std::time::Duration::from_millis(1234),
            lock: Some(std::time::Duration::from_millis(567)),
            idle_in_transaction: std::time::Duration::from_millis(8910),
            read_only: false,
        },
    )
    .expect("pool");
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
           ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout',
            'tcp_keepalives_idle', 'tcp_user_timeout') ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .expect("settings");
    let got: std::collections::BTreeMap<_, _> = settings.into_iter().collect();
    assert_eq!(got["statement_timeout"], "1234");
    assert_eq!(got["lock_timeout"], "567");
    assert_eq!(got["idle_in_transaction_session_timeout"], "8910");
    assert_eq!(got["tcp_user_timeout"], "8910");
    // Keepalives apply to TCP connections only (the test URL is TCP).
    assert_eq!(got["tcp_keepalives_idle"], "30");
    pool.close().await;
    db.drop().await;
}

/// The usual set-up mistakes stop start-up with what to do about them,
/// naming the role and the database: a missing role, a missing database, a
/// role that may not create tables (PostgreSQL 15 and later), no server.
#[tokio::test]
async fn set_up_mistakes_get_advice_naming_the_role_and_the_database() {
    use sqlx::postgres::PgConnectOptions;
    use sqlx::ConnectOptions;

    let db = support::TestDatabase::create().await;
    let base: PgConnectOptions = db.url.parse().expect("test database URL");
    let limits = store::db::SessionGuards::for_statements(std::time::Duration::from_secs(5));
    let start = |options: PgConnectOptions| async move {
        let url = options.to_url_lossy().to_string();
        let pool = consumer::db::pool(&url, 1, limits).expect("a well-formed URL");
        let source = store::schema::migrate(&pool)
            .await
            .expect_err("the migration cannot succeed");
        let said = consumer::StartupError::Migrations {
            advice: store::schema::advice(&source, &url),
            source,
        }
        .to_string();
        println!("{said}");
        said
    };
    let role = format!("nobody_{}", uuid::Uuid::new_v4().simple());

    let said = start(base.clone().username(&role)).await;
    assert!(
        said.contains(&format!("CREATE ROLE \"{role}\" LOGIN")),
        "{said}"
    );

    let said = start(base.clone().database(&format!("{role}_db"))).await;
    assert!(
        said.contains(&format!("CREATE DATABASE \"{role}_db\"")),
        "{said}"
    );

    for statement in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
    ] {
        sqlx::query(&statement)
            .execute(&db.pool)
            .await
            .expect("set up a role without CREATE");
    }
    let said = start(base.clone().username(&role)).await;
    assert!(
        said.contains(&format!("GRANT CREATE ON SCHEMA public TO \"{role}\"")),
        "{said}"
    );

    let said = start(base.clone().host("127.0.0.1").port(1)).await;
    assert!(
        said.contains("no PostgreSQL answered at 127.0.0.1:1"),
        "{said}"
    );

    db.drop().await;
    support::TestDatabase::drop_role(&harness::database::server_url(), &role).await;
}
