//! `pubsubkafka console`: the operator's console in the browser. Server
//! rendered pages (askama templates in `templates/`, our own CSS and
//! script in `assets/`, compiled into the binary) over the same library
//! the terminal commands use: lag, dead letters, the order story.
//!
//! Security (see [`security`]): every page but `/login`, `/healthz` and
//! `/assets/…` needs the session cookie or `Authorization: Bearer
//! <API_TOKEN>`; a cookie-authenticated state change needs the session's
//! CSRF token and, when the browser sends one, our own `Origin`; every
//! answer carries a strict Content-Security-Policy.
//!
//! Modules: [`page`] is the layout every page shares (for the pages'
//! authors), [`overview`] and [`orders`] the pages of their names,
//! [`dead_letters`] and [`replay`] the dead-letter pages.

pub mod assets;
pub mod dead_letters;
pub mod metrics_text;
pub mod orders;
pub mod overview;
pub mod page;
pub mod replay;
pub mod security;

use std::net::SocketAddr;
use std::ops::Deref;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use contract::topics::Domains;
use platform::kafka::KafkaSettings;
use platform::Env;
use tokio_util::sync::CancellationToken;

/// Options of `console`.
#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Address to serve the console on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// Allow replaying dead letters from the console (read-only without).
    #[arg(long)]
    pub allow_replay: bool,
    /// The database the consumer writes, for order lookup (a read replica
    /// works).
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// The producers' outbox database (PRODUCER_MODE=outbox), for the
    /// outbox backlog.
    #[arg(long, env = "OUTBOX_DATABASE_URL", value_name = "URL")]
    pub outbox_database_url: Option<String>,
    /// A consumer's /metrics URL (rates, circuit breaker, flood guard);
    /// repeat for several.
    #[arg(long = "consumer-metrics", value_name = "URL")]
    pub consumer_metrics: Vec<String>,
    /// A producer's /metrics URL (intake rate); repeat for several.
    #[arg(long = "producer-metrics", value_name = "URL")]
    pub producer_metrics: Vec<String>,
    /// The groups whose lag the overview shows, as `lag --group`.
    #[command(flatten)]
    pub groups: crate::lag::GroupArgs,
    /// Options of the dead-letter pages.
    #[command(flatten)]
    pub dead_letters: dead_letters::DeadLetterOptions,
    /// Options of the replay pages.
    #[command(flatten)]
    pub replay: replay::ReplayOptions,
    #[command(flatten)]
    pub kafka: crate::kafka::KafkaArgs,
}

/// The console's state, shared by every request (cheap to clone).
#[derive(Clone)]
pub struct Console(Arc<Inner>);

/// What [`Console`] holds.
pub struct Inner {
    /// Kafka client settings (the tool's environment).
    pub kafka: KafkaSettings,
    /// The tool's environment, `--bootstrap-server` applied.
    pub env: Env,
    /// Which topic carries which domain (`ORDERS_TOPIC`, `USERS_TOPIC`).
    pub domains: Domains,
    /// The consumer's database, for order lookup.
    pub database_url: Option<String>,
    /// Whether replays are allowed (`--allow-replay`).
    pub allow_replay: bool,
    /// Options of the dead-letter pages.
    pub dead_letter_options: dead_letters::DeadLetterOptions,
    /// Options of the replay pages.
    pub replay_options: replay::ReplayOptions,
    /// State of the replay pages (replays running and done).
    pub replays: replay::Replays,
    /// Signed-in browsers.
    pub(crate) sessions: security::Sessions,
    /// The overview's measurements.
    pub(crate) overview: overview::Live,
    token: String,
}

impl Deref for Console {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the console will not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// No API_TOKEN: the console never serves without authentication.
    #[error(
        "API_TOKEN is not set: the console serves only with a token (at least 16 characters) \
         to sign in with"
    )]
    NoToken,
}

impl Console {
    /// The console of `args`, with `token` to sign in with.
    pub fn new(args: &ConsoleArgs, token: String) -> anyhow::Result<Self> {
        let env = args.kafka.environment();
        let kafka = KafkaSettings::from_env(&env).context("configuration")?;
        let groups = args.groups.specs()?;
        let domains = crate::dlq::domains(&env);
        let sources = overview::Sources {
            consumer_metrics: args.consumer_metrics.clone(),
            producer_metrics: args.producer_metrics.clone(),
            dlq_topics: vec![
                contract::topics::dlq_of(&domains.orders),
                contract::topics::dlq_of(&domains.users),
            ],
            reader_group: args.dead_letters.reader_group.clone(),
            outbox: args
                .outbox_database_url
                .as_deref()
                .map(overview::outbox_pool)
                .transpose()?,
        };
        let live = overview::Live::new(kafka.clone(), groups, sources)?;
        Ok(Self(Arc::new(Inner {
            kafka,
            env,
            domains,
            database_url: args.database_url.clone(),
            allow_replay: args.allow_replay,
            dead_letter_options: args.dead_letters.clone(),
            replay_options: args.replay.clone(),
            replays: replay::Replays::default(),
            sessions: security::Sessions::new(security::SESSION_TTL, security::MAX_SESSIONS),
            overview: live,
            token,
        })))
    }

    /// The token that signs in.
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

/// The console's routes, its security layers around all of them.
pub fn app(console: Console) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(security::routes())
        .merge(assets::routes())
        .merge(overview::routes())
        .merge(orders::routes())
        .merge(dead_letters::routes())
        .merge(replay::routes())
        .fallback(page::not_found)
        .layer(axum::middleware::from_fn_with_state(
            console.clone(),
            security::guard,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(security::MAX_BODY))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(console)
}

/// Serves `console` on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    console: Console,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let registry = prometheus::Registry::new();
    let connections = platform::server::ConnectionMetrics::register(&registry)?;
    let limits = platform::server::HttpLimits::from_env(&Env::from_process())?;
    let served =
        platform::server::serve(listener, app(console.clone()), limits, connections, stop).await;
    // Replays in flight stop after the dead letter in hand, as Ctrl-C stops
    // `dlq replay`: what is left waits for the next run.
    if !console.replays.stop_and_wait(REPLAY_STOP_WAIT).await {
        tracing::warn!("a replay was still settling a dead letter at the shutdown deadline");
    }
    served?;
    Ok(())
}

/// `console`: reads API_TOKEN (refusing to start without), binds, and
/// serves until a signal.
pub async fn run(args: ConsoleArgs) -> anyhow::Result<ExitCode> {
    let token = Env::from_process()
        .api_token()
        .context("configuration")?
        .ok_or(ConsoleError::NoToken)?;
    let console = Console::new(&args, token)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(addr = %addr, read_only = !args.allow_replay, "console listening");
    serve(listener, console, platform::shutdown::on_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// How long a stopping console waits for its replays to settle the dead
/// letter in hand (a publish waits for the broker's acknowledgement).
const REPLAY_STOP_WAIT: Duration = Duration::from_secs(15);

/// How long one measurement of the overview may take before it is shown
/// as failed.
pub(crate) const DEADLINE: Duration = Duration::from_secs(8);
