//! Why an event could not be read or written. Kept apart from the codecs
//! so that every encoding module depends on it, not on each other.

/// Why a message value could not be read. Every variant is permanent: the same
/// bytes will never decode, so the consumer dead-letters them at once. The
/// texts carry no value from the message (see [`crate::redact`]): they go
/// into logs and `dlq-error-message` headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The `content-type` header names no known format.
    #[error("unsupported content type {0:?}: expected application/json, application/x-protobuf or application/avro")]
    UnsupportedContentType(String),
    /// A header the reader needs is absent or not UTF-8.
    #[error("missing or unreadable header {0:?}")]
    MissingHeader(&'static str),
    /// The `schema-version` header is not a version this reader can decode.
    #[error("unsupported {event} schema version {version}: this reader knows 1 to {latest}")]
    UnsupportedSchemaVersion {
        /// The event's [`crate::EventCodec::NAME`].
        event: &'static str,
        /// The version the message claims (its text when it is a number,
        /// else a description: header values are not echoed).
        version: String,
        /// The newest version this build knows.
        latest: u32,
    },
    /// The `event-type` header names no event of this contract.
    #[error("unknown event type {0:?}")]
    UnknownEventType(String),
    /// The `event-type` header names the other domain's event.
    #[error("a {found} event on a topic of {expected} events")]
    EventTypeMismatch {
        /// The event type the message claims.
        found: &'static str,
        /// The event type its topic carries.
        expected: &'static str,
    },
    /// The message has no value (a tombstone).
    #[error("message has no value")]
    Empty,
    /// Not well-formed JSON, or JSON of the wrong shape.
    #[error("malformed JSON at {path}: {reason}")]
    Json {
        /// Path of the offending element (`.` for the document).
        path: String,
        /// What was wrong.
        reason: String,
    },
    /// Not a well-formed Protobuf message. (The decoders' own errors are
    /// kept as their scrubbed text, not as sources: their texts quote the
    /// values they choked on.)
    #[error("malformed Protobuf: {0}")]
    Protobuf(String),
    /// Not a well-formed Avro datum of the writer schema.
    #[error("malformed Avro: {0}")]
    Avro(String),
    /// Well-formed, but a field does not hold a value of its type.
    #[error("field {path}: {reason}")]
    Field {
        /// Path of the offending field.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

/// Why an event could not be encoded (a bug, not bad input: the model always
/// fits its own schema).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// JSON serialisation failed.
    #[error("JSON encoding failed")]
    Json(#[source] serde_json::Error),
    /// The value does not fit the Avro schema.
    #[error("Avro encoding failed")]
    Avro(#[source] apache_avro::Error),
    /// This build has no schema of the version it writes.
    #[error("no Avro schema for version {0}")]
    NoSchema(u32),
}

impl DecodeError {
    /// `schema-version` `raw` is not one this reader decodes.
    pub fn unsupported_version(event: &'static str, raw: &str, latest: u32) -> Self {
        let numeric = !raw.is_empty() && raw.len() <= 10 && raw.bytes().all(|b| b.is_ascii_digit());
        DecodeError::UnsupportedSchemaVersion {
            event,
            version: if numeric {
                raw.to_owned()
            } else {
                "(not a number)".to_owned()
            },
            latest,
        }
    }
}
