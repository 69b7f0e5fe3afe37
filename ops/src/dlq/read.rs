//! `dlq list` and `dlq inspect`: reading a DLQ without changing it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::topics::Domains;
use platform::kafka::KafkaSettings;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::{committed, reader_config, ReaderGroup, Source, TIMEOUT};
use crate::dead_letters::{decode_payload, watermarks, DeadLetter, DlqError, Filter, Snapshot};

/// Summary of a `list`.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub(super) topic: String,
    pub(super) total: usize,
    pub(super) selected: usize,
    /// With `--group`: the group, and how many selected dead letters it has
    /// yet to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) pending: Option<usize>,
    /// `class (kind)` -> count, over the selected dead letters.
    pub(super) by_class: Tally,
    /// The first failure's class -> count (a message that failed again
    /// after a replay counts under its first cause).
    pub(super) by_first_class: Tally,
    /// Error fingerprint -> count.
    pub(super) by_fingerprint: Tally,
    /// Selected dead letters of messages that had been replayed (they carry
    /// their first failure).
    pub(super) failed_again: usize,
    pub(super) dead_letters: Vec<DeadLetter>,
}

/// Most distinct keys a listing counts under one heading; the rest count
/// under [`Tally::OTHER`], so that however many distinct causes a DLQ
/// holds (texts quoting field names any client chose), a listing's memory
/// stays bounded.
const MAX_TALLIED: usize = 1000;

/// Counts by key, at most [`MAX_TALLIED`] keys.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
pub(super) struct Tally(BTreeMap<String, usize>);

impl Tally {
    /// Where the keys past the limit are counted.
    const OTHER: &'static str = "(other)";

    fn count(&mut self, key: &str) {
        if let Some(n) = self.0.get_mut(key) {
            *n += 1;
            return;
        }
        let key = if self.0.len() < MAX_TALLIED {
            key
        } else {
            Self::OTHER
        };
        *self.0.entry(key.to_owned()).or_default() += 1;
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &usize)> {
        self.0.iter()
    }
}

impl Listing {
    fn new(topic: &str, group: Option<&str>, reached: Option<&BTreeMap<i32, i64>>) -> Self {
        Self {
            topic: topic.to_owned(),
            total: 0,
            selected: 0,
            group: group.map(str::to_owned),
            pending: reached.map(|_| 0),
            by_class: Tally::default(),
            by_first_class: Tally::default(),
            by_fingerprint: Tally::default(),
            failed_again: 0,
            dead_letters: Vec::new(),
        }
    }

    /// Counts a selected dead letter, marked pending or done when the
    /// group's positions (`reached`) are known; keeps it under `limit`.
    fn add(&mut self, mut letter: DeadLetter, reached: Option<&BTreeMap<i32, i64>>, limit: usize) {
        self.selected += 1;
        if let Some(reached) = reached {
            let pending = reached
                .get(&letter.partition)
                .is_none_or(|&next| letter.offset >= next);
            letter.pending = Some(pending);
            if let (true, Some(n)) = (pending, self.pending.as_mut()) {
                *n += 1;
            }
        }
        let class = format!(
            "{} ({})",
            letter.error_class.as_deref().unwrap_or("?"),
            letter.error_kind.as_deref().unwrap_or("?")
        );
        self.by_class.count(&class);
        self.failed_again += usize::from(letter.first_original.is_some());
        self.by_first_class
            .count(letter.first_error_class.as_deref().unwrap_or("?"));
        self.by_fingerprint.count(&letter.fingerprint);
        if self.dead_letters.len() < limit {
            self.dead_letters.push(letter);
        }
    }
}

/// `dlq list`: the dead letters of a topic, grouped and counted by class,
/// by first cause and by fingerprint; with `group`, each marked pending or
/// not for that replay group.
pub fn list(
    kafka: &KafkaSettings,
    source: &Source,
    filter: &Filter,
    limit: usize,
    group: Option<&str>,
    reader: &ReaderGroup,
) -> Result<Listing, DlqError> {
    filter.validate()?;
    let reached = match group {
        Some(group) => {
            let consumer = crate::kafka::reader(&reader_config(kafka, group))?;
            Some(committed(&consumer, &source.topic)?)
        }
        None => None,
    };
    let messages = Snapshot::open(
        &reader_config(kafka, &reader.name),
        &source.topic,
        None,
        TIMEOUT,
    )?;
    let mut listing = Listing::new(&source.topic, group, reached.as_ref());
    for message in messages {
        listing.total += 1;
        let letter = DeadLetter::of(&message?);
        if filter.matches(&letter) {
            listing.add(letter, reached.as_ref(), limit);
        }
    }
    Ok(listing)
}

/// `dlq inspect`: one dead letter in full, its payload decoded if possible.
pub fn inspect(
    kafka: &KafkaSettings,
    domains: &Domains,
    topic: &str,
    partition: i32,
    offset: i64,
    reader: &ReaderGroup,
) -> Result<serde_json::Value, DlqError> {
    let consumer = crate::kafka::reader(&reader_config(kafka, &reader.name))?;
    // The watermarks first: an offset outside them, or a partition the
    // topic does not have, is said at once rather than waited for.
    let marks = watermarks(&consumer, topic, TIMEOUT)?;
    let Some(&(_, low, high)) = marks.iter().find(|(p, _, _)| *p == partition) else {
        return Err(DlqError::NoPartition {
            topic: topic.to_owned(),
            partition,
            count: i32::try_from(marks.len()).unwrap_or(i32::MAX),
        });
    };
    if !(low..high).contains(&offset) {
        return Err(DlqError::OffsetOutOfRange {
            topic: topic.to_owned(),
            partition,
            offset,
            low,
            high,
        });
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let started = Instant::now();
    while started.elapsed() < TIMEOUT {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let m = result?.detach();
            if m.offset() != offset {
                break;
            }
            let payload = match decode_payload(&m, domains) {
                Ok(event) => serde_json::json!({"decoded": event}),
                Err(reason) => serde_json::json!({
                    "undecodable": reason.to_string(),
                    "bytes": m.payload().map_or(0, <[u8]>::len),
                    "text": m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
                }),
            };
            return Ok(serde_json::json!({"dead_letter": DeadLetter::of(&m), "payload": payload}));
        }
    }
    // Inside the watermarks yet absent: compacted away, or a transaction
    // marker.
    Err(DlqError::NotFound(format!(
        "no message at {topic} partition {partition} offset {offset} (compacted, or a \
         transaction marker)"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_keeps_at_most_its_limit_of_keys_and_counts_the_rest_as_other() {
        let mut tally = Tally::default();
        for n in 0..MAX_TALLIED + 500 {
            tally.count(&format!("cause {n}"));
        }
        tally.count("cause 3");
        assert_eq!(tally.0.len(), MAX_TALLIED + 1);
        assert_eq!(tally.0["cause 3"], 2, "a key already kept is still counted");
        assert_eq!(tally.0[Tally::OTHER], 500);
        assert_eq!(
            tally.iter().map(|(_, n)| n).sum::<usize>(),
            MAX_TALLIED + 501
        );
    }
}
