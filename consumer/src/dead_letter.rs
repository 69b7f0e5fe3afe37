//! Dead-lettering: the original key, value bytes and headers, untouched,
//! plus `dlq-*` headers that say where the message came from and why it
//! failed, written to `<topic>-dlq` and acknowledged before its offset is
//! stored.
//!
//! Dead-lettering always ends. A dead letter the broker refuses for good
//! (too large once the `dlq-*` headers are added, or refused as a record)
//! is written again reduced: the `dlq-*` headers, the envelope headers, the
//! key, and the start of the value, marked `dlq-value-truncated`; then with
//! no value at all; and if even that is refused, it is counted and logged
//! and the message is passed over. Only a DLQ that cannot take anything now
//! (broker down, timeout) makes the loop wait and try again.

use std::time::Duration;

use chrono::Utc;
use contract::dead_letter::{self, FailureHeaders, Origin};
use contract::headers as h;
use platform::kafka::{KafkaSettings, ObservedContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::Timestamp;

use crate::failure::Failure;

/// Most bytes of the original value a reduced dead letter keeps.
pub const REDUCED_VALUE_BYTES: usize = 64 * 1024;
/// Most bytes of the key a reduced dead letter keeps.
const REDUCED_KEY_BYTES: usize = 1024;
/// Most bytes of one envelope header a reduced dead letter keeps.
const REDUCED_HEADER_BYTES: usize = 256;
/// Most characters of the error text.
const MAX_ERROR_TEXT: usize = 1024;

/// The original headers a reduced dead letter keeps (when small).
const ENVELOPE: [&str; 7] = [
    h::CONTENT_TYPE,
    h::SCHEMA_VERSION,
    h::EVENT_TYPE,
    h::CORRELATION_ID,
    h::TRACEPARENT,
    h::TRACESTATE,
    h::CONTENT_FINGERPRINT,
];

/// Where the DLQ stored a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Its partition of the DLQ topic.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
}

/// How a dead letter was written.
#[derive(Debug)]
pub enum Delivery {
    /// Whole: key, value and headers untouched, `dlq-*` headers added.
    Whole(Stored),
    /// Reduced to fit (see the module documentation).
    Reduced(Stored),
    /// Refused for good even reduced: the message is passed over.
    Dropped(KafkaError),
}

impl Delivery {
    /// Where it sits in the DLQ, unless it was passed over.
    pub fn stored(&self) -> Option<Stored> {
        match self {
            Delivery::Whole(at) | Delivery::Reduced(at) => Some(*at),
            Delivery::Dropped(_) => None,
        }
    }
}

/// The DLQ cannot take the dead letter now; the message must wait.
#[derive(Debug, thiserror::Error)]
#[error("dead-letter topic unavailable: {0}")]
pub struct DlqUnavailable(pub KafkaError);

/// Whether the broker will refuse this record whatever happens.
pub fn refused_for_good(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::PolicyViolation
        )
    )
}

/// The `dlq-*` headers of `message` failing with `failure`.
fn dlq_headers(
    message: &OwnedMessage,
    group: &str,
    failure: &Failure,
) -> Vec<(&'static str, String)> {
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
        Timestamp::NotAvailable => None,
    };
    // Bounded: a huge error text must not make the dead letter too large.
    let text: String = failure.message.chars().take(MAX_ERROR_TEXT).collect();
    dead_letter::failure_headers(
        Origin {
            topic: message.topic(),
            partition: message.partition(),
            offset: message.offset(),
            timestamp,
        },
        FailureHeaders {
            group,
            kind: failure.kind,
            class: failure.class,
            message: &text,
            retries: failure.retries,
            failed_at: Utc::now(),
        },
    )
}

fn with_headers(mut headers: OwnedHeaders, added: &[(&str, String)]) -> OwnedHeaders {
    for (key, value) in added {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The headers of a whole dead letter: the original ones (earlier `dlq-*`
/// error headers replaced; `dlq-replay-count` and the first failure's
/// `dlq-first-*` kept) and the new `dlq-*` ones.
pub fn dead_letter_headers(message: &OwnedMessage, group: &str, failure: &Failure) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            if !dead_letter::kept_by_a_new_dead_letter(header.key) {
                continue;
            }
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    with_headers(headers, &dlq_headers(message, group, failure))
}

/// A dead letter cut down to fit: what it keeps of the original.
struct Reduced<'a> {
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: OwnedHeaders,
}

fn cut(bytes: &[u8], limit: usize) -> &[u8] {
    &bytes[..bytes.len().min(limit)]
}

/// `message` reduced: envelope headers that are small, the key (cut at
/// 1 KiB) and the first `value_bytes` of the value.
fn reduced<'a>(
    message: &'a OwnedMessage,
    group: &str,
    failure: &Failure,
    value_bytes: usize,
) -> Reduced<'a> {
    let mut headers = OwnedHeaders::new();
    let mut dropped = 0usize;
    if let Some(original) = message.headers() {
        for header in original.iter() {
            let small = header.value.is_none_or(|v| v.len() <= REDUCED_HEADER_BYTES);
            let kept = ENVELOPE.contains(&header.key) || h::kept_across_replays(header.key);
            if kept && small {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            } else if dead_letter::kept_by_a_new_dead_letter(header.key) {
                // (An earlier failure's dlq-* headers are replaced, as in a
                // whole dead letter: not counted as lost.)
                dropped += 1;
            }
        }
    }
    let original = message.payload().unwrap_or_default();
    let value = message.payload().map(|v| cut(v, value_bytes));
    let key = message.key().map(|k| cut(k, REDUCED_KEY_BYTES));
    let mut added = dlq_headers(message, group, failure);
    if value.map_or(0, <[u8]>::len) < original.len() {
        added.push((h::DLQ_VALUE_TRUNCATED, "true".to_owned()));
        added.push((h::DLQ_ORIGINAL_VALUE_BYTES, original.len().to_string()));
    }
    // What else was left out is said too, never silently lost.
    let original_key = message.key().unwrap_or_default();
    if key.map_or(0, <[u8]>::len) < original_key.len() {
        added.push((h::DLQ_KEY_TRUNCATED, "true".to_owned()));
        added.push((h::DLQ_ORIGINAL_KEY_BYTES, original_key.len().to_string()));
    }
    if dropped > 0 {
        added.push((h::DLQ_HEADERS_DROPPED, dropped.to_string()));
    }
    Reduced {
        key,
        value,
        headers: with_headers(headers, &added),
    }
}

/// Writes dead letters and waits for the broker's acknowledgement.
#[derive(Clone)]
pub struct DeadLetterer {
    producer: FutureProducer<ObservedContext>,
    group: String,
    timeout: Duration,
}

impl DeadLetterer {
    /// An idempotent, `acks=all` producer for the DLQ topics.
    pub fn new(
        settings: &KafkaSettings,
        group: &str,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        let timeout_ms = timeout.as_millis().to_string();
        let producer = settings
            .client_config(&[
                ("client.id", "pubsubkafka-consumer-dlq"),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "0"),
                ("message.timeout.ms", &timeout_ms),
            ])
            .create_with_context(ObservedContext::default())?;
        Ok(Self {
            producer,
            group: group.to_owned(),
            timeout,
        })
    }

    async fn write(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: OwnedHeaders,
    ) -> Result<Stored, KafkaError> {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        self.producer
            .send(record, self.timeout)
            .await
            .map(|d| Stored {
                partition: d.partition,
                offset: d.offset,
            })
            .map_err(|(error, _)| error)
    }

    /// The consumer group whose dead letters these are.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// Sends `message` to `<topic>-dlq` with the same key (hence, with the
    /// same partition count, the same partition) and returns once stored,
    /// reduced or passed over; an error only when the DLQ is unavailable.
    pub async fn send(
        &self,
        message: &OwnedMessage,
        failure: &Failure,
    ) -> Result<Delivery, DlqUnavailable> {
        let topic = contract::topics::dlq_of(message.topic());
        let whole = dead_letter_headers(message, &self.group, failure);
        let error = match self
            .write(&topic, message.key(), message.payload(), whole)
            .await
        {
            Ok(at) => return Ok(Delivery::Whole(at)),
            Err(e) if refused_for_good(&e) => e,
            Err(e) => return Err(DlqUnavailable(e)),
        };
        tracing::warn!(%error, "dead letter refused whole; writing it reduced");
        let mut last = error;
        for value_bytes in [REDUCED_VALUE_BYTES, 0] {
            let r = reduced(message, &self.group, failure, value_bytes);
            match self.write(&topic, r.key, r.value, r.headers).await {
                Ok(at) => return Ok(Delivery::Reduced(at)),
                Err(e) if refused_for_good(&e) => last = e,
                Err(e) => return Err(DlqUnavailable(e)),
            }
        }
        Ok(Delivery::Dropped(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{ErrorKind, FailureClass};

    fn failure() -> Failure {
        Failure {
            kind: ErrorKind::Transient,
            class: FailureClass::DatabaseTransient,
            message: "x".repeat(5000),
            retries: 3,
        }
    }

    fn get(headers: &OwnedHeaders, name: &str) -> Vec<String> {
        headers
            .iter()
            .filter(|h| h.key == name)
            .filter_map(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[test]
    fn dead_letter_headers_keep_the_originals_and_add_the_dlq_ones() {
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "dlq-error-class",
                value: Some("old"),
            })
            .insert(Header {
                key: "dlq-replay-count",
                value: Some("1"),
            });
        let message = OwnedMessage::new(
            Some(b"{".to_vec()),
            Some(b"k".to_vec()),
            "orders".into(),
            Timestamp::CreateTime(1_700_000_000_000),
            2,
            41,
            Some(original),
        );
        let headers = dead_letter_headers(&message, "order-consumer", &failure());
        let get = |name| get(&headers, name);
        assert_eq!(get("content-type"), ["application/json"]);
        assert_eq!(get("dlq-replay-count"), ["1"]);
        assert_eq!(
            get("dlq-error-class"),
            ["database_transient"],
            "the old class is replaced"
        );
        assert_eq!(get("dlq-original-topic"), ["orders"]);
        assert_eq!(get("dlq-original-partition"), ["2"]);
        assert_eq!(get("dlq-original-offset"), ["41"]);
        assert_eq!(get("dlq-original-timestamp"), ["1700000000000"]);
        assert_eq!(get("dlq-consumer-group"), ["order-consumer"]);
        assert_eq!(get("dlq-error-kind"), ["transient"]);
        assert_eq!(get("dlq-retry-count"), ["3"]);
        assert_eq!(get("dlq-error-message")[0].len(), 1024);
        assert_eq!(get("dlq-failed-at").len(), 1);
        assert!(get("dlq-value-truncated").is_empty());
    }

    #[test]
    fn a_reduced_dead_letter_keeps_the_envelope_and_the_start_of_the_value() {
        let big = "v".repeat(REDUCED_HEADER_BYTES + 1);
        let original = OwnedHeaders::new()
            .insert(Header {
                key: "content-type",
                value: Some("application/json"),
            })
            .insert(Header {
                key: "correlation-id",
                value: Some(big.as_str()),
            })
            .insert(Header {
                key: "x-huge",
                value: Some("h"),
            });
        let value = vec![7u8; 3 * REDUCED_VALUE_BYTES];
        let message = OwnedMessage::new(
            Some(value.clone()),
            Some(vec![b'k'; 5000]),
            "orders".into(),
            Timestamp::NotAvailable,
            0,
            9,
            Some(original),
        );
        let r = reduced(&message, "g", &failure(), REDUCED_VALUE_BYTES);
        assert_eq!(r.value, Some(&value[..REDUCED_VALUE_BYTES]));
        assert_eq!(r.key.map(<[u8]>::len), Some(REDUCED_KEY_BYTES));
        assert_eq!(get(&r.headers, "content-type"), ["application/json"]);
        assert!(
            get(&r.headers, "correlation-id").is_empty(),
            "too large to keep"
        );
        assert!(
            get(&r.headers, "x-huge").is_empty(),
            "not an envelope header"
        );
        assert_eq!(get(&r.headers, "dlq-value-truncated"), ["true"]);
        assert_eq!(
            get(&r.headers, "dlq-original-value-bytes"),
            [value.len().to_string()]
        );
        assert_eq!(get(&r.headers, "dlq-original-offset"), ["9"]);
        // What was left out is said: the key's tail, the two headers.
        assert_eq!(get(&r.headers, "dlq-key-truncated"), ["true"]);
        assert_eq!(get(&r.headers, "dlq-original-key-bytes"), ["5000"]);
        assert_eq!(get(&r.headers, "dlq-headers-dropped"), ["2"]);

        let bare = reduced(&message, "g", &failure(), 0);
        assert_eq!(bare.value.map(<[u8]>::len), Some(0));
        assert_eq!(get(&bare.headers, "dlq-value-truncated"), ["true"]);
    }

    #[test]
    fn only_refusals_of_the_record_itself_are_final() {
        use rdkafka::error::KafkaError::MessageProduction as P;
        assert!(refused_for_good(&P(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(refused_for_good(&P(RDKafkaErrorCode::InvalidRecord)));
        for transient in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::UnknownTopicOrPartition,
            RDKafkaErrorCode::TopicAuthorizationFailed,
            RDKafkaErrorCode::NotEnoughReplicas,
        ] {
            assert!(!refused_for_good(&P(transient)), "{transient:?}");
        }
    }

    /// Header names a dead letter's original may carry: ours, the ones
    /// kept across replays, and others.
    const NAMES: [&str; 8] = [
        h::DLQ_ERROR_CLASS,
        h::DLQ_ORIGINAL_OFFSET,
        h::DLQ_REPLAY_COUNT,
        h::DLQ_FIRST_ERROR_CLASS,
        h::DLQ_FIRST_ORIGINAL_TOPIC,
        "dlq-first-",
        "content-type",
        "x-anything",
    ];

    proptest::proptest! {
        /// Whatever headers the original carries (repeated, empty, any
        /// bytes), its dead letter keeps every header that is not a
        /// failure's own `dlq-*` one, in order, and carries exactly one of
        /// each of this failure's.
        #[test]
        fn a_dead_letter_keeps_what_travels_and_replaces_each_failure_header(
            original in proptest::collection::vec(
                (0..NAMES.len(), proptest::option::of(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64))),
                0..20,
            ),
        ) {
            let mut headers = OwnedHeaders::new();
            for (name, value) in &original {
                headers = headers.insert(Header { key: NAMES[*name], value: value.as_deref() });
            }
            let message = OwnedMessage::new(None, None, "orders".into(), Timestamp::NotAvailable, 0, 7, Some(headers));
            let written = dead_letter_headers(&message, "g", &failure());
            let kept: Vec<(&str, Option<&[u8]>)> = original
                .iter()
                .map(|(n, v)| (NAMES[*n], v.as_deref()))
                .filter(|(n, _)| !n.starts_with("dlq-") || h::kept_across_replays(n))
                .collect();
            let head: Vec<(&str, Option<&[u8]>)> = written.iter().take(kept.len()).map(|x| (x.key, x.value)).collect();
            proptest::prop_assert_eq!(head, kept);
            for name in [h::DLQ_ERROR_CLASS, h::DLQ_ORIGINAL_OFFSET, h::DLQ_ERROR_KIND, h::DLQ_FAILED_AT] {
                proptest::prop_assert_eq!(get(&written, name).len(), 1, "{}", name);
            }
            proptest::prop_assert_eq!(get(&written, h::DLQ_ORIGINAL_OFFSET), ["7"]);
        }
    }
}
