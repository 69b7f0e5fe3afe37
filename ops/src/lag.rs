//! Consumer lag from the broker's point of view, so it is known when the
//! consumer is down (that is when it matters): committed offsets of the
//! group, high watermarks of the partitions, the age of the oldest
//! unconsumed message, and the group's active members and state; and, over
//! a window of such measurements, a verdict on each partition's progress
//! (see [`crate::verdict`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use platform::kafka::KafkaSettings;
use platform::metrics::register;
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use serde::Serialize;

use crate::verdict::{assess, combine, Assessment, Sample, Status};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Lag of one partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// The high watermark (next offset to be written).
    pub high: i64,
    /// Messages not yet consumed.
    pub lag: i64,
    /// Age in seconds of the oldest unconsumed message (0 when no lag).
    pub lag_seconds: i64,
}

/// Lag of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// When it was measured, milliseconds since the Unix epoch.
    #[serde(skip)]
    pub at_ms: i64,
    /// Active members (`None` when the broker does not say).
    pub members: Option<usize>,
    /// The group's state as the broker reports it (`Stable`, `Empty`,
    /// `PreparingRebalance`, ...; `None` when it does not say).
    pub state: Option<String>,
    /// Per partition.
    pub partitions: Vec<PartitionLag>,
    /// Sum over partitions.
    pub total: i64,
}

/// A group to measure and its topics: `NAME`, or `NAME=TOPIC,TOPIC` for
/// topics other than the default ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group.
    pub name: String,
    /// Its topics.
    pub topics: Vec<String>,
}

/// A `--group` value that cannot be a group.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not NAME or NAME=TOPIC,TOPIC (an empty group or topic name)")]
pub struct BadGroupSpec(String);

impl GroupSpec {
    /// Parses `spec`, with `default_topics` when it names none.
    pub fn parse(spec: &str, default_topics: &[String]) -> Result<Self, BadGroupSpec> {
        let bad = || BadGroupSpec(spec.to_owned());
        let (name, topics) = match spec.split_once('=') {
            Some((name, topics)) => {
                let topics: Vec<String> = topics.split(',').map(|t| t.trim().to_owned()).collect();
                if topics.iter().any(String::is_empty) {
                    return Err(bad());
                }
                (name.trim(), topics)
            }
            None => (spec.trim(), default_topics.to_vec()),
        };
        if name.is_empty() || topics.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            topics,
        })
    }
}

/// A client of `group` that reads its offsets and messages of partitions it
/// assigns itself; it never joins the group or commits.
fn reader(kafka: &KafkaSettings, group: &str) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    kafka.reader_config("pubsubkafka-lag", group).create()
}

/// Longest the time-lag reader waits for the message at a committed offset.
const TIME_LAG_WAIT: Duration = Duration::from_secs(5);

/// When a message was written, in ms since the epoch, or why it is not
/// known (a message of the pre-0.10 format carries no timestamp).
fn written_at(timestamp: Timestamp) -> Result<i64, String> {
    match timestamp {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Ok(ms),
        Timestamp::NotAvailable => {
            Err("the message carries no timestamp (an old message format)".to_owned())
        }
    }
}

/// Timestamp (ms) of the message at `offset`, read with an assigned reader.
/// A refusal (no `Read` on the topic), no message within [`TIME_LAG_WAIT`]
/// or a message without a timestamp is an error: the time lag is then not
/// known, which is not the same as 0.
fn timestamp_at(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, LagError> {
    let failed = |cause: String| LagError::TimeLag {
        topic: topic.to_owned(),
        partition,
        offset,
        cause,
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .map_err(|e| failed(e.to_string()))?;
    reader.assign(&tpl).map_err(|e| failed(e.to_string()))?;
    let started = std::time::Instant::now();
    let mut last_error = None;
    while started.elapsed() < TIME_LAG_WAIT {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => return written_at(m.timestamp()).map_err(failed),
            Some(Err(e)) if refused(&e) => return Err(failed(e.to_string())),
            // A broker moving or a connection dropping may pass; the
            // deadline decides.
            Some(Err(e)) => last_error = Some(e.to_string()),
            None => {}
        }
    }
    Err(failed(last_error.unwrap_or_else(|| {
        format!("no message read within {TIME_LAG_WAIT:?}")
    })))
}

/// Whether `e` is the broker refusing the reader (it will not pass).
fn refused(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(
            Code::TopicAuthorizationFailed
                | Code::GroupAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::SaslAuthenticationFailed
                | Code::Authentication
        )
    )
}

/// Why the lag could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    /// The broker could not be asked, or refused.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic asked for is not on the cluster: its lag is not 0, it is
    /// a mistake (a typo, another cluster).
    #[error("topic {topic:?} does not exist ({error})")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// What the broker said.
        error: String,
    },
    /// The age of the oldest unconsumed message could not be read: without
    /// `Read` on the topic (the lag exporter's ACLs), or with no message at
    /// the committed offset in time. Never reported as 0 seconds.
    #[error(
        "cannot read the message at {topic}[{partition}] offset {offset} to date the time lag \
         ({cause}); the lag exporter's principal needs Describe and Read on the topic"
    )]
    TimeLag {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The committed offset (the oldest unconsumed message).
        offset: i64,
        /// What the broker or the client said.
        cause: String,
    },
    /// The group has no member and never committed on these topics: a
    /// typo, another cluster, or consumers that have not started yet.
    #[error(
        "group {group:?} is not known to the broker: no committed offset on {topics} and no member \
         it reports (some brokers, Tansu among them, report none); check the name, or, if its \
         consumers have not committed yet, pass --allow-new-group to see everything in the log as its lag"
    )]
    UnknownGroup {
        /// The group.
        group: String,
        /// The topics looked at, comma-separated.
        topics: String,
    },
}

/// Measures the lag of `group` on `topics` (blocking: broker round trips).
pub fn measure(
    kafka: &KafkaSettings,
    group: &str,
    topics: &[String],
) -> Result<GroupLag, LagError> {
    let consumer = reader(kafka, group)?;
    // Of the same group: the only groups the exporter may describe are the
    // ones it measures.
    let probe = reader(kafka, group)?;
    let mut tpl = TopicPartitionList::new();
    let mut highs = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found.map(|t| (t.error(), t.partitions().is_empty())) {
            Some((None, false)) => {}
            Some((Some(error), _)) => {
                return Err(LagError::UnknownTopic {
                    topic: topic.clone(),
                    error: rdkafka::error::RDKafkaErrorCode::from(error).to_string(),
                })
            }
            _ => {
                return Err(LagError::UnknownTopic {
                    topic: topic.clone(),
                    error: "no partitions".to_owned(),
                })
            }
        }
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(t.name(), p.id(), TIMEOUT)?;
                tpl.add_partition(t.name(), p.id());
                highs.push((t.name().to_owned(), p.id(), low, high));
            }
        }
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut partitions = Vec::new();
    for (topic, partition, low, high) in highs {
        let committed_offset =
            committed
                .find_partition(&topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
        // Never committed: everything still in the log is behind.
        let position = committed_offset.unwrap_or(low).max(low);
        let lag = (high - position).max(0);
        let lag_seconds = if lag > 0 {
            let ts = timestamp_at(&probe, &topic, partition, position)?;
            ((now_ms - ts) / 1000).max(0)
        } else {
            0
        };
        partitions.push(PartitionLag {
            topic,
            partition,
            committed: committed_offset,
            high,
            lag,
            lag_seconds,
        });
    }
    let described = consumer.fetch_group_list(Some(group), TIMEOUT).ok();
    let description = described.as_ref().and_then(|list| list.groups().first());
    let members = description.map(|g| g.members().len());
    let state = description
        .map(|g| g.state().to_owned())
        .filter(|state| !state.is_empty());
    let total = partitions.iter().map(|p| p.lag).sum();
    Ok(GroupLag {
        group: group.to_owned(),
        at_ms: now_ms,
        members,
        state,
        partitions,
        total,
    })
}

impl GroupLag {
    /// Whether the broker knows the group: it committed on one of the
    /// partitions measured, or has members.
    pub fn known(&self) -> bool {
        self.members.is_some_and(|m| m > 0) || self.partitions.iter().any(|p| p.committed.is_some())
    }
}

/// A partition's lag with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    /// The last measurement.
    #[serde(flatten)]
    pub lag: PartitionLag,
    /// The verdict over the window.
    #[serde(flatten)]
    pub verdict: Assessment,
}

/// A group's lag with its verdicts: what `lag` prints and the exporter
/// exports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The group.
    pub group: String,
    /// Active members (`None` when the broker does not say).
    pub members: Option<usize>,
    /// The group's state as the broker reports it.
    pub state: Option<String>,
    /// Sum of the partitions' lag in the last measurement.
    pub total: i64,
    /// Measurements the verdicts are based on.
    pub measurements: usize,
    /// The group's verdict: its worst partition's.
    #[serde(flatten)]
    pub verdict: Assessment,
    /// Per partition.
    pub partitions: Vec<PartitionReport>,
}

/// The measurements of one group over a sliding window.
#[derive(Debug)]
pub struct History {
    window_ms: i64,
    samples: BTreeMap<(String, i32), VecDeque<Sample>>,
    measurements: VecDeque<i64>,
}

impl History {
    /// Keeps what was measured in the last `window`, and the last
    /// measurement before it.
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            samples: BTreeMap::new(),
            measurements: VecDeque::new(),
        }
    }

    /// Adds a measurement and returns the verdicts over the window.
    pub fn record(&mut self, lag: &GroupLag) -> Report {
        let oldest = lag.at_ms.saturating_sub(self.window_ms);
        // Kept: the measurements inside the window and the last one before
        // it, so that the verdicts compare across the whole window even
        // when a measurement takes longer than the window.
        self.measurements.push_back(lag.at_ms);
        while self.measurements.get(1).is_some_and(|&at| at <= oldest) {
            self.measurements.pop_front();
        }
        // Partitions no longer measured (a topic deleted) are forgotten.
        self.samples.retain(|(topic, partition), _| {
            lag.partitions
                .iter()
                .any(|p| &p.topic == topic && p.partition == *partition)
        });
        let mut partitions = Vec::with_capacity(lag.partitions.len());
        for p in &lag.partitions {
            let window = self
                .samples
                .entry((p.topic.clone(), p.partition))
                .or_default();
            window.push_back(Sample {
                at_ms: lag.at_ms,
                committed: p.committed,
                high: p.high,
                lag: p.lag,
                lag_seconds: p.lag_seconds,
            });
            while window.get(1).is_some_and(|s| s.at_ms <= oldest) {
                window.pop_front();
            }
            let verdict = assess(window.make_contiguous(), lag.members);
            partitions.push(PartitionReport {
                lag: p.clone(),
                verdict,
            });
        }
        let verdicts: Vec<Assessment> = partitions.iter().map(|p| p.verdict).collect();
        Report {
            group: lag.group.clone(),
            members: lag.members,
            state: lag.state.clone(),
            total: lag.total,
            measurements: self.measurements.len(),
            verdict: combine(&verdicts),
            partitions,
        }
    }
}

fn eta(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1.0 => "0s".to_owned(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
        None => "never".to_owned(),
    }
}

/// Writes a lag table for people.
pub fn print(out: &mut impl std::io::Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "group {}: {}{}, total lag {}",
        report.group,
        report.members.map_or(
            "active members unknown (the broker did not describe the group)".to_owned(),
            |m| format!("{m} active member(s)")
        ),
        report
            .state
            .as_ref()
            .map_or(String::new(), |s| format!(", state {s}")),
        report.total
    )?;
    if report.measurements < 2 {
        writeln!(
            out,
            "status {} (one measurement; pass --window SECONDS for a verdict over time)",
            report.verdict.status
        )?;
    } else {
        writeln!(
            out,
            "status {} over {:.0}s ({} measurements), draining {:.1} msg/s, lag 0 in {}",
            report.verdict.status,
            report.verdict.window_seconds,
            report.measurements,
            report.verdict.drain_rate,
            eta(report.verdict.eta_seconds)
        )?;
    }
    writeln!(
        out,
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12} {:>8} {:>10} {:>8}",
        "topic", "partition", "committed", "high", "lag", "lag seconds", "status", "drain/s", "eta"
    )?;
    for p in &report.partitions {
        writeln!(
            out,
            "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12} {:>8} {:>10.1} {:>8}",
            p.lag.topic,
            p.lag.partition,
            p.lag.committed.map_or("-".to_owned(), |c| c.to_string()),
            p.lag.high,
            p.lag.lag,
            p.lag.lag_seconds,
            p.verdict.status.as_str(),
            p.verdict.drain_rate,
            eta(p.verdict.eta_seconds)
        )?;
    }
    Ok(())
}

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
        let mut now = Exported {
            partitions: Vec::with_capacity(report.partitions.len()),
            state: report.state.clone(),
        };
        for p in &report.partitions {
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
            for status in Status::ALL {
                self.status
                    .with_label_values(&[group, labels[1], labels[2], status.as_str()])
                    .set(i64::from(status == p.verdict.status));
            }
            now.partitions.push((p.lag.topic.clone(), partition));
        }
        for status in Status::ALL {
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
        for status in Status::ALL {
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
        for status in Status::ALL {
            let _ = self
                .status
                .remove_label_values(&[group, topic, partition, status.as_str()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_without_a_timestamp_is_an_unknown_time_lag_not_zero() {
        assert_eq!(written_at(Timestamp::CreateTime(5)), Ok(5));
        assert_eq!(written_at(Timestamp::LogAppendTime(7)), Ok(7));
        assert!(written_at(Timestamp::NotAvailable).is_err());
    }

    #[test]
    fn group_specs_name_their_topics_or_take_the_default_ones() {
        let default = vec!["orders".to_owned(), "users".to_owned()];
        assert_eq!(
            GroupSpec::parse("order-consumer", &default),
            Ok(GroupSpec {
                name: "order-consumer".to_owned(),
                topics: default.clone()
            })
        );
        assert_eq!(
            GroupSpec::parse("order-replay=orders-dlq,users-dlq", &default),
            Ok(GroupSpec {
                name: "order-replay".to_owned(),
                topics: vec!["orders-dlq".to_owned(), "users-dlq".to_owned()]
            })
        );
        for bad in ["", "=orders", "g=", "g=orders,", "g=,orders", " "] {
            assert!(GroupSpec::parse(bad, &default).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever `--group` holds, it is a group with topics, none of
        /// them empty or carrying a comma, or it is refused.
        #[test]
        fn any_group_spec_is_a_group_with_topics_or_refused(spec in "[a-z=, ]{0,12}|\\PC{0,40}") {
            let default = vec!["orders".to_owned()];
            if let Ok(g) = GroupSpec::parse(&spec, &default) {
                proptest::prop_assert!(!g.name.is_empty() && !g.name.contains('='));
                proptest::prop_assert!(!g.topics.is_empty());
                for t in &g.topics {
                    proptest::prop_assert!(!t.is_empty() && !t.contains(','));
                }
            }
        }
    }

    fn lag(at_ms: i64, committed: Option<i64>, high: i64) -> GroupLag {
        let position = committed.unwrap_or(0);
        GroupLag {
            group: "g".to_owned(),
            at_ms,
            members: Some(1),
            state: Some("Stable".to_owned()),
            partitions: vec![PartitionLag {
                topic: "orders".to_owned(),
                partition: 0,
                committed,
                high,
                lag: high - position,
                lag_seconds: if high > position { at_ms / 1000 } else { 0 },
            }],
            total: high - position,
        }
    }

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

    #[test]
    fn the_history_judges_only_the_window() {
        let mut history = History::new(Duration::from_secs(10));
        assert_eq!(
            history.record(&lag(0, Some(5), 10)).verdict.status,
            crate::verdict::Status::Unknown
        );
        assert_eq!(
            history.record(&lag(5_000, Some(5), 12)).verdict.status,
            crate::verdict::Status::Stall
        );
        // The rewind at 10 s is judged while it is in the window...
        assert_eq!(
            history.record(&lag(10_000, Some(2), 12)).verdict.status,
            crate::verdict::Status::Rewind
        );
        let report = history.record(&lag(15_000, Some(6), 20));
        assert_eq!(report.verdict.status, crate::verdict::Status::Rewind);
        assert_eq!(report.measurements, 3, "0 s fell out of the 10 s window");
        // ... and forgotten once it left it.
        let report = history.record(&lag(25_000, Some(20), 20));
        assert_eq!(report.verdict.status, crate::verdict::Status::Ok);
        assert_eq!(report.partitions[0].verdict.eta_seconds, Some(0.0));
    }
}
