//! The read side's settings, from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use platform::config::{ConfigError, Env};
use platform::server::HttpLimits;
use platform::telemetry::TelemetryConfig;

/// Every setting of the `query` service.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// `QUERY_HTTP_ADDR` (default `0.0.0.0:8082`): the API, `/healthz`,
    /// `/readyz`, `/metrics`.
    pub http_addr: SocketAddr,
    /// `HTTP_*`: what one client may hold.
    pub http_limits: HttpLimits,
    /// `DATABASE_URL`: the tables the consumer writes (a read replica's URL
    /// works; a role that may only `SELECT` is enough).
    pub database_url: String,
    /// `QUERY_DB_POOL_SIZE` (default 8): connections to the database.
    pub pool_size: u32,
    /// `QUERY_STATEMENT_TIMEOUT_MS` (default 2000): longest a lookup may
    /// take, on the server and here (then `503`).
    pub statement_timeout: Duration,
    /// `QUERY_MAX_IN_FLIGHT` (default 256): lookups answered at once; more
    /// get `503` with `Retry-After` at once rather than a queue.
    pub max_in_flight: usize,
    /// `PENDING_WINDOW_SECS` (default 300): how long after it was accepted
    /// an order or user with a server-assigned id that is not stored yet
    /// answers `pending`; after that, `404`. Set it above the pipeline's
    /// lag budget (the consumer-lag alert).
    pub pending_window: Duration,
    /// `API_TOKEN`: reads need `Authorization: Bearer <token>` (what they
    /// answer holds customer data). Required unless `allow_anonymous`.
    pub api_token: Option<String>,
    /// `QUERY_ALLOW_ANONYMOUS` (default `false`): serve reads without a
    /// token when `API_TOKEN` is unset (for a laptop, or behind a gateway
    /// that authenticates). Without it and without a token, the service
    /// refuses to start.
    pub allow_anonymous: bool,
    /// `SHUTDOWN_TIMEOUT_SECS` (default 30): bound on the graceful drain.
    pub shutdown_timeout: Duration,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

/// `API_TOKEN`, required unless `QUERY_ALLOW_ANONYMOUS` says otherwise:
/// whoever reaches the service would otherwise read any customer's name,
/// email and address by a guessable id.
fn reads_token(env: &Env) -> Result<Option<String>, ConfigError> {
    let token = env.api_token()?;
    if token.is_none() && !env.flag("QUERY_ALLOW_ANONYMOUS", false)? {
        return Err(ConfigError::new(
            "API_TOKEN",
            "",
            "a token of 16+ characters: the query service answers customer data, so it \
             does not start without one unless QUERY_ALLOW_ANONYMOUS=true says reads may be \
             anonymous",
        ));
    }
    Ok(token)
}

impl QueryConfig {
    /// Reads and validates every setting.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            http_addr: env.socket_addr("QUERY_HTTP_ADDR", "0.0.0.0:8082")?,
            http_limits: HttpLimits::from_env(env)?,
            database_url: env.string("DATABASE_URL", "postgres://localhost/pubsubkafka"),
            pool_size: env.number("QUERY_DB_POOL_SIZE", 8, 1..=1_000)?,
            statement_timeout: env.millis("QUERY_STATEMENT_TIMEOUT_MS", 2_000, 10..=600_000)?,
            max_in_flight: env.number("QUERY_MAX_IN_FLIGHT", 256, 1..=1_000_000)?,
            pending_window: env.seconds("PENDING_WINDOW_SECS", 300, 1..=30 * 24 * 3600)?,
            api_token: reads_token(env)?,
            allow_anonymous: env.flag("QUERY_ALLOW_ANONYMOUS", false)?,
            shutdown_timeout: env.seconds("SHUTDOWN_TIMEOUT_SECS", 30, 1..=600)?,
            telemetry: TelemetryConfig::from_env(env, "query")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_refusals_name_the_variable() {
        let anonymous = Env::from_pairs([("QUERY_ALLOW_ANONYMOUS", "true")]);
        let c = QueryConfig::from_env(&anonymous).expect("defaults");
        assert_eq!(c.http_addr.port(), 8082);
        assert_eq!(c.pending_window, Duration::from_secs(300));
        assert_eq!(c.api_token, None);
        assert!(c.allow_anonymous);
        for (name, value) in [
            ("QUERY_DB_POOL_SIZE", "0"),
            ("QUERY_STATEMENT_TIMEOUT_MS", "abc"),
            ("QUERY_MAX_IN_FLIGHT", "0"),
            ("PENDING_WINDOW_SECS", "0"),
            ("API_TOKEN", "short"),
            ("QUERY_HTTP_ADDR", "nowhere"),
            ("QUERY_ALLOW_ANONYMOUS", "maybe"),
        ] {
            let e = QueryConfig::from_env(&Env::from_pairs([
                ("QUERY_ALLOW_ANONYMOUS", "true"),
                (name, value),
            ]))
            .expect_err("a bad value is refused");
            assert_eq!(e.variable, name);
        }
    }

    #[test]
    fn without_a_token_reads_are_refused_unless_anonymous_reads_are_allowed() {
        let e = QueryConfig::from_env(&Env::default()).expect_err("no token, no start");
        assert_eq!(e.variable, "API_TOKEN");
        assert!(e.to_string().contains("QUERY_ALLOW_ANONYMOUS=true"), "{e}");
        let no = Env::from_pairs([("QUERY_ALLOW_ANONYMOUS", "false")]);
        assert!(QueryConfig::from_env(&no).is_err());
        let token = Env::from_pairs([("API_TOKEN", "a-token-of-16-chars!")]);
        let c = QueryConfig::from_env(&token).expect("a token is enough");
        assert!(!c.allow_anonymous);
        assert!(c.api_token.is_some());
    }
}
