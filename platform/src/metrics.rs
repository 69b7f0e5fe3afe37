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

/// The version every service reports, the workspace's.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registry a service (`producer`, `consumer`, `query`, `lag-exporter`)
/// exports on `/metrics`, with what every service exports whatever it does:
/// `pubsubkafka_build_info{component, version}` (always 1: which build
/// runs where; `component`, not `service`, which the Prometheus Operator
/// sets on every target) and, on Linux, the process's `process_*` metrics (CPU time,
/// resident memory, open file descriptors, start time).
pub fn service_registry(service: &str) -> Result<Registry, prometheus::Error> {
    let registry = Registry::new();
    let build_info = register(
        &registry,
        prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "pubsubkafka_build_info",
                "The build that runs: always 1, its version and component as labels",
            ),
            &["component", "version"],
        )?,
    )?;
    build_info.with_label_values(&[service, VERSION]).set(1);
    #[cfg(target_os = "linux")]
    registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    ))?;
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exported(registry: &Registry) -> String {
        let mut body = Vec::new();
        let encoded = prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut body,
        );
        assert!(encoded.is_ok(), "encoding failed: {encoded:?}");
        String::from_utf8_lossy(&body).into_owned()
    }

    #[test]
    fn a_service_registry_exports_its_build_and_its_process() {
        let registry = service_registry("producer");
        assert!(registry.is_ok(), "{registry:?}");
        let text = registry.map(|r| exported(&r)).unwrap_or_default();
        let build =
            format!("pubsubkafka_build_info{{component=\"producer\",version=\"{VERSION}\"}} 1");
        assert!(text.contains(&build), "no {build} in:\n{text}");
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(
                text.contains(&format!("\n{name} ")),
                "no {name} in:\n{text}"
            );
        }
    }

    #[test]
    fn registries_of_services_in_one_process_are_independent() {
        // `pubsubkafka dev` runs three services in one process, each with
        // its own registry: registering twice must not collide.
        let producer = service_registry("producer");
        let consumer = service_registry("consumer");
        assert!(producer.is_ok() && consumer.is_ok());
        let text = consumer.map(|r| exported(&r)).unwrap_or_default();
        assert!(text.contains("component=\"consumer\""), "{text}");
        assert!(!text.contains("component=\"producer\""), "{text}");
    }
}
