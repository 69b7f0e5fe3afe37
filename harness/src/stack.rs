//! The whole pipeline as users run it, for the end-to-end scenarios: a
//! database, a broker (of any kind: a memory Tansu, an Apache Kafka cluster,
//! another broker), the built `producer` and `consumer` binaries as
//! processes, and the checks every scenario makes.

use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::Role;
use crate::database::TestDatabase;
use crate::kafka::read_topic_with;
use crate::load::LoadReport;
use crate::process::Service;

pub const READY: Duration = Duration::from_secs(30);
pub const DRAIN: Duration = Duration::from_secs(60);
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(30);

/// The services of one scenario and what they use.
pub struct Stack {
    /// The database the consumer writes.
    pub db: TestDatabase,
    /// The broker.
    pub broker: Broker,
    /// The producer process.
    pub producer: Service,
    /// The consumer process.
    pub consumer: Service,
}

/// The producer's environment for `broker`.
pub fn producer_env(broker: &Broker) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone()),
        ("ORDERS_TOPIC", broker.topics.orders.clone()),
        ("USERS_TOPIC", broker.topics.users.clone()),
        ("PRODUCE_TIMEOUT_MS", "3000".to_owned()),
        ("RATE_LIMIT_RPS", "0".to_owned()),
        (
            "LOG_LEVEL",
            format!("info,{}=debug", platform::telemetry::PRODUCER_REQUESTS),
        ),
    ];
    if let Some(security) = broker.security() {
        env.extend(security.env(Role::Producer));
    }
    env
}

/// The consumer's environment for `broker` and the database at `database_url`.
pub fn consumer_env(broker: &Broker, database_url: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone()),
        ("ORDERS_TOPIC", broker.topics.orders.clone()),
        ("USERS_TOPIC", broker.topics.users.clone()),
        ("ORDERS_STATE_TOPIC", broker.topics.orders_state.clone()),
        ("DATABASE_URL", database_url.to_owned()),
        ("KAFKA_CONSUMER_GROUP", broker.consumer_group()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("RETRY_BACKOFF_MS", "200".to_owned()),
        ("CIRCUIT_PROBE_MS", "250".to_owned()),
        (
            "LOG_LEVEL",
            format!("info,{}=debug", platform::telemetry::CONSUMER_MESSAGES),
        ),
    ];
    if let Some(security) = broker.security() {
        env.extend(security.env(Role::Consumer));
    }
    env
}

impl Stack {
    /// Database, broker, consumer (reaching the database at `db_url` when
    /// given, e.g. through a proxy) and producer, all ready.
    pub async fn start(db: TestDatabase, db_url: Option<String>) -> Self {
        Self::start_on(Broker::for_scenario().await, db, db_url).await
    }

    /// As [`Self::start`], on `broker`.
    pub async fn start_on(broker: Broker, db: TestDatabase, db_url: Option<String>) -> Self {
        let url = db_url.unwrap_or_else(|| db.url.clone());
        let consumer = consumer_env(&broker, &url);
        let producer = producer_env(&broker);
        Self::launch(db, broker, &consumer, &producer).await
    }

    /// Starts the services with these environments and waits until ready.
    pub async fn launch(
        db: TestDatabase,
        broker: Broker,
        consumer_env: &[(&str, String)],
        producer_env: &[(&str, String)],
    ) -> Self {
        let mut consumer = Service::start("consumer", "CONSUMER_HTTP_ADDR", consumer_env);
        let mut producer = Service::start("producer", "PRODUCER_HTTP_ADDR", producer_env);
        consumer.wait_ready("/readyz", READY).await;
        producer.wait_ready("/readyz", READY).await;
        Self {
            db,
            broker,
            producer,
            consumer,
        }
    }

    /// The count `sql` returns.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }

    /// Waits until every accepted order is in PostgreSQL, then checks each
    /// is there exactly once, and prints the tally.
    pub async fn assert_exactly_once(&self, scenario: &str, report: &LoadReport) {
        let accepted = report.accepted.len() as i64;
        let ids: Vec<Uuid> = report.accepted.clone();
        let started = Instant::now();
        let mut persisted = 0;
        while started.elapsed() < DRAIN {
            persisted = sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM orders WHERE order_id = ANY($1)",
            )
            .bind(&ids)
            .fetch_one(&self.db.pool)
            .await
            .unwrap();
            if persisted >= accepted {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let events: i64 =
            sqlx::query_scalar("SELECT count(*) FROM event_store WHERE aggregate_id = ANY($1)")
                .bind(&texts)
                .fetch_one(&self.db.pool)
                .await
                .unwrap();
        let rows = self.count("SELECT count(*) FROM orders").await;
        let dead = read_topic_with(
            self.broker.client(),
            &self.broker.topics.orders_dlq,
            0,
            Duration::from_secs(2),
        )
        .len();
        println!(
            "{scenario}: {report}; persisted {persisted} of the accepted, {rows} rows in all, \
             {} duplicated events, {dead} dead-lettered",
            events - persisted
        );
        if persisted < accepted {
            self.explain_shortfall().await;
        }
        assert_eq!(report.gave_up, 0, "every order was eventually accepted");
        assert_eq!(persisted, accepted, "every 202 is in PostgreSQL");
        assert_eq!(events, accepted, "each accepted order was recorded once");
        assert_eq!(rows, accepted, "no row without a 202");
        assert_eq!(dead, 0, "no valid order was dead-lettered");
        self.assert_partition_order(scenario).await;
    }

    /// Prints what the consumer says of itself when orders are missing:
    /// its readiness, its lag and the notable lines of its log. Printed
    /// with the test's own output, which a truncated failure report keeps.
    async fn explain_shortfall(&self) {
        // A stalled consumer may not answer either: each ask has a deadline.
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        let ready = match client.get(self.consumer.url("/readyz")).send().await {
            Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
            Err(e) => format!("no answer: {e}"),
        };
        let metrics = match client.get(self.consumer.url("/metrics")).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let lag = crate::metrics::sum(&metrics, "kafka_consumer_lag", &[]);
        println!("consumer /readyz: {ready}; lag {lag:?}");
        println!(
            "consumer's notable log lines, last 40:\n{}",
            self.consumer.notable_lines(40)
        );
    }

    /// Checks that each partition's events were stored in offset order
    /// (the consumer writes partitions side by side, each one in order).
    pub async fn assert_partition_order(&self, scenario: &str) {
        let out_of_order: Vec<(String, i32, i64)> = sqlx::query_as(
            "SELECT source_topic, source_partition, source_offset FROM (
                 SELECT source_topic, source_partition, source_offset, stored_seq,
                        lag(stored_seq) OVER (PARTITION BY source_topic, source_partition
                                              ORDER BY source_offset) AS previous
                 FROM event_store) s
             WHERE stored_seq < previous",
        )
        .fetch_all(&self.db.pool)
        .await
        .expect("order query");
        let partitions: i64 = self
            .count("SELECT count(DISTINCT (source_topic, source_partition)) FROM event_store")
            .await;
        println!(
            "{scenario}: {partitions} partitions, {} events stored out of offset order",
            out_of_order.len()
        );
        assert!(
            out_of_order.is_empty(),
            "stored before an earlier offset of its partition: {:?}",
            &out_of_order[..out_of_order.len().min(10)]
        );
    }
}

/// How long the consumer's circuit took to open (at most 30 s), if it did.
pub async fn circuit_opened(consumer: &Service) -> Option<Duration> {
    let opened = wait_for_metric(
        consumer,
        "kafka_consumer_circuit_open",
        &[],
        1.0,
        Duration::from_secs(30),
    )
    .await;
    println!("circuit opened after {opened:?}");
    opened
}

/// Polls the service's `/metrics` until the samples of `name` with `labels`
/// add up to at least `at_least`; how long it took.
pub async fn wait_for_metric(
    service: &Service,
    name: &str,
    labels: &[&str],
    at_least: f64,
    bound: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let what = format!("{name}{labels:?} to reach {at_least}");
    crate::wait::eventually(bound, &what, || async {
        let text = reqwest::get(service.url("/metrics"))
            .await
            .map_err(|e| e.to_string())?
            .text()
            .await
            .map_err(|e| e.to_string())?;
        match crate::metrics::sum(&text, name, labels) {
            Some(v) if v >= at_least => Ok(()),
            seen => Err(format!("{seen:?}")),
        }
    })
    .await
    .ok()
    .map(|()| started.elapsed())
}

/// The JSON log lines of `service` with `message`.
pub fn log_lines(service: &Service, message: &str) -> Vec<serde_json::Value> {
    service
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["fields"]["message"] == message)
        .collect()
}

/// `pubsubkafka console` on a free local port over `consumer`'s and
/// `producer`'s `/metrics`, `database_url` and the broker at `bootstrap`,
/// showing the lag of the consumer's group; with `extra` arguments and
/// environment (API_TOKEN, a login). Ready when it answers.
pub async fn console(
    bootstrap: &str,
    database_url: &str,
    (consumer, producer): (&Service, &Service),
    extra: &[&str],
    env: &[(&str, String)],
) -> Service {
    let listen = format!("127.0.0.1:{}", crate::free_port());
    let group = consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("the consumer's group")
        .to_owned();
    let (consumer_metrics, producer_metrics) = (consumer.url("/metrics"), producer.url("/metrics"));
    let mut args = vec![
        "console",
        "--listen",
        &listen,
        "--consumer-metrics",
        &consumer_metrics,
        "--producer-metrics",
        &producer_metrics,
        "--database-url",
        database_url,
        "--bootstrap-server",
        bootstrap,
        "--group",
        &group,
    ];
    args.extend_from_slice(extra);
    let mut console = Service::start_command("pubsubkafka", &args, env, &listen);
    console.wait_ready("/healthz", READY).await;
    console
}
