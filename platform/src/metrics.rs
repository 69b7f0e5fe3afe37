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
    registry.register(Box::new(process::ProcessMetrics::new()?))?;
    Ok(registry)
}

/// The `process_*` metrics, with `process_cpu_seconds_total` in fractions
/// of a second: the prometheus crate's `ProcessCollector` exports it as an
/// integer counter, so a CPU panel would move in whole-second steps.
#[cfg(target_os = "linux")]
mod process {
    use prometheus::core::{Collector, Desc};
    use prometheus::process_collector::ProcessCollector;
    use prometheus::{proto, Counter, Opts};

    pub(super) const CPU_SECONDS: &str = "process_cpu_seconds_total";

    /// `ProcessCollector`'s metrics but its CPU counter, and ours instead.
    pub(super) struct ProcessMetrics {
        others: ProcessCollector,
        cpu: Counter,
        descs: Vec<Desc>,
    }

    impl ProcessMetrics {
        pub(super) fn new() -> Result<Self, prometheus::Error> {
            let others = ProcessCollector::for_self();
            let cpu = Counter::with_opts(Opts::new(
                CPU_SECONDS,
                "Total user and system CPU time spent in seconds.",
            ))?;
            let descs = others
                .desc()
                .into_iter()
                .filter(|d| d.fq_name != CPU_SECONDS)
                .chain(cpu.desc())
                .cloned()
                .collect();
            Ok(Self { others, cpu, descs })
        }
    }

    /// User and system CPU time of this process so far, in seconds, at the
    /// kernel's resolution (a clock tick, usually 10 ms); `None` when
    /// `/proc/self/stat` cannot be read.
    pub(super) fn cpu_seconds() -> Option<f64> {
        let stat = procfs::process::Process::myself()
            .and_then(|p| p.stat())
            .ok()?;
        let ticks = procfs::ticks_per_second();
        (ticks > 0).then(|| (stat.utime + stat.stime) as f64 / ticks as f64)
    }

    impl Collector for ProcessMetrics {
        fn desc(&self) -> Vec<&Desc> {
            self.descs.iter().collect()
        }

        fn collect(&self) -> Vec<proto::MetricFamily> {
            // Unreadable: no sample this scrape (a stale total would read
            // as an idle process), as the other process metrics do.
            let mut families = Vec::new();
            if let Some(total) = cpu_seconds() {
                // A counter only goes up: add what was spent since the last read.
                let spent = total - self.cpu.get();
                if spent > 0.0 {
                    self.cpu.inc_by(spent);
                }
                families.extend(self.cpu.collect());
            }
            families.extend(
                self.others
                    .collect()
                    .into_iter()
                    .filter(|f| f.name() != CPU_SECONDS),
            );
            families
        }
    }
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

    /// The value of `process_cpu_seconds_total` in an export, and how many
    /// families of that name it has.
    fn cpu_seconds(text: &str) -> (Option<f64>, usize) {
        let mut values = text
            .lines()
            .filter_map(|l| l.strip_prefix("process_cpu_seconds_total "))
            .map(|v| v.trim().parse::<f64>().ok());
        let first = values.next().flatten();
        let families = text
            .lines()
            .filter(|l| *l == "# TYPE process_cpu_seconds_total counter")
            .count();
        (first, families)
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cpu_time_is_exported_once_in_fractions_of_a_second() {
        let registry = service_registry("consumer");
        assert!(registry.is_ok(), "{registry:?}");
        let Ok(registry) = registry else { return };
        let start = process::cpu_seconds();
        assert!(start.is_some(), "/proc/self/stat unreadable");
        // Burn CPU until the export shows a time that is not a whole number
        // of seconds: within a tick or two, unless it counts whole seconds,
        // which more than a second and a half of CPU would prove.
        let limit = start.unwrap_or_default() + 1.5;
        let mut spin: u64 = 0;
        loop {
            let before = process::cpu_seconds().unwrap_or_default();
            let text = exported(&registry);
            let after = process::cpu_seconds().unwrap_or_default();
            let (value, families) = cpu_seconds(&text);
            assert_eq!(families, 1, "{text}");
            let value = value.unwrap_or(-1.0);
            assert!(
                before <= value && value <= after,
                "{before} {value} {after}"
            );
            if value.fract() != 0.0 {
                break;
            }
            assert!(after < limit, "only whole seconds: {value}");
            for i in 0..100_000u64 {
                spin = std::hint::black_box(spin.wrapping_add(i));
            }
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
