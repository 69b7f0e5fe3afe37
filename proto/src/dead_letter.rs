//! The dead letter's vocabulary, in one place for everyone who writes,
//! replays, lists or shows dead letters: why a message failed
//! ([`ErrorKind`], [`FailureClass`]: the values of `dlq-error-kind` and
//! `dlq-error-class`, and of the read side's rejection records), and the
//! `dlq-*` header rules as pure functions over name/value pairs
//! ([`failure_headers`], [`kept_by_a_new_dead_letter`], [`replay_headers`]).
//! The header names are [`crate::headers`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::headers as h;

/// Every `dlq-*` header starts with this.
pub const PREFIX: &str = "dlq-";

/// Most characters of a refused name quoted back in the error.
const MAX_QUOTED: usize = 64;

/// A name that is not one of a closed set's (an error kind or class).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{given:?} is not {what}: expected one of {expected}")]
pub struct UnknownName {
    given: String,
    what: &'static str,
    expected: String,
}

/// Declares a closed set of names: the enum, `as_str`, `ALL`, `FromStr`,
/// `Display` and serde as the name.
macro_rules! names {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema)]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        pub enum $name {
            $($(#[$vmeta])* #[cfg_attr(feature = "clap", value(name = $text))] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name, as in the `dlq-*` headers and the tables.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(given: &str) -> Result<Self, UnknownName> {
                Self::ALL.iter().copied().find(|v| v.as_str() == given).ok_or_else(|| UnknownName {
                    // Quoted back cut: the text may be anything, of any size.
                    given: given.chars().take(MAX_QUOTED).collect(),
                    what: $what,
                    expected: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = UnknownName;

            fn try_from(given: String) -> Result<Self, UnknownName> {
                given.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

names!(
    /// Whether trying again could help (`dlq-error-kind`).
    ErrorKind, "an error kind", {
        /// The same message will always fail.
        Permanent => "permanent",
        /// It failed every try, but might not forever.
        Transient => "transient",
    }
);

names!(
    /// A stable short name of a failure (`dlq-error-class`), what operators
    /// group and filter by.
    FailureClass, "an error class", {
        /// The value is not a well-formed event of its encoding.
        Decode => "decode",
        /// The `content-type` header names no known encoding.
        UnsupportedContentType => "unsupported_content_type",
        /// The `schema-version` header names no version this build reads.
        UnsupportedSchemaVersion => "unsupported_schema_version",
        /// A header the reader needs is absent.
        MissingHeader => "missing_header",
        /// The event breaks a business rule.
        Validation => "validation",
        /// The `event-type` header names no event this consumer knows.
        UnknownEventType => "unknown_event_type",
        /// The event is of another domain than its topic's.
        EventTypeMismatch => "event_type_mismatch",
        /// The message key is not the event's id.
        KeyMismatch => "key_mismatch",
        /// The `content-fingerprint` header does not match the content.
        FingerprintMismatch => "fingerprint_mismatch",
        /// The event's id (or its order's or user's id) is already stored
        /// with other content.
        Conflict => "conflict",
        /// The database could not be reached on every try.
        DatabaseUnavailable => "database_unavailable",
        /// The database failed transiently on every try.
        DatabaseTransient => "database_transient",
        /// The database refused the row for good.
        DatabaseConstraint => "database_constraint",
        /// The order's status does not allow the change (or a payment does
        /// not match the order's total).
        InvalidTransition => "invalid_transition",
        /// The change names an order that is not stored.
        UnknownOrder => "unknown_order",
        /// The change expects another version of the order than the stored
        /// one (`If-Match`), or is a replay older than the stored version.
        VersionConflict => "version_conflict",
    }
);

/// Where the failed message was read, and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch, when it has one.
    pub timestamp: Option<i64>,
}

/// One failure, as its dead letter tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureHeaders<'a> {
    /// The consumer group that gave up.
    pub group: &'a str,
    /// Permanent or transient.
    pub kind: ErrorKind,
    /// Which failure.
    pub class: FailureClass,
    /// What went wrong, without customer data (cut by the caller).
    pub message: &'a str,
    /// Retries made before giving up.
    pub retries: u32,
    /// When it gave up.
    pub failed_at: DateTime<Utc>,
}

/// The `dlq-*` headers a dead letter of the message at `origin` adds, in
/// their documented order.
pub fn failure_headers(
    origin: Origin<'_>,
    failure: FailureHeaders<'_>,
) -> Vec<(&'static str, String)> {
    vec![
        (h::DLQ_ORIGINAL_TOPIC, origin.topic.to_owned()),
        (h::DLQ_ORIGINAL_PARTITION, origin.partition.to_string()),
        (h::DLQ_ORIGINAL_OFFSET, origin.offset.to_string()),
        (
            h::DLQ_ORIGINAL_TIMESTAMP,
            origin.timestamp.map(|t| t.to_string()).unwrap_or_default(),
        ),
        (h::DLQ_CONSUMER_GROUP, failure.group.to_owned()),
        (h::DLQ_ERROR_KIND, failure.kind.as_str().to_owned()),
        (h::DLQ_ERROR_CLASS, failure.class.as_str().to_owned()),
        (h::DLQ_ERROR_MESSAGE, failure.message.to_owned()),
        (h::DLQ_RETRY_COUNT, failure.retries.to_string()),
        (h::DLQ_FAILED_AT, failure.failed_at.to_rfc3339()),
    ]
}

/// Whether a header of a failed message is carried into its new dead
/// letter: every header but an earlier failure's `dlq-*` ones, which the
/// new failure's replace (the replay count and the first failure's
/// `dlq-first-*` travel on, [`crate::headers::kept_across_replays`]).
pub fn kept_by_a_new_dead_letter(name: &str) -> bool {
    !name.starts_with(PREFIX) || h::kept_across_replays(name)
}

/// The headers of a replayed copy of a dead letter whose headers are
/// `original`, in order: the original ones without this failure's `dlq-*`,
/// then the first failure (taken from this dead letter when it carries no
/// `dlq-first-*` yet; a repeated header counts by its first occurrence),
/// then `dlq-replay-count` = `count`.
pub fn replay_headers<'a>(
    original: &[(&'a str, Option<&'a [u8]>)],
    count: u32,
) -> Vec<(&'a str, Option<std::borrow::Cow<'a, [u8]>>)> {
    let first_known = original
        .iter()
        .any(|(name, _)| name.starts_with(h::DLQ_FIRST_PREFIX));
    let mut headers: Vec<_> = original
        .iter()
        .filter(|(name, _)| name.starts_with(h::DLQ_FIRST_PREFIX) || !name.starts_with(PREFIX))
        .map(|(name, value)| (*name, value.map(std::borrow::Cow::Borrowed)))
        .collect();
    if !first_known {
        for (first, current) in h::DLQ_FIRST_FAILURE {
            let value = original
                .iter()
                .find(|(name, _)| *name == current)
                .and_then(|(_, v)| *v);
            if let Some(value) = value {
                headers.push((first, Some(std::borrow::Cow::Borrowed(value))));
            }
        }
    }
    headers.push((
        h::DLQ_REPLAY_COUNT,
        Some(std::borrow::Cow::Owned(count.to_string().into_bytes())),
    ));
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_reads_back_as_itself_and_others_are_refused_with_the_choices() {
        for kind in ErrorKind::ALL {
            assert_eq!(kind.as_str().parse::<ErrorKind>(), Ok(*kind));
        }
        for class in FailureClass::ALL {
            assert_eq!(class.as_str().parse::<FailureClass>(), Ok(*class));
            assert_eq!(class.to_string(), class.as_str());
            assert_eq!(
                serde_json::to_value(class).ok(),
                Some(serde_json::json!(class.as_str()))
            );
        }
        let refused = "Permanent".parse::<ErrorKind>().map_err(|e| e.to_string());
        assert_eq!(
            refused,
            Err(
                "\"Permanent\" is not an error kind: expected one of permanent, transient"
                    .to_owned()
            )
        );
        assert!("".parse::<FailureClass>().is_err());
    }

    #[test]
    fn a_dead_letter_names_its_origin_and_failure_in_the_documented_order() {
        let at = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let headers = failure_headers(
            Origin {
                topic: "orders",
                partition: 2,
                offset: 41,
                timestamp: None,
            },
            FailureHeaders {
                group: "g",
                kind: ErrorKind::Transient,
                class: FailureClass::DatabaseTransient,
                message: "m",
                retries: 3,
                failed_at: at,
            },
        );
        let names: Vec<_> = headers.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                h::DLQ_ORIGINAL_TOPIC,
                h::DLQ_ORIGINAL_PARTITION,
                h::DLQ_ORIGINAL_OFFSET,
                h::DLQ_ORIGINAL_TIMESTAMP,
                h::DLQ_CONSUMER_GROUP,
                h::DLQ_ERROR_KIND,
                h::DLQ_ERROR_CLASS,
                h::DLQ_ERROR_MESSAGE,
                h::DLQ_RETRY_COUNT,
                h::DLQ_FAILED_AT
            ]
        );
        assert_eq!(headers[3].1, "", "no timestamp: empty, not 0");
        assert_eq!(headers[5].1, "transient");
        assert_eq!(headers[6].1, "database_transient");
    }

    #[test]
    fn a_replay_keeps_the_first_failure_once_and_counts() {
        let first: &[(&str, Option<&[u8]>)] = &[
            ("content-type", Some(b"application/json")),
            (h::DLQ_ERROR_CLASS, Some(b"decode")),
            (h::DLQ_ERROR_CLASS, Some(b"forged")),
            (h::DLQ_ORIGINAL_TOPIC, Some(b"orders")),
            (h::DLQ_REPLAY_COUNT, Some(b"1")),
        ];
        let replayed = replay_headers(first, 2);
        let get = |name: &str| -> Vec<Vec<u8>> {
            replayed
                .iter()
                .filter(|(n, _)| *n == name)
                .filter_map(|(_, v)| v.as_ref().map(|v| v.to_vec()))
                .collect()
        };
        assert_eq!(get("content-type"), [b"application/json".to_vec()]);
        assert!(
            get(h::DLQ_ERROR_CLASS).is_empty(),
            "this failure's headers go"
        );
        assert_eq!(
            get(h::DLQ_FIRST_ERROR_CLASS),
            [b"decode".to_vec()],
            "first occurrence"
        );
        assert_eq!(get(h::DLQ_FIRST_ORIGINAL_TOPIC), [b"orders".to_vec()]);
        assert_eq!(
            get(h::DLQ_REPLAY_COUNT),
            [b"2".to_vec()],
            "one count, the new one"
        );

        // Replayed again after failing again: the first failure is not
        // overwritten by the second.
        let second: Vec<(&str, Option<&[u8]>)> = vec![
            (h::DLQ_FIRST_ERROR_CLASS, Some(b"decode")),
            (h::DLQ_ERROR_CLASS, Some(b"validation")),
        ];
        let again = replay_headers(&second, 3);
        let firsts: Vec<_> = again
            .iter()
            .filter(|(n, _)| *n == h::DLQ_FIRST_ERROR_CLASS)
            .collect();
        assert_eq!(firsts.len(), 1);
        assert_eq!(firsts[0].1.as_deref(), Some(&b"decode"[..]));
    }

    proptest! {
        /// Any text (a forged header, a stored value, a command-line
        /// argument: empty, huge, near misses in case or separators) reads
        /// as a kind or class exactly when it is one of the names, and back
        /// as itself; anything else is refused, never mapped to a default.
        #[test]
        fn any_text_is_a_name_exactly_when_listed(
            text in prop_oneof![
                proptest::sample::select(FailureClass::ALL.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>()),
                proptest::sample::select(FailureClass::ALL.iter().map(|c| c.as_str().to_uppercase()).collect::<Vec<_>>()),
                proptest::sample::select(FailureClass::ALL.iter().map(|c| c.as_str().replace('_', "-")).collect::<Vec<_>>()),
                ".{0,40}",
                proptest::collection::vec(proptest::prelude::any::<char>(), 0..5000).prop_map(|c| c.into_iter().collect::<String>()),
            ]
        ) {
            let listed = FailureClass::ALL.iter().any(|c| c.as_str() == text);
            match text.parse::<FailureClass>() {
                Ok(class) => {
                    prop_assert!(listed);
                    prop_assert_eq!(class.as_str(), text.as_str());
                }
                Err(e) => {
                    prop_assert!(!listed);
                    let said = e.to_string();
                    prop_assert!(said.contains("expected one of"));
                    prop_assert!(said.chars().count() < 800, "{} chars", said.chars().count());
                }
            }
            let kind_listed = ErrorKind::ALL.iter().any(|k| k.as_str() == text);
            prop_assert_eq!(text.parse::<ErrorKind>().is_ok(), kind_listed);
        }

        /// Whatever headers a dead letter holds, its replay carries no
        /// header of this failure, exactly one replay count (the new one),
        /// every non-`dlq-*` header in order, and a new dead letter of it
        /// keeps exactly what is not this failure's.
        #[test]
        fn replay_and_dead_letter_rules_hold_for_any_headers(
            names in proptest::collection::vec(
                proptest::sample::select(vec![
                    "content-type", "x-custom", "dlq-", "dlq-error-class", "dlq-first-error-class",
                    "dlq-replay-count", "dlq-original-topic", "dlq-first-x", "DLQ-error-class",
                ]),
                0..12,
            ),
            count in 0u32..10,
        ) {
            let original: Vec<(&str, Option<&[u8]>)> = names.iter().map(|n| (*n, Some(&b"v"[..]))).collect();
            let replayed = replay_headers(&original, count);
            let counts: Vec<_> = replayed.iter().filter(|(n, _)| *n == h::DLQ_REPLAY_COUNT).collect();
            prop_assert_eq!(counts.len(), 1);
            let want = count.to_string();
            prop_assert_eq!(counts[0].1.as_deref(), Some(want.as_bytes()));
            for (name, _) in &replayed {
                prop_assert!(!name.starts_with(PREFIX) || name.starts_with(h::DLQ_FIRST_PREFIX) || *name == h::DLQ_REPLAY_COUNT);
            }
            let plain: Vec<_> = original.iter().filter(|(n, _)| !n.starts_with(PREFIX)).map(|(n, _)| *n).collect();
            let kept: Vec<_> = replayed.iter().filter(|(n, _)| !n.starts_with(PREFIX)).map(|(n, _)| *n).collect();
            prop_assert_eq!(plain, kept);
            for name in &names {
                let this_failure = name.starts_with(PREFIX) && !h::kept_across_replays(name);
                prop_assert_eq!(kept_by_a_new_dead_letter(name), !this_failure);
            }
        }
    }
}
