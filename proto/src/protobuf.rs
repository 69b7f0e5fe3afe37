//! Protobuf encoding: the prost types generated from `protobuf/` and their
//! conversions to and from the model. Readers always decode with the current
//! types; protobuf's wire rules make older and newer data readable.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::error::DecodeError;
use crate::lifecycle::{
    Cancellation, CancellationReason, Change, Delivery, HistoryEntry, OrderChange, OrderState,
    OrderStatus, Payment, Shipment,
};
use crate::model::{
    Address, Customer, EventMetadata, InventoryStatus, OrderEvent, OrderItem, Totals, UserEvent,
};

/// Schema version 1 (frozen; orders without `promotion_code`).
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/pubsubkafka.events.v1.rs"));
}

/// Schema version 2 (frozen; orders with `promotion_code`, no lifecycle).
#[allow(missing_docs, clippy::all)]
pub mod v2 {
    include!(concat!(env!("OUT_DIR"), "/pubsubkafka.events.v2.rs"));
}

/// The current package: every v2 message unchanged, plus the order's
/// changes ([`v3::OrderChange`]) and its full state ([`v3::OrderState`]).
#[allow(missing_docs, clippy::all)]
pub mod v3 {
    include!(concat!(env!("OUT_DIR"), "/pubsubkafka.events.v3.rs"));
}

use v3 as pb;

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

/// A repeated field of a message, and how many of it a reader takes.
pub struct RepeatedLimit {
    /// Its field number.
    pub field: u64,
    /// Its name, for the error.
    pub path: &'static str,
    /// Most elements a message may hold.
    pub limit: usize,
}

/// `OrderEvent.items`, in every version.
pub const ORDER_EVENT_LIMITS: [RepeatedLimit; 1] = [RepeatedLimit {
    field: 4,
    path: "items",
    limit: crate::model::MAX_ITEMS,
}];

/// `OrderState.items` and `OrderState.history`.
pub const ORDER_STATE_LIMITS: [RepeatedLimit; 2] = [
    RepeatedLimit {
        field: 4,
        path: "items",
        limit: crate::model::MAX_ITEMS,
    },
    RepeatedLimit {
        field: 14,
        path: "history",
        limit: crate::lifecycle::MAX_HISTORY,
    },
];

/// Counts the elements of each of `limits` from a message's top-level
/// fields, before prost builds one: an empty element costs two bytes on
/// the wire and a few hundred in memory, so an unbounded count is a cheap
/// way to make the reader allocate far more than it was sent.
pub fn check_repeated(mut bytes: &[u8], limits: &[RepeatedLimit]) -> Result<(), DecodeError> {
    let malformed = |what: &str| DecodeError::Protobuf(format!("malformed message: {what}"));
    let mut counts = vec![0usize; limits.len()];
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
        let counted = limits.iter().zip(counts.iter_mut());
        for (repeated, count) in counted.filter(|(r, _)| r.field == key >> 3) {
            *count += 1;
            if *count > repeated.limit {
                return Err(DecodeError::Field {
                    path: repeated.path.into(),
                    reason: format!(
                        "more than {} {}: not an order this contract carries",
                        repeated.limit, repeated.path
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

fn rfc3339(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
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
            occurred_at: rfc3339(&m.occurred_at),
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

impl From<&Customer> for pb::Customer {
    fn from(c: &Customer) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            address: Some((&c.address).into()),
        }
    }
}

fn customer(c: Option<pb::Customer>) -> Result<Customer, DecodeError> {
    let c = required("customer", c)?;
    Ok(Customer {
        id: c.id,
        name: c.name,
        email: c.email,
        address: required("customer.address", c.address)?.into(),
    })
}

impl From<&OrderItem> for pb::OrderItem {
    fn from(i: &OrderItem) -> Self {
        Self {
            sku: i.sku.clone(),
            name: i.name.clone(),
            quantity: i.quantity,
            unit_price: i.unit_price.to_string(),
            line_total: i.line_total.to_string(),
            inventory_status: pb::InventoryStatus::from(i.inventory_status) as i32,
        }
    }
}

fn items(items: Vec<pb::OrderItem>) -> Result<Vec<OrderItem>, DecodeError> {
    items
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
        .collect()
}

impl From<&Totals> for pb::Totals {
    fn from(t: &Totals) -> Self {
        Self {
            subtotal: t.subtotal.to_string(),
            total: t.total.to_string(),
            item_count: t.item_count,
        }
    }
}

fn totals(t: Option<pb::Totals>) -> Result<Totals, DecodeError> {
    let t = required("totals", t)?;
    Ok(Totals {
        subtotal: decimal("totals.subtotal", &t.subtotal)?,
        total: decimal("totals.total", &t.total)?,
        item_count: t.item_count,
    })
}

impl From<&OrderEvent> for pb::OrderEvent {
    fn from(e: &OrderEvent) -> Self {
        Self {
            metadata: Some((&e.metadata).into()),
            order_id: e.order_id.to_string(),
            customer: Some((&e.customer).into()),
            items: e.items.iter().map(Into::into).collect(),
            totals: Some((&e.totals).into()),
            currency: e.currency.clone(),
            promotion_code: e.promotion_code.clone(),
        }
    }
}

impl TryFrom<pb::OrderEvent> for OrderEvent {
    type Error = DecodeError;
    fn try_from(e: pb::OrderEvent) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: required("metadata", e.metadata)?.try_into()?,
            order_id: uuid("order_id", &e.order_id)?,
            customer: customer(e.customer)?,
            items: items(e.items)?,
            totals: totals(e.totals)?,
            currency: e.currency,
            promotion_code: e.promotion_code,
        })
    }
}

impl From<OrderStatus> for pb::OrderStatus {
    fn from(s: OrderStatus) -> Self {
        match s {
            OrderStatus::Created => Self::Created,
            OrderStatus::Paid => Self::Paid,
            OrderStatus::Shipped => Self::Shipped,
            OrderStatus::Delivered => Self::Delivered,
            OrderStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// A status is refused when absent (`UNSPECIFIED`) and when it is a number
/// this reader does not know: no status stands for another.
fn order_status(path: &str, value: i32) -> Result<OrderStatus, DecodeError> {
    match pb::OrderStatus::try_from(value) {
        Ok(pb::OrderStatus::Created) => Ok(OrderStatus::Created),
        Ok(pb::OrderStatus::Paid) => Ok(OrderStatus::Paid),
        Ok(pb::OrderStatus::Shipped) => Ok(OrderStatus::Shipped),
        Ok(pb::OrderStatus::Delivered) => Ok(OrderStatus::Delivered),
        Ok(pb::OrderStatus::Cancelled) => Ok(OrderStatus::Cancelled),
        Ok(pb::OrderStatus::Unspecified) => Err(field(path, "is required")),
        Err(_) => Err(field(path, "is not a status this reader knows")),
    }
}

impl From<CancellationReason> for pb::CancellationReason {
    fn from(r: CancellationReason) -> Self {
        match r {
            CancellationReason::CustomerRequest => Self::CustomerRequest,
            CancellationReason::PaymentFailed => Self::PaymentFailed,
            CancellationReason::OutOfStock => Self::OutOfStock,
            CancellationReason::FraudSuspected => Self::FraudSuspected,
            CancellationReason::Other => Self::Other,
        }
    }
}

/// An absent reason (`UNSPECIFIED`) is refused; a reason number this
/// reader does not know (written by a newer schema) reads as `Other`, as
/// the Avro enum's default does.
fn cancellation_reason(value: i32) -> Result<CancellationReason, DecodeError> {
    match pb::CancellationReason::try_from(value) {
        Ok(pb::CancellationReason::CustomerRequest) => Ok(CancellationReason::CustomerRequest),
        Ok(pb::CancellationReason::PaymentFailed) => Ok(CancellationReason::PaymentFailed),
        Ok(pb::CancellationReason::OutOfStock) => Ok(CancellationReason::OutOfStock),
        Ok(pb::CancellationReason::FraudSuspected) => Ok(CancellationReason::FraudSuspected),
        Ok(pb::CancellationReason::Other) | Err(_) => Ok(CancellationReason::Other),
        Ok(pb::CancellationReason::Unspecified) => Err(field("cancellation.reason", "is required")),
    }
}

impl From<&Payment> for pb::Payment {
    fn from(p: &Payment) -> Self {
        Self {
            reference: p.reference.clone(),
            amount: p.amount.to_string(),
            currency: p.currency.clone(),
        }
    }
}

impl TryFrom<pb::Payment> for Payment {
    type Error = DecodeError;
    fn try_from(p: pb::Payment) -> Result<Self, DecodeError> {
        Ok(Self {
            amount: decimal("payment.amount", &p.amount)?,
            reference: p.reference,
            currency: p.currency,
        })
    }
}

impl From<&Shipment> for pb::Shipment {
    fn from(s: &Shipment) -> Self {
        Self {
            carrier: s.carrier.clone(),
            tracking_number: s.tracking_number.clone(),
        }
    }
}

impl From<pb::Shipment> for Shipment {
    fn from(s: pb::Shipment) -> Self {
        Self {
            carrier: s.carrier,
            tracking_number: s.tracking_number,
        }
    }
}

impl From<&Delivery> for pb::Delivery {
    fn from(d: &Delivery) -> Self {
        Self {
            received_by: d.received_by.clone(),
        }
    }
}

impl From<pb::Delivery> for Delivery {
    fn from(d: pb::Delivery) -> Self {
        Self {
            received_by: d.received_by,
        }
    }
}

impl From<&Cancellation> for pb::Cancellation {
    fn from(c: &Cancellation) -> Self {
        Self {
            reason: pb::CancellationReason::from(c.reason) as i32,
            note: c.note.clone(),
        }
    }
}

impl TryFrom<pb::Cancellation> for Cancellation {
    type Error = DecodeError;
    fn try_from(c: pb::Cancellation) -> Result<Self, DecodeError> {
        Ok(Self {
            reason: cancellation_reason(c.reason)?,
            note: c.note,
        })
    }
}

impl From<&Change> for pb::order_change::Change {
    fn from(c: &Change) -> Self {
        match c {
            Change::Payment(p) => Self::Payment(p.into()),
            Change::Shipment(s) => Self::Shipment(s.into()),
            Change::Delivery(d) => Self::Delivery(d.into()),
            Change::Cancellation(c) => Self::Cancellation(c.into()),
        }
    }
}

impl TryFrom<pb::order_change::Change> for Change {
    type Error = DecodeError;
    fn try_from(c: pb::order_change::Change) -> Result<Self, DecodeError> {
        use pb::order_change::Change as Pb;
        Ok(match c {
            Pb::Payment(p) => Change::Payment(p.try_into()?),
            Pb::Shipment(s) => Change::Shipment(s.into()),
            Pb::Delivery(d) => Change::Delivery(d.into()),
            Pb::Cancellation(c) => Change::Cancellation(c.try_into()?),
        })
    }
}

impl From<&OrderChange> for pb::OrderChange {
    fn from(e: &OrderChange) -> Self {
        Self {
            metadata: Some((&e.metadata).into()),
            order_id: e.order_id.to_string(),
            expected_version: e.expected_version,
            change: Some((&e.change).into()),
        }
    }
}

impl TryFrom<pb::OrderChange> for OrderChange {
    type Error = DecodeError;
    fn try_from(e: pb::OrderChange) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: required("metadata", e.metadata)?.try_into()?,
            order_id: uuid("order_id", &e.order_id)?,
            expected_version: e.expected_version,
            change: required("change", e.change)?.try_into()?,
        })
    }
}

impl From<&HistoryEntry> for pb::HistoryEntry {
    fn from(h: &HistoryEntry) -> Self {
        Self {
            version: h.version,
            status: pb::OrderStatus::from(h.status) as i32,
            event_id: h.event_id.to_string(),
            event_type: h.event_type.clone(),
            occurred_at: rfc3339(&h.occurred_at),
        }
    }
}

fn history(history: Vec<pb::HistoryEntry>) -> Result<Vec<HistoryEntry>, DecodeError> {
    history
        .into_iter()
        .enumerate()
        .map(|(n, h)| {
            Ok(HistoryEntry {
                version: h.version,
                status: order_status(&format!("history[{n}].status"), h.status)?,
                event_id: uuid(&format!("history[{n}].event_id"), &h.event_id)?,
                event_type: h.event_type,
                occurred_at: timestamp(&format!("history[{n}].occurred_at"), &h.occurred_at)?,
            })
        })
        .collect()
}

impl From<&OrderState> for pb::OrderState {
    fn from(e: &OrderState) -> Self {
        Self {
            metadata: Some((&e.metadata).into()),
            order_id: e.order_id.to_string(),
            customer: Some((&e.customer).into()),
            items: e.items.iter().map(Into::into).collect(),
            totals: Some((&e.totals).into()),
            currency: e.currency.clone(),
            promotion_code: e.promotion_code.clone(),
            version: e.version,
            status: pb::OrderStatus::from(e.status) as i32,
            payment: e.payment.as_ref().map(Into::into),
            shipment: e.shipment.as_ref().map(Into::into),
            delivery: e.delivery.as_ref().map(Into::into),
            cancellation: e.cancellation.as_ref().map(Into::into),
            history: e.history.iter().map(Into::into).collect(),
            updated_at: rfc3339(&e.updated_at),
        }
    }
}

impl TryFrom<pb::OrderState> for OrderState {
    type Error = DecodeError;
    fn try_from(e: pb::OrderState) -> Result<Self, DecodeError> {
        Ok(Self {
            metadata: required("metadata", e.metadata)?.try_into()?,
            order_id: uuid("order_id", &e.order_id)?,
            version: e.version,
            status: order_status("status", e.status)?,
            customer: customer(e.customer)?,
            items: items(e.items)?,
            totals: totals(e.totals)?,
            currency: e.currency,
            promotion_code: e.promotion_code,
            payment: e.payment.map(TryInto::try_into).transpose()?,
            shipment: e.shipment.map(Into::into),
            delivery: e.delivery.map(Into::into),
            cancellation: e.cancellation.map(TryInto::try_into).transpose()?,
            history: history(e.history)?,
            updated_at: timestamp("updated_at", &e.updated_at)?,
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
