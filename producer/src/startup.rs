//! Building the service from its configuration, and running it until told
//! to stop. Tests and the local stack build it in process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::{middleware, Json, Router};
use governor::{Quota, RateLimiter};
use platform::http::{self, HttpMetrics, ReadinessCheck};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::config::ProducerConfig;
use crate::metrics::ProducerMetrics;
use crate::openapi::ApiDoc;
use crate::publish::Publisher;
use crate::routes::{self, AppState};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// librdkafka refused the client configuration.
    #[error("invalid Kafka client configuration: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A metric could not be registered.
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The broker refused our credentials.
    #[error("Kafka authentication failed (check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM): {0}")]
    Authentication(String),
}

/// The producer service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    publisher: Publisher,
    shutdown_timeout: Duration,
}

impl Application {
    /// Binds the HTTP address and creates the producer. Kafka being down is
    /// not fatal (`/readyz` says so and requests get 503); wrong credentials
    /// are, once the broker has said so.
    pub async fn build(config: ProducerConfig, registry: Registry) -> Result<Self, StartupError> {
        let metrics = ProducerMetrics::register(&registry)?;
        let http_metrics = HttpMetrics::register(&registry)?;
        let publisher = Publisher::new(&config.kafka, config.produce_timeout, metrics)?;
        check_credentials(&publisher, &config.orders_topic).await?;

        let limiter = config
            .rate_limit
            .map(|rps| RateLimiter::direct(Quota::per_second(rps)));
        let state = Arc::new(AppState {
            publisher: publisher.clone(),
            format: config.format,
            orders_topic: config.orders_topic.clone(),
            users_topic: config.users_topic.clone(),
            max_body_bytes: config.max_body_bytes,
            limiter,
            api_token: config.api_token.clone(),
        });
        let ready: ReadinessCheck = {
            let publisher = publisher.clone();
            let topic = config.orders_topic.clone();
            Arc::new(move || {
                let publisher = publisher.clone();
                let topic = topic.clone();
                Box::pin(async move { publisher.ready(&topic, Duration::from_secs(2)).await })
            })
        };
        let api = Router::new()
            .route("/orders", post(routes::create_order))
            .route("/users", post(routes::create_user))
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .with_state(state);
        let router = Router::new()
            .merge(api)
            .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
            .merge(http::ops_router(registry, ready))
            .layer(middleware::from_fn_with_state(http_metrics, http::track))
            .layer(TraceLayer::new_for_http().make_span_with(request_span));

        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.http_addr,
                source,
            })?;
        Ok(Self {
            listener,
            router,
            publisher,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address (its port is the real one when configured as 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled; then stops accepting, finishes the
    /// requests in flight and flushes the producer, all within the shutdown
    /// timeout.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "producer listening");
        let deadline = {
            let stop = stop.clone();
            let timeout = self.shutdown_timeout;
            async move {
                stop.cancelled().await;
                tokio::time::sleep(timeout).await;
            }
        };
        let started = tokio::time::Instant::now();
        tokio::select! {
            served = http::serve(self.listener, self.router, stop.clone()) => served?,
            () = deadline => tracing::warn!("in-flight requests still running at the shutdown deadline"),
        }
        let left = self
            .shutdown_timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(1));
        match self.publisher.flush(left).await {
            Ok(()) => tracing::info!("producer flushed; stopped"),
            Err(e) => tracing::error!(error = %e, "producer flush incomplete at shutdown"),
        }
        Ok(())
    }
}

/// A span per request that continues the caller's W3C trace, if any.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let span = tracing::info_span!(
        "http_request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
    );
    platform::trace::continue_from(&span, |name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    if let Some((trace_id, _)) = platform::trace::ids(&span) {
        span.record("trace_id", trace_id.as_str());
    }
    span
}

/// Asks the broker for metadata for a few seconds: success or a plain
/// network failure lets the service start; an authentication failure stops it.
async fn check_credentials(publisher: &Publisher, topic: &str) -> Result<(), StartupError> {
    let started = std::time::Instant::now();
    let mut result = Ok(());
    while started.elapsed() < Duration::from_secs(5) {
        result = publisher.ready(topic, Duration::from_secs(1)).await;
        if let Some(reason) = publisher.context().authentication_failed() {
            return Err(StartupError::Authentication(reason));
        }
        if result.is_ok() {
            return Ok(());
        }
    }
    if let Err(reason) = result {
        tracing::warn!(%reason, "Kafka not reachable at start-up; requests get 503 until it is");
    }
    Ok(())
}
