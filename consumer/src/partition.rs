//! A partition by topic and index: the one name for "where a message was
//! read" without its offset, used as a map key by batching, the flood
//! guard, offsets and readiness.

use std::fmt;

use rdkafka::message::Message;

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// The topic.
    pub topic: String,
    /// The partition's number within the topic.
    pub index: i32,
}

impl Partition {
    /// Partition `index` of `topic`.
    pub fn new(topic: impl Into<String>, index: i32) -> Self {
        Self {
            topic: topic.into(),
            index,
        }
    }

    /// The partition `message` was read from.
    pub fn of(message: &impl Message) -> Self {
        Self::new(message.topic(), message.partition())
    }

    /// Whether this is partition `index` of `topic` (no allocation).
    pub fn is(&self, topic: &str, index: i32) -> bool {
        self.index == index && self.topic == topic
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordered_by_topic_then_index_and_shown_as_topic_slash_index() {
        let mut all = [
            Partition::new("users", 0),
            Partition::new("orders", 2),
            Partition::new("orders", 1),
        ];
        all.sort();
        assert_eq!(
            all.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["orders/1", "orders/2", "users/0"]
        );
        assert!(all[0].is("orders", 1) && !all[0].is("orders", 2));
    }
}
