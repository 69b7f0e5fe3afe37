//! Building the consumer service from its configuration and running it
//! until told to stop. Tests and the local stack build it in process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use platform::http::{self, NotReady, Readiness};
use platform::server::{self, ConnectionMetrics, HttpLimits};
use platform::startup::{self, bind, Probe, StartError};
use prometheus::Registry;
use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use store::relay::{Publish, Relay, RelayMetrics};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::apply::StateTopic;
use crate::circuit::CircuitBreaker;
use crate::config::ConsumerConfig;
use crate::context::GroupContext;
use crate::dead_letter::DeadLetterer;
use crate::metrics::ConsumerMetrics;
use crate::persist::Store;
use crate::progress::Progress;
use crate::relay::StatePublisher;
use crate::worker::{GroupConsumer, Worker};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// What any service can fail at (address, Kafka client, metrics,
    /// credentials).
    #[error(transparent)]
    Start(#[from] StartError),
    /// The database URL is unusable.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("database migrations failed: {source}{}", advice.as_ref().map_or(String::new(), |a| format!("; {a}")))]
    Migrations {
        /// Why.
        source: sqlx::migrate::MigrateError,
        /// What to do about it, for the common set-up mistakes.
        advice: Option<String>,
    },
    /// Migrations are off (`DATABASE_MIGRATE=false`) and the schema lacks
    /// some.
    #[error(transparent)]
    Schema(#[from] store::schema::SchemaError),
}

impl From<rdkafka::error::KafkaError> for StartupError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        StartError::from(e).into()
    }
}

impl From<prometheus::Error> for StartupError {
    fn from(e: prometheus::Error) -> Self {
        StartError::from(e).into()
    }
}

/// Ready while the consumer gets somewhere and its database and brokers
/// answer.
#[derive(Clone)]
struct ConsumerReady {
    store: Store,
    consumer: Arc<GroupConsumer>,
    progress: Progress,
    stall_timeout: Duration,
}

impl Readiness for ConsumerReady {
    async fn check(&self) -> Result<(), NotReady> {
        self.progress
            .check(std::time::Instant::now(), self.stall_timeout)
            .map_err(|e| NotReady::new("progress", e))?;
        self.store.probe().await.map_err(|e| {
            // A database error may quote a value.
            NotReady::new("database", contract::redact::scrub(&e.to_string()))
        })?;
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_secs(2))
                .map(drop)
        })
        .await
        .map_err(|e| NotReady::new("brokers", e))?
        .map_err(|e| NotReady::new("brokers", e))
    }
}

/// The consumer service, connected and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    connections: ConnectionMetrics,
    worker: Worker,
    relay: Relay<StatePublisher>,
    shutdown_timeout: Duration,
}

/// Settings of the classic group protocol, which KIP-848's protocol
/// (`KAFKA_GROUP_PROTOCOL=consumer`) leaves to the broker: librdkafka
/// refuses them there.
const CLASSIC_PROTOCOL_ONLY: [&str; 3] = [
    "partition.assignment.strategy",
    "session.timeout.ms",
    "heartbeat.interval.ms",
];

/// Consumer settings for at-least-once delivery; each can be overridden by
/// its `KAFKA_*` variable. Under the `consumer` group protocol the classic
/// protocol's own settings are left out.
fn consumer_defaults<'a>(group: &'a str, protocol: Option<&str>) -> Vec<(&'static str, &'a str)> {
    let mut defaults = classic_defaults(group).to_vec();
    if protocol == Some("consumer") {
        defaults.retain(|(key, _)| !CLASSIC_PROTOCOL_ONLY.contains(key));
    }
    defaults
}

fn classic_defaults(group: &str) -> [(&'static str, &str); 13] {
    [
        ("group.id", group),
        ("client.id", "pubsubkafka-consumer"),
        // Offsets are stored by the loop after the side effect and committed
        // by it: never by a timer that does not know what is done.
        ("enable.auto.commit", "false"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
        ("statistics.interval.ms", "5000"),
        // Bounds prefetched data, and so memory (fetched batches stay in
        // memory, decompressed, while any of their messages is queued):
        // 2 MiB queued, 2 MiB per fetch answer, 512 KiB per partition. Still
        // enough to keep a 500-message batch full (bench/RESULTS.md).
        ("queued.max.messages.kbytes", "2048"),
        ("fetch.max.bytes", "2097152"),
        ("max.partition.fetch.bytes", "524288"),
        // With that small a queue it is full whenever the database is the
        // slower side, and librdkafka then waits this long before fetching
        // again (1000 ms by default): draining a backlog ran at a third of
        // its pace (bench/RESULTS.md).
        ("fetch.queue.backoff.ms", "10"),
    ]
}

impl Application {
    /// Applies migrations (or checks them, see [`database`]), joins the
    /// group and binds the HTTP address.
    pub async fn build(config: ConsumerConfig, registry: Registry) -> Result<Self, StartupError> {
        let metrics = ConsumerMetrics::register(&registry)?;
        metrics.start_at_zero(&config.topics);
        let http_metrics = http::HttpMetrics::register(&registry)?;
        let connections = ConnectionMetrics::register(&registry)?;
        let pool = database(&config).await?;
        let relay = relay(&config, &registry)?;
        let store = Store::new(pool, config.db_transaction_timeout).with_state_topic(StateTopic {
            topic: config.orders_state_topic.clone(),
            format: config.orders_state_format,
        });
        let progress = Progress::default();

        let context = GroupContext::new(metrics.clone(), &config.group_id, progress.clone());
        let consumer = join_group(&config, context).await?;
        let dead_letters =
            DeadLetterer::new(&config.kafka, &config.group_id, Duration::from_secs(10))?;

        let ready = ConsumerReady {
            store: store.clone(),
            consumer: consumer.clone(),
            progress: progress.clone(),
            stall_timeout: config.stall_timeout,
        };
        let router = ops_router(registry, http_metrics, ready);
        let listener = bind(config.http_addr).await?;
        let worker = worker(&config, consumer, store, dead_letters, metrics, progress);
        Ok(Self {
            listener,
            router,
            limits: config.http_limits,
            connections,
            worker,
            relay,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound HTTP address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Consumes and relays the outbox until `stop` is cancelled; then
    /// finishes the batch in hand, commits and leaves the group, and lets
    /// the relay finish the shards it is publishing, all within the
    /// shutdown timeout.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        tracing::info!(addr = %self.listener.local_addr()?, "consumer listening");
        let http_stop = CancellationToken::new();
        let server = tokio::spawn(server::serve(
            self.listener,
            self.router,
            self.limits,
            self.connections,
            http_stop.clone(),
        ));
        // The relay stops after the loop: what the last batches wrote to
        // the outbox is still published while they finish.
        let relay_stop = CancellationToken::new();
        let relay = tokio::spawn(self.relay.run(relay_stop.clone()));
        let worker = tokio::spawn(self.worker.run(stop.clone()));
        stop.cancelled().await;
        let since = std::time::Instant::now();
        match tokio::time::timeout(self.shutdown_timeout, worker).await {
            Ok(_) => tracing::info!("consumer stopped cleanly"),
            Err(_) => tracing::error!("consumer did not stop within the shutdown timeout"),
        }
        relay_stop.cancel();
        // What waits then is published by another replica or after the
        // restart.
        let left = self.shutdown_timeout.saturating_sub(since.elapsed());
        if tokio::time::timeout(left, relay).await.is_err() {
            tracing::warn!("outbox relay still publishing at the shutdown deadline");
        }
        http_stop.cancel();
        let _ = server.await;
        Ok(())
    }
}

/// The consumer's database pool, its schema current: the read model, and
/// the outbox of the orders' state messages beside it. Migrated at start
/// (`DATABASE_MIGRATE`, the default), or else checked, reading only, so
/// that the service never runs on an old schema.
pub async fn database(config: &ConsumerConfig) -> Result<PgPool, StartupError> {
    let pool = pool(config)?;
    let current = if config.database_migrate {
        apply_migrations(&pool, &config.database_url).await
    } else {
        store::schema::check(&pool).await.map_err(Into::into)
    };
    if let Err(e) = current {
        // A failed migration may leave its session holding the migrator's
        // lock: closed, the connections release it.
        pool.close().await;
        return Err(e);
    }
    Ok(pool)
}

/// `consumer migrate`: applies the migrations, as start-up does, and
/// returns.
pub async fn migrate(config: &ConsumerConfig) -> Result<(), StartupError> {
    let pool = pool(config)?;
    let applied = apply_migrations(&pool, &config.database_url).await;
    pool.close().await;
    applied
}

fn pool(config: &ConsumerConfig) -> Result<PgPool, StartupError> {
    Ok(crate::db::pool(
        &config.database_url,
        config.db_pool_size,
        store::db::SessionGuards {
            statement: config.db_statement_timeout,
            lock: Some(config.db_lock_timeout),
            idle_in_transaction: config.db_transaction_timeout,
            read_only: false,
        },
    )?)
}

/// The read model and the outbox of the order states, in one call; a
/// failure with the advice for its common causes.
async fn apply_migrations(pool: &PgPool, url: &str) -> Result<(), StartupError> {
    store::schema::migrate(pool)
        .await
        .map_err(|source| StartupError::Migrations {
            advice: store::schema::advice(&source, url),
            source,
        })
}

/// `/metrics` and the probes, each request counted in `http_metrics`.
fn ops_router(registry: Registry, http_metrics: http::HttpMetrics, ready: ConsumerReady) -> Router {
    http::ops_router(registry, ready).layer(axum::middleware::from_fn_with_state(
        http_metrics,
        http::track,
    ))
}

/// The relay of the outbox in the consumer's database: its own producer
/// and its own connections (one per shard published at once, and one for
/// the backlog gauges), whose sessions the server ends when idle in a
/// transaction for the relay's deadline (see [`store::relay`]); its
/// metrics on the consumer's `/metrics`.
fn relay(
    config: &ConsumerConfig,
    registry: &Registry,
) -> Result<Relay<StatePublisher>, StartupError> {
    let publisher = StatePublisher::new(&config.kafka, crate::relay::PRODUCE_TIMEOUT)?;
    let connections = u32::try_from(config.relay.concurrency + 1).unwrap_or(u32::MAX);
    let pool = store::db::pool(
        &config.database_url,
        store::db::PoolSpec {
            application: "pubsubkafka-consumer-relay",
            max_connections: connections,
            acquire: Duration::from_secs(3),
            guards: store::relay::session_guards(
                config.db_statement_timeout,
                publisher.verdict_within(),
            ),
        },
    )?;
    Ok(Relay::new(
        pool,
        vec![config.orders_state_topic.clone()],
        config.db_statement_timeout,
        publisher,
        config.relay,
        RelayMetrics::register(registry)?,
    ))
}

/// Creates the group member, checks its credentials and subscribes it to
/// the configured topics.
async fn join_group(
    config: &ConsumerConfig,
    context: GroupContext,
) -> Result<Arc<GroupConsumer>, StartupError> {
    let consumer: GroupConsumer = config
        .kafka
        .client_config(&consumer_defaults(
            &config.group_id,
            config
                .kafka
                .properties
                .get("group.protocol")
                .map(String::as_str),
        ))
        .create_with_context(context.clone())?;
    let consumer = Arc::new(consumer);
    check_credentials(&consumer, &context).await?;
    let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    Ok(consumer)
}

/// The consumer loop as configured, over what [`Application::build`]
/// connected.
fn worker(
    config: &ConsumerConfig,
    consumer: Arc<GroupConsumer>,
    store: Store,
    dead_letters: DeadLetterer,
    metrics: ConsumerMetrics,
    progress: Progress,
) -> Worker {
    Worker {
        consumer,
        store,
        dead_letters,
        policy: config.retry,
        topics: config.domains.clone(),
        limits: crate::pending::BatchLimits {
            messages: config.batch_size,
            bytes: crate::pending::MAX_BATCH_BYTES,
            wait: config.batch_wait,
        },
        max_in_flight: config.max_in_flight,
        metrics,
        breaker: CircuitBreaker::new(config.circuit_probe),
        progress,
        dlq_backoff: crate::settlement::DlqBackoff::default(),
        log_throttle: platform::throttle::LogThrottle::default(),
        flood: crate::flood::FloodGuard::new(config.flood),
    }
}

/// A wrong password fails start-up with a message that says so; a broker
/// that is merely down does not (the loop waits for it). A consumer hears of
/// a refused login through its queue, so the probe polls it too; it runs
/// before the subscription, so no message can be taken from the queue here.
async fn check_credentials(
    consumer: &Arc<GroupConsumer>,
    context: &GroupContext,
) -> Result<(), StartupError> {
    let probe = || async {
        let client = consumer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            client
                .fetch_metadata(None, Duration::from_secs(1))
                .map(drop)
        })
        .await;
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
        {
            if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::Authentication) {
                return Probe::Refused(e.to_string());
            }
        }
        match fetched {
            Ok(Ok(())) => Probe::Answered,
            _ => Probe::Silent,
        }
    };
    startup::check_credentials(probe, || startup::refusal(&context.observed)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_consumer_group_protocol_leaves_the_classic_settings_to_the_broker() {
        let classic = consumer_defaults("g", None);
        for key in CLASSIC_PROTOCOL_ONLY {
            assert!(classic.iter().any(|(k, _)| *k == key), "{key} by default");
        }
        assert_eq!(consumer_defaults("g", Some("classic")), classic);
        let kip848 = consumer_defaults("g", Some("consumer"));
        for key in CLASSIC_PROTOCOL_ONLY {
            assert!(!kip848.iter().any(|(k, _)| *k == key), "no {key}");
        }
        assert_eq!(kip848.len(), classic.len() - CLASSIC_PROTOCOL_ONLY.len());
    }
}
