//! Every event survives every encoding unchanged.

use chrono::{DateTime, TimeZone, Utc};
use contract::lifecycle::{
    Cancellation, CancellationReason, Delivery, HistoryEntry, Payment, Shipment, MAX_HISTORY,
};
use contract::{
    Address, Change, Customer, EventCodec, EventMetadata, Format, InventoryStatus, OrderChange,
    OrderEvent, OrderItem, OrderState, OrderStatus, Totals, UserEvent,
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

fn order_status() -> impl Strategy<Value = OrderStatus> {
    proptest::sample::select(OrderStatus::ALL.to_vec())
}

fn payment() -> impl Strategy<Value = Payment> {
    (text(), decimal(), "[A-Z]{3}").prop_map(|(reference, amount, currency)| Payment {
        reference,
        amount,
        currency,
    })
}

fn shipment() -> impl Strategy<Value = Shipment> {
    (text(), text()).prop_map(|(carrier, tracking_number)| Shipment {
        carrier,
        tracking_number,
    })
}

fn delivery() -> impl Strategy<Value = Delivery> {
    proptest::option::of(text()).prop_map(|received_by| Delivery { received_by })
}

fn cancellation() -> impl Strategy<Value = Cancellation> {
    (
        proptest::sample::select(CancellationReason::ALL.to_vec()),
        proptest::option::of(text()),
    )
        .prop_map(|(reason, note)| Cancellation { reason, note })
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        payment().prop_map(Change::Payment),
        shipment().prop_map(Change::Shipment),
        delivery().prop_map(Change::Delivery),
        cancellation().prop_map(Change::Cancellation),
    ]
}

prop_compose! {
    fn order_change()(
        metadata in metadata(),
        id in any::<u128>(),
        expected_version in proptest::option::of(any::<u32>()),
        change in change(),
    ) -> OrderChange {
        OrderChange { metadata, order_id: Uuid::from_u128(id), expected_version, change }
    }
}

fn history_entry() -> impl Strategy<Value = HistoryEntry> {
    (
        any::<u32>(),
        order_status(),
        any::<u128>(),
        text(),
        timestamp(),
    )
        .prop_map(
            |(version, status, id, event_type, occurred_at)| HistoryEntry {
                version,
                status,
                event_id: Uuid::from_u128(id),
                event_type,
                occurred_at,
            },
        )
}

prop_compose! {
    fn order_state()(
        order in order(),
        version in any::<u32>(),
        status in order_status(),
        payment in proptest::option::of(payment()),
        shipment in proptest::option::of(shipment()),
        delivery in proptest::option::of(delivery()),
        cancellation in proptest::option::of(cancellation()),
        history in proptest::collection::vec(history_entry(), 0..=MAX_HISTORY),
        updated_at in timestamp(),
    ) -> OrderState {
        OrderState {
            metadata: order.metadata,
            order_id: order.order_id,
            version,
            status,
            customer: order.customer,
            items: order.items,
            totals: order.totals,
            currency: order.currency,
            promotion_code: order.promotion_code,
            payment,
            shipment,
            delivery,
            cancellation,
            history,
            updated_at,
        }
    }
}

/// `event` encoded in `format` and decoded again, as the current reader
/// reads what the current writer wrote.
fn round_trip<E: EventCodec>(event: &E, format: Format) -> Result<E, TestCaseError> {
    let bytes = event
        .encode(format)
        .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))?;
    E::decode(&bytes, format, E::SCHEMA_VERSION)
        .map_err(|e| TestCaseError::fail(format!("{format}: {e}")))
}

proptest! {
    #[test]
    fn order_change_round_trips_through_every_format(event in order_change()) {
        for format in Format::ALL {
            prop_assert_eq!(&round_trip(&event, format)?, &event, "format {}", format);
        }
    }

    #[test]
    fn order_state_round_trips_through_every_format(event in order_state()) {
        for format in Format::ALL {
            prop_assert_eq!(&round_trip(&event, format)?, &event, "format {}", format);
        }
    }

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
