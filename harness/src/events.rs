//! Events and messages as tests and benchmarks publish them: valid ones
//! built through the contract, and the raw form tests tamper with.

use chrono::Utc;
use contract::{EventCodec, Format, OrderEvent, UserEvent};
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

pub fn headers_for(format: Format, event_type: &str, version: u32) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), format.content_type().into()),
        ("schema-version".into(), version.to_string()),
        ("event-type".into(), event_type.into()),
        ("correlation-id".into(), "test".into()),
    ]
}

pub fn order_event(n: usize) -> OrderEvent {
    let request: contract::request::CreateOrderRequest = serde_json::from_value(serde_json::json!({
        "customer": {"id": format!("c-{n}"), "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"line1": "12 St James's Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}},
        "items": [{"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price": "19.99"},
                  {"sku": "SKU-2", "name": "Gadget", "quantity": 1, "unit_price": "5.00", "inventory_status": "backordered"}],
        "currency": "EUR"
    }))
    .expect("request");
    let order_id = Uuid::new_v4();
    request.validate().expect("valid").into_event(
        order_id,
        contract::EventMetadata {
            event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes()),
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
        headers: headers_for(format, "order.created", 2),
    }
}

pub fn user_message(event: &UserEvent, format: Format) -> Outgoing {
    Outgoing {
        topic: "users".into(),
        partition: None,
        key: event.user_id.clone().into_bytes(),
        value: event.encode(format).expect("encode"),
        headers: headers_for(format, "user.registered", 1),
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
