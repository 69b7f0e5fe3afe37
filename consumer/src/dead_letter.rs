//! Dead-lettering: the original key, value bytes and headers, untouched,
//! plus `dlq-*` headers that say where the message came from and why it
//! failed, written to `<topic>-dlq` and acknowledged before its offset is
//! stored.

use std::time::Duration;

use chrono::Utc;
use contract::headers as h;
use platform::kafka::{KafkaSettings, ObservedContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Timestamp;

/// Whether trying again could help.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Why a message is dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Permanent or transient.
    pub kind: ErrorKind,
    /// `dlq-error-class`.
    pub class: &'static str,
    /// `dlq-error-message`.
    pub message: String,
    /// `dlq-retry-count`: retries made before giving up.
    pub retries: u32,
}

/// The headers of a dead letter: the original ones (earlier `dlq-*` error
/// headers replaced, `dlq-replay-count` kept) and the new `dlq-*` ones.
pub fn dead_letter_headers(message: &OwnedMessage, group: &str, failure: &Failure) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            if header.key.starts_with("dlq-") && header.key != h::DLQ_REPLAY_COUNT {
                continue;
            }
            headers = headers.insert(Header {
                key: header.key,
                value: header.value,
            });
        }
    }
    let timestamp = match message.timestamp() {
        Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => ms.to_string(),
        Timestamp::NotAvailable => String::new(),
    };
    // Header values are bounded: a huge error text must not make the dead
    // letter itself too large to write.
    let text: String = failure.message.chars().take(1024).collect();
    let added = [
        (h::DLQ_ORIGINAL_TOPIC, message.topic().to_owned()),
        (h::DLQ_ORIGINAL_PARTITION, message.partition().to_string()),
        (h::DLQ_ORIGINAL_OFFSET, message.offset().to_string()),
        (h::DLQ_ORIGINAL_TIMESTAMP, timestamp),
        (h::DLQ_CONSUMER_GROUP, group.to_owned()),
        (h::DLQ_ERROR_KIND, failure.kind.as_str().to_owned()),
        (h::DLQ_ERROR_CLASS, failure.class.to_owned()),
        (h::DLQ_ERROR_MESSAGE, text),
        (h::DLQ_RETRY_COUNT, failure.retries.to_string()),
        (h::DLQ_FAILED_AT, Utc::now().to_rfc3339()),
    ];
    for (key, value) in &added {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
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

    /// Sends `message` to `<topic>-dlq` with the same key (hence the same
    /// partition count keeps the same partition) and returns once stored.
    pub async fn send(&self, message: &OwnedMessage, failure: &Failure) -> Result<(), KafkaError> {
        let topic = contract::topics::dlq_of(message.topic());
        let headers = dead_letter_headers(message, &self.group, failure);
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(payload) = message.payload() {
            record = record.payload(payload);
        }
        match self.producer.send(record, self.timeout).await {
            Ok(_) => Ok(()),
            Err((error, _)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let failure = Failure {
            kind: ErrorKind::Transient,
            class: "database_transient",
            message: "x".repeat(5000),
            retries: 3,
        };
        let headers = dead_letter_headers(&message, "order-consumer", &failure);
        let get = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|h| h.key == name)
                .filter_map(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
                .collect()
        };
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
    }
}
