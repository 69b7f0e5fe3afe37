//! Registering metrics, one way for every service: each metric is built and
//! registered in one expression, so a metric cannot be exported without
//! being registered or registered twice.

use prometheus::core::Collector;
use prometheus::Registry;

/// Buckets of every latency histogram, in seconds: from a millisecond to a
/// minute, finer where requests and writes usually fall.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Registers `collector` in `registry` and returns it, for the caller to keep.
pub fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: C,
) -> Result<C, prometheus::Error> {
    registry.register(Box::new(collector.clone()))?;
    Ok(collector)
}
