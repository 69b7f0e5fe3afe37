//! `dlq list` and `dlq inspect`: reading a DLQ without changing it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
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
    /// Error fingerprint -> what its dead letters share (for pages; the
    /// JSON has `by_fingerprint`).
    #[serde(skip)]
    groups: BTreeMap<String, Group>,
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

/// The selected dead letters of one fingerprint: one cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    /// The fingerprint ([`Group::OTHER`] for those past the listing's
    /// limit of distinct fingerprints).
    pub fingerprint: String,
    /// `dlq-error-class` ("?" when absent).
    pub class: String,
    /// `dlq-error-kind`; [`Group::SEVERAL`] when they differ.
    pub kind: String,
    /// The first failure's class (see [`DeadLetter::first_error_class`]);
    /// [`Group::SEVERAL`] when they differ.
    pub first_cause: String,
    /// How many.
    pub count: usize,
    /// The earliest `dlq-failed-at` among them.
    pub oldest: Option<DateTime<Utc>>,
    /// The latest.
    pub newest: Option<DateTime<Utc>>,
}

impl Group {
    /// The group of the fingerprints past the limit.
    pub const OTHER: &'static str = Tally::OTHER;
    /// A value that differs between the group's dead letters.
    pub const SEVERAL: &'static str = "(several)";

    fn of(fingerprint: &str, letter: &DeadLetter) -> Self {
        let other = fingerprint == Self::OTHER;
        let value = |v: Option<&str>| match (other, v) {
            (true, _) => Self::SEVERAL.to_owned(),
            (false, v) => v.unwrap_or("?").to_owned(),
        };
        Self {
            fingerprint: fingerprint.to_owned(),
            class: value(letter.error_class.as_deref()),
            kind: value(letter.error_kind.as_deref()),
            first_cause: value(letter.first_error_class.as_deref()),
            count: 0,
            oldest: None,
            newest: None,
        }
    }

    /// Counts `letter` in.
    fn add(&mut self, letter: &DeadLetter) {
        let merge = |mine: &mut String, theirs: Option<&str>| {
            if mine != theirs.unwrap_or("?") {
                Self::SEVERAL.clone_into(mine);
            }
        };
        merge(&mut self.class, letter.error_class.as_deref());
        merge(&mut self.kind, letter.error_kind.as_deref());
        merge(&mut self.first_cause, letter.first_error_class.as_deref());
        self.count += 1;
        if let Some(at) = letter.failed_at {
            self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
    }

    /// Whether it gathers the fingerprints past the listing's limit (no
    /// filter selects them).
    pub fn is_other(&self) -> bool {
        self.fingerprint == Self::OTHER
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
            groups: BTreeMap::new(),
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
        self.group(&letter);
        if self.dead_letters.len() < limit {
            self.dead_letters.push(letter);
        }
    }
}

impl Listing {
    /// Counts `letter` in its fingerprint's group, or in [`Group::OTHER`]
    /// past [`MAX_TALLIED`] groups.
    fn group(&mut self, letter: &DeadLetter) {
        let key =
            if self.groups.len() < MAX_TALLIED || self.groups.contains_key(&letter.fingerprint) {
                letter.fingerprint.as_str()
            } else {
                Group::OTHER
            };
        self.groups
            .entry(key.to_owned())
            .or_insert_with(|| Group::of(key, letter))
            .add(letter);
    }

    /// The selected dead letters by fingerprint, the most frequent first
    /// (then by fingerprint).
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = self.groups.values().cloned().collect();
        groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then(a.fingerprint.cmp(&b.fingerprint))
        });
        groups
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Dead letters in the topic.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Dead letters the filter selected.
    pub fn selected(&self) -> usize {
        self.selected
    }

    /// The first selected dead letters, up to the listing's limit.
    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead_letters
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

/// One dead letter in full: what `dlq inspect` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Inspected {
    /// Its headers, parsed.
    pub dead_letter: DeadLetter,
    /// Its payload: `{"decoded": event}`, or `{"undecodable": reason,
    /// "bytes": n, "text": lossy text}`. Customer data: shown only on
    /// demand.
    pub payload: serde_json::Value,
}

/// `dlq inspect`: one dead letter in full, its payload decoded if possible.
pub fn inspect(
    kafka: &KafkaSettings,
    domains: &Domains,
    topic: &str,
    partition: i32,
    offset: i64,
    reader: &ReaderGroup,
) -> Result<Inspected, DlqError> {
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
            return Ok(Inspected {
                dead_letter: DeadLetter::of(&m),
                payload,
            });
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

    fn letter(class: &str, kind: &str, message: &str, failed_at: &str) -> DeadLetter {
        let mut letter = DeadLetter::blank();
        letter.error_class = Some(class.into());
        letter.first_error_class = Some(class.into());
        letter.error_kind = Some(kind.into());
        letter.fingerprint = crate::dead_letters::fingerprint(Some(class), Some(message));
        letter.failed_at = DateTime::parse_from_rfc3339(failed_at)
            .ok()
            .map(|t| t.with_timezone(&Utc));
        letter
    }

    #[test]
    fn groups_gather_a_fingerprint_with_its_cause_and_span_most_frequent_first() {
        let mut listing = Listing::new("orders-dlq", None, None);
        let quantity = "item 1: quantity 0 is not between 1 and 1000";
        listing.add(
            letter(
                "validation",
                "permanent",
                "bad json at 3",
                "2026-12-01T10:00:00Z",
            ),
            None,
            10,
        );
        for at in [
            "2026-12-02T10:00:00Z",
            "2026-12-01T09:00:00Z",
            "2026-12-03T10:00:00Z",
        ] {
            listing.add(letter("validation", "permanent", quantity, at), None, 10);
        }
        let mut again = letter("validation", "permanent", quantity, "2026-12-02T11:00:00Z");
        again.first_error_class = Some("database_transient".into());
        again.failed_at = None;
        listing.add(again, None, 10);

        let groups = listing.groups();
        assert_eq!(groups.len(), 2, "{groups:?}");
        let first = &groups[0];
        assert_eq!(
            first.fingerprint,
            "validation: item # quantity # is not between # and #"
        );
        assert_eq!(
            (first.count, first.class.as_str(), first.kind.as_str()),
            (4, "validation", "permanent")
        );
        assert_eq!(
            first.first_cause,
            Group::SEVERAL,
            "one failed first for another cause"
        );
        assert_eq!(
            first.oldest.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-01T09:00:00+00:00")
        );
        assert_eq!(
            first.newest.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-12-03T10:00:00+00:00")
        );
        assert_eq!(
            (groups[1].count, groups[1].first_cause.as_str()),
            (1, "validation")
        );
        assert_eq!(
            groups.iter().map(|g| g.count).sum::<usize>(),
            listing.selected(),
            "every selected dead letter in one group"
        );
        assert!(!first.is_other());
    }

    #[test]
    fn groups_past_the_limit_gather_under_other() {
        let mut listing = Listing::new("orders-dlq", None, None);
        for n in 0..MAX_TALLIED + 3 {
            // Letters, not digits: a fingerprint blanks numbers.
            let word: String = (0..3)
                .map(|i| char::from(b'a' + u8::try_from(n / 26_usize.pow(i) % 26).unwrap_or(0)))
                .collect();
            let cause = letter("decode", "permanent", &word, "2026-12-01T10:00:00Z");
            listing.add(cause, None, 0);
        }
        let groups = listing.groups();
        assert_eq!(groups.len(), MAX_TALLIED + 1);
        let other = groups
            .iter()
            .find(|g| g.is_other())
            .map(|g| (g.count, g.class.clone()));
        assert_eq!(other, Some((3, Group::SEVERAL.to_owned())));
    }

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
