//! Building the read side from its configuration, and running it until
//! told to stop. Tests build it in process on port 0.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{middleware, Json, Router};
use platform::http::{self, HttpMetrics, NotReady, Readiness};
use platform::server::{self, ConnectionMetrics, HttpLimits};
use platform::startup::{bind, StartError};
use prometheus::Registry;
use sqlx::PgPool;
use store::db::{PoolSpec, SessionGuards};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

use crate::config::QueryConfig;
use crate::metrics::QueryMetrics;
use crate::routes::{self, ApiDoc, AppState};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// `DATABASE_URL` is not a PostgreSQL URL.
    #[error("DATABASE_URL is not a usable PostgreSQL URL")]
    DatabaseUrl(#[source] sqlx::Error),
    /// Binding, metrics.
    #[error(transparent)]
    Start(#[from] StartError),
}

impl From<prometheus::Error> for StartupError {
    fn from(e: prometheus::Error) -> Self {
        StartupError::Start(StartError::from(e))
    }
}

/// The query service, bound and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    connections: ConnectionMetrics,
    pool: PgPool,
    shutdown_timeout: Duration,
}

/// Ready while the database answers and holds the tables the lookups read
/// (the consumer creates them: a read side started first waits for it).
#[derive(Clone)]
struct DatabaseReady {
    pool: PgPool,
    timeout: Duration,
}

impl Readiness for DatabaseReady {
    async fn check(&self) -> Result<(), NotReady> {
        // `None`: no answer within the deadline.
        let probe = store::db::within(
            &self.pool,
            self.timeout,
            Some,
            || None,
            async |conn| store::read::probe(conn).await.map_err(Some),
        );
        match probe.await {
            Ok(()) => Ok(()),
            Err(Some(e)) if store::db::Failure::of(&e) == store::db::Failure::MissingTable => {
                let said = e
                    .as_database_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned());
                Err(NotReady::new(
                    "database",
                    format!(
                        "{said}: the schema is not there yet (the consumer applies the migrations \
                         on start-up)"
                    ),
                ))
            }
            Err(Some(e)) => Err(NotReady::new("database", e)),
            Err(None) => Err(NotReady::new(
                "database",
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

/// A pool that connects lazily (a database that is down makes `/readyz`
/// and the lookups say so; it does not stop the service), whose sessions
/// are read-only and bounded by the statement timeout on the server too.
pub fn pool(config: &QueryConfig) -> Result<PgPool, StartupError> {
    store::db::pool(
        &config.database_url,
        PoolSpec {
            application: "pubsubkafka-query",
            max_connections: config.pool_size,
            acquire: config.statement_timeout,
            guards: SessionGuards::for_statements(config.statement_timeout).read_only(),
        },
    )
    .map_err(StartupError::DatabaseUrl)
}

impl Application {
    /// Binds the HTTP address and opens the pool (lazily).
    pub async fn build(config: QueryConfig, registry: Registry) -> Result<Self, StartupError> {
        let metrics = QueryMetrics::register(&registry)?;
        let http_metrics = HttpMetrics::register(&registry)?;
        let connections = ConnectionMetrics::register(&registry)?;
        let pool = pool(&config)?;
        let state = Arc::new(AppState {
            pool: pool.clone(),
            metrics,
            pending_window: config.pending_window,
            statement_timeout: config.statement_timeout,
            api_token: config.api_token.clone(),
            permits: Arc::new(Semaphore::new(config.max_in_flight)),
        });
        let api = Router::new()
            .route("/orders/{order_id}", get(routes::get_order))
            .route("/orders/{order_id}/events", get(routes::get_order_events))
            .route("/users/{user_id}", get(routes::get_user))
            .route("/users/{user_id}/events", get(routes::get_user_events))
            .route_layer(middleware::from_fn_with_state(state.clone(), routes::admit))
            .with_state(state);
        let ready = DatabaseReady {
            pool: pool.clone(),
            timeout: config.statement_timeout,
        };
        let router = Router::new()
            .merge(api)
            .merge(http::ops_router(registry, ready))
            .route("/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
            .layer(middleware::from_fn_with_state(http_metrics, http::track))
            .layer(TraceLayer::new_for_http().on_failure(()));
        Ok(Self {
            listener: bind(config.http_addr).await?,
            router,
            limits: config.http_limits,
            connections,
            pool,
            shutdown_timeout: config.shutdown_timeout,
        })
    }

    /// The bound address (its port is the real one when configured as 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `stop` is cancelled; then stops accepting and finishes
    /// the lookups in flight within the shutdown timeout.
    pub async fn run(self, stop: CancellationToken) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, "query listening");
        let serving = server::serve(
            self.listener,
            self.router,
            self.limits,
            self.connections,
            stop.clone(),
        );
        server::run_until_drained(serving, &stop, self.shutdown_timeout, "lookups").await?;
        self.pool.close().await;
        tracing::info!("query stopped");
        Ok(())
    }
}
