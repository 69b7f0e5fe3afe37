//! Schema evolution: v2 readers read v1 data and v1 readers read v2 data in
//! every encoding, and the compatibility check refuses breaking changes.

use std::path::{Path, PathBuf};

use apache_avro::Schema;
use chrono::{TimeZone, Utc};
use contract::avro::{
    order_schema, ORDER_CHANGE_SCHEMAS, ORDER_SCHEMAS, ORDER_STATE_SCHEMAS, USER_SCHEMAS,
};
use contract::protobuf::{v1, v2, v3};
use contract::{
    compat, Address, Customer, EventCodec, EventMetadata, Format, InventoryStatus, OrderChange,
    OrderEvent, OrderItem, OrderState, Totals,
};

use crate::fixtures;
use prost::Message;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What a reader built before schema version 2 sees: no `promotion_code`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderEventV1 {
    metadata: EventMetadata,
    order_id: String,
    customer: Customer,
    items: Vec<OrderItem>,
    totals: Totals,
    currency: String,
}

fn v2_order() -> OrderEvent {
    OrderEvent {
        metadata: EventMetadata {
            event_id: Uuid::from_u128(7),
            event_type: "order.created".into(),
            schema_version: 2,
            occurred_at: Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            producer: concat!("producer/", env!("CARGO_PKG_VERSION")).into(),
            correlation_id: "corr-1".into(),
            trace_id: None,
            span_id: None,
        },
        order_id: Uuid::from_u128(42),
        customer: Customer {
            id: "c-42".into(),
            name: "Ada Lovelace".into(),
            email: "ada@example.com".into(),
            address: Address {
                line1: "12 St James's Sq".into(),
                line2: None,
                city: "London".into(),
                postal_code: "SW1Y 4JH".into(),
                country: "GB".into(),
            },
        },
        items: vec![OrderItem {
            sku: "SKU-1".into(),
            name: "Widget".into(),
            quantity: 2,
            unit_price: Decimal::new(1999, 2),
            line_total: Decimal::new(3998, 2),
            inventory_status: InventoryStatus::InStock,
        }],
        totals: Totals {
            subtotal: Decimal::new(3998, 2),
            total: Decimal::new(3998, 2),
            item_count: 2,
        },
        currency: "EUR".into(),
        promotion_code: Some("SPRING-10".into()),
    }
}

fn as_v1(e: &OrderEvent) -> OrderEventV1 {
    OrderEventV1 {
        metadata: EventMetadata {
            schema_version: 1,
            ..e.metadata.clone()
        },
        order_id: e.order_id.to_string(),
        customer: e.customer.clone(),
        items: e.items.clone(),
        totals: e.totals.clone(),
        currency: e.currency.clone(),
    }
}

fn assert_same_order(v1: &OrderEventV1, v2: &OrderEvent) {
    assert_eq!(v1.order_id, v2.order_id.to_string());
    assert_eq!(v1.customer, v2.customer);
    assert_eq!(v1.items, v2.items);
    assert_eq!(v1.totals, v2.totals);
    assert_eq!(v1.currency, v2.currency);
}

#[test]
fn json_v2_reader_reads_v1_data_and_v1_reader_reads_v2_data() {
    let event = v2_order();
    let old = serde_json::to_vec(&as_v1(&event)).unwrap();
    let read = OrderEvent::decode(&old, Format::Json, 1).expect("v2 reads v1 JSON");
    assert_same_order(&as_v1(&event), &read);
    assert_eq!(read.promotion_code, None);

    let new = event.encode(Format::Json).unwrap();
    let read: OrderEventV1 = serde_json::from_slice(&new).expect("v1 reads v2 JSON");
    assert_same_order(&read, &event);
}

#[test]
fn protobuf_v2_reader_reads_v1_data_and_v1_reader_reads_v2_data() {
    let event = v2_order();
    let new = event.encode(Format::Protobuf).unwrap();
    let read = v1::OrderEvent::decode(new.as_slice()).expect("v1 reads v2 protobuf");
    assert_eq!(read.order_id, event.order_id.to_string());
    assert_eq!(read.items[0].unit_price, "19.99");
    assert_eq!(read.totals.as_ref().map(|t| t.item_count), Some(2));

    let old = read.encode_to_vec();
    assert!(old.len() < new.len(), "the v1 message drops promotion_code");
    let back = OrderEvent::decode(&old, Format::Protobuf, 1).expect("v2 reads v1 protobuf");
    assert_eq!(back.promotion_code, None);
    assert_eq!(
        back,
        OrderEvent {
            promotion_code: None,
            ..event
        }
    );
}

#[test]
fn avro_v2_reader_reads_v1_data_and_v1_reader_reads_v2_data() {
    let event = v2_order();
    let v1_schema = order_schema(1).unwrap();
    let v2_schema = order_schema(2).unwrap();

    let old = contract::avro::encode(&as_v1(&event), v1_schema.schema()).unwrap();
    let read = OrderEvent::decode(&old, Format::Avro, 1).expect("v2 reads v1 avro");
    assert_same_order(&as_v1(&event), &read);
    assert_eq!(read.promotion_code, None);

    let new = event.encode(Format::Avro).unwrap();
    let read: OrderEventV1 =
        contract::avro::decode(&new, v2_schema, v1_schema).expect("v1 reads v2 avro");
    assert_same_order(&read, &event);
}

#[test]
fn avro_reader_must_know_the_writer_version() {
    // Read as v1 although written as v2: the datum is longer than v1 expects.
    let new = v2_order().encode(Format::Avro).unwrap();
    let err = OrderEvent::decode(&new, Format::Avro, 1).expect_err("wrong writer schema");
    assert!(matches!(err, contract::DecodeError::Avro(_)), "{err:?}");
}

fn parse(source: &str) -> Schema {
    Schema::parse_str(source).expect("schema parses")
}

#[test]
fn shipped_avro_schemas_are_fully_compatible_version_to_version() {
    let lists = [
        &ORDER_SCHEMAS[..],
        &USER_SCHEMAS[..],
        &ORDER_CHANGE_SCHEMAS[..],
        &ORDER_STATE_SCHEMAS[..],
    ];
    for list in lists {
        for pair in list.windows(2) {
            compat::avro(&parse(pair[0]), &parse(pair[1])).expect("compatible");
        }
        // A schema with a single version is checked against itself: it
        // parses, and resolves into itself both ways.
        let first = list.first().expect("a first version");
        compat::avro(&parse(first), &parse(first)).expect("compatible with itself");
    }
    assert_eq!(ORDER_SCHEMAS.len() as u32, OrderEvent::SCHEMA_VERSION);
    assert_eq!(
        USER_SCHEMAS.len() as u32,
        contract::UserEvent::SCHEMA_VERSION
    );
    assert_eq!(
        ORDER_CHANGE_SCHEMAS.len() as u32,
        OrderChange::SCHEMA_VERSION
    );
    assert_eq!(ORDER_STATE_SCHEMAS.len() as u32, OrderState::SCHEMA_VERSION);
}

/// The order change schema with `edit` applied to the fields of its
/// `change` record, checked against the shipped one.
fn avro_change_kinds(
    edit: impl FnOnce(&mut Vec<serde_json::Value>),
) -> Result<(), Vec<compat::Incompatibility>> {
    let mut json: serde_json::Value = serde_json::from_str(ORDER_CHANGE_SCHEMAS[0]).unwrap();
    let change = json["fields"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|f| f["name"] == "change")
        .unwrap();
    edit(change["type"]["fields"].as_array_mut().unwrap());
    compat::avro(&parse(ORDER_CHANGE_SCHEMAS[0]), &parse(&json.to_string()))
}

#[test]
fn a_new_kind_of_change_keeps_the_avro_change_schema_compatible() {
    let refund = serde_json::json!({
        "name": "refund", "default": null,
        "type": ["null", {"type": "record", "name": "Refund",
                          "fields": [{"name": "amount", "type": "string"}]}]
    });
    assert_eq!(
        avro_change_kinds(|fields| fields.push(refund)),
        Ok(()),
        "a fifth nullable change is read by old and new readers alike"
    );
    let removed = avro_change_kinds(|fields| {
        fields.retain(|f| f["name"] != "delivery");
    });
    assert!(
        removed.is_ok(),
        "a removed nullable change reads as null ({removed:?})"
    );
    let required = avro_change_kinds(|fields| {
        fields[0]["type"] = fields[0]["type"][1].clone();
        fields[0].as_object_mut().unwrap().remove("default");
    });
    let err = required.expect_err("a required payment cannot read the other changes");
    assert!(
        err.iter().any(|e| e.subject.contains("backward")),
        "{err:?}"
    );
}

#[test]
fn an_order_change_without_exactly_one_change_is_refused_in_avro() {
    let schema = contract::avro::order_change_schema(1).unwrap();
    let mut json = serde_json::to_value(&fixtures::changes()[0]).unwrap();
    let payment = json["change"]["payment"].clone();
    let none = serde_json::json!({"payment": null, "shipment": null,
                                  "delivery": null, "cancellation": null});
    let two = serde_json::json!({"payment": payment, "shipment": null,
                                 "delivery": {"received_by": null}, "cancellation": null});
    for (change, reason) in [(none, "none"), (two, "more than one")] {
        json["change"] = change;
        let bytes = contract::avro::encode(&json, schema.schema()).unwrap();
        let err = OrderChange::decode(&bytes, Format::Avro, 1).expect_err("not one change");
        assert!(
            matches!(&err, contract::DecodeError::Field { path, reason: r }
                if path == "change" && r.contains(reason)),
            "{err:?}"
        );
    }
}

/// Applies `change` to the current order schema and runs the check on it.
fn avro_change(
    change: impl FnOnce(&mut Vec<serde_json::Value>),
) -> Result<(), Vec<compat::Incompatibility>> {
    let mut json: serde_json::Value = serde_json::from_str(ORDER_SCHEMAS[1]).unwrap();
    let fields = json["fields"].as_array_mut().unwrap();
    change(fields);
    compat::avro(&parse(ORDER_SCHEMAS[1]), &parse(&json.to_string()))
}

#[test]
fn avro_check_refuses_breaking_changes() {
    let new_required = avro_change(|f| {
        f.push(serde_json::json!({"name": "channel", "type": "string"}));
    });
    let err = new_required.expect_err("a field without default breaks old data");
    assert!(
        err.iter().any(|e| e.subject.contains("backward")),
        "{err:?}"
    );

    let type_change = avro_change(|f| f[5]["type"] = serde_json::json!("long"));
    assert!(type_change.is_err(), "currency string -> long must fail");

    let removed = avro_change(|f| {
        f.remove(5);
    });
    let err = removed.expect_err("old readers need currency");
    assert!(err.iter().any(|e| e.subject.contains("forward")), "{err:?}");

    let optional = avro_change(|f| {
        f.push(serde_json::json!({"name": "channel", "type": ["null", "string"], "default": null}));
    });
    assert_eq!(optional, Ok(()), "an optional field with a default is fine");
}

fn proto_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protobuf")
}

fn compile(root: &Path, file: &str) -> prost_types::FileDescriptorSet {
    protox::compile([file], [root]).expect("proto compiles")
}

/// The current package.
const CURRENT: &str = "pubsubkafka/events/v3/events.proto";

/// Writes the current file with `edit` applied into a fresh directory.
fn proto_change(
    name: &str,
    edit: impl FnOnce(String) -> String,
) -> Result<(), Vec<compat::Incompatibility>> {
    let source = std::fs::read_to_string(proto_dir().join(CURRENT)).unwrap();
    let dir = std::env::temp_dir().join(format!("contract-compat-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("events.proto"), edit(source.clone())).unwrap();
    let old = compile(&proto_dir(), CURRENT);
    let new = compile(&dir, "events.proto");
    let _ = std::fs::remove_dir_all(&dir);
    compat::protobuf(&old, &new)
}

#[test]
fn shipped_protobuf_versions_are_compatible() {
    let v1 = compile(&proto_dir(), "pubsubkafka/events/v1/events.proto");
    let v2 = compile(&proto_dir(), "pubsubkafka/events/v2/events.proto");
    let v3 = compile(&proto_dir(), CURRENT);
    assert_eq!(compat::protobuf(&v1, &v2), Ok(()));
    assert_eq!(compat::protobuf(&v2, &v3), Ok(()));
    assert_eq!(
        compat::protobuf(&v2, &v1).map_err(|e| e.len()),
        Err(1),
        "v2 -> v1 drops promotion_code without reserving it"
    );
    let mut dropped: Vec<String> = compat::protobuf(&v3, &v2)
        .expect_err("v3 -> v2 drops the lifecycle")
        .into_iter()
        .map(|e| e.subject)
        .collect();
    dropped.sort();
    assert_eq!(
        dropped,
        [
            "Cancellation",
            "CancellationReason",
            "Delivery",
            "HistoryEntry",
            "OrderChange",
            "OrderState",
            "OrderStatus",
            "Payment",
            "Shipment"
        ],
        "only the messages and enums v3 added"
    );
}

#[test]
fn protobuf_v2_and_v3_read_each_others_orders_and_users() {
    let order = fixtures::order();
    let current = order.encode(Format::Protobuf).unwrap();
    let read = v2::OrderEvent::decode(current.as_slice()).expect("v2 reads v3");
    assert_eq!(read.promotion_code.as_deref(), Some("SPRING-10"));
    let old = read.encode_to_vec();
    assert_eq!(old, current, "v3 left the order message as v2 wrote it");
    assert_eq!(OrderEvent::decode(&old, Format::Protobuf, 2), Ok(order));

    let user = fixtures::user();
    let current = user.encode(Format::Protobuf).unwrap();
    let read = v2::UserEvent::decode(current.as_slice()).expect("v2 reads v3");
    assert_eq!(read.encode_to_vec(), current);
}

#[test]
fn an_order_reader_reads_the_order_in_a_protobuf_state() {
    let state = fixtures::state();
    let bytes = state.encode(Format::Protobuf).unwrap();
    let order = OrderEvent::decode(&bytes, Format::Protobuf, 2).expect("fields 1 to 7");
    assert_eq!(order.order_id, state.order_id);
    assert_eq!(order.customer, state.customer);
    assert_eq!(order.items, state.items);
    assert_eq!(order.totals, state.totals);
    assert_eq!(order.promotion_code, state.promotion_code);
}

#[test]
fn protobuf_lifecycle_enums_refuse_unspecified_and_unknown_statuses() {
    let state = v3::OrderState::from(&fixtures::state());
    for (status, said) in [(0, "is required"), (99, "not a status")] {
        let mut changed = state.clone();
        changed.status = status;
        let err = OrderState::decode(&changed.encode_to_vec(), Format::Protobuf, 1)
            .expect_err("no status stands for another");
        assert!(
            matches!(&err, contract::DecodeError::Field { path, reason }
                if path == "status" && reason.contains(said)),
            "{err:?}"
        );
        let mut changed = state.clone();
        changed.history[1].status = status;
        let err = OrderState::decode(&changed.encode_to_vec(), Format::Protobuf, 1)
            .expect_err("nor in the history");
        assert!(
            matches!(&err, contract::DecodeError::Field { path, .. } if path == "history[1].status"),
            "{err:?}"
        );
    }

    let cancellation = &fixtures::changes()[3];
    let mut message = v3::OrderChange::from(cancellation);
    let set_reason = |message: &mut v3::OrderChange, reason: i32| {
        if let Some(v3::order_change::Change::Cancellation(c)) = message.change.as_mut() {
            c.reason = reason;
        }
    };
    set_reason(&mut message, 0);
    let err = OrderChange::decode(&message.encode_to_vec(), Format::Protobuf, 1)
        .expect_err("a cancellation needs its reason");
    assert!(
        matches!(&err, contract::DecodeError::Field { path, .. } if path == "cancellation.reason"),
        "{err:?}"
    );
    set_reason(&mut message, 42);
    let read = OrderChange::decode(&message.encode_to_vec(), Format::Protobuf, 1)
        .expect("a newer reason reads as other, as Avro's enum default");
    assert_eq!(
        read.change,
        contract::Change::Cancellation(contract::lifecycle::Cancellation {
            reason: contract::lifecycle::CancellationReason::Other,
            note: Some("no widgets left".into()),
        })
    );

    message.change = None;
    let err = OrderChange::decode(&message.encode_to_vec(), Format::Protobuf, 1)
        .expect_err("a change without its change");
    assert!(
        matches!(&err, contract::DecodeError::Field { path, .. } if path == "change"),
        "{err:?}"
    );
}

#[test]
fn protobuf_check_refuses_breaking_changes() {
    let retyped = proto_change("retype", |s| {
        s.replace("uint32 quantity = 3;", "string quantity = 3;")
    });
    let err = retyped.expect_err("retyping a field breaks old readers");
    assert!(err[0].subject.contains("quantity"), "{err:?}");

    let removed = proto_change("remove", |s| {
        s.replace("  string currency = 6;        // ISO 4217\n", "")
    });
    assert!(removed.is_err(), "removing without reserving must fail");

    let reserved = proto_change("reserve", |s| {
        s.replace(
            "  string currency = 6;        // ISO 4217\n",
            "  reserved 6;\n",
        )
    });
    assert_eq!(
        reserved,
        Ok(()),
        "removing and reserving the number is fine"
    );

    let renamed = proto_change("rename", |s| {
        s.replace("string city = 3;", "string town = 3;")
    });
    assert!(renamed.is_err(), "renaming breaks the JSON mapping");

    let added = proto_change("add", |s| {
        s.replacen(
            "  optional string promotion_code = 7;",
            "  optional string promotion_code = 7;\n  optional string channel = 8;",
            1,
        )
    });
    assert_eq!(added, Ok(()), "a new optional field is fine");

    let dropped_enum = proto_change("enum", |s| {
        s.replace("  INVENTORY_STATUS_BACKORDERED = 3;\n", "")
    });
    assert!(dropped_enum.is_err(), "removing an enum value must fail");

    let new_kind = proto_change("oneof", |s| {
        s.replace(
            "    Cancellation cancellation = 7;\n",
            "    Cancellation cancellation = 7;\n    Delivery redelivery = 8;\n",
        )
    });
    assert_eq!(
        new_kind,
        Ok(()),
        "a new kind of change in the oneof is fine"
    );

    let retyped_change = proto_change("oneof-retype", |s| {
        s.replace("    Shipment shipment = 5;", "    Delivery shipment = 5;")
    });
    let err = retyped_change.expect_err("a change of another type breaks old readers");
    assert!(err[0].subject.contains("OrderChange.shipment"), "{err:?}");

    let dropped_status = proto_change("status", |s| s.replace("  ORDER_STATUS_SHIPPED = 3;\n", ""));
    assert!(dropped_status.is_err(), "removing a status must fail");
}

#[test]
fn v1_and_v2_protobuf_types_share_the_wire_format() {
    let user = v2::UserEvent {
        user_id: "u-1".into(),
        ..Default::default()
    };
    let read = v1::UserEvent::decode(user.encode_to_vec().as_slice()).unwrap();
    assert_eq!(read.user_id, "u-1");
}
