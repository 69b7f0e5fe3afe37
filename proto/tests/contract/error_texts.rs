//! Error texts say where and which rule, never what: a marker planted in
//! any string of an event, in any encoding (and in a JSON key), wrapped in
//! backticks, quotes, brackets or decoder words, never appears in the
//! error the decoder returns, nor in what the consumer and the operator
//! tool make of it (`scrub`, the `dlq-error-message` header and listings
//! are built from that text).

use contract::avro::Compiled;
use contract::protobuf::v3;
use contract::{EventCodec, Format, OrderChange, OrderEvent, OrderState, UserEvent};
use proptest::prelude::*;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage, Value as Field};
use serde_json::Value;

use crate::fixtures;

/// The value a test plants: the marker wrapped in what un-quotes naive
/// scrubbers.
fn planted(marker: &str, wrapping: usize) -> String {
    let wrappings = [
        "{m}",
        "q`{m}`q",
        "`, expected one of `{m}",
        "\"{m}\"",
        "a`sku`{m} null`x",
        "[1, 2] {m} [3]",
        "unknown variant `{m}`, expected `in_stock`",
        "in_stock` {m} `in_stock",
        "\\\"{m}\\\"",
        "{m}\u{1b}[2J",
    ];
    wrappings[wrapping % wrappings.len()].replace("{m}", marker)
}

/// Every leaf of `value`, as JSON pointers.
fn leaves(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        _ => out.push(at),
    }
}

/// Every object of `value`, as JSON pointers (where an unknown key goes).
fn objects(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(at.clone());
            for (k, v) in map {
                objects(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                objects(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// An event of each kind, as each encoding sees it.
struct Case {
    kind: &'static str,
    /// The event as JSON (the model's serde shape).
    json: Value,
    /// The fully qualified name of its Protobuf message, and its encoding.
    protobuf: (&'static str, Vec<u8>),
}

fn cases() -> Vec<Case> {
    let case = |kind, json: Result<Value, _>, protobuf| Case {
        kind,
        json: json.expect("fixture as JSON"),
        protobuf,
    };
    let order = fixtures::order();
    let user = fixtures::user();
    let state = fixtures::state();
    let mut cases = vec![
        case(
            "order",
            serde_json::to_value(&order),
            (
                "pubsubkafka.events.v3.OrderEvent",
                v3::OrderEvent::from(&order).encode_to_vec(),
            ),
        ),
        case(
            "user",
            serde_json::to_value(&user),
            (
                "pubsubkafka.events.v3.UserEvent",
                v3::UserEvent::from(&user).encode_to_vec(),
            ),
        ),
        case(
            "state",
            serde_json::to_value(&state),
            (
                "pubsubkafka.events.v3.OrderState",
                v3::OrderState::from(&state).encode_to_vec(),
            ),
        ),
    ];
    for change in fixtures::changes() {
        cases.push(case(
            "change",
            serde_json::to_value(&change),
            (
                "pubsubkafka.events.v3.OrderChange",
                v3::OrderChange::from(&change).encode_to_vec(),
            ),
        ));
    }
    cases
}

fn decode(kind: &str, bytes: &[u8], format: Format) -> Option<String> {
    let error = match kind {
        "order" => OrderEvent::decode(bytes, format, 2).err(),
        "user" => UserEvent::decode(bytes, format, 1).err(),
        "change" => OrderChange::decode(bytes, format, 1).err(),
        _ => OrderState::decode(bytes, format, 1).err(),
    }?;
    Some(error.to_string())
}

/// The Avro schema a `kind` is written with, and the event's JSON in the
/// shape of that schema (an order change's change is a record of four
/// nullable records there).
fn avro_shape(kind: &str, json: &Value) -> (&'static Compiled, Value) {
    let mut json = json.clone();
    let schema = match kind {
        "order" => contract::avro::order_schema(2),
        "user" => contract::avro::user_schema(1),
        "change" => {
            if let Some(Value::Object(change)) = json.get_mut("change") {
                for name in ["payment", "shipment", "delivery", "cancellation"] {
                    change.entry(name).or_insert(Value::Null);
                }
            }
            contract::avro::order_change_schema(1)
        }
        _ => contract::avro::order_state_schema(1),
    };
    (schema.expect("schema"), json)
}

fn check(said: Option<String>, marker: &str, at: &str) -> Result<bool, TestCaseError> {
    let Some(text) = said else { return Ok(false) };
    for shown in [
        text.clone(),
        contract::redact::scrub(&text),
        contract::redact::reason(&text),
    ] {
        prop_assert!(!shown.contains(marker), "{at}: the marker is in {shown:?}");
    }
    Ok(true)
}

fn protobuf_pool() -> DescriptorPool {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("protobuf");
    protox::Compiler::new([root])
        .expect("includes")
        .open_file("pubsubkafka/events/v3/events.proto")
        .expect("proto compiles")
        .descriptor_pool()
}

/// Sets every string field of `message` (nested and repeated ones too)
/// to `value`, one at a time, calling `each` with the whole message.
fn each_string_field(
    message: &DynamicMessage,
    value: &str,
    each: &mut dyn FnMut(&str, DynamicMessage) -> Result<(), TestCaseError>,
) -> Result<(), TestCaseError> {
    for field in message.descriptor().fields() {
        let current = message.get_field(&field).into_owned();
        let with = |replacement: Field| {
            let mut copy = message.clone();
            copy.set_field(&field, replacement);
            copy
        };
        match current {
            Field::String(_) => each(field.full_name(), with(Field::String(value.to_owned())))?,
            Field::List(items) => {
                for (i, item) in items.iter().enumerate() {
                    let mut list = items.clone();
                    match item {
                        Field::String(_) => {
                            list[i] = Field::String(value.to_owned());
                            each(field.full_name(), with(Field::List(list)))?;
                        }
                        Field::Message(inner) => {
                            each_string_field(inner, value, &mut |path, changed| {
                                let mut list = items.clone();
                                list[i] = Field::Message(changed);
                                each(path, with(Field::List(list)))
                            })?;
                        }
                        _ => {}
                    }
                }
            }
            Field::Message(inner) => {
                each_string_field(&inner, value, &mut |path, changed| {
                    each(path, with(Field::Message(changed)))
                })?;
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_value_planted_anywhere_never_reaches_an_error_text(
        marker in "[A-Z]{3}[a-z0-9]{6}",
        wrapping in 0usize..10,
    ) {
        let hostile = planted(&marker, wrapping);
        let pool = protobuf_pool();
        let mut refused = 0usize;
        for Case { kind, json: valid, protobuf: (name, bytes) } in cases() {
            // The Avro shape of the event is right: what is refused below
            // is refused for the planted value.
            let (schema, shaped) = avro_shape(kind, &valid);
            let avro = contract::avro::encode(&shaped, schema.schema()).expect("fits its schema");
            prop_assert_eq!(decode(kind, &avro, Format::Avro), None, "{} reads", kind);
            // JSON and Avro: every leaf of the event, whatever its type.
            let mut at = Vec::new();
            leaves(&valid, String::new(), &mut at);
            for pointer in &at {
                let mut changed = valid.clone();
                *changed.pointer_mut(pointer).expect("a leaf") = Value::String(hostile.clone());
                let json = serde_json::to_vec(&changed).expect("JSON");
                refused += usize::from(check(decode(kind, &json, Format::Json), &marker, pointer)?);
                let (schema, shaped) = avro_shape(kind, &changed);
                if let Ok(avro) = contract::avro::encode(&shaped, schema.schema()) {
                    refused += usize::from(check(decode(kind, &avro, Format::Avro), &marker, pointer)?);
                }
            }
            // JSON: a key the contract does not know, in every object.
            let mut places = Vec::new();
            objects(&valid, String::new(), &mut places);
            for pointer in &places {
                let mut changed = valid.clone();
                if let Some(Value::Object(map)) = changed.pointer_mut(pointer) {
                    map.insert(hostile.clone(), Value::Bool(true));
                }
                let json = serde_json::to_vec(&changed).expect("JSON");
                refused += usize::from(check(decode(kind, &json, Format::Json), &marker, pointer)?);
            }
            // Protobuf: every string field, nested and repeated ones too.
            let descriptor = pool.get_message_by_name(name).expect("message");
            let message = DynamicMessage::decode(descriptor, bytes.as_slice()).expect("decodes");
            each_string_field(&message, &hostile, &mut |path, changed| {
                let bytes = changed.encode_to_vec();
                refused += usize::from(check(decode(kind, &bytes, Format::Protobuf), &marker, path)?);
                Ok(())
            })?;
        }
        prop_assert!(refused > 20, "the planted values were refused somewhere ({refused})");
    }
}
