//! Reading dead letters: a snapshot of a DLQ topic up to its high
//! watermarks, each message with its `dlq-*` headers parsed and its payload
//! decoded where possible, and the filters `list`, `inspect` and `replay`
//! share.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use contract::dead_letter::{ErrorKind, FailureClass};
use contract::redact::scrub;
use contract::topics::Domains;
use contract::{headers as h, DecodeError, DomainEvent, Envelope};
use platform::kafka::header;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

/// What the tool could not do.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The broker refused or did not answer.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topic does not exist.
    #[error("topic {0} not found")]
    NoTopic(String),
    /// The topic has no such partition.
    #[error("topic {topic} has no partition {partition} (it has {count}: 0 to {last})", last = .count - 1)]
    NoPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many partitions the topic has.
        count: i32,
    },
    /// The offset is not in the partition: below its low watermark
    /// (deleted by retention) or at or past its high one (not written yet).
    #[error(
        "no message at {topic} partition {partition} offset {offset}: the partition holds offsets \
         {low} to {high} (exclusive)"
    )]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The offset asked for.
        offset: i64,
        /// The partition's low watermark (its first offset).
        low: i64,
        /// Its high watermark (the next offset to be written).
        high: i64,
    },
    /// An argument is not usable.
    #[error("{0}")]
    BadArgument(String),
    /// Nothing is stored where the command looked.
    #[error("{0}")]
    NotFound(String),
    /// Another run holds what this one needs.
    #[error("{0}")]
    Busy(String),
    /// Messages known to be in the topic did not arrive.
    #[error("{topic}: no message for {idle:?} while partitions {missing:?} still had messages up to the end taken at the start")]
    Stalled {
        /// The topic.
        topic: String,
        /// How long nothing arrived.
        idle: Duration,
        /// The partitions still being read.
        missing: Vec<i32>,
    },
}

/// A dead letter as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// DLQ partition.
    pub partition: i32,
    /// DLQ offset.
    pub offset: i64,
    /// Message key (lossy UTF-8).
    pub key: Option<String>,
    /// `dlq-original-topic`.
    pub original_topic: Option<String>,
    /// `dlq-original-partition`.
    pub original_partition: Option<i32>,
    /// `dlq-original-offset`.
    pub original_offset: Option<i64>,
    /// `dlq-error-kind`.
    pub error_kind: Option<String>,
    /// `dlq-error-class`.
    pub error_class: Option<String>,
    /// `dlq-error-message`.
    pub error_message: Option<String>,
    /// `dlq-retry-count`.
    pub retry_count: Option<u32>,
    /// `dlq-replay-count` (0 when never replayed).
    pub replay_count: u32,
    /// `dlq-failed-at`.
    pub failed_at: Option<DateTime<Utc>>,
    /// `dlq-consumer-group`.
    pub consumer_group: Option<String>,
    /// The first failure's error class: `dlq-first-error-class` on a
    /// message that failed again after a replay, else this one's.
    pub first_error_class: Option<String>,
    /// Where the first failure was read (`topic/partition/offset`), when
    /// this dead letter is not the first.
    pub first_original: Option<String>,
    /// The error class and the error text with its numbers and ids
    /// blanked: dead letters that failed for the same reason share it.
    pub fingerprint: String,
    /// For `dlq list --group`: whether that replay group has yet to reach
    /// it (`false`: replayed, parked or passed over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<bool>,
    /// Every header, as text.
    pub headers: BTreeMap<String, String>,
}

/// Longest text taken from a header that any client may have set, in
/// characters.
const MAX_FIELD_CHARS: usize = 120;

/// `text` cut at [`MAX_FIELD_CHARS`].
fn cut(text: &str) -> String {
    match text.char_indices().nth(MAX_FIELD_CHARS) {
        Some((at, _)) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

/// `class: text` with every word holding a digit replaced by `#` (offsets,
/// ids, amounts), cut at 120 characters.
pub fn fingerprint(class: Option<&str>, message: Option<&str>) -> String {
    let text: Vec<&str> = message
        .unwrap_or("")
        .split_whitespace()
        .map(|word| {
            if word.chars().any(|c| c.is_ascii_digit()) {
                "#"
            } else {
                word
            }
        })
        .collect();
    cut(&format!("{}: {}", class.unwrap_or("?"), text.join(" ")))
}

impl DeadLetter {
    /// A dead letter of orders-dlq/0@0 without value or header (tests
    /// fill in what they need).
    #[cfg(test)]
    pub(crate) fn blank() -> Self {
        Self::of(&rdkafka::message::OwnedMessage::new(
            None,
            None,
            "orders-dlq".into(),
            rdkafka::Timestamp::NotAvailable,
            0,
            0,
            None,
        ))
    }

    /// Parses the `dlq-*` headers of `message`.
    pub fn of(message: &OwnedMessage) -> Self {
        // A repeated header counts by its first occurrence, as everywhere
        // (`platform::kafka::header`).
        let mut headers: BTreeMap<String, String> = BTreeMap::new();
        for x in message.headers().iter().flat_map(|hs| hs.iter()) {
            let text = x
                .value
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let text = if x.key == h::DLQ_ERROR_MESSAGE {
                scrub(&text)
            } else {
                text
            };
            headers.entry(x.key.to_owned()).or_insert(text);
        }
        let get = |name: &str| headers.get(name).cloned();
        let error_message = get(h::DLQ_ERROR_MESSAGE);
        Self {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            original_topic: get(h::DLQ_ORIGINAL_TOPIC),
            original_partition: get(h::DLQ_ORIGINAL_PARTITION).and_then(|v| v.parse().ok()),
            original_offset: get(h::DLQ_ORIGINAL_OFFSET).and_then(|v| v.parse().ok()),
            error_kind: get(h::DLQ_ERROR_KIND),
            error_class: get(h::DLQ_ERROR_CLASS),
            // Scrubbed above: dead letters written before error texts were
            // scrubbed may quote customer data, never shown as it is.
            error_message: error_message.clone(),
            retry_count: get(h::DLQ_RETRY_COUNT).and_then(|v| v.parse().ok()),
            replay_count: get(h::DLQ_REPLAY_COUNT)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            failed_at: get(h::DLQ_FAILED_AT)
                .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
                .map(|t| t.with_timezone(&Utc)),
            consumer_group: get(h::DLQ_CONSUMER_GROUP),
            // The first failure's headers travel with the message from its
            // original topic, where any client may have set them: cut.
            first_error_class: get(h::DLQ_FIRST_ERROR_CLASS)
                .map(|c| cut(&c))
                .or_else(|| get(h::DLQ_ERROR_CLASS)),
            first_original: get(h::DLQ_FIRST_ORIGINAL_TOPIC).map(|topic| {
                let part = |name| get(name).map_or_else(|| "?".to_owned(), |v| cut(&v));
                format!(
                    "{}/{}/{}",
                    cut(&topic),
                    part(h::DLQ_FIRST_ORIGINAL_PARTITION),
                    part(h::DLQ_FIRST_ORIGINAL_OFFSET)
                )
            }),
            fingerprint: fingerprint(get(h::DLQ_ERROR_CLASS).as_deref(), error_message.as_deref()),
            pending: None,
            headers,
        }
    }
}

/// The dead letter's value decoded as the consumer would have read it: by
/// its envelope, the domain of its original topic standing for an absent
/// `event-type`.
pub fn decode_payload(
    message: &OwnedMessage,
    domains: &Domains,
) -> Result<DomainEvent, DecodeError> {
    let payload = message.payload().ok_or(DecodeError::Empty)?;
    let topic_domain = header(message, h::DLQ_ORIGINAL_TOPIC).and_then(|t| domains.domain(t));
    Envelope::read(|name| header(message, name), topic_domain)?.decode(payload)
}

/// Which dead letters a command applies to.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filter {
    /// Only this error kind.
    #[arg(long, value_enum)]
    pub kind: Option<ErrorKind>,
    /// Only this error class.
    #[arg(long, value_enum)]
    pub class: Option<FailureClass>,
    /// Only dead letters from this partition of the original topic.
    #[arg(long)]
    pub original_partition: Option<i32>,
    /// Only this message key.
    #[arg(long)]
    pub key: Option<String>,
    /// Only dead letters that failed at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<DateTime<Utc>>,
    /// Only dead letters that failed before this time (RFC 3339).
    #[arg(long)]
    pub until: Option<DateTime<Utc>>,
    /// Only dead letters with this fingerprint, exactly as `dlq list` prints
    /// it (the error class and text, numbers blanked): one cause's group.
    #[arg(long)]
    pub fingerprint: Option<String>,
}

impl Filter {
    /// Checks the filter's own values.
    pub fn validate(&self) -> Result<(), DlqError> {
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(DlqError::BadArgument(
                    "--since must be before --until".into(),
                ));
            }
        }
        Ok(())
    }

    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        // The letter's own headers are foreign text (any client may write
        // to a DLQ): compared as names, never parsed into the closed set.
        let named = |want: Option<&str>, have: &Option<String>| {
            want.is_none_or(|w| have.as_deref() == Some(w))
        };
        named(self.kind.map(ErrorKind::as_str), &letter.error_kind)
            && named(self.class.map(FailureClass::as_str), &letter.error_class)
            && named(self.key.as_deref(), &letter.key)
            && self
                .fingerprint
                .as_deref()
                .is_none_or(|f| letter.fingerprint == f)
            && self
                .original_partition
                .is_none_or(|p| letter.original_partition == Some(p))
            && self
                .since
                .is_none_or(|s| letter.failed_at.is_some_and(|t| t >= s))
            && self
                .until
                .is_none_or(|u| letter.failed_at.is_some_and(|t| t < u))
    }
}

/// Partitions of `topic` with their low and high watermarks.
pub fn watermarks<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<(i32, i64, i64)>, DlqError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let t = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .ok_or_else(|| DlqError::NoTopic(topic.to_owned()))?;
    let mut out = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        out.push((p.id(), low, high));
    }
    Ok(out)
}

/// A DLQ topic read from its start (or from `from` offsets) up to the high
/// watermarks taken when it was opened, one message at a time: partitions
/// interleaved, each in offset order. What arrives later is left for the
/// next run, so a run always ends, and whatever the DLQ's size only the
/// message in hand is held. However long the reader takes over each
/// message (a paced replay), only a broker that sends nothing for six times
/// the timeout ends it early, and then as an error.
pub struct Snapshot {
    topic: String,
    consumer: crate::kafka::Reader,
    ends: BTreeMap<i32, i64>,
    timeout: Duration,
    expected: u64,
}

impl Snapshot {
    /// Opens `topic` for reading.
    pub fn open(
        config: &ClientConfig,
        topic: &str,
        from: Option<&BTreeMap<i32, i64>>,
        timeout: Duration,
    ) -> Result<Self, DlqError> {
        let consumer = crate::kafka::reader(config)?;
        let marks = watermarks(&consumer, topic, timeout)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        let mut expected = 0;
        for (partition, low, high) in marks {
            let start = from
                .and_then(|f| f.get(&partition).copied())
                .unwrap_or(low)
                .max(low);
            if start < high {
                assignment.add_partition_offset(topic, partition, Offset::Offset(start))?;
                ends.insert(partition, high);
                expected += u64::try_from(high - start).unwrap_or(0);
            }
        }
        if !ends.is_empty() {
            consumer.assign(&assignment)?;
        }
        Ok(Self {
            topic: topic.to_owned(),
            consumer,
            ends,
            timeout,
            expected,
        })
    }

    /// How many messages the snapshot holds at most (offsets between the
    /// start and the end; compaction and transaction markers make it fewer).
    pub fn expected(&self) -> u64 {
        self.expected
    }
}

impl Iterator for Snapshot {
    type Item = Result<OwnedMessage, DlqError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Only the time spent waiting here counts, not the reader's own
        // between two calls.
        let mut waiting = std::time::Instant::now();
        while !self.ends.is_empty() {
            if waiting.elapsed() >= self.timeout * 6 {
                let missing = self.ends.keys().copied().collect();
                self.ends.clear();
                return Some(Err(DlqError::Stalled {
                    topic: self.topic.clone(),
                    idle: self.timeout * 6,
                    missing,
                }));
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    waiting = std::time::Instant::now();
                    let (partition, offset) = (m.partition(), m.offset());
                    let Some(&end) = self.ends.get(&partition) else {
                        continue;
                    };
                    if offset + 1 >= end {
                        self.ends.remove(&partition);
                    }
                    if offset < end {
                        return Some(Ok(m.detach()));
                    }
                }
                Some(Err(e)) => {
                    self.ends.clear();
                    return Some(Err(e.into()));
                }
                None => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Args {
        #[command(flatten)]
        filter: Filter,
    }

    fn parse(args: &[&str]) -> Result<Filter, String> {
        use clap::Parser;
        Args::try_parse_from(std::iter::once("dlq").chain(args.iter().copied()))
            .map(|a| a.filter)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn kind_and_class_take_the_contract_names_and_refuse_others_listing_them() {
        let filter = parse(&["--kind", "transient", "--class", "database_transient"]);
        let filter = filter.unwrap_or_default();
        assert_eq!(filter.kind, Some(ErrorKind::Transient));
        assert_eq!(filter.class, Some(FailureClass::DatabaseTransient));
        for (flag, bad) in [
            ("--kind", "Permanent"),
            ("--class", "database-transient"),
            ("--kind", ""),
        ] {
            let said = parse(&[flag, bad]).err().unwrap_or_default();
            assert!(said.contains("possible values"), "{flag} {bad:?}: {said}");
        }
        let said = parse(&["--class", "nope"]).err().unwrap_or_default();
        for class in FailureClass::ALL {
            assert!(said.contains(class.as_str()), "{said}");
        }

        let mut letter = DeadLetter::blank();
        letter.error_kind = Some("transient".into());
        letter.error_class = Some("database_transient".into());
        assert!(filter.matches(&letter));
        letter.error_class = Some("DATABASE_TRANSIENT".into());
        assert!(
            !filter.matches(&letter),
            "a forged spelling is not the class"
        );
    }

    #[test]
    fn a_fingerprint_selects_exactly_the_letters_that_share_it() {
        let letter = |class: &str, message: &str| {
            let mut letter = DeadLetter::of(&OwnedMessage::new(
                None,
                None,
                "orders-dlq".into(),
                rdkafka::Timestamp::NotAvailable,
                0,
                0,
                None,
            ));
            letter.fingerprint = fingerprint(Some(class), Some(message));
            letter
        };
        let quantity = letter("validation", "item 3: quantity 0 is not between 1 and 1000");
        let filter = parse(&["--fingerprint", &quantity.fingerprint]).unwrap_or_default();
        assert_eq!(
            filter.fingerprint.as_deref(),
            Some(quantity.fingerprint.as_str())
        );
        assert!(filter.matches(&quantity));
        assert!(filter.matches(&letter(
            "validation",
            "item 7: quantity 5000 is not between 1 and 1000"
        )));
        for other in [
            letter("decode", "item 3: quantity 0 is not between 1 and 1000"),
            letter("validation", "item 3: price 0 is not between 1 and 1000"),
            letter(
                "validation",
                "item 3: quantity 0 is not between 1 and 1000 at all",
            ),
        ] {
            assert!(!filter.matches(&other), "{}", other.fingerprint);
        }
        let prefix = parse(&["--fingerprint", "validation: item #"]).unwrap_or_default();
        assert!(!prefix.matches(&quantity), "exact, not a prefix");
        assert!(Filter::default().matches(&quantity));
        let help = <Args as clap::CommandFactory>::command()
            .render_help()
            .to_string();
        assert!(help.contains("--fingerprint <FINGERPRINT>"), "{help}");
    }

    #[test]
    fn fingerprints_ignore_numbers_and_ids_and_stay_short() {
        assert_eq!(
            fingerprint(
                Some("validation"),
                Some("item 3: quantity 0 is not between 1 and 1000")
            ),
            "validation: item # quantity # is not between # and #"
        );
        assert_eq!(
            fingerprint(Some("decode"), Some("expected value at line 1 column 2")),
            fingerprint(Some("decode"), Some("expected value at line 7 column 19"))
        );
        assert_eq!(fingerprint(None, None), "?: ");
        let long = "ä".repeat(500);
        assert_eq!(fingerprint(Some("x"), Some(&long)).chars().count(), 120);
    }

    /// Header names a dead letter is read by, and some it is not.
    const NAMES: [&str; 12] = [
        h::DLQ_ERROR_CLASS,
        h::DLQ_ERROR_KIND,
        h::DLQ_ERROR_MESSAGE,
        h::DLQ_REPLAY_COUNT,
        h::DLQ_FAILED_AT,
        h::DLQ_ORIGINAL_PARTITION,
        h::DLQ_FIRST_ERROR_CLASS,
        h::DLQ_FIRST_ORIGINAL_TOPIC,
        h::DLQ_FIRST_ORIGINAL_PARTITION,
        h::DLQ_FIRST_ORIGINAL_OFFSET,
        "dlq-first-unknown",
        "x",
    ];

    proptest::proptest! {
        /// Whatever headers a dead letter carries (repeated, empty, huge,
        /// not UTF-8), it is read without a panic, and what a listing
        /// counts and prints of its first failure stays short.
        #[test]
        fn any_headers_are_read_and_what_is_listed_stays_short(
            headers in proptest::collection::vec(
                (0..NAMES.len(), proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2000))),
                0..30,
            ),
        ) {
            let mut owned = rdkafka::message::OwnedHeaders::new();
            for (name, value) in &headers {
                owned = owned.insert(rdkafka::message::Header { key: NAMES[*name], value: value.as_deref() });
            }
            let message = OwnedMessage::new(
                None,
                None,
                "orders-dlq".into(),
                rdkafka::Timestamp::NotAvailable,
                0,
                0,
                Some(owned),
            );
            let letter = DeadLetter::of(&message);
            proptest::prop_assert!(letter.fingerprint.chars().count() <= MAX_FIELD_CHARS);
            if let Some(first) = letter.first_original {
                proptest::prop_assert!(first.chars().count() <= 3 * MAX_FIELD_CHARS + 2);
            }
            if headers.iter().any(|(n, _)| NAMES[*n] == h::DLQ_FIRST_ERROR_CLASS) {
                if let Some(class) = letter.first_error_class {
                    proptest::prop_assert!(class.chars().count() <= MAX_FIELD_CHARS);
                }
            }
        }
    }
}
