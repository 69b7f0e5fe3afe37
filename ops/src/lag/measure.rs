//! Taking measurements: one group's lag from the broker ([`measure`]),
//! and [`Measurer`], which measures each group of a `lag` run or of the
//! exporter in turn and records it in the group's window.

use std::time::Duration;

use platform::kafka::KafkaSettings;
use rdkafka::consumer::Consumer;

use crate::kafka::Reader;
use rdkafka::message::Message;
use rdkafka::metadata::Metadata;
use rdkafka::{Offset, Timestamp, TopicPartitionList};
use tokio::task::JoinError;

use super::{GroupLag, GroupSpec, History, LagError, PartitionLag, Report};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A client of `group` that reads its offsets and messages of partitions it
/// assigns itself; it never joins the group or commits. The errors it
/// remembers are its own, so a refusal it heard is this group's.
fn reader(kafka: &KafkaSettings, group: &str) -> Result<Reader, rdkafka::error::KafkaError> {
    crate::kafka::reader_apart(&kafka.reader_config("pubsubkafka-lag", group))
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
    reader: &Reader,
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
    e.rdkafka_error_code().is_some_and(refusal)
}

/// Whether `code` is the broker refusing a client (it will not pass).
fn refusal(code: rdkafka::error::RDKafkaErrorCode) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        code,
        Code::TopicAuthorizationFailed
            | Code::GroupAuthorizationFailed
            | Code::ClusterAuthorizationFailed
            | Code::SaslAuthenticationFailed
            | Code::Authentication
    )
}

/// What a failed read of `group`'s committed offsets was: the broker's
/// refusal when the reader heard one (librdkafka retries a refused
/// coordinator lookup until the call times out, so the call itself says
/// only "timed out"), else the call's own error.
fn offsets_failed(consumer: &Reader, group: &str, error: rdkafka::error::KafkaError) -> LagError {
    match crate::kafka::heard(consumer, refusal) {
        Some((_, cause)) => LagError::Refused {
            group: group.to_owned(),
            cause,
        },
        None => LagError::Kafka(error),
    }
}

/// A partition to measure: topic, partition, low and high watermarks.
type Watermarks = (String, i32, i64, i64);

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
    let (tpl, highs) = partitions(&consumer, topics)?;
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .map_err(|e| offsets_failed(&consumer, group, e))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let partitions = highs
        .into_iter()
        .map(|marks| partition_lag(&probe, &committed, now_ms, marks))
        .collect::<Result<Vec<_>, _>>()?;
    let (members, state) = describe(&consumer, group);
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

/// Every partition of `topics` with its watermarks; a topic that is not on
/// the cluster is [`LagError::UnknownTopic`].
fn partitions(
    consumer: &Reader,
    topics: &[String],
) -> Result<(TopicPartitionList, Vec<Watermarks>), LagError> {
    let mut tpl = TopicPartitionList::new();
    let mut highs = Vec::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
        check_topic(&metadata, topic)?;
        for t in metadata.topics().iter().filter(|t| t.error().is_none()) {
            for p in t.partitions() {
                let (low, high) = consumer.fetch_watermarks(t.name(), p.id(), TIMEOUT)?;
                tpl.add_partition(t.name(), p.id());
                highs.push((t.name().to_owned(), p.id(), low, high));
            }
        }
    }
    Ok((tpl, highs))
}

/// Whether `metadata` has `topic`, with partitions.
fn check_topic(metadata: &Metadata, topic: &str) -> Result<(), LagError> {
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    match found.map(|t| (t.error(), t.partitions().is_empty())) {
        Some((None, false)) => Ok(()),
        Some((Some(error), _)) => Err(LagError::UnknownTopic {
            topic: topic.to_owned(),
            error: rdkafka::error::RDKafkaErrorCode::from(error).to_string(),
        }),
        _ => Err(LagError::UnknownTopic {
            topic: topic.to_owned(),
            error: "no partitions".to_owned(),
        }),
    }
}

/// The lag of one partition, its age read with `probe` when there is lag.
fn partition_lag(
    probe: &Reader,
    committed: &TopicPartitionList,
    now_ms: i64,
    (topic, partition, low, high): Watermarks,
) -> Result<PartitionLag, LagError> {
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
        let ts = timestamp_at(probe, &topic, partition, position)?;
        ((now_ms - ts) / 1000).max(0)
    } else {
        0
    };
    Ok(PartitionLag {
        topic,
        partition,
        committed: committed_offset,
        high,
        lag,
        lag_seconds,
    })
}

/// The group's active members and state, as far as the broker says.
fn describe(consumer: &Reader, group: &str) -> (Option<usize>, Option<String>) {
    let described = consumer.fetch_group_list(Some(group), TIMEOUT).ok();
    let description = described.as_ref().and_then(|list| list.groups().first());
    let members = description.map(|g| g.members().len());
    let state = description
        .map(|g| g.state().to_owned())
        .filter(|state| !state.is_empty());
    (members, state)
}

/// What a measurement makes of a group the broker does not know (see
/// [`GroupLag::known`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewGroups {
    /// [`LagError::UnknownGroup`]: most often a typo.
    Refuse,
    /// Measured like any group: everything still in the log is its lag.
    Measure,
}

/// Measures groups and keeps each one's window of measurements: the one
/// measure-and-record loop of `lag` and of the exporter.
pub struct Measurer {
    kafka: KafkaSettings,
    groups: Vec<(GroupSpec, History)>,
    new_groups: NewGroups,
}

impl Measurer {
    /// Measures `groups`, judging each over `window`.
    pub fn new(
        kafka: KafkaSettings,
        groups: Vec<GroupSpec>,
        window: Duration,
        new_groups: NewGroups,
    ) -> Self {
        Self {
            kafka,
            groups: groups
                .into_iter()
                .map(|spec| (spec, History::new(window)))
                .collect(),
            new_groups,
        }
    }

    /// How many groups it measures.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether it measures none.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Group `n`.
    pub fn group(&self, n: usize) -> &GroupSpec {
        &self.groups[n].0
    }

    /// The brokers it asks, for messages.
    pub fn brokers(&self) -> &str {
        &self.kafka.bootstrap_servers
    }

    /// Measures group `n` (on a blocking thread) and records it in its
    /// window: the report, or why the group could not be measured (an
    /// unknown group is refused as [`NewGroups`] says). The outer error is
    /// the measuring thread's panic.
    pub async fn measure(&mut self, n: usize) -> Result<Result<Report, LagError>, JoinError> {
        let (spec, history) = &mut self.groups[n];
        let (kafka, name, topics) = (self.kafka.clone(), spec.name.clone(), spec.topics.clone());
        let lag = tokio::task::spawn_blocking(move || measure(&kafka, &name, &topics)).await?;
        Ok(lag.and_then(|lag| {
            if self.new_groups == NewGroups::Refuse && !lag.known() {
                return Err(LagError::UnknownGroup {
                    group: spec.name.clone(),
                    topics: spec.topics.join(","),
                });
            }
            Ok(history.record(&lag))
        }))
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
}
