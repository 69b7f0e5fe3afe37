//! Every event survives every encoding unchanged.

use chrono::{DateTime, TimeZone, Utc};
use contract::{
    Address, Customer, EventCodec, EventMetadata, Format, InventoryStatus, OrderEvent, OrderItem,
    Totals, UserEvent,
};
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[a-zA-Z0-9 ._-]{0,24}", "\\PC{0,12}"]
}

/// Amounts as the contract writes them: not negative, at most 15 digits
/// before and 12 after the point.
fn decimal() -> impl Strategy<Value = Decimal> {
    (0i64..1_000_000_000_000_000, 0u32..=12)
        .prop_map(|(mantissa, scale)| Decimal::new(mantissa, scale))
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    (0i64..4_102_444_800, 0u32..1_000_000_000).prop_map(|(secs, nanos)| {
        Utc.timestamp_opt(secs, nanos)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH)
    })
}

fn metadata() -> impl Strategy<Value = EventMetadata> {
    (
        any::<u128>(),
        text(),
        1u32..5,
        timestamp(),
        text(),
        text(),
        proptest::option::of("[0-9a-f]{32}"),
        proptest::option::of("[0-9a-f]{16}"),
    )
        .prop_map(
            |(
                id,
                event_type,
                schema_version,
                occurred_at,
                producer,
                correlation_id,
                trace_id,
                span_id,
            )| {
                EventMetadata {
                    event_id: Uuid::from_u128(id),
                    event_type,
                    schema_version,
                    occurred_at,
                    producer,
                    correlation_id,
                    trace_id,
                    span_id,
                }
            },
        )
}

fn address() -> impl Strategy<Value = Address> {
    (
        text(),
        proptest::option::of(text()),
        text(),
        text(),
        "[A-Z]{2}",
    )
        .prop_map(|(line1, line2, city, postal_code, country)| Address {
            line1,
            line2,
            city,
            postal_code,
            country,
        })
}

fn status() -> impl Strategy<Value = InventoryStatus> {
    prop_oneof![
        Just(InventoryStatus::Unknown),
        Just(InventoryStatus::InStock),
        Just(InventoryStatus::LowStock),
        Just(InventoryStatus::Backordered),
    ]
}

fn item() -> impl Strategy<Value = OrderItem> {
    (text(), text(), any::<u32>(), decimal(), decimal(), status()).prop_map(
        |(sku, name, quantity, unit_price, line_total, inventory_status)| OrderItem {
            sku,
            name,
            quantity,
            unit_price,
            line_total,
            inventory_status,
        },
    )
}

prop_compose! {
    fn order()(
        metadata in metadata(),
        id in any::<u128>(),
        customer in (text(), text(), text(), address()),
        items in proptest::collection::vec(item(), 0..5),
        totals in (decimal(), decimal(), any::<u32>()),
        currency in "[A-Z]{3}",
        promotion_code in proptest::option::of(text()),
    ) -> OrderEvent {
        OrderEvent {
            metadata,
            order_id: Uuid::from_u128(id),
            customer: Customer { id: customer.0, name: customer.1, email: customer.2, address: customer.3 },
            items,
            totals: Totals { subtotal: totals.0, total: totals.1, item_count: totals.2 },
            currency,
            promotion_code,
        }
    }
}

prop_compose! {
    fn user()(
        metadata in metadata(),
        user_id in text(),
        name in text(),
        email in text(),
        address in proptest::option::of(address()),
    ) -> UserEvent {
        UserEvent { metadata, user_id, name, email, address }
    }
}

proptest! {
    #[test]
    fn order_round_trips_through_every_format(event in order()) {
        for format in Format::ALL {
            let bytes = event.encode(format).map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
            let back = OrderEvent::decode(&bytes, format, OrderEvent::SCHEMA_VERSION)
                .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
            prop_assert_eq!(&back, &event, "format {}", format);
        }
    }

    #[test]
    fn user_round_trips_through_every_format(event in user()) {
        for format in Format::ALL {
            let bytes = event.encode(format).map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
            let back = UserEvent::decode(&bytes, format, UserEvent::SCHEMA_VERSION)
                .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
            prop_assert_eq!(&back, &event, "format {}", format);
        }
    }
}

#[test]
fn content_type_selects_the_format_and_rejects_unknown_ones() {
    for format in Format::ALL {
        assert_eq!(Format::from_content_type(format.content_type()), Ok(format));
    }
    assert_eq!(
        Format::from_content_type("application/json; charset=utf-8"),
        Ok(Format::Json)
    );
    assert!(Format::from_content_type("text/plain").is_err());
    assert_eq!("PROTOBUF".parse::<Format>().ok(), Some(Format::Protobuf));
    let err = "xml".parse::<Format>().expect_err("xml is no format");
    assert!(err.to_string().contains("json, protobuf or avro"), "{err}");
}

#[test]
fn avro_decoder_refuses_an_unknown_writer_version_and_empty_values() {
    let err = OrderEvent::decode(b"\x02", Format::Avro, 9).expect_err("no v9 schema");
    assert!(err.to_string().contains("schema version 9"), "{err}");
    assert_eq!(
        OrderEvent::decode(b"", Format::Json, 2),
        Err(contract::DecodeError::Empty)
    );
}

#[test]
fn json_decode_error_names_the_field_path() {
    let err = OrderEvent::decode(br#"{"metadata": {"event_id": 5}}"#, Format::Json, 2)
        .expect_err("event_id must be a string");
    match err {
        contract::DecodeError::Json { path, .. } => assert_eq!(path, "metadata.event_id"),
        other => panic!("expected a JSON error, got {other:?}"),
    }
}
