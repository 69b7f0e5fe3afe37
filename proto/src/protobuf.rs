//! Protobuf encoding: the prost types generated from `protobuf/` and their
//! conversions to and from the model. Readers always decode with the current
//! types; protobuf's wire rules make older and newer data readable.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::DecodeError;
use crate::model::{
    Address, Customer, EventMetadata, InventoryStatus, OrderEvent, OrderItem, Totals, UserEvent,
};

/// Schema version 1 (frozen; orders without `promotion_code`).
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/pubsubkafka.events.v1.rs"));
}

/// Schema version 2 (current).
#[allow(missing_docs, clippy::all)]
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/pubsubkafka.events.v2.rs"));
}

use v2 as pb;

fn field(path: &str, reason: impl Into<String>) -> DecodeError {
    DecodeError::Field {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn uuid(path: &str, value: &str) -> Result<Uuid, DecodeError> {
    Uuid::parse_str(value).map_err(|_| field(path, "must be a UUID"))
}

fn decimal(path: &str, value: &str) -> Result<Decimal, DecodeError> {
    crate::money::parse(value).map_err(|e| field(path, e.to_string()))
}

/// Field number of `OrderEvent.items` in every version.
const ITEMS_FIELD: u64 = 4;

/// Counts the `items` of an encoded `OrderEvent` from its top-level fields,
/// before prost builds one: an empty item costs two bytes on the wire and a
/// few hundred in memory, so an unbounded count is a cheap way to make the
/// reader allocate far more than it was sent.
pub fn check_item_count(mut bytes: &[u8]) -> Result<(), DecodeError> {
    let malformed = |what: &str| DecodeError::Protobuf(format!("malformed message: {what}"));
    let mut items = 0usize;
    while !bytes.is_empty() {
        let key = varint(&mut bytes).ok_or_else(|| malformed("bad field key"))?;
        let length = match key & 7 {
            0 => varint(&mut bytes).map(|_| 0),
            1 => Some(8),
            2 => varint(&mut bytes).and_then(|n| usize::try_from(n).ok()),
            5 => Some(4),
            _ => None,
        }
        .ok_or_else(|| malformed("bad wire type or length"))?;
        bytes = bytes
            .get(length..)
            .ok_or_else(|| malformed("a field runs past the end"))?;
        if key >> 3 == ITEMS_FIELD {
            items += 1;
            if items > crate::model::MAX_ITEMS {
                return Err(DecodeError::Field {
                    path: "items".into(),
                    reason: format!(
                        "more than {} items: not an order this contract carries",
                        crate::model::MAX_ITEMS
                    ),
                });
            }
        }
    }
    Ok(())
}

/// A base-128 varint of at most ten bytes, consumed from `bytes`.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (n, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * n);
        if byte & 0x80 == 0 {
            *bytes = &bytes[n + 1..];
            return Some(value);
        }
    }
    None
}

fn timestamp(path: &str, value: &str) -> Result<DateTime<Utc>, DecodeError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| field(path, format!("not an RFC 3339 timestamp: {e}")))
}

fn required<T>(path: &str, value: Option<T>) -> Result<T, DecodeError> {
    value.ok_or_else(|| field(path, "is required"))
}

impl From<&EventMetadata> for pb::EventMetadata {
    fn from(m: &EventMetadata) -> Self {
        Self {
            event_id: m.event_id.to_string(),
            event_type: m.event_type.clone(),
            schema_version: m.schema_version,
            occurred_at: m
                .occurred_at
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            producer: m.producer.clone(),
            correlation_id: m.correlation_id.clone(),
            trace_id: m.trace_id.clone(),
            span_id: m.span_id.clone(),
        }
    }
}

impl TryFrom<pb::EventMetadata> for EventMetadata {
    type Error = DecodeError;
    fn try_from(m: pb::EventMetadata) -> Result<Self, DecodeError> {
        Ok(Self {
            event_id: uuid("metadata.event_id", &m.event_id)?,
            event_type: m.event_type,
            schema_version: m.schema_version,
            occurred_at: timestamp("metadata.occurred_at", &m.occurred_at)?,
            producer: m.producer,
            correlation_id: m.correlation_id,
            trace_id: m.trace_id,
            span_id: m.span_id,
        })
    }
}

impl From<&Address> for pb::Address {
    fn from(a: &Address) -> Self {
        Self {
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

impl From<pb::Address> for Address {
    fn from(a: pb::Address) -> Self {
        Self {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

impl From<InventoryStatus> for pb::InventoryStatus {
    fn from(s: InventoryStatus) -> Self {
        match s {
            InventoryStatus::Unknown => Self::Unknown,
            InventoryStatus::InStock => Self::InStock,
            InventoryStatus::LowStock => Self::LowStock,
            InventoryStatus::Backordered => Self::Backordered,
        }
    }
}

/// A status number this reader does not know (written by a newer schema) reads
/// as `Unknown`, as Avro's enum default does.
fn inventory_status(value: i32) -> InventoryStatus {
    match pb::InventoryStatus::try_from(value) {
        Ok(pb::InventoryStatus::InStock) => InventoryStatus::InStock,
        Ok(pb::InventoryStatus::LowStock) => InventoryStatus::LowStock,
        Ok(pb::InventoryStatus::Backordered) => InventoryStatus::Backordered,
        Ok(pb::InventoryStatus::Unknown) | Err(_) => InventoryStatus::Unknown,
    }
}

impl From<&OrderEvent> for pb::OrderEvent {
    fn from(e: &OrderEvent) -> Self {
        Self {
            metadata: Some((&e.metadata).into()),
            order_id: e.order_id.to_string(),
            customer: Some(pb::Customer {
                id: e.customer.id.clone(),
                name: e.customer.name.clone(),
                email: e.customer.email.clone(),
                address: Some((&e.customer.address).into()),
            }),
            items: e
                .items
                .iter()
                .map(|i| pb::OrderItem {
                    sku: i.sku.clone(),
                    name: i.name.clone(),
                    quantity: i.quantity,
                    unit_price: i.unit_price.to_string(),
                    line_total: i.line_total.to_string(),
                    inventory_status: pb::InventoryStatus::from(i.inventory_status) as i32,
                })
                .collect(),
            totals: Some(pb::Totals {
                subtotal: e.totals.subtotal.to_string(),
                total: e.totals.total.to_string(),
                item_count: e.totals.item_count,
            }),
            currency: e.currency.clone(),
            promotion_code: e.promotion_code.clone(),
        }
    }
}

impl TryFrom<pb::OrderEvent> for OrderEvent {
    type Error = DecodeError;
    fn try_from(e: pb::OrderEvent) -> Result<Self, DecodeError> {
        let customer = required("customer", e.customer)?;
        let totals = required("totals", e.totals)?;
        let items = e
            .items
            .into_iter()
            .enumerate()
            .map(|(n, i)| {
                Ok(OrderItem {
                    unit_price: decimal(&format!("items[{n}].unit_price"), &i.unit_price)?,
                    line_total: decimal(&format!("items[{n}].line_total"), &i.line_total)?,
                    inventory_status: inventory_status(i.inventory_status),
                    sku: i.sku,
                    name: i.name,
                    quantity: i.quantity,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            metadata: required("metadata", e.metadata)?.try_into()?,
            order_id: uuid("order_id", &e.order_id)?,
            customer: Customer {
                id: customer.id,
                name: customer.name,
                email: customer.email,
                address: required("customer.address", customer.address)?.into(),
            },
            items,
            totals: Totals {
                subtotal: decimal("totals.subtotal", &totals.subtotal)?,
                total: decimal("totals.total", &totals.total)?,
                item_count: totals.item_count,
            },
            currency: e.currency,
            promotion_code: e.promotion_code,
        })
    }
}

impl From<&UserEvent> for pb::UserEvent {
    fn from(e: &UserEvent) -> Self {
        Self {
            metadata: Some((&e.metadata).into()),
            user_id: e.user_id.clone(),
            name: e.name.clone(),
            email: e.email.clone(),
            address: e.address.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<pb::UserEvent> for UserEvent {
    type Error = DecodeError;
    fn try_from(e: pb::UserEvent) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: required("metadata", e.metadata)?.try_into()?,
            user_id: e.user_id,
            name: e.name,
            email: e.email,
            address: e.address.map(Into::into),
        })
    }
}
