//! The processes a benchmark runs: the services as built (release binaries
//! beside this one), and the bare HTTP server that is the HTTP limit.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use harness::process::Service;

const READY: Duration = Duration::from_secs(60);

/// Settings given with `--service-env`, applied to every producer and
/// consumer the benchmarks start (after their own, so they win).
static SERVICE_ENV: OnceLock<Vec<(String, String)>> = OnceLock::new();

/// Parses `KEY=VALUE` settings for the services; call once, before any
/// service starts.
pub fn set_service_env(pairs: &[String]) -> anyhow::Result<()> {
    let parsed = pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => anyhow::bail!("--service-env expects KEY=VALUE, got {pair:?}"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    SERVICE_ENV
        .set(parsed)
        .map_err(|_| anyhow::anyhow!("service settings given twice"))
}

/// `base` followed by the `--service-env` settings.
fn with_service_env(mut base: Vec<(&str, String)>) -> Vec<(&str, String)> {
    let extra = SERVICE_ENV.get().into_iter().flatten();
    base.extend(extra.map(|(k, v)| (k.as_str(), v.clone())));
    base
}

/// A producer on `bootstrap`, with the service's defaults but for the rate
/// limit (off: the load is the point).
pub async fn producer(bootstrap: &str) -> Service {
    producer_with(bootstrap, &[]).await
}

/// As [`producer`], with `extra` settings.
pub async fn producer_with(bootstrap: &str, extra: &[(&'static str, String)]) -> Service {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
        ("RATE_LIMIT_RPS", "0".to_owned()),
    ];
    env.extend(extra.iter().cloned());
    let env = with_service_env(env);
    let mut service = Service::start("producer", "PRODUCER_HTTP_ADDR", &env);
    service.wait_ready("/readyz", READY).await;
    service
}

/// A consumer on `bootstrap` writing to `database_url`, in a group of its
/// own named after `group` (a run's parts share a broker: no group's
/// committed offsets outlive its part), with `extra` settings.
pub async fn consumer(
    bootstrap: &str,
    database_url: &str,
    group: &str,
    extra: &[(&'static str, String)],
) -> Service {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("KAFKA_CONSUMER_GROUP", unique_group(group)),
    ];
    env.extend(extra.iter().cloned());
    let mut service = Service::start("consumer", "CONSUMER_HTTP_ADDR", &with_service_env(env));
    service.wait_ready("/readyz", READY).await;
    service
}

/// The read side on `database_url`, with the service's defaults (reads
/// without a token, as the benchmark's clients send none).
pub async fn query(database_url: &str) -> Service {
    let env = with_service_env(vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("QUERY_ALLOW_ANONYMOUS", "true".to_owned()),
    ]);
    let mut service = Service::start("query", "QUERY_HTTP_ADDR", &env);
    service.wait_ready("/readyz", READY).await;
    service
}

/// `group` made unique to this run of a benchmark.
pub fn unique_group(group: &str) -> String {
    format!("{group}-{}", uuid::Uuid::new_v4().simple())
}

/// This binary's `bare-http` command as a process of its own.
pub async fn bare_http() -> Service {
    let addr = format!("127.0.0.1:{}", harness::free_port());
    let mut service = Service::start_command("bench", &["bare-http", "--addr", &addr], &[], &addr);
    service.wait_ready("/healthz", READY).await;
    service
}

/// The HTTP limit: reads the body and answers `202` with a body the size of
/// the producer's, doing nothing else. Same runtime as the services.
pub async fn serve_bare_http(addr: SocketAddr) -> anyhow::Result<()> {
    async fn accept(body: Bytes) -> (StatusCode, Json<serde_json::Value>) {
        let accepted = serde_json::json!({
            "order_id": "00000000-0000-0000-0000-000000000000",
            "event_id": "00000000-0000-0000-0000-000000000000",
            "status": "accepted",
            "bytes": body.len(),
        });
        (StatusCode::ACCEPTED, Json(accepted))
    }
    let app = Router::new()
        .route("/orders", post(accept))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(platform::shutdown::signal())
        .await?;
    Ok(())
}
