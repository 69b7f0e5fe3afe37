//! `DATABASE_MIGRATE=false`: start-up applies nothing and refuses a schema
//! that lacks a migration, until `consumer migrate` applied it; a role with
//! only DML rights then runs the consumer, where applying migrations at
//! start would fail with the advice to grant CREATE.

use std::process::Output;

use consumer::ConsumerConfig;
use harness::database::TestDatabase;
use platform::Env;
use sqlx::postgres::PgConnectOptions;
use sqlx::ConnectOptions;

fn config(url: &str, migrate: bool) -> ConsumerConfig {
    ConsumerConfig::from_env(&Env::from_pairs([
        ("DATABASE_URL", url),
        ("DATABASE_MIGRATE", if migrate { "true" } else { "false" }),
    ]))
    .expect("config")
}

/// Start-up's database step, as the service runs it: the error it stops
/// with, if any.
async fn start_up(url: &str, migrate: bool) -> Result<(), String> {
    match consumer::startup::database(&config(url, migrate)).await {
        Ok(pool) => {
            pool.close().await;
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// `consumer migrate`, the binary, with only `DATABASE_URL` set.
fn consumer_migrate(url: &str) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_consumer"))
        .arg("migrate")
        .env_clear()
        .env("DATABASE_URL", url)
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run consumer migrate")
}

#[tokio::test]
async fn with_migrations_off_start_up_refuses_the_schema_until_consumer_migrate_ran() {
    let db = TestDatabase::create().await;

    let said = start_up(&db.url, false)
        .await
        .expect_err("an empty database");
    assert!(said.contains("not migrated"), "{said}");
    assert!(said.contains("consumer migrate"), "{said}");
    for migration in store::schema::read_model()
        .iter()
        .chain(store::schema::outbox().iter())
    {
        let named = format!("{} {}", migration.version, migration.description);
        assert!(said.contains(&named), "{named} missing from: {said}");
    }
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count tables");
    assert_eq!(tables, 0, "the check creates nothing");

    let out = consumer_migrate(&db.url);
    assert_eq!(
        out.status.code(),
        Some(0),
        "consumer migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_up(&db.url, false)
        .await
        .expect("the schema is current");

    // A migration applied with other contents is another build's schema.
    sqlx::query("UPDATE _sqlx_migrations SET checksum = '\\x00'::bytea WHERE version = $1")
        .bind(
            store::schema::outbox()
                .iter()
                .next()
                .expect("a migration")
                .version,
        )
        .execute(&db.pool)
        .await
        .expect("alter a checksum");
    let said = start_up(&db.url, false)
        .await
        .expect_err("a changed migration");
    assert!(said.contains("other contents"), "{said}");

    db.drop().await;
}

#[tokio::test]
async fn a_role_with_only_dml_rights_runs_with_migrations_off_and_is_refused_them_on() {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool)
        .await
        .expect("migrate as owner");
    let role = format!("dml_{}", uuid::Uuid::new_v4().simple());
    for statement in [
        format!("CREATE ROLE \"{role}\" LOGIN"),
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned(),
        format!("GRANT USAGE ON SCHEMA public TO \"{role}\""),
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO \"{role}\""
        ),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO \"{role}\""),
    ] {
        sqlx::query(&statement)
            .execute(&db.pool)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    let base: PgConnectOptions = db.url.parse().expect("test database URL");
    let url = base.username(&role).to_url_lossy().to_string();

    start_up(&url, false)
        .await
        .expect("a DML role runs on a migrated schema");
    let said = start_up(&url, true)
        .await
        .expect_err("a DML role may not migrate");
    let advice = format!("GRANT CREATE ON SCHEMA public TO \"{role}\"");
    assert!(said.contains(&advice), "{said}");
    let out = consumer_migrate(&url);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "consumer migrate as DML role");
    assert!(stderr.contains(&advice), "{stderr}");

    sqlx::query(&format!(
        "REVOKE SELECT ON _sqlx_migrations FROM \"{role}\""
    ))
    .execute(&db.pool)
    .await
    .expect("revoke");
    let said = start_up(&url, false)
        .await
        .expect_err("the migrations unreadable");
    assert!(said.contains("SELECT on it"), "{said}");

    db.drop().await;
    TestDatabase::drop_role(&harness::database::server_url(), &role).await;
}
