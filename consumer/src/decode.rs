//! From a Kafka message to a valid domain event, or the permanent reason it
//! can never become one. Nothing here touches the database.

use chrono::{DateTime, Utc};
use contract::fingerprint::{self, Fingerprint};
use contract::model::{ORDER_CREATED, USER_REGISTERED};
use contract::{
    headers, DecodeError, EventCodec, Format, Keyed, OrderEvent, UserEvent, ValidationErrors,
};
use rdkafka::message::{Headers, Message, OwnedMessage};

use crate::failure::FailureClass;

/// What a topic carries: the consumer knows each topic's domain from its
/// configuration and refuses events of the other one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Order events.
    Orders,
    /// User events.
    Users,
}

impl Domain {
    /// The event type of this domain's events.
    pub fn event_type(self) -> &'static str {
        match self {
            Domain::Orders => ORDER_CREATED,
            Domain::Users => USER_REGISTERED,
        }
    }
}

/// A decoded, valid event.
#[derive(Debug, Clone, PartialEq)]
pub enum DomainEvent {
    /// From the orders topic.
    Order(OrderEvent),
    /// From the users topic.
    User(UserEvent),
}

impl DomainEvent {
    /// The event's metadata.
    pub fn metadata(&self) -> &contract::EventMetadata {
        match self {
            DomainEvent::Order(e) => &e.metadata,
            DomainEvent::User(e) => &e.metadata,
        }
    }

    /// `order_id` or `user_id`.
    pub fn aggregate_id(&self) -> String {
        match self {
            DomainEvent::Order(e) => e.key(),
            DomainEvent::User(e) => e.key(),
        }
    }

    /// Its domain.
    pub fn domain(&self) -> Domain {
        match self {
            DomainEvent::Order(_) => Domain::Orders,
            DomainEvent::User(_) => Domain::Users,
        }
    }

    /// When the producer accepted it.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.metadata().occurred_at
    }

    /// The fingerprint of its content.
    pub fn fingerprint(&self) -> Fingerprint {
        match self {
            DomainEvent::Order(e) => fingerprint::order(e),
            DomainEvent::User(e) => fingerprint::user(e),
        }
    }
}

/// A valid event and what reading it taught.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The event.
    pub event: DomainEvent,
    /// Its encoding.
    pub format: Format,
    /// The fingerprint of its content, computed here.
    pub fingerprint: Fingerprint,
}

/// Why a message can never be persisted. Each goes to the DLQ at once. The
/// texts name fields and rules, never values from the message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The value cannot be decoded.
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    /// The event breaks a rule.
    #[error("invalid event: {0}")]
    Invalid(ValidationErrors),
    /// The `event-type` header names no event this consumer knows.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The event belongs on another topic.
    #[error("a {found} event on a topic of {expected} events")]
    EventTypeMismatch {
        /// The event's type.
        found: &'static str,
        /// The type the topic carries.
        expected: &'static str,
    },
    /// The Kafka key is not the event's id, so per-key order is not assured.
    #[error("the message key is not the event's id")]
    KeyMismatch,
    /// The `content-fingerprint` header disagrees with the content.
    #[error("the content-fingerprint header does not match the event's content")]
    FingerprintMismatch,
}

impl Rejection {
    /// `dlq-error-class`.
    pub fn class(&self) -> FailureClass {
        match self {
            Rejection::Decode(DecodeError::UnsupportedContentType(_)) => {
                FailureClass::UnsupportedContentType
            }
            Rejection::Decode(DecodeError::UnsupportedSchemaVersion { .. }) => {
                FailureClass::UnsupportedSchemaVersion
            }
            Rejection::Decode(DecodeError::MissingHeader(_)) => FailureClass::MissingHeader,
            Rejection::Decode(_) => FailureClass::Decode,
            Rejection::Invalid(_) => FailureClass::Validation,
            Rejection::UnknownEventType(_) => FailureClass::UnknownEventType,
            Rejection::EventTypeMismatch { .. } => FailureClass::EventTypeMismatch,
            Rejection::KeyMismatch => FailureClass::KeyMismatch,
            Rejection::FingerprintMismatch => FailureClass::FingerprintMismatch,
        }
    }
}

/// The UTF-8 value of header `name`, if present.
pub fn header<'a>(message: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The event type a message claims: its `event-type` header, or, without
/// one, the type its topic carries.
fn event_type(message: &OwnedMessage, domain: Domain) -> Result<&'static str, Rejection> {
    let Some(claimed) = header(message, headers::EVENT_TYPE) else {
        return Ok(domain.event_type());
    };
    let known = [ORDER_CREATED, USER_REGISTERED]
        .into_iter()
        .find(|t| *t == claimed)
        .ok_or_else(|| Rejection::UnknownEventType(claimed.to_owned()))?;
    if known != domain.event_type() {
        return Err(Rejection::EventTypeMismatch {
            found: known,
            expected: domain.event_type(),
        });
    }
    Ok(known)
}

/// Decodes and validates one message read from a topic of `domain`.
pub fn decode(message: &OwnedMessage, domain: Domain) -> Result<Decoded, Rejection> {
    let payload = message.payload().ok_or(DecodeError::Empty)?;
    let content_type = header(message, headers::CONTENT_TYPE)
        .ok_or(DecodeError::MissingHeader(headers::CONTENT_TYPE))?;
    let format = Format::from_content_type(content_type)?;
    let event_type = event_type(message, domain)?;
    let version = |name: &'static str, latest: u32| -> Result<u32, DecodeError> {
        match header(message, headers::SCHEMA_VERSION) {
            None => Ok(latest),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| DecodeError::unsupported_version(name, v, latest)),
        }
    };
    let event = if event_type == ORDER_CREATED {
        let version = version(OrderEvent::NAME, OrderEvent::SCHEMA_VERSION)?;
        let event = OrderEvent::decode(payload, format, version)?;
        contract::validation::order_event(&event).map_err(Rejection::Invalid)?;
        DomainEvent::Order(event)
    } else {
        let version = version(UserEvent::NAME, UserEvent::SCHEMA_VERSION)?;
        let event = UserEvent::decode(payload, format, version)?;
        contract::validation::user_event(&event).map_err(Rejection::Invalid)?;
        DomainEvent::User(event)
    };
    if message.key() != Some(event.aggregate_id().as_bytes()) {
        return Err(Rejection::KeyMismatch);
    }
    let fingerprint = event.fingerprint();
    if let Some(claimed) = header(message, headers::CONTENT_FINGERPRINT) {
        if claimed != fingerprint.as_str() {
            return Err(Rejection::FingerprintMismatch);
        }
    }
    Ok(Decoded {
        event,
        format,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    fn message(topic: &str, key: &str, payload: &[u8], headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (k, v) in headers {
            h = h.insert(Header {
                key: k,
                value: Some(*v),
            });
        }
        OwnedMessage::new(
            Some(payload.to_vec()),
            Some(key.as_bytes().to_vec()),
            topic.to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        )
    }

    fn class(m: &OwnedMessage) -> &'static str {
        decode(m, Domain::Orders).unwrap_err().class().as_str()
    }

    #[test]
    fn poison_messages_are_classified() {
        let m = message("orders", "k", b"{", &[("content-type", "application/json")]);
        assert_eq!(class(&m), "decode");
        let m = message("orders", "k", b"{}", &[("content-type", "text/xml")]);
        assert_eq!(class(&m), "unsupported_content_type");
        let m = message("orders", "k", b"{}", &[]);
        assert_eq!(class(&m), "missing_header");
        let m = message(
            "orders",
            "k",
            b"{}",
            &[
                ("content-type", "application/json"),
                ("event-type", "order.shipped"),
            ],
        );
        assert_eq!(class(&m), "unknown_event_type");
        let m = message(
            "orders",
            "k",
            b"{}",
            &[
                ("content-type", "application/json"),
                ("event-type", "user.registered"),
            ],
        );
        assert_eq!(class(&m), "event_type_mismatch");
        let m = message(
            "orders",
            "k",
            b"\x01",
            &[
                ("content-type", "application/avro"),
                ("schema-version", "x"),
            ],
        );
        assert_eq!(class(&m), "unsupported_schema_version");
    }

    fn raw_message(
        key: Option<Vec<u8>>,
        payload: Option<Vec<u8>>,
        headers: &[(String, Option<Vec<u8>>)],
    ) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (name, value) in headers {
            h = h.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
        OwnedMessage::new(
            payload,
            key,
            "orders".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        )
    }

    fn header_value() -> impl proptest::strategy::Strategy<Value = Option<Vec<u8>>> {
        use proptest::prelude::*;
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Some),
            "[ -~]{4,24}".prop_map(|v| Some(v.into_bytes())),
            prop_oneof![
                Just("application/json"),
                Just("application/avro"),
                Just("application/x-protobuf"),
                Just("order.created"),
                Just("user.registered"),
                Just("2"),
                Just("99999999999"),
                Just("-1"),
            ]
            .prop_map(|v| Some(v.as_bytes().to_vec())),
        ]
    }

    proptest::proptest! {
        /// Whatever the key, value and headers (repeated, absent, not
        /// UTF-8, absurd), the consumer's reading of a message returns an
        /// answer whose text quotes none of the header values it was given.
        #[test]
        fn any_message_is_read_or_refused_cleanly(
            key in proptest::option::of(proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..64)),
            payload in proptest::option::of(proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..512)),
            headers in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("content-type".to_owned()),
                        proptest::strategy::Just("event-type".to_owned()),
                        proptest::strategy::Just("schema-version".to_owned()),
                        proptest::strategy::Just("content-fingerprint".to_owned()),
                        "[a-z-]{1,12}",
                    ],
                    header_value(),
                ),
                0..8,
            ),
        ) {
            let m = raw_message(key, payload, &headers);
            for domain in [Domain::Orders, Domain::Users] {
                if let Err(rejection) = decode(&m, domain) {
                    let failure = crate::failure::Failure::permanent(rejection.class(), &rejection);
                    for (_, value) in &headers {
                        if let Some(v) = value.as_deref().and_then(|v| std::str::from_utf8(v).ok()) {
                            // The contract's own names may be named back.
                            let known = [ORDER_CREATED, USER_REGISTERED]
                                .into_iter()
                                .chain(contract::Format::ALL.map(|f| f.content_type()))
                                .any(|k| k == v);
                            if v.len() > 3 && !known && !v.bytes().all(|b| b.is_ascii_digit()) {
                                proptest::prop_assert!(
                                    !failure.message.contains(v),
                                    "{v:?} quoted in {}", failure.message
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
