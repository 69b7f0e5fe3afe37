//! Consumer lag from the broker's point of view, so it is known when the
//! consumer is down (that is when it matters): committed offsets of the
//! group, high watermarks of the partitions, the age of the oldest
//! unconsumed message, and the group's active members.

use std::time::Duration;

use platform::kafka::KafkaSettings;
use platform::metrics::register;
use prometheus::{IntGaugeVec, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use serde::Serialize;

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
    /// Active members (`None` when the broker does not say).
    pub members: Option<usize>,
    /// Per partition.
    pub partitions: Vec<PartitionLag>,
    /// Sum over partitions.
    pub total: i64,
}

fn reader(kafka: &KafkaSettings, group: &str) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
    kafka
        .client_config(&[
            ("group.id", group),
            ("client.id", "pubsubkafka-lag"),
            ("enable.auto.commit", "false"),
        ])
        .create()
}

/// Timestamp (ms) of the message at `offset`, read with an assigned reader.
fn timestamp_at(reader: &BaseConsumer, topic: &str, partition: i32, offset: i64) -> Option<i64> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .ok()?;
    reader.assign(&tpl).ok()?;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
            return match m.timestamp() {
                Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
                Timestamp::NotAvailable => None,
            };
        }
    }
    None
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
}

/// Measures the lag of `group` on `topics` (blocking: broker round trips).
pub fn measure(
    kafka: &KafkaSettings,
    group: &str,
    topics: &[String],
) -> Result<GroupLag, LagError> {
    let consumer = reader(kafka, group)?;
    let probe = reader(kafka, &format!("{group}-lag-probe"))?;
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
            timestamp_at(&probe, &topic, partition, position)
                .map(|ts| ((now_ms - ts) / 1000).max(0))
                .unwrap_or(0)
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
    let members = consumer
        .fetch_group_list(Some(group), TIMEOUT)
        .ok()
        .and_then(|list| list.groups().first().map(|g| g.members().len()));
    let total = partitions.iter().map(|p| p.lag).sum();
    Ok(GroupLag {
        group: group.to_owned(),
        members,
        partitions,
        total,
    })
}

/// Prints a lag table for people.
pub fn print(lag: &GroupLag) {
    println!(
        "group {}: {}, total lag {}",
        lag.group,
        lag.members.map_or(
            "active members unknown (the broker did not describe the group)".to_owned(),
            |m| format!("{m} active member(s)")
        ),
        lag.total
    );
    println!(
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12}",
        "topic", "partition", "committed", "high", "lag", "lag seconds"
    );
    for p in &lag.partitions {
        println!(
            "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12}",
            p.topic,
            p.partition,
            p.committed.map_or("-".to_owned(), |c| c.to_string()),
            p.high,
            p.lag,
            p.lag_seconds
        );
    }
}

/// The exporter's metrics.
#[derive(Clone)]
pub struct LagMetrics {
    lag: IntGaugeVec,
    lag_seconds: IntGaugeVec,
    committed: IntGaugeVec,
    high: IntGaugeVec,
    members: IntGaugeVec,
}

impl LagMetrics {
    /// Registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let labels = &["group", "topic", "partition"];
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).and_then(|g| register(registry, g))
        };
        Ok(Self {
            lag: gauge(
                "kafka_consumer_lag",
                "Messages between the group's committed offset and the high watermark",
                labels,
            )?,
            lag_seconds: gauge(
                "kafka_consumer_lag_seconds",
                "Age of the oldest message the group has not consumed",
                labels,
            )?,
            committed: gauge(
                "kafka_consumer_committed_offset",
                "The group's committed offset",
                labels,
            )?,
            high: gauge(
                "kafka_topic_high_watermark",
                "Next offset to be written",
                &["topic", "partition"],
            )?,
            members: gauge(
                "kafka_consumer_group_members",
                "Active members of the group",
                &["group"],
            )?,
        })
    }

    /// Publishes one measurement.
    pub fn set(&self, lag: &GroupLag) {
        for p in &lag.partitions {
            let partition = p.partition.to_string();
            let labels = [lag.group.as_str(), p.topic.as_str(), partition.as_str()];
            self.lag.with_label_values(&labels).set(p.lag);
            self.lag_seconds
                .with_label_values(&labels)
                .set(p.lag_seconds);
            if let Some(c) = p.committed {
                self.committed.with_label_values(&labels).set(c);
            }
            self.high
                .with_label_values(&[p.topic.as_str(), partition.as_str()])
                .set(p.high);
        }
        if let Some(m) = lag.members {
            self.members
                .with_label_values(&[lag.group.as_str()])
                .set(i64::try_from(m).unwrap_or(i64::MAX));
        }
    }
}
