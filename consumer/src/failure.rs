//! Why a message failed, in types: whether trying again could help
//! ([`ErrorKind`]) and which failure it was ([`FailureClass`], the
//! `dlq-error-class` operators group and filter by).

/// Whether trying again could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The same message will always fail.
    Permanent,
    /// It failed every try, but might not forever.
    Transient,
}

impl ErrorKind {
    /// `dlq-error-kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Permanent => "permanent",
            ErrorKind::Transient => "transient",
        }
    }
}

/// A stable short name of a failure (`dlq-error-class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The value is not a well-formed event of its encoding.
    Decode,
    /// The `content-type` header names no known encoding.
    UnsupportedContentType,
    /// The `schema-version` header names no version this build reads.
    UnsupportedSchemaVersion,
    /// A header the reader needs is absent.
    MissingHeader,
    /// The event breaks a business rule.
    Validation,
    /// The `event-type` header names no event this consumer knows.
    UnknownEventType,
    /// The event is of another domain than its topic's.
    EventTypeMismatch,
    /// The message key is not the event's id.
    KeyMismatch,
    /// The `content-fingerprint` header does not match the content.
    FingerprintMismatch,
    /// The event's id (or its order's or user's id) is already stored with
    /// other content.
    Conflict,
    /// The database could not be reached on every try.
    DatabaseUnavailable,
    /// The database failed transiently on every try.
    DatabaseTransient,
    /// The database refused the row for good.
    DatabaseConstraint,
}

impl FailureClass {
    /// `dlq-error-class`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::Decode => "decode",
            FailureClass::UnsupportedContentType => "unsupported_content_type",
            FailureClass::UnsupportedSchemaVersion => "unsupported_schema_version",
            FailureClass::MissingHeader => "missing_header",
            FailureClass::Validation => "validation",
            FailureClass::UnknownEventType => "unknown_event_type",
            FailureClass::EventTypeMismatch => "event_type_mismatch",
            FailureClass::KeyMismatch => "key_mismatch",
            FailureClass::FingerprintMismatch => "fingerprint_mismatch",
            FailureClass::Conflict => "conflict",
            FailureClass::DatabaseUnavailable => "database_unavailable",
            FailureClass::DatabaseTransient => "database_transient",
            FailureClass::DatabaseConstraint => "database_constraint",
        }
    }
}

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Permanent or transient.
    pub kind: ErrorKind,
    /// `dlq-error-class`.
    pub class: FailureClass,
    /// `dlq-error-message`: what went wrong, without customer data.
    pub message: String,
    /// `dlq-retry-count`: retries made before giving up.
    pub retries: u32,
}

impl Failure {
    /// A permanent failure found before any retry.
    pub fn permanent(class: FailureClass, message: impl std::fmt::Display) -> Self {
        Self {
            kind: ErrorKind::Permanent,
            class,
            message: contract::redact::scrub(&message.to_string()),
            retries: 0,
        }
    }
}
