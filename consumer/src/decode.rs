//! From a Kafka message to a valid domain event, or the permanent reason it
//! can never become one: the envelope read by the contract's one reader,
//! the value decoded by it, then the event's rules, its key and its
//! fingerprint checked. Nothing here touches the database.

use contract::fingerprint::Fingerprint;
use contract::{DecodeError, Envelope, Format, ValidationErrors};
use platform::kafka::header;
use rdkafka::message::{Message, OwnedMessage};

pub use contract::{Domain, DomainEvent};

use crate::failure::FailureClass;

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
    /// The envelope or the value cannot be read.
    #[error("cannot decode: {0}")]
    Decode(#[from] DecodeError),
    /// The event breaks a rule.
    #[error("invalid event: {0}")]
    Invalid(ValidationErrors),
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
            Rejection::Decode(e) => match e {
                DecodeError::UnsupportedContentType(_) => FailureClass::UnsupportedContentType,
                DecodeError::UnsupportedSchemaVersion { .. } => {
                    FailureClass::UnsupportedSchemaVersion
                }
                DecodeError::MissingHeader(_) => FailureClass::MissingHeader,
                DecodeError::UnknownEventType(_) => FailureClass::UnknownEventType,
                DecodeError::EventTypeMismatch { .. } => FailureClass::EventTypeMismatch,
                _ => FailureClass::Decode,
            },
            Rejection::Invalid(_) => FailureClass::Validation,
            Rejection::KeyMismatch => FailureClass::KeyMismatch,
            Rejection::FingerprintMismatch => FailureClass::FingerprintMismatch,
        }
    }
}

/// Decodes and validates one message read from a topic of `domain`.
pub fn decode(message: &OwnedMessage, domain: Domain) -> Result<Decoded, Rejection> {
    let payload = message.payload().ok_or(DecodeError::Empty)?;
    let envelope = Envelope::read(|name| header(message, name), Some(domain))?;
    let event = envelope.decode(payload)?;
    event.validate().map_err(Rejection::Invalid)?;
    if message.key() != Some(event.aggregate_id().as_bytes()) {
        return Err(Rejection::KeyMismatch);
    }
    let fingerprint = event.fingerprint();
    if envelope
        .fingerprint
        .is_some_and(|claimed| claimed != fingerprint.as_str())
    {
        return Err(Rejection::FingerprintMismatch);
    }
    Ok(Decoded {
        event,
        format: envelope.format,
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
                ("event-type", "order.refunded"),
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
                            let known = Domain::ALL
                                .map(Domain::event_type)
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
