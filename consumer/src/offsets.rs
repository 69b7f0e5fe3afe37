//! Offsets: stored only for messages whose outcome is final (persisted, or
//! acknowledged by the DLQ), and rewound for messages read but not done, so
//! the next read starts exactly where the work stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Offset;

/// Highest offset per (topic, partition) among `messages`.
pub fn last_offsets<'a>(
    messages: impl IntoIterator<Item = &'a OwnedMessage>,
) -> BTreeMap<(String, i32), i64> {
    let mut last = BTreeMap::new();
    for m in messages {
        let entry = last
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset());
        *entry = (*entry).max(m.offset());
    }
    last
}

/// Lowest offset per (topic, partition) among `messages`.
pub fn first_offsets<'a>(
    messages: impl IntoIterator<Item = &'a OwnedMessage>,
) -> BTreeMap<(String, i32), i64> {
    let mut first = BTreeMap::new();
    for m in messages {
        let entry = first
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert(m.offset());
        *entry = (*entry).min(m.offset());
    }
    first
}

/// Stores the offsets of `done` for the next commit.
pub fn store<'a, C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    done: impl IntoIterator<Item = &'a OwnedMessage>,
) -> Result<(), KafkaError> {
    for ((topic, partition), offset) in last_offsets(done) {
        // librdkafka stores offset + 1: the next message to read.
        consumer.store_offset(&topic, partition, offset)?;
    }
    Ok(())
}

/// Seeks every partition of `undone` back to its first message in it.
pub fn rewind<'a, C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    undone: impl IntoIterator<Item = &'a OwnedMessage>,
) {
    for ((topic, partition), offset) in first_offsets(undone) {
        if let Err(e) = consumer.seek(
            &topic,
            partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        ) {
            // The partition may have been revoked meanwhile: its next owner
            // starts from the committed offset, which is not past `offset`.
            tracing::warn!(topic, partition, offset, error = %e, "cannot rewind partition");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn m(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            topic.into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn first_and_last_offsets_per_partition() {
        let batch = [
            m("orders", 0, 5),
            m("orders", 1, 9),
            m("orders", 0, 6),
            m("users", 0, 1),
            m("orders", 0, 7),
        ];
        let last = last_offsets(&batch);
        assert_eq!(last[&("orders".to_owned(), 0)], 7);
        assert_eq!(last[&("orders".to_owned(), 1)], 9);
        assert_eq!(last[&("users".to_owned(), 0)], 1);
        let first = first_offsets(&batch[2..]);
        assert_eq!(first[&("orders".to_owned(), 0)], 6);
        assert_eq!(first.len(), 2);
    }
}
