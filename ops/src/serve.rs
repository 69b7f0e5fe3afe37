//! `pubsubkafka lag --serve`: the lag exporter. Measures on a timer from the
//! broker alone (works while the consumer is down) and serves `/metrics`,
//! `/healthz` and `/readyz` (ready once a measurement succeeded).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use platform::http::{ops_router, NotReady, Readiness};
use platform::kafka::KafkaSettings;
use platform::server::{ConnectionMetrics, HttpLimits};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::lag::{measure, LagMetrics};

/// Ready once a measurement succeeded.
#[derive(Clone, Default)]
struct Measured(Arc<AtomicBool>);

/// No measurement of the lag has succeeded yet.
#[derive(Debug, thiserror::Error)]
#[error("no lag measurement yet")]
struct NotMeasured;

impl Readiness for Measured {
    async fn check(&self) -> Result<(), NotReady> {
        if self.0.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(NotReady::new("lag", NotMeasured))
        }
    }
}

/// Serves lag metrics of `group` on `addr` until `stop`.
pub async fn run(
    kafka: KafkaSettings,
    group: String,
    topics: Vec<String>,
    addr: SocketAddr,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = LagMetrics::register(&registry)?;
    let connections = ConnectionMetrics::register(&registry)?;
    let measured = Measured::default();
    let ready = measured.clone();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, %group, "lag exporter listening");
    let server = tokio::spawn(platform::server::serve(
        listener,
        ops_router(registry, ready),
        HttpLimits::from_env(&platform::Env::from_process())?,
        connections,
        stop.clone(),
    ));
    while !stop.is_cancelled() {
        let (kafka, group, topics) = (kafka.clone(), group.clone(), topics.clone());
        match tokio::task::spawn_blocking(move || measure(&kafka, &group, &topics)).await? {
            Ok(lag) => {
                metrics.set(&lag);
                measured.0.store(true, Ordering::SeqCst);
                tracing::debug!(total = lag.total, "lag measured");
            }
            Err(e) => tracing::warn!(error = %e, "lag measurement failed"),
        }
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
    server.await??;
    Ok(())
}
