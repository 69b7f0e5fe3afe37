//! From a Kafka message to a valid domain event, or the permanent reason it
//! can never become one. Nothing here touches the database.

use chrono::{DateTime, Utc};
use contract::model::{ORDER_CREATED, USER_REGISTERED};
use contract::{
    headers, DecodeError, EventCodec, Format, Keyed, OrderEvent, UserEvent, ValidationErrors,
};
use rdkafka::message::{Headers, Message, OwnedMessage};

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

    /// When the producer accepted it.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.metadata().occurred_at
    }
}

/// Why a message can never be persisted. Each goes to the DLQ at once.
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
    /// The Kafka key is not the event's id, so per-key order is not assured.
    #[error("message key {key:?} is not the event's id {id:?}")]
    KeyMismatch {
        /// The message key.
        key: String,
        /// The id in the value.
        id: String,
    },
}

impl Rejection {
    /// `dlq-error-class`: a short stable name operators group by.
    pub fn class(&self) -> &'static str {
        match self {
            Rejection::Decode(DecodeError::UnsupportedContentType(_)) => "unsupported_content_type",
            Rejection::Decode(DecodeError::UnsupportedSchemaVersion { .. }) => {
                "unsupported_schema_version"
            }
            Rejection::Decode(DecodeError::MissingHeader(_)) => "missing_header",
            Rejection::Decode(_) => "decode",
            Rejection::Invalid(_) => "validation",
            Rejection::UnknownEventType(_) => "unknown_event_type",
            Rejection::KeyMismatch { .. } => "key_mismatch",
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

/// Decodes and validates one message.
pub fn decode(message: &OwnedMessage) -> Result<DomainEvent, Rejection> {
    let payload = message.payload().ok_or(DecodeError::Empty)?;
    let content_type = header(message, headers::CONTENT_TYPE)
        .ok_or(DecodeError::MissingHeader(headers::CONTENT_TYPE))?;
    let format = Format::from_content_type(content_type)?;
    let event_type = match header(message, headers::EVENT_TYPE) {
        Some(t) => t.to_owned(),
        // Without the header, the topic says what the event is.
        None if message.topic().starts_with("user") => USER_REGISTERED.to_owned(),
        None => ORDER_CREATED.to_owned(),
    };
    let version_header = header(message, headers::SCHEMA_VERSION);
    let version = |latest: u32| -> Result<u32, DecodeError> {
        match version_header {
            None => Ok(latest),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| DecodeError::UnsupportedSchemaVersion {
                    event: if event_type == USER_REGISTERED {
                        "user"
                    } else {
                        "order"
                    },
                    version: v.to_owned(),
                    latest,
                }),
        }
    };
    let event = match event_type.as_str() {
        ORDER_CREATED => {
            let event = OrderEvent::decode(payload, format, version(OrderEvent::SCHEMA_VERSION)?)?;
            contract::validation::order_event(&event).map_err(Rejection::Invalid)?;
            DomainEvent::Order(event)
        }
        USER_REGISTERED => {
            let event = UserEvent::decode(payload, format, version(UserEvent::SCHEMA_VERSION)?)?;
            contract::validation::user_event(&event).map_err(Rejection::Invalid)?;
            DomainEvent::User(event)
        }
        other => return Err(Rejection::UnknownEventType(other.to_owned())),
    };
    let key = message
        .key()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let id = event.aggregate_id();
    if key != id {
        return Err(Rejection::KeyMismatch {
            key: key.into_owned(),
            id,
        });
    }
    Ok(event)
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

    #[test]
    fn poison_messages_are_classified() {
        let m = message("orders", "k", b"{", &[("content-type", "application/json")]);
        assert_eq!(decode(&m).unwrap_err().class(), "decode");
        let m = message("orders", "k", b"{}", &[("content-type", "text/xml")]);
        assert_eq!(decode(&m).unwrap_err().class(), "unsupported_content_type");
        let m = message("orders", "k", b"{}", &[]);
        assert_eq!(decode(&m).unwrap_err().class(), "missing_header");
        let m = message(
            "orders",
            "k",
            b"{}",
            &[
                ("content-type", "application/json"),
                ("event-type", "order.shipped"),
            ],
        );
        assert_eq!(decode(&m).unwrap_err().class(), "unknown_event_type");
        let m = message(
            "orders",
            "k",
            b"\x01",
            &[
                ("content-type", "application/avro"),
                ("schema-version", "x"),
            ],
        );
        assert_eq!(
            decode(&m).unwrap_err().class(),
            "unsupported_schema_version"
        );
    }
}
