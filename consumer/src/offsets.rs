//! Offsets: stored only for messages whose outcome is final (persisted, or
//! acknowledged by the DLQ), and rewound for messages read but not done, so
//! the next read starts exactly where the work stopped.

use std::collections::BTreeMap;

use rdkafka::message::{Message, OwnedMessage};

use crate::member::Member;
use crate::partition::Partition;

/// The lowest and highest offset per partition among `messages`.
pub fn bounds<'a>(
    messages: impl IntoIterator<Item = &'a OwnedMessage>,
) -> BTreeMap<Partition, (i64, i64)> {
    spans(messages.into_iter().map(|m| (Partition::of(m), m.offset())))
}

/// The lowest and highest offset per partition among `positions`.
pub fn spans(
    positions: impl IntoIterator<Item = (Partition, i64)>,
) -> BTreeMap<Partition, (i64, i64)> {
    let mut spans = BTreeMap::new();
    for (partition, offset) in positions {
        let (first, last) = spans.entry(partition).or_insert((offset, offset));
        *first = (*first).min(offset);
        *last = (*last).max(offset);
    }
    spans
}

/// Stores `offset`, the last done of `partition`, for the next commit. A
/// partition revoked meanwhile (its next owner reads it again from the
/// committed offset) is only logged, so it does not keep the others from
/// being stored.
pub fn store(member: &impl Member, partition: &Partition, offset: i64) {
    // librdkafka stores offset + 1: the next message to read.
    if let Err(e) = member.store_offset(partition, offset) {
        tracing::warn!(topic = partition.topic, partition = partition.index, offset, error = %e, "cannot store the offset (partition revoked?)");
    }
}

/// Seeks every partition of `undone` back to its first message in it.
pub fn rewind<'a>(member: &impl Member, undone: impl IntoIterator<Item = &'a OwnedMessage>) {
    for (partition, (offset, _)) in bounds(undone) {
        seek(member, &partition, offset);
    }
}

/// Seeks `partition` to `offset`, the next message to read.
pub fn seek(member: &impl Member, partition: &Partition, offset: i64) {
    if let Err(e) = member.seek(partition, offset) {
        // The partition may have been revoked meanwhile: its next owner
        // starts from the committed offset, which is not past `offset`.
        tracing::warn!(topic = partition.topic, partition = partition.index, offset, error = %e, "cannot rewind partition");
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
        assert_eq!(all[&Partition::new("orders", 0)], (5, 7));
        assert_eq!(all[&Partition::new("orders", 1)], (9, 9));
        assert_eq!(all[&Partition::new("users", 0)], (1, 1));
        let rest = bounds(&batch[2..]);
        assert_eq!(rest[&Partition::new("orders", 0)], (6, 7));
        assert_eq!(rest.len(), 2);
    }
}
