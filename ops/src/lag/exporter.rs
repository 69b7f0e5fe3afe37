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
use platform::server::{ConnectionMetrics, HttpLimits};
use tokio::task::JoinError;
use tokio_util::sync::CancellationToken;

use super::{LagMetrics, Measurer};

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

/// Serves the lag metrics of `measurer`'s groups on `addr`, measuring them
/// every `interval`, until `stop`.
pub async fn run(
    mut measurer: Measurer,
    addr: SocketAddr,
    interval: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let registry = platform::metrics::service_registry("lag-exporter")?;
    let metrics = LagMetrics::register(&registry)?;
    let connections = ConnectionMetrics::register(&registry)?;
    let measured = Measured::default();
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let names: Vec<&str> = (0..measurer.len())
        .map(|n| measurer.group(n).name.as_str())
        .collect();
    tracing::info!(addr = %addr, groups = ?names, "lag exporter listening");
    let server = tokio::spawn(platform::server::serve(
        listener,
        ops_router(registry, measured.clone()),
        HttpLimits::from_env(&platform::Env::from_process())?,
        connections,
        stop.clone(),
    ));
    while !stop.is_cancelled() {
        let all_measured = measure_round(&mut measurer, &metrics).await?;
        measured.0.store(all_measured, Ordering::SeqCst);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
    server.await??;
    Ok(())
}

/// Measures every group once and publishes each result; whether all
/// succeeded.
async fn measure_round(measurer: &mut Measurer, metrics: &LagMetrics) -> Result<bool, JoinError> {
    let mut all_measured = true;
    for n in 0..measurer.len() {
        let started = Instant::now();
        let measured = measurer.measure(n).await?;
        let group = &measurer.group(n).name;
        match measured {
            Ok(report) => {
                metrics.set(&report, started.elapsed());
                tracing::debug!(group = %group, total = report.total, status = %report.verdict.status, "lag measured");
            }
            Err(e) => {
                all_measured = false;
                metrics.failed(group, started.elapsed());
                tracing::warn!(group = %group, error = %e, "lag measurement failed; the group's series are withdrawn");
            }
        }
    }
    Ok(all_measured)
}
