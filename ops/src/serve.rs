//! `pubsubkafka lag --serve`: the lag exporter. Measures each group on a
//! timer from the broker alone (works while the consumer is down) and serves
//! `/metrics`, `/healthz` and `/readyz`: ready while the last measurement of
//! every group succeeded. A group whose measurement fails loses its series
//! until it is measured again (`kafka_lag_exporter_up{group}` says so).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::http::{ops_router, NotReady, Readiness};
use platform::kafka::KafkaSettings;
use platform::server::{ConnectionMetrics, HttpLimits};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

use crate::lag::{measure, GroupSpec, History, LagMetrics};

/// Ready while the last measurement of every group succeeded.
#[derive(Clone, Default)]
struct Measured(Arc<AtomicBool>);

/// The last measurement of a group failed, or none happened yet.
#[derive(Debug, thiserror::Error)]
#[error("the last lag measurement failed or none succeeded yet")]
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

/// What the exporter measures and how often.
#[derive(Debug, Clone)]
pub struct Exporter {
    /// The groups and the topics of each.
    pub groups: Vec<GroupSpec>,
    /// Where to serve.
    pub addr: SocketAddr,
    /// Time between measurements.
    pub interval: Duration,
    /// How far back the verdicts look.
    pub window: Duration,
}

/// Serves lag metrics until `stop`.
pub async fn run(
    kafka: KafkaSettings,
    exporter: Exporter,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let registry = Registry::new();
    let metrics = LagMetrics::register(&registry)?;
    let connections = ConnectionMetrics::register(&registry)?;
    let measured = Measured::default();
    let ready = measured.clone();
    let listener = tokio::net::TcpListener::bind(exporter.addr).await?;
    let names: Vec<&str> = exporter.groups.iter().map(|g| g.name.as_str()).collect();
    tracing::info!(addr = %exporter.addr, groups = ?names, "lag exporter listening");
    let server = tokio::spawn(platform::server::serve(
        listener,
        ops_router(registry, ready),
        HttpLimits::from_env(&platform::Env::from_process())?,
        connections,
        stop.clone(),
    ));
    let mut histories: Vec<History> = exporter
        .groups
        .iter()
        .map(|_| History::new(exporter.window))
        .collect();
    while !stop.is_cancelled() {
        let mut all_measured = true;
        for (spec, history) in exporter.groups.iter().zip(histories.iter_mut()) {
            let (kafka, group, topics) = (kafka.clone(), spec.name.clone(), spec.topics.clone());
            let started = Instant::now();
            let measured_lag =
                tokio::task::spawn_blocking(move || measure(&kafka, &group, &topics)).await?;
            match measured_lag {
                Ok(lag) => {
                    let report = history.record(&lag);
                    metrics.set(&report, started.elapsed());
                    tracing::debug!(group = %spec.name, total = report.total, status = %report.verdict.status, "lag measured");
                }
                Err(e) => {
                    all_measured = false;
                    metrics.failed(&spec.name, started.elapsed());
                    tracing::warn!(group = %spec.name, error = %e, "lag measurement failed; the group's series are withdrawn");
                }
            }
        }
        measured.0.store(all_measured, Ordering::SeqCst);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(exporter.interval) => {}
        }
    }
    server.await??;
    Ok(())
}
