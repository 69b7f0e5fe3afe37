//! The consumer's settings, read once from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use contract::topics::{self, Domains};
use contract::Format;
use platform::kafka::KafkaSettings;
use platform::server::HttpLimits;
use platform::telemetry::TelemetryConfig;
use platform::{ConfigError, Env};
use store::relay::RelaySettings;

use crate::flood::FloodLimits;
use crate::retry::RetryPolicy;

/// Everything the consumer service needs to start.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `CONSUMER_HTTP_ADDR`: health and metrics.
    pub http_addr: SocketAddr,
    /// `HTTP_*`: what a client may hold of the server.
    pub http_limits: HttpLimits,
    /// Brokers and librdkafka pass-through properties.
    pub kafka: KafkaSettings,
    /// `KAFKA_CONSUMER_GROUP`.
    pub group_id: String,
    /// `CONSUMER_TOPICS`: comma-separated topics to read, each one of
    /// `ORDERS_TOPIC` and `USERS_TOPIC`; each one's dead letters go to
    /// `<topic>-dlq`.
    pub topics: Vec<String>,
    /// `ORDERS_TOPIC` and `USERS_TOPIC`: which domain each topic carries.
    pub domains: Domains,
    /// `ORDERS_STATE_TOPIC`: where each order's full state goes after each
    /// applied change, through the outbox.
    pub orders_state_topic: String,
    /// `ORDERS_STATE_FORMAT`: the encoding of those states.
    pub orders_state_format: Format,
    /// `OUTBOX_RELAY_*`: how the outbox relay publishes (as the
    /// producer's).
    pub relay: RelaySettings,
    /// `DATABASE_URL`.
    pub database_url: String,
    /// `DATABASE_MIGRATE` (default `true`): apply the migrations at
    /// start-up; `false`: only check that they are applied (applied by
    /// `consumer migrate`, by a role that may create tables).
    pub database_migrate: bool,
    /// `DB_POOL_SIZE`.
    pub db_pool_size: u32,
    /// `DB_STATEMENT_TIMEOUT_MS`: a statement running longer fails (transient).
    pub db_statement_timeout: Duration,
    /// `DB_LOCK_TIMEOUT_MS`: waiting longer for a row lock fails (transient).
    pub db_lock_timeout: Duration,
    /// `DB_TRANSACTION_TIMEOUT_MS`: the client's own deadline on a batch's
    /// transaction; past it the connection is closed and the database counts
    /// as unreachable (the server's timeouts cannot fire on a dead path).
    pub db_transaction_timeout: Duration,
    /// `MAX_RETRIES` and `RETRY_BACKOFF_MS`.
    pub retry: RetryPolicy,
    /// `BATCH_SIZE`: most messages persisted in one transaction.
    pub batch_size: usize,
    /// `BATCH_WAIT_MS`: longest wait to fill a batch once one message is in.
    pub batch_wait: Duration,
    /// `MAX_IN_FLIGHT_BATCHES`: most batches (of different partitions)
    /// written at once, each on its own connection.
    pub max_in_flight: usize,
    /// `CIRCUIT_PROBE_MS`: first wait between database probes while the
    /// circuit is open (doubles up to 30 s).
    pub circuit_probe: Duration,
    /// `SHUTDOWN_TIMEOUT_SECS`: bound on the graceful stop.
    pub shutdown_timeout: Duration,
    /// `STALL_TIMEOUT_SECS`: `/readyz` fails when messages wait and no batch
    /// finished for this long.
    pub stall_timeout: Duration,
    /// `DLQ_FLOOD_*`: when a partition is held instead of dead-lettering
    /// its stream.
    pub flood: FloodLimits,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

impl ConsumerConfig {
    /// Reads and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let database_url = database_url(env)?;
        let (domains, topics) = domains_and_topics(env)?;
        let orders_state_topic = orders_state_topic(env, &domains)?;
        let config = Self {
            http_addr: env.socket_addr("CONSUMER_HTTP_ADDR", "0.0.0.0:8081")?,
            http_limits: HttpLimits::from_env(env)?,
            kafka: KafkaSettings::from_env(env)?,
            group_id: env.string(
                "KAFKA_CONSUMER_GROUP",
                contract::topics::DEFAULT_CONSUMER_GROUP,
            ),
            topics,
            domains,
            orders_state_topic,
            orders_state_format: env.parse(
                "ORDERS_STATE_FORMAT",
                Format::Json,
                "json, protobuf or avro",
            )?,
            relay: RelaySettings::from_env(env)?,
            database_url,
            database_migrate: env.flag("DATABASE_MIGRATE", true)?,
            db_pool_size: env.number("DB_POOL_SIZE", 8, 1..=200)?,
            db_statement_timeout: env.millis("DB_STATEMENT_TIMEOUT_MS", 10_000, 100..=600_000)?,
            db_lock_timeout: env.millis("DB_LOCK_TIMEOUT_MS", 2_000, 10..=600_000)?,
            db_transaction_timeout: env.millis(
                "DB_TRANSACTION_TIMEOUT_MS",
                30_000,
                500..=600_000,
            )?,
            retry: RetryPolicy {
                max_retries: env.number("MAX_RETRIES", 3, 0..=20)?,
                initial_backoff: env.millis("RETRY_BACKOFF_MS", 1_000, 1..=600_000)?,
            },
            batch_size: env.number("BATCH_SIZE", 500, 1..=10_000)?,
            batch_wait: env.millis("BATCH_WAIT_MS", 5, 0..=10_000)?,
            max_in_flight: env.number("MAX_IN_FLIGHT_BATCHES", 4, 1..=64)?,
            circuit_probe: env.millis("CIRCUIT_PROBE_MS", 1_000, 10..=60_000)?,
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECS", 30, 1..=600)?,
            stall_timeout: env.seconds("STALL_TIMEOUT_SECS", 60, 5..=3600)?,
            flood: flood_limits(env)?,
            telemetry: TelemetryConfig::from_env(env, "consumer")?,
        };
        // Each batch in flight holds a connection; a probe needs one too.
        if config.max_in_flight >= config.db_pool_size as usize {
            return Err(ConfigError::new(
                "MAX_IN_FLIGHT_BATCHES",
                &config.max_in_flight.to_string(),
                format!("fewer than DB_POOL_SIZE ({})", config.db_pool_size),
            ));
        }
        Ok(config)
    }
}

/// `DATABASE_URL`, which must be a PostgreSQL URL.
fn database_url(env: &Env) -> Result<String, ConfigError> {
    let database_url = env.string("DATABASE_URL", "postgres://localhost/pubsubkafka");
    let postgres_scheme =
        database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
    if !postgres_scheme
        || database_url
            .parse::<sqlx::postgres::PgConnectOptions>()
            .is_err()
    {
        // The URL may hold a password: never echo it.
        return Err(ConfigError::new(
            "DATABASE_URL",
            "***",
            "a PostgreSQL URL such as postgres://user@host:5432/db",
        ));
    }
    Ok(database_url)
}

/// `ORDERS_TOPIC` and `USERS_TOPIC` (two topics), and `CONSUMER_TOPICS`,
/// each one of them.
fn domains_and_topics(env: &Env) -> Result<(Domains, Vec<String>), ConfigError> {
    let domains = Domains {
        orders: env.string("ORDERS_TOPIC", topics::ORDERS),
        users: env.string("USERS_TOPIC", topics::USERS),
    };
    if domains.orders == domains.users {
        return Err(ConfigError::new(
            "USERS_TOPIC",
            &domains.users,
            "a topic other than ORDERS_TOPIC",
        ));
    }
    let topics: Vec<String> = env
        .string(
            "CONSUMER_TOPICS",
            &format!("{},{}", domains.orders, domains.users),
        )
        .split(',')
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    if topics.is_empty() || topics.iter().any(|t| domains.domain(t).is_none()) {
        return Err(ConfigError::new(
            "CONSUMER_TOPICS",
            &topics.join(","),
            format!(
                "a comma-separated list of ORDERS_TOPIC ({}) and USERS_TOPIC ({})",
                domains.orders, domains.users
            ),
        ));
    }
    Ok((domains, topics))
}

/// `ORDERS_STATE_TOPIC`: never a topic the consumer reads (it would read
/// its own output as orders or users).
fn orders_state_topic(env: &Env, domains: &Domains) -> Result<String, ConfigError> {
    let topic = env.string("ORDERS_STATE_TOPIC", topics::ORDERS_STATE);
    let read_or_dead_letters = [&domains.orders, &domains.users]
        .into_iter()
        .any(|t| topic == *t || topic == topics::dlq_of(t));
    if read_or_dead_letters {
        return Err(ConfigError::new(
            "ORDERS_STATE_TOPIC",
            &topic,
            "a topic other than ORDERS_TOPIC, USERS_TOPIC and their dead-letter topics",
        ));
    }
    Ok(topic)
}

/// `DLQ_FLOOD_*`.
fn flood_limits(env: &Env) -> Result<FloodLimits, ConfigError> {
    Ok(FloodLimits {
        max_in_row: env.number("DLQ_FLOOD_MAX_IN_ROW", 100, 0..=1_000_000)?,
        window: env.number("DLQ_FLOOD_WINDOW", 200, 1..=100_000)?,
        max_percent: env.number("DLQ_FLOOD_MAX_PERCENT", 50, 1..=100)?,
        retry_after: env.seconds("DLQ_FLOOD_RETRY_SECS", 300, 1..=86_400)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = ConsumerConfig::from_env(&Env::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(c.group_id, "order-consumer");
        assert_eq!(c.database_url, "postgres://localhost/pubsubkafka");
        assert_eq!(c.topics, ["orders", "users"]);
        assert_eq!(c.orders_state_topic, "orders-state");
        assert_eq!(c.orders_state_format, Format::Json);
        assert_eq!(
            (c.relay.batch, c.relay.concurrency),
            (500, 4),
            "the producer's relay defaults"
        );
        assert_eq!(c.retry.max_retries, 3);
        assert_eq!(c.retry.initial_backoff, Duration::from_secs(1));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.flood.max_in_row, 100);
        assert_eq!((c.flood.window, c.flood.max_percent), (200, 50));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("MAX_RETRIES", "many"),
            ("MAX_RETRIES", "99"),
            ("RETRY_BACKOFF_MS", "0"),
            ("CONSUMER_HTTP_ADDR", "x"),
            ("DATABASE_URL", "mysql://nope"),
            ("BATCH_SIZE", "0"),
            ("MAX_IN_FLIGHT_BATCHES", "0"),
            ("MAX_IN_FLIGHT_BATCHES", "8"),
            ("CONSUMER_TOPICS", "orders-dlq"),
            ("CONSUMER_TOPICS", "payments"),
            ("USERS_TOPIC", "orders"),
            ("ORDERS_STATE_TOPIC", "orders"),
            ("ORDERS_STATE_TOPIC", "users"),
            ("ORDERS_STATE_TOPIC", "orders-dlq"),
            ("ORDERS_STATE_FORMAT", "xml"),
            ("OUTBOX_RELAY_BATCH", "0"),
            ("OUTBOX_RELAY_CONCURRENCY", "0"),
            ("OUTBOX_RELAY_POLL_MS", "0"),
            ("DB_TRANSACTION_TIMEOUT_MS", "10"),
            ("STALL_TIMEOUT_SECS", "0"),
            ("DLQ_FLOOD_MAX_PERCENT", "0"),
            ("DLQ_FLOOD_MAX_PERCENT", "101"),
            ("DLQ_FLOOD_WINDOW", "0"),
            ("DLQ_FLOOD_RETRY_SECS", "0"),
        ] {
            let err = ConsumerConfig::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
        let err = ConsumerConfig::from_env(&Env::from_pairs([(
            "DATABASE_URL",
            "mysql://u:secret@h/db",
        )]))
        .unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
