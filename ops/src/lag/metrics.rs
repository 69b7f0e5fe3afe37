//! The exporter's Prometheus series: each group's lag, verdicts, members
//! and state, and the exporter's own health per group.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::metrics::register;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};

use super::{PartitionReport, Report};
use crate::verdict::Severity;

/// The exporter's metrics. A group whose measurement failed has its series
/// removed (and `kafka_lag_exporter_up` 0) rather than old values served as
/// current ones.
#[derive(Clone)]
pub struct LagMetrics {
    lag: IntGaugeVec,
    lag_seconds: IntGaugeVec,
    committed: IntGaugeVec,
    high: IntGaugeVec,
    members: IntGaugeVec,
    state: IntGaugeVec,
    status: IntGaugeVec,
    group_status: IntGaugeVec,
    eta: GaugeVec,
    up: IntGaugeVec,
    duration: GaugeVec,
    last_success: IntGaugeVec,
    /// Per group: the partitions and the state last exported.
    exported: Arc<Mutex<BTreeMap<String, Exported>>>,
}

#[derive(Default)]
struct Exported {
    partitions: Vec<(String, String)>,
    state: Option<String>,
}

impl LagMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["group", "topic", "partition"];
        let int = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).and_then(|g| register(registry, g))
        };
        let float = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).and_then(|g| register(registry, g))
        };
        Ok(Self {
            lag: int(
                "kafka_consumer_lag",
                "Messages between the group's committed offset and the high watermark",
                labels,
            )?,
            lag_seconds: int(
                "kafka_consumer_lag_seconds",
                "Age of the oldest message the group has not consumed",
                labels,
            )?,
            committed: int(
                "kafka_consumer_committed_offset",
                "The group's committed offset",
                labels,
            )?,
            high: int(
                "kafka_topic_high_watermark",
                "Next offset to be written",
                &["topic", "partition"],
            )?,
            members: int(
                "kafka_consumer_group_members",
                "Active members of the group",
                &["group"],
            )?,
            state: int(
                "kafka_consumer_group_state",
                "1 for the group's state as the broker reports it",
                &["group", "state"],
            )?,
            status: int(
                "kafka_consumer_status",
                "1 for the partition's verdict over the window (OK, WARN, STALL, STOP, REWIND, UNKNOWN)",
                &["group", "topic", "partition", "status"],
            )?,
            group_status: int(
                "kafka_consumer_group_status",
                "1 for the group's verdict: its worst partition's",
                &["group", "status"],
            )?,
            eta: float(
                "kafka_consumer_lag_eta_seconds",
                "Seconds until the partition's lag is 0 at the drain rate of the window (+Inf: not draining)",
                labels,
            )?,
            up: int(
                "kafka_lag_exporter_up",
                "1 when the last measurement of the group succeeded",
                &["group"],
            )?,
            duration: float(
                "kafka_lag_exporter_measurement_seconds",
                "How long the last measurement of the group took",
                &["group"],
            )?,
            last_success: int(
                "kafka_lag_exporter_last_success_timestamp_seconds",
                "When a measurement of the group last succeeded (Unix time)",
                &["group"],
            )?,
            exported: Arc::default(),
        })
    }

    /// Publishes a successful measurement that took `took`.
    pub fn set(&self, report: &Report, took: Duration) {
        let group = report.group.as_str();
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = exported.remove(group).unwrap_or_default();
        let now = Exported {
            partitions: report
                .partitions
                .iter()
                .map(|p| self.set_partition(group, p))
                .collect(),
            state: report.state.clone(),
        };
        self.set_group(report, &previous, &now);
        for (topic, partition) in &previous.partitions {
            if !now.partitions.contains(&(topic.clone(), partition.clone())) {
                self.remove_partition(&exported, group, topic, partition);
            }
        }
        exported.insert(group.to_owned(), now);
        self.up.with_label_values(&[group]).set(1);
        self.duration
            .with_label_values(&[group])
            .set(took.as_secs_f64());
        self.last_success
            .with_label_values(&[group])
            .set(chrono::Utc::now().timestamp());
    }

    /// Publishes one partition of `group`'s report; its topic and
    /// partition labels.
    fn set_partition(&self, group: &str, p: &PartitionReport) -> (String, String) {
        let partition = p.lag.partition.to_string();
        let labels = [group, p.lag.topic.as_str(), partition.as_str()];
        self.lag.with_label_values(&labels).set(p.lag.lag);
        self.lag_seconds
            .with_label_values(&labels)
            .set(p.lag.lag_seconds);
        match p.lag.committed {
            Some(c) => self.committed.with_label_values(&labels).set(c),
            None => {
                let _ = self.committed.remove_label_values(&labels);
            }
        }
        self.high
            .with_label_values(&[p.lag.topic.as_str(), partition.as_str()])
            .set(p.lag.high);
        self.eta
            .with_label_values(&labels)
            .set(p.verdict.eta_seconds.unwrap_or(f64::INFINITY));
        for status in Severity::ALL {
            self.status
                .with_label_values(&[group, labels[1], labels[2], status.as_str()])
                .set(i64::from(status == p.verdict.status));
        }
        (p.lag.topic.clone(), partition)
    }

    /// Publishes the group's verdict, members and state (the `previous`
    /// state's series removed when it changed).
    fn set_group(&self, report: &Report, previous: &Exported, now: &Exported) {
        let group = report.group.as_str();
        for status in Severity::ALL {
            self.group_status
                .with_label_values(&[group, status.as_str()])
                .set(i64::from(status == report.verdict.status));
        }
        match report.members {
            Some(m) => self
                .members
                .with_label_values(&[group])
                .set(i64::try_from(m).unwrap_or(i64::MAX)),
            None => {
                let _ = self.members.remove_label_values(&[group]);
            }
        }
        if previous.state != now.state {
            if let Some(old) = &previous.state {
                let _ = self.state.remove_label_values(&[group, old]);
            }
        }
        if let Some(state) = &now.state {
            self.state.with_label_values(&[group, state]).set(1);
        }
    }

    /// Records a failed measurement: the group's series go away, so that
    /// no dashboard or alert reads an old lag as the current one.
    pub fn failed(&self, group: &str, took: Duration) {
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(previous) = exported.remove(group) {
            for (topic, partition) in &previous.partitions {
                self.remove_partition(&exported, group, topic, partition);
            }
            if let Some(state) = &previous.state {
                let _ = self.state.remove_label_values(&[group, state]);
            }
        }
        for status in Severity::ALL {
            let _ = self
                .group_status
                .remove_label_values(&[group, status.as_str()]);
        }
        let _ = self.members.remove_label_values(&[group]);
        self.up.with_label_values(&[group]).set(0);
        self.duration
            .with_label_values(&[group])
            .set(took.as_secs_f64());
    }

    /// Removes `group`'s series of a partition; its high watermark, which
    /// has no group label, only when no other group (in `others`) still
    /// exports that partition.
    fn remove_partition(
        &self,
        others: &BTreeMap<String, Exported>,
        group: &str,
        topic: &str,
        partition: &str,
    ) {
        let labels = [group, topic, partition];
        let _ = self.lag.remove_label_values(&labels);
        let _ = self.lag_seconds.remove_label_values(&labels);
        let _ = self.committed.remove_label_values(&labels);
        let _ = self.eta.remove_label_values(&labels);
        let shared = others.values().any(|e| {
            e.partitions
                .iter()
                .any(|(t, p)| t == topic && p == partition)
        });
        if !shared {
            let _ = self.high.remove_label_values(&[topic, partition]);
        }
        for status in Severity::ALL {
            let _ = self
                .status
                .remove_label_values(&[group, topic, partition, status.as_str()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::history::tests::lag;
    use crate::lag::History;

    #[test]
    fn a_failed_group_keeps_the_high_watermark_another_group_still_exports() {
        let registry = Registry::new();
        let metrics = LagMetrics::register(&registry).unwrap();
        let report = |group: &str| {
            let mut lag = lag(1_000, Some(5), 10);
            lag.group = group.to_owned();
            History::new(Duration::from_secs(60)).record(&lag)
        };
        metrics.set(&report("a"), Duration::ZERO);
        metrics.set(&report("b"), Duration::ZERO);
        metrics.failed("a", Duration::ZERO);
        assert_eq!(
            metrics
                .lag
                .get_metric_with_label_values(&["b", "orders", "0"])
                .map(|g| g.get())
                .ok(),
            Some(5)
        );
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(!text.contains("kafka_consumer_lag{group=\"a\""), "{text}");
        assert!(
            text.contains("kafka_topic_high_watermark{partition=\"0\",topic=\"orders\"} 10"),
            "{text}"
        );
        metrics.failed("b", Duration::ZERO);
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(!text.contains("kafka_topic_high_watermark{"), "{text}");
    }
}
