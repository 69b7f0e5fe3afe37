//! Events and messages as tests and benchmarks publish them: valid ones
//! built through the contract, and the raw form tests tamper with.

use chrono::Utc;
use contract::request::Intake;
use contract::{Domain, Envelope, Event, EventCodec, Format, OrderEvent, UserEvent};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use uuid::Uuid;

/// A message as a test wants it published.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Outgoing {
    /// The message's headers as Kafka headers.
    pub fn kafka_headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        headers
    }

    /// The message with header `name` set to `value` (added if absent).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        match self.headers.iter_mut().find(|(k, _)| k == name) {
            Some(header) => header.1 = value.to_owned(),
            None => self.headers.push((name.to_owned(), value.to_owned())),
        }
        self
    }

    /// The message without header `name`.
    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| k != name);
        self
    }

    /// The message as a record to send, with its headers and partition.
    pub fn record(&self) -> BaseRecord<'_, Vec<u8>, Vec<u8>> {
        let record = BaseRecord::to(&self.topic)
            .key(&self.key)
            .payload(&self.value)
            .headers(self.kafka_headers());
        match self.partition {
            Some(p) => record.partition(p),
            None => record,
        }
    }
}

/// The headers of an event of `domain` written in `format` with schema
/// `version`, as the contract's envelope writes them (no fingerprint).
pub fn headers_for(format: Format, domain: Domain, version: u32) -> Vec<(String, String)> {
    Envelope {
        format,
        domain,
        event_type: domain.event_type(),
        schema_version: version,
        correlation_id: Some("test".into()),
        fingerprint: None,
    }
    .headers()
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The headers `event` is published with in `format` (its fingerprint too).
fn envelope_of<E: Event>(event: &E, format: Format) -> Vec<(String, String)> {
    Envelope::of(event, format)
        .headers()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

pub fn order_event(n: usize) -> OrderEvent {
    let request: contract::request::CreateOrderRequest =
        serde_json::from_value(crate::load::order_body(n)).expect("request");
    // Ids as the producer derives them, for an order with a client id.
    let ids = contract::ids::derive(
        &contract::ids::KeyDerivation::public(),
        Domain::Orders,
        Some(Uuid::new_v4()),
        None,
    );
    request.validate().expect("valid").into_event(
        ids.aggregate,
        contract::EventMetadata {
            event_id: ids.event,
            event_type: "order.created".into(),
            schema_version: 2,
            occurred_at: Utc::now(),
            producer: "test".into(),
            correlation_id: format!("corr-{n}"),
            trace_id: None,
            span_id: None,
        },
    )
}

pub fn user_event(n: usize) -> UserEvent {
    UserEvent {
        metadata: contract::EventMetadata {
            event_id: Uuid::new_v4(),
            event_type: "user.registered".into(),
            schema_version: 1,
            occurred_at: Utc::now(),
            producer: "test".into(),
            correlation_id: format!("corr-u{n}"),
            trace_id: None,
            span_id: None,
        },
        user_id: format!("u-{n}-{}", Uuid::new_v4().simple()),
        name: "Ada".into(),
        email: "ada@example.com".into(),
        address: None,
    }
}

pub fn order_message(event: &OrderEvent, format: Format) -> Outgoing {
    Outgoing {
        topic: "orders".into(),
        partition: None,
        key: event.order_id.to_string().into_bytes(),
        value: event.encode(format).expect("encode"),
        headers: envelope_of(event, format),
    }
}

pub fn user_message(event: &UserEvent, format: Format) -> Outgoing {
    Outgoing {
        topic: "users".into(),
        partition: None,
        key: event.user_id.clone().into_bytes(),
        value: event.encode(format).expect("encode"),
        headers: envelope_of(event, format),
    }
}

/// The Avro datum of a valid order up to its items, then an item count of
/// 536 870 912 and nothing more: a couple of hundred bytes that once made
/// the reader reserve 30 GiB and abort.
pub fn avro_item_count_bomb() -> Vec<u8> {
    let mut one = order_event(0);
    one.items.truncate(1);
    let mut none = one.clone();
    none.items.clear();
    let with_item = one.encode(Format::Avro).expect("encode");
    let without = none.encode(Format::Avro).expect("encode");
    // The two encodings part where the item count is written.
    let at = with_item
        .iter()
        .zip(&without)
        .position(|(a, b)| a != b)
        .expect("the encodings differ at the item count");
    let mut bomb = with_item[..at].to_vec();
    // 536 870 912 zig-zag encoded is 2^30: four empty base-128 digits, then 4.
    bomb.extend([0x80, 0x80, 0x80, 0x80, 0x04]);
    bomb
}
