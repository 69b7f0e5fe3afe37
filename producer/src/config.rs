//! The producer's settings, read once from the environment.

use std::net::SocketAddr;
use std::num::NonZeroU32;

use axum::http::HeaderName;
use std::time::Duration;

use contract::topics::{self, Domains};
use contract::Format;
use platform::kafka::KafkaSettings;
use platform::server::HttpLimits;
use platform::telemetry::TelemetryConfig;
use platform::{ConfigError, Env};

use crate::outbox::RelaySettings;
use crate::rate_limit::RateLimitConfig;

/// Everything the producer service needs to start.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `PRODUCER_HTTP_ADDR`: API, health and metrics.
    pub http_addr: SocketAddr,
    /// `METRICS_ADDR`: when set, `/metrics`, `/healthz` and `/readyz` are
    /// served there only, not beside the API.
    pub metrics_addr: Option<SocketAddr>,
    /// `HTTP_*`: what a client may hold of the server.
    pub http_limits: HttpLimits,
    /// Brokers and librdkafka pass-through properties.
    pub kafka: KafkaSettings,
    /// `MESSAGE_FORMAT`: encoding of published values.
    pub format: Format,
    /// `ORDERS_TOPIC`, `USERS_TOPIC`: the topic of each domain.
    pub topics: Domains,
    /// `PRODUCE_TIMEOUT_MS`: longest a request waits for the broker's
    /// acknowledgement before it answers 503.
    pub produce_timeout: Duration,
    /// `MAX_BODY_BYTES`: larger bodies get 413.
    pub max_body_bytes: usize,
    /// `MAX_BATCH_ITEMS`: most orders or users in one batch request.
    pub max_batch_items: usize,
    /// `MAX_BATCH_BODY_BYTES`: larger batch bodies get 413.
    pub max_batch_body_bytes: usize,
    /// `RATE_LIMIT_*`: requests per second per client; `None` (the
    /// default, `RATE_LIMIT_RPS=0`): no limit.
    pub rate_limit: Option<RateLimitConfig>,
    /// `API_TOKEN`: when set, write endpoints need `Authorization: Bearer <token>`.
    pub api_token: Option<String>,
    /// `IDEMPOTENCY_KEY_SECRET` (32+ characters, the same in every replica):
    /// ids derived from idempotency keys are keyed by it, so nobody without
    /// it can compute a client's order id from a guessed key. Unset: the
    /// public derivation.
    pub id_keys: contract::ids::KeyDerivation,
    /// `SHUTDOWN_TIMEOUT_SECS`: bound on the graceful drain.
    pub shutdown_timeout: Duration,
    /// `PRODUCER_MODE=outbox`: accepted events go to an outbox table and a
    /// relay publishes them; `None` (`direct`, the default): `202` after the
    /// broker's acknowledgement.
    pub outbox: Option<OutboxConfig>,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

/// The settings of outbox mode.
#[derive(Debug, Clone)]
pub struct OutboxConfig {
    /// `OUTBOX_DATABASE_URL` (else `DATABASE_URL`): where the outbox table is.
    pub database_url: String,
    /// `OUTBOX_DB_POOL_SIZE` (default 16): connections, for requests and relay.
    pub pool_size: u32,
    /// `OUTBOX_WRITE_TIMEOUT_MS` (default 2000): longest a request waits for
    /// its outbox transaction (then `503`).
    pub write_timeout: Duration,
    /// `OUTBOX_RELAY_*`: how the relay publishes.
    pub relay: RelaySettings,
    /// `DATABASE_MIGRATE` (default `true`): create the table at start-up if
    /// missing; `false`: only check that its migrations are applied (by
    /// `producer migrate`, as a role that may create tables).
    pub migrate: bool,
}

impl ProducerConfig {
    /// Reads and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let format = env
            .string("MESSAGE_FORMAT", "json")
            .parse::<Format>()
            .map_err(|e| ConfigError::new("MESSAGE_FORMAT", &e.0, "json, protobuf or avro"))?;
        let rate_limit = rate_limit(env)?;
        let outbox = outbox(env)?;
        let api_token = env.api_token()?;
        let metrics_addr = match env.get("METRICS_ADDR") {
            None => None,
            Some(_) => Some(env.socket_addr("METRICS_ADDR", "")?),
        };
        Ok(Self {
            http_addr: env.socket_addr("PRODUCER_HTTP_ADDR", "0.0.0.0:8080")?,
            metrics_addr,
            http_limits: HttpLimits::from_env(env)?,
            kafka: KafkaSettings::from_env(env)?,
            format,
            topics: Domains {
                orders: env.string("ORDERS_TOPIC", topics::ORDERS),
                users: env.string("USERS_TOPIC", topics::USERS),
            },
            produce_timeout: env.millis("PRODUCE_TIMEOUT_MS", 5_000, 100..=120_000)?,
            max_body_bytes: env.number("MAX_BODY_BYTES", 65_536, 1_024..=16 * 1024 * 1024)?,
            max_batch_items: env.number(
                "MAX_BATCH_ITEMS",
                500,
                1..=contract::batch::MAX_BATCH_ITEMS,
            )?,
            max_batch_body_bytes: env.number(
                "MAX_BATCH_BODY_BYTES",
                4 * 1024 * 1024,
                1_024..=64 * 1024 * 1024,
            )?,
            rate_limit,
            api_token,
            id_keys: match env.get("IDEMPOTENCY_KEY_SECRET") {
                None => contract::ids::KeyDerivation::public(),
                Some(secret) if secret.len() >= 32 => {
                    contract::ids::KeyDerivation::keyed(secret.as_bytes())
                }
                Some(_) => {
                    return Err(ConfigError::new(
                        "IDEMPOTENCY_KEY_SECRET",
                        "***",
                        "at least 32 characters",
                    ))
                }
            },
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECS", 30, 1..=600)?,
            outbox,
            telemetry: TelemetryConfig::from_env(env, "producer")?,
        })
    }
}

/// `PRODUCER_MODE` (`direct`, the default, or `outbox`) and, for outbox
/// mode, its database and relay settings.
fn outbox(env: &Env) -> Result<Option<OutboxConfig>, ConfigError> {
    match env.string("PRODUCER_MODE", "direct").trim() {
        "direct" => return Ok(None),
        "outbox" => {}
        other => return Err(ConfigError::new("PRODUCER_MODE", other, "direct or outbox")),
    }
    let Some(database_url) = env
        .get("OUTBOX_DATABASE_URL")
        .or_else(|| env.get("DATABASE_URL"))
    else {
        return Err(ConfigError::new(
            "OUTBOX_DATABASE_URL",
            "",
            "the PostgreSQL URL of the outbox table (or DATABASE_URL) when PRODUCER_MODE=outbox",
        ));
    };
    let relay = RelaySettings::from_env(env)?;
    let concurrency = relay.concurrency;
    let pool_size: u32 = env.number("OUTBOX_DB_POOL_SIZE", 16, 2..=1_000)?;
    if pool_size as usize <= concurrency {
        return Err(ConfigError::new(
            "OUTBOX_DB_POOL_SIZE",
            &pool_size.to_string(),
            format!(
                "more than OUTBOX_RELAY_CONCURRENCY ({concurrency}): requests need connections too"
            ),
        ));
    }
    Ok(Some(OutboxConfig {
        database_url: database_url.to_owned(),
        pool_size,
        write_timeout: env.millis("OUTBOX_WRITE_TIMEOUT_MS", 2_000, 10..=60_000)?,
        relay,
        migrate: env.flag("DATABASE_MIGRATE", true)?,
    }))
}

/// `RATE_LIMIT_RPS` (0, the default: off), `RATE_LIMIT_BURST` (default: a
/// second's worth), `RATE_LIMIT_CLIENT_HEADER`, `RATE_LIMIT_TRUSTED_PROXIES`
/// (default 1), `RATE_LIMIT_MAX_CLIENTS`.
fn rate_limit(env: &Env) -> Result<Option<RateLimitConfig>, ConfigError> {
    let rps: u32 = env.number("RATE_LIMIT_RPS", 0, 0..=10_000_000)?;
    let Some(per_second) = NonZeroU32::new(rps) else {
        return Ok(None);
    };
    let burst: u32 = env.number("RATE_LIMIT_BURST", rps, 1..=10_000_000)?;
    let client_header = match env.get("RATE_LIMIT_CLIENT_HEADER") {
        None => None,
        Some(name) => Some(HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            ConfigError::new(
                "RATE_LIMIT_CLIENT_HEADER",
                name,
                "a header name, such as X-Forwarded-For",
            )
        })?),
    };
    Ok(Some(RateLimitConfig {
        per_second,
        burst: NonZeroU32::new(burst).unwrap_or(per_second),
        client_header,
        trusted_proxies: env.number("RATE_LIMIT_TRUSTED_PROXIES", 1, 1..=16)?,
        max_clients: env.number("RATE_LIMIT_MAX_CLIENTS", 100_000, 1..=10_000_000)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let c = ProducerConfig::from_env(&Env::default()).unwrap();
        assert_eq!(c.http_addr.to_string(), "0.0.0.0:8080");
        assert_eq!(c.kafka.bootstrap_servers, "localhost:9092");
        assert_eq!(c.format, Format::Json);
        assert_eq!(c.topics.orders, "orders");
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert!(c.api_token.is_none());
        assert!(c.rate_limit.is_none(), "no rate limit unless one is set");
    }

    #[test]
    fn a_rate_limit_is_per_client_with_a_second_of_burst() {
        let c = ProducerConfig::from_env(&Env::from_pairs([
            ("RATE_LIMIT_RPS", "200"),
            ("RATE_LIMIT_CLIENT_HEADER", "X-Forwarded-For"),
        ]))
        .unwrap();
        let limit = c.rate_limit.expect("a limit");
        assert_eq!((limit.per_second.get(), limit.burst.get()), (200, 200));
        assert_eq!(limit.client_header.unwrap().as_str(), "x-forwarded-for");
        assert_eq!(limit.max_clients, 100_000);
        for (var, value) in [
            ("RATE_LIMIT_BURST", "0"),
            ("RATE_LIMIT_CLIENT_HEADER", "no spaces"),
            ("RATE_LIMIT_MAX_CLIENTS", "0"),
        ] {
            let err = ProducerConfig::from_env(&Env::from_pairs([
                ("RATE_LIMIT_RPS", "10"),
                (var, value),
            ]))
            .unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
    }

    #[test]
    fn outbox_mode_needs_a_database_and_leaves_the_relay_connections() {
        assert!(ProducerConfig::from_env(&Env::default())
            .unwrap()
            .outbox
            .is_none());
        let c = ProducerConfig::from_env(&Env::from_pairs([
            ("PRODUCER_MODE", "outbox"),
            ("DATABASE_URL", "postgres://db/orders"),
        ]))
        .unwrap()
        .outbox
        .expect("outbox mode");
        assert_eq!(c.database_url, "postgres://db/orders");
        assert_eq!((c.pool_size, c.relay.concurrency), (16, 4));
        for (pairs, variable) in [
            (vec![("PRODUCER_MODE", "both")], "PRODUCER_MODE"),
            (vec![("PRODUCER_MODE", "outbox")], "OUTBOX_DATABASE_URL"),
            (
                vec![
                    ("PRODUCER_MODE", "outbox"),
                    ("OUTBOX_DATABASE_URL", "postgres://db/o"),
                    ("OUTBOX_DB_POOL_SIZE", "4"),
                ],
                "OUTBOX_DB_POOL_SIZE",
            ),
        ] {
            let e = ProducerConfig::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(e.variable, variable);
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("MESSAGE_FORMAT", "xml"),
            ("PRODUCER_HTTP_ADDR", "8080"),
            ("PRODUCE_TIMEOUT_MS", "0"),
            ("MAX_BODY_BYTES", "ten"),
            ("MAX_BATCH_ITEMS", "10001"),
            ("MAX_BATCH_BODY_BYTES", "0"),
            ("RATE_LIMIT_RPS", "-1"),
            ("API_TOKEN", "short"),
            ("KAFKA_BOOTSTRAP_SERVERS", "nohost"),
            ("METRICS_ADDR", "9090"),
            ("HTTP_HEADER_TIMEOUT_MS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
            ("IDEMPOTENCY_KEY_SECRET", "under-32-characters"),
        ] {
            let err = ProducerConfig::from_env(&Env::from_pairs([(var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{err}");
        }
        let err =
            ProducerConfig::from_env(&Env::from_pairs([("MESSAGE_FORMAT", "xml")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid MESSAGE_FORMAT=\"xml\": expected json, protobuf or avro"
        );
    }
}
