//! The event contract of the order pipeline.
//!
//! One Rust model of each Event-Carried State Transfer message ([`model`]),
//! three encodings of it chosen by configuration ([`codec`]: JSON, Protobuf,
//! Avro), the validation rules shared by the HTTP edge and the consumer
//! ([`validation`], [`request`]), and the schema-evolution check
//! ([`compat`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

pub mod avro;
pub mod batch;
pub mod codec;
pub mod compat;
pub mod dead_letter;
pub mod envelope;
pub mod error;
pub mod event;
pub mod fingerprint;
pub mod ids;
pub mod lifecycle;
pub mod model;
pub mod money;
pub mod protobuf;
pub mod redact;
pub mod request;
mod schemas;
pub mod validation;

pub use codec::{EventCodec, Format};
pub use envelope::Envelope;
pub use error::{DecodeError, EncodeError};
pub use event::{Domain, DomainEvent, Event, EVENT_TYPES};
pub use lifecycle::{Change, OrderChange, OrderState, OrderStatus};
pub use model::{
    Address, Customer, EventMetadata, InventoryStatus, OrderEvent, OrderItem, Totals, UserEvent,
};
pub use validation::{FieldError, ValidationErrors};

/// Topic names. The DLQ of a topic is `<topic>-dlq`.
pub mod topics {
    /// Order events, keyed by `order_id`.
    pub const ORDERS: &str = "orders";
    /// Dead letters of [`ORDERS`].
    pub const ORDERS_DLQ: &str = "orders-dlq";
    /// User events, keyed by `user_id`.
    pub const USERS: &str = "users";
    /// Dead letters of [`USERS`].
    pub const USERS_DLQ: &str = "users-dlq";
    /// The full state of each order after each applied change (compacted),
    /// keyed by `order_id`: what the consumer publishes through its outbox.
    pub const ORDERS_STATE: &str = "orders-state";

    /// Every topic of the pipeline, by its default name.
    pub const ALL: [&str; 5] = [ORDERS, ORDERS_DLQ, USERS, USERS_DLQ, ORDERS_STATE];

    /// Whether `topic` (by its default name) is compacted rather than
    /// deleted by age: only [`ORDERS_STATE`], whose last value per key is
    /// the order's latest state.
    pub fn compacted(topic: &str) -> bool {
        topic == ORDERS_STATE
    }

    /// The consumer's group by default (`KAFKA_CONSUMER_GROUP`): what the
    /// lag tool and the exporter measure unless told otherwise.
    pub const DEFAULT_CONSUMER_GROUP: &str = "order-consumer";

    /// The dead-letter topic of `topic`.
    pub fn dlq_of(topic: &str) -> String {
        format!("{topic}-dlq")
    }

    /// Which topic carries which domain (topic names are configurable).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Domains {
        /// The topic of order events.
        pub orders: String,
        /// The topic of user events.
        pub users: String,
    }

    impl Default for Domains {
        fn default() -> Self {
            Self {
                orders: ORDERS.to_owned(),
                users: USERS.to_owned(),
            }
        }
    }

    impl Domains {
        /// The domain `topic` carries, if it is one of ours.
        pub fn domain(&self, topic: &str) -> Option<crate::Domain> {
            if topic == self.orders {
                Some(crate::Domain::Orders)
            } else if topic == self.users {
                Some(crate::Domain::Users)
            } else {
                None
            }
        }

        /// The topic whose dead letters `dlq` holds (the one `dlq` is the
        /// [`dlq_of`]), if it is one of ours: where a replay of `dlq`
        /// publishes, whatever a dead letter's headers say.
        pub fn dead_lettered_by(&self, dlq: &str) -> Option<&str> {
            [self.orders.as_str(), self.users.as_str()]
                .into_iter()
                .find(|topic| dlq_of(topic) == dlq)
        }

        /// The topic of `domain`.
        pub fn topic(&self, domain: crate::Domain) -> &str {
            match domain {
                crate::Domain::Orders => &self.orders,
                crate::Domain::Users => &self.users,
            }
        }
    }
}

/// Kafka header names carried by every message (see [`Envelope`]), and those
/// a dead letter adds.
pub mod headers {
    /// Encoding of the value: a [`crate::Format::content_type`].
    pub const CONTENT_TYPE: &str = "content-type";
    /// Schema version the writer used (decimal).
    pub const SCHEMA_VERSION: &str = "schema-version";
    /// For example `order.created`.
    pub const EVENT_TYPE: &str = "event-type";
    /// Correlation id of the business request.
    pub const CORRELATION_ID: &str = "correlation-id";
    /// W3C trace context.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state.
    pub const TRACESTATE: &str = "tracestate";
    /// The event's content fingerprint (see [`crate::fingerprint`]).
    pub const CONTENT_FINGERPRINT: &str = "content-fingerprint";

    /// Topic the dead letter was read from.
    pub const DLQ_ORIGINAL_TOPIC: &str = "dlq-original-topic";
    /// Partition the dead letter was read from.
    pub const DLQ_ORIGINAL_PARTITION: &str = "dlq-original-partition";
    /// Offset the dead letter was read at.
    pub const DLQ_ORIGINAL_OFFSET: &str = "dlq-original-offset";
    /// Timestamp (ms since the epoch) of the original message.
    pub const DLQ_ORIGINAL_TIMESTAMP: &str = "dlq-original-timestamp";
    /// Consumer group that gave up on the message.
    pub const DLQ_CONSUMER_GROUP: &str = "dlq-consumer-group";
    /// `permanent` or `transient`.
    pub const DLQ_ERROR_KIND: &str = "dlq-error-kind";
    /// A stable short name of the error, such as `decode` or `validation`.
    pub const DLQ_ERROR_CLASS: &str = "dlq-error-class";
    /// The error, for people.
    pub const DLQ_ERROR_MESSAGE: &str = "dlq-error-message";
    /// How many times the consumer retried before giving up.
    pub const DLQ_RETRY_COUNT: &str = "dlq-retry-count";
    /// When the consumer gave up (RFC 3339).
    pub const DLQ_FAILED_AT: &str = "dlq-failed-at";
    /// How many times the message was replayed from the DLQ.
    pub const DLQ_REPLAY_COUNT: &str = "dlq-replay-count";
    /// `true` on a dead letter whose value is only the start of the original
    /// (it was too large to dead-letter whole).
    pub const DLQ_VALUE_TRUNCATED: &str = "dlq-value-truncated";
    /// Size in bytes of the original value, on a truncated dead letter.
    pub const DLQ_ORIGINAL_VALUE_BYTES: &str = "dlq-original-value-bytes";
    /// `true` on a reduced dead letter whose key is only the start of the
    /// original key.
    pub const DLQ_KEY_TRUNCATED: &str = "dlq-key-truncated";
    /// Size in bytes of the original key, on a dead letter whose key was cut.
    pub const DLQ_ORIGINAL_KEY_BYTES: &str = "dlq-original-key-bytes";
    /// How many of the original headers a reduced dead letter left out
    /// (custom headers, and envelope headers too large to keep).
    pub const DLQ_HEADERS_DROPPED: &str = "dlq-headers-dropped";

    /// Prefix of the first failure's headers on a message that failed again
    /// after a replay: `dlq-first-original-topic` and so on, copied from
    /// the first dead letter's `dlq-*` headers by the replay and kept by
    /// every later dead letter, so that the first cause is not lost.
    pub const DLQ_FIRST_PREFIX: &str = "dlq-first-";

    /// The first failure's original topic.
    pub const DLQ_FIRST_ORIGINAL_TOPIC: &str = "dlq-first-original-topic";
    /// The first failure's original partition.
    pub const DLQ_FIRST_ORIGINAL_PARTITION: &str = "dlq-first-original-partition";
    /// The first failure's original offset.
    pub const DLQ_FIRST_ORIGINAL_OFFSET: &str = "dlq-first-original-offset";
    /// When the first failure happened.
    pub const DLQ_FIRST_FAILED_AT: &str = "dlq-first-failed-at";
    /// The first failure's kind.
    pub const DLQ_FIRST_ERROR_KIND: &str = "dlq-first-error-kind";
    /// The first failure's class.
    pub const DLQ_FIRST_ERROR_CLASS: &str = "dlq-first-error-class";

    /// The `dlq-*` headers of a dead letter the first failure keeps, as
    /// `(first-failure header, dead-letter header)`.
    pub const DLQ_FIRST_FAILURE: [(&str, &str); 6] = [
        (DLQ_FIRST_ORIGINAL_TOPIC, DLQ_ORIGINAL_TOPIC),
        (DLQ_FIRST_ORIGINAL_PARTITION, DLQ_ORIGINAL_PARTITION),
        (DLQ_FIRST_ORIGINAL_OFFSET, DLQ_ORIGINAL_OFFSET),
        (DLQ_FIRST_FAILED_AT, DLQ_FAILED_AT),
        (DLQ_FIRST_ERROR_KIND, DLQ_ERROR_KIND),
        (DLQ_FIRST_ERROR_CLASS, DLQ_ERROR_CLASS),
    ];

    /// Whether a `dlq-*` header travels with a message across replays and
    /// later dead letters (the replay count and the first failure), rather
    /// than describing one failure.
    pub fn kept_across_replays(name: &str) -> bool {
        name == DLQ_REPLAY_COUNT || name.starts_with(DLQ_FIRST_PREFIX)
    }
}
