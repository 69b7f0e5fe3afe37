//! Why a message failed: a [`Failure`], whose kind and class are the
//! dead letter's vocabulary ([`contract::dead_letter`]).

pub use contract::dead_letter::{ErrorKind, FailureClass};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Rejection;
    use contract::DecodeError;

    #[test]
    fn a_missing_header_dead_letter_names_the_header() {
        let rejection =
            Rejection::Decode(DecodeError::MissingHeader(contract::headers::EVENT_TYPE));
        let failure = Failure::permanent(rejection.class(), &rejection);
        assert_eq!(failure.class, FailureClass::MissingHeader);
        assert_eq!(
            failure.message,
            r#"cannot decode: missing or unreadable header "event-type""#
        );
    }

    #[test]
    fn a_quoted_value_stays_out_of_the_message() {
        let rejection =
            Rejection::Decode(DecodeError::UnknownEventType("ada@example.com".to_owned()));
        let failure = Failure::permanent(rejection.class(), &rejection);
        assert_eq!(failure.message, r#"cannot decode: unknown event type "…""#);
    }
}
