//! Offsets: stored only for messages whose outcome is final (persisted, or
//! acknowledged by the DLQ), and rewound for messages read but not done, so
//! the next read starts exactly where the work stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::Offset;

/// The lowest and highest offset per (topic, partition) among `messages`.
pub fn bounds<'a>(
    messages: impl IntoIterator<Item = &'a OwnedMessage>,
) -> BTreeMap<(String, i32), (i64, i64)> {
    let mut bounds = BTreeMap::new();
    for m in messages {
        let (first, last) = bounds
            .entry((m.topic().to_owned(), m.partition()))
            .or_insert((m.offset(), m.offset()));
        *first = (*first).min(m.offset());
        *last = (*last).max(m.offset());
    }
    bounds
}

/// Stores the offsets of `done` for the next commit, each partition on its
/// own: one that was revoked meanwhile (its next owner reads it again from
/// the committed offset) does not keep the others from being stored.
pub fn store<'a, C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    done: impl IntoIterator<Item = &'a OwnedMessage>,
) {
    for ((topic, partition), (_, offset)) in bounds(done) {
        // librdkafka stores offset + 1: the next message to read.
        if let Err(e) = consumer.store_offset(&topic, partition, offset) {
            tracing::warn!(topic, partition, offset, error = %e, "cannot store the offset (partition revoked?)");
        }
    }
}

/// Seeks every partition of `undone` back to its first message in it.
pub fn rewind<'a, C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    undone: impl IntoIterator<Item = &'a OwnedMessage>,
) {
    for ((topic, partition), (offset, _)) in bounds(undone) {
        seek(consumer, &topic, partition, offset);
    }
}

/// Seeks `topic`/`partition` to `offset`, the next message to read.
pub fn seek<C: ConsumerContext>(
    consumer: &impl Consumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    if let Err(e) = consumer.seek(
        topic,
        partition,
        Offset::Offset(offset),
        Duration::from_secs(5),
    ) {
        // The partition may have been revoked meanwhile: its next owner
        // starts from the committed offset, which is not past `offset`.
        tracing::warn!(topic, partition, offset, error = %e, "cannot rewind partition");
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
    fn first_and_last_offset_per_partition() {
        let batch = [
            m("orders", 0, 5),
            m("orders", 1, 9),
            m("orders", 0, 6),
            m("users", 0, 1),
            m("orders", 0, 7),
        ];
        let all = bounds(&batch);
        assert_eq!(all[&("orders".to_owned(), 0)], (5, 7));
        assert_eq!(all[&("orders".to_owned(), 1)], (9, 9));
        assert_eq!(all[&("users".to_owned(), 0)], (1, 1));
        let rest = bounds(&batch[2..]);
        assert_eq!(rest[&("orders".to_owned(), 0)], (6, 7));
        assert_eq!(rest.len(), 2);
    }
}
