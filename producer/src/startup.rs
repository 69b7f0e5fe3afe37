//! Building the service from its configuration, and running it until told
//! to stop. Tests and the local stack build it in process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use platform::http::{self, HttpMetrics};
use platform::server::{self, ConnectionMetrics, HttpLimits};
use platform::startup::{self, bind, Probe, StartError};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use utoipa::OpenApi;

use crate::admission;
use crate::config::{OutboxConfig, ProducerConfig};
use crate::metrics::ProducerMetrics;
use crate::openapi::ApiDoc;
use crate::outbox::{Outbox, OutboxMetrics, Relay};
use crate::publish::Publisher;
use crate::rate_limit::RateLimit;
use crate::routes;
use crate::sink::Sink;
use crate::state::AppState;

/// Why the service could not start.
pub type StartupError = StartError;

/// The producer service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `/metrics`, `/healthz`, `/readyz` on `METRICS_ADDR`, when set.
    ops: Option<(TcpListener, Router)>,
    limits: HttpLimits,
    connections: ConnectionMetrics,
    publisher: Publisher,
    relay: Option<Relay<Publisher>>,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds the HTTP address and creates the producer. Kafka being down is
    /// not fatal (`/readyz` says so and requests get 503); wrong credentials
    /// are, once the broker has said so.
    pub async fn build(config: ProducerConfig, registry: Registry) -> Result<Self, StartupError> {
        let metrics =
            ProducerMetrics::register(&registry, &[&config.topics.orders, &config.topics.users])?;
        let http_metrics = HttpMetrics::register(&registry)?;
        let connections = ConnectionMetrics::register(&registry)?;
        let publisher = Publisher::new(&config.kafka, config.produce_timeout, metrics)?;
        check_credentials(&publisher, &config.topics.orders).await?;
        let outbox = match &config.outbox {
            None => None,
            Some(c) => Some(open_outbox(c, config.produce_timeout, &registry).await?),
        };
        let relay = outbox.as_ref().zip(config.outbox.as_ref()).map(|(o, c)| {
            let topics = [&config.topics.orders, &config.topics.users];
            o.relay(
                topics.map(String::clone).to_vec(),
                publisher.clone(),
                c.relay,
            )
        });
        let sink = match outbox {
            Some(outbox) => Sink::Outbox(outbox),
            None => Sink::Broker {
                publisher: publisher.clone(),
                probe_topic: config.topics.orders.clone(),
            },
        };
        let state = Arc::new(app_state(&config, sink.clone()));
        let api = api_router(&config, state);
        let ops = http::ops_router(registry, sink);
        let (router, ops) = observed(&config, api, ops, http_metrics).await?;
        Ok(Self {
            listener: bind(config.http_addr).await?,
            router,
            ops,
            limits: config.http_limits,
            connections,
            publisher,
            relay,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address (its port is the real one when configured as 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The bound `METRICS_ADDR`, when the operations routes have their own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `stop` is cancelled; then stops accepting, finishes the
    /// requests in flight and flushes the producer, all within the shutdown
    /// timeout.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, metrics = ?self.metrics_addr(), "producer listening");
        let ops = self.ops.map(|(listener, router)| {
            tokio::spawn(server::serve(
                listener,
                router,
                self.limits,
                self.connections.clone(),
                stop.clone(),
            ))
        });
        let relay = self
            .relay
            .map(|relay| tokio::spawn(relay.run(stop.clone())));
        let serving = server::serve(
            self.listener,
            self.router,
            self.limits,
            self.connections,
            stop.clone(),
        );
        // Serve until the stop, then give in-flight requests what is left of
        // the shutdown timeout, and the flush whatever remains of it.
        let since =
            server::run_until_drained(serving, &stop, self.shutdown_timeout, "in-flight requests")
                .await?;
        if let Some(relay) = relay {
            wait_for_relay(relay, self.shutdown_timeout.saturating_sub(since.elapsed())).await;
        }
        let left = self
            .shutdown_timeout
            .saturating_sub(since.elapsed())
            .max(Duration::from_secs(1));
        match self.publisher.flush(left).await {
            Ok(()) => tracing::info!("producer flushed; stopped"),
            Err(e) => tracing::error!(error = %e, "producer flush incomplete at shutdown"),
        }
        if let Some(ops) = ops {
            let _ = ops.await;
        }
        Ok(())
    }
}

/// Lets the outbox relay finish the shards it is publishing (bounded by
/// the produce timeout), within `left`; what waits is published by another
/// replica or after the restart.
async fn wait_for_relay(relay: JoinHandle<()>, left: Duration) {
    if tokio::time::timeout(left, relay).await.is_err() {
        tracing::warn!("outbox relay still publishing at the shutdown deadline");
    }
}

/// What the handlers share, from `config`: the rate limiter (cleaned up in
/// the background while used) and the id derivation, with a warning when
/// ids derived from idempotency keys can be guessed.
fn app_state(config: &ProducerConfig, sink: Sink) -> AppState {
    let rate_limit = config
        .rate_limit
        .clone()
        .map(|c| Arc::new(RateLimit::new(c)));
    if let Some(limit) = &rate_limit {
        RateLimit::clean_up_while_used(limit);
    }
    if !config.id_keys.is_keyed() {
        tracing::warn!(
            "IDEMPOTENCY_KEY_SECRET is unset: an order id derived from an Idempotency-Key can be \
             computed by anyone who guesses the key; set the same secret in every replica"
        );
    }
    AppState {
        sink,
        format: config.format,
        topics: config.topics.clone(),
        max_batch_items: config.max_batch_items,
        body_timeout: config.http_limits.body_timeout,
        rate_limit,
        api_token: config.api_token.clone(),
        id_keys: config.id_keys.clone(),
    }
}

/// The write routes, each group behind an admission layer with its own
/// body limit (a batch may be larger), `/openapi.json`, and JSON `404`s:
/// for the read side's reads ([`routes::read_side`]) and any other path.
fn api_router(config: &ProducerConfig, state: Arc<AppState>) -> Router {
    let admitted = |max_body_bytes| {
        middleware::from_fn_with_state(
            admission::Admission {
                state: state.clone(),
                max_body_bytes,
            },
            admission::admit,
        )
    };
    let single = Router::new()
        .route("/orders", post(routes::create_order))
        .route("/users", post(routes::create_user))
        .merge(routes::order_changes())
        .route_layer(admitted(config.max_body_bytes))
        .layer(DefaultBodyLimit::max(config.max_body_bytes));
    let batches = Router::new()
        .route("/orders/batch", post(routes::create_orders))
        .route("/users/batch", post(routes::create_users))
        .route_layer(admitted(config.max_batch_body_bytes))
        .layer(DefaultBodyLimit::max(config.max_batch_body_bytes));
    let api = single.merge(batches).with_state(state.clone());
    Router::new()
        .merge(api)
        .merge(routes::read_side())
        .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .fallback(routes::not_found)
}

/// The service's router, observed ([`crate::middleware::observe`]), and the
/// operations routes: merged into it, or, when `METRICS_ADDR` is set, on
/// their own listener with only their HTTP metrics.
async fn observed(
    config: &ProducerConfig,
    api: Router,
    ops: Router,
    http_metrics: HttpMetrics,
) -> Result<(Router, Option<(TcpListener, Router)>), StartupError> {
    let mut router = api;
    let ops = match config.metrics_addr {
        Some(addr) => Some((bind(addr).await?, ops)),
        None => {
            router = router.merge(ops);
            None
        }
    };
    let router = router.layer(middleware::from_fn_with_state(
        http_metrics.clone(),
        crate::middleware::observe,
    ));
    let ops = ops.map(|(listener, ops)| {
        let ops = ops.layer(middleware::from_fn_with_state(http_metrics, http::track));
        (listener, ops)
    });
    Ok((router, ops))
}

/// `producer migrate`: creates the outbox table of `config` if missing,
/// as start-up does with `DATABASE_MIGRATE=true`.
pub async fn migrate(config: &OutboxConfig, produce_timeout: Duration) -> Result<(), StartupError> {
    let config = OutboxConfig {
        migrate: true,
        ..config.clone()
    };
    let outbox = open_outbox(&config, produce_timeout, &Registry::new()).await?;
    outbox.pool().close().await;
    Ok(())
}

/// The outbox of `config`, its table created if missing (or, with
/// `DATABASE_MIGRATE=false`, checked to be there and current). A database
/// that cannot be reached, refuses the table or lacks its migrations stops
/// start-up, saying which.
async fn open_outbox(
    config: &OutboxConfig,
    produce_timeout: Duration,
    registry: &Registry,
) -> Result<Outbox, StartupError> {
    let metrics = OutboxMetrics::register(registry)?;
    let outbox = Outbox::new(
        &config.database_url,
        config.pool_size,
        config.write_timeout,
        crate::outbox::relay_deadline(config.write_timeout, produce_timeout),
        metrics,
    )
    .map_err(|e| StartupError::Database {
        what: "OUTBOX_DATABASE_URL",
        source: Box::new(e),
    })?;
    if !config.migrate {
        outbox.check().await.map_err(|e| StartupError::Database {
            what: "the outbox table is not ready (DATABASE_MIGRATE=false)",
            source: Box::new(e),
        })?;
        return Ok(outbox);
    }
    outbox.prepare().await.map_err(|e| StartupError::Database {
        what: "cannot create the outbox table (is the database up, and may this role create \
               tables?)",
        source: Box::new(e),
    })?;
    Ok(outbox)
}

/// A wrong password fails start-up with a message that says so; a broker
/// that is merely down does not (requests get 503 until it answers).
async fn check_credentials(publisher: &Publisher, topic: &str) -> Result<(), StartupError> {
    startup::check_credentials(
        || async {
            match publisher.ready(topic, Duration::from_secs(1)).await {
                Ok(()) => Probe::Answered,
                Err(_) => Probe::Silent,
            }
        },
        || startup::refusal(publisher.context()),
    )
    .await
}
