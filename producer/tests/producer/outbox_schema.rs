//! Outbox mode with `DATABASE_MIGRATE=false`: start-up creates nothing and
//! refuses an outbox database whose migrations are not applied, until
//! `producer migrate` applied them.

use std::process::Output;

use harness::database::TestDatabase;
use platform::Env;
use producer::{Application, ProducerConfig};
use rdkafka::mocking::MockCluster;

/// Builds the service in outbox mode on `url`, against a mock cluster: the
/// error start-up stops with, if any.
async fn start_up(url: &str, migrate: &str) -> Result<(), String> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in ["orders", "users"] {
        cluster
            .create_topic(topic, harness::kafka::PARTITIONS, 1)
            .expect("create topic");
    }
    let config = ProducerConfig::from_env(&Env::from_pairs([
        ("PRODUCER_HTTP_ADDR", "127.0.0.1:0"),
        ("KAFKA_BOOTSTRAP_SERVERS", &cluster.bootstrap_servers()),
        ("PRODUCER_MODE", "outbox"),
        ("OUTBOX_DATABASE_URL", url),
        ("DATABASE_MIGRATE", migrate),
    ]))
    .expect("config");
    Application::build(config, prometheus::Registry::new())
        .await
        .map(drop)
        .map_err(|e| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e).map_or(String::new(), ToString::to_string)
            )
        })
}

/// `producer migrate`, the binary, with only `vars` set.
fn producer_migrate(vars: &[(&str, &str)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_producer"))
        .arg("migrate")
        .env_clear()
        .envs(vars.iter().copied())
        .env("LOG_FORMAT", "text")
        .output()
        .expect("run producer migrate")
}

#[tokio::test]
async fn with_migrations_off_outbox_mode_refuses_the_schema_until_producer_migrate_ran() {
    let db = TestDatabase::create().await;

    let said = start_up(&db.url, "false")
        .await
        .expect_err("no outbox table");
    assert!(said.contains("DATABASE_MIGRATE=false"), "{said}");
    assert!(said.contains("producer migrate"), "{said}");
    assert!(said.contains("outbox"), "{said}");

    let direct = producer_migrate(&[("DATABASE_URL", &db.url)]);
    let stderr = String::from_utf8_lossy(&direct.stderr);
    assert_ne!(direct.status.code(), Some(0), "direct mode: {stderr}");
    assert!(stderr.contains("PRODUCER_MODE is direct"), "{stderr}");

    let out = producer_migrate(&[
        ("PRODUCER_MODE", "outbox"),
        ("OUTBOX_DATABASE_URL", &db.url),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "producer migrate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    start_up(&db.url, "false")
        .await
        .expect("the outbox is current");

    db.drop().await;
}
