//! An order's life after its creation: payment, shipment, delivery and
//! cancellation, each a fact in the past tense ([`OrderChange`], one event
//! type per change), and the full state of the order after each applied
//! change ([`OrderState`], the value of the compacted `orders-state`
//! topic).
//!
//! The contract names the statuses and the data of each change; which
//! change may follow which is decided where the state lives, by the
//! consumer.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{Customer, EventMetadata, OrderItem, Totals, ORDER_CREATED};
use crate::validation::{self, ValidationErrors};

/// `event_type` of a payment received for an order.
pub const ORDER_PAID: &str = "order.paid";
/// `event_type` of an order handed to a carrier.
pub const ORDER_SHIPPED: &str = "order.shipped";
/// `event_type` of an order delivered to the customer.
pub const ORDER_DELIVERED: &str = "order.delivered";
/// `event_type` of an order cancelled before it shipped.
pub const ORDER_CANCELLED: &str = "order.cancelled";
/// `event_type` of a full-state message on `orders-state`.
pub const ORDER_STATE: &str = "order.state";

/// Schema version written by this build for order changes.
pub const ORDER_CHANGE_SCHEMA_VERSION: u32 = 1;
/// Schema version written by this build for order states.
pub const ORDER_STATE_SCHEMA_VERSION: u32 = 1;

/// Longest payment reference, carrier name or tracking number.
pub const MAX_REFERENCE: usize = 64;
/// Longest free-text note (a cancellation's, a delivery's recipient).
pub const MAX_NOTE: usize = 500;
/// Most history entries a state holds (one per status an order can pass
/// through: created, paid, shipped, delivered).
pub const MAX_HISTORY: usize = 8;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted and stored; nothing paid yet.
    Created,
    /// Paid in full.
    Paid,
    /// Handed to a carrier.
    Shipped,
    /// Delivered: final.
    Delivered,
    /// Cancelled: final.
    Cancelled,
}

impl OrderStatus {
    /// Every status, in the order of a life that ends in delivery, then
    /// cancelled.
    pub const ALL: [OrderStatus; 5] = [
        OrderStatus::Created,
        OrderStatus::Paid,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Cancelled,
    ];

    /// The wire name (JSON, Avro, the database).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// The event type that brings an order to this status.
    pub fn event_type(self) -> &'static str {
        match self {
            Self::Created => ORDER_CREATED,
            Self::Paid => ORDER_PAID,
            Self::Shipped => ORDER_SHIPPED,
            Self::Delivered => ORDER_DELIVERED,
            Self::Cancelled => ORDER_CANCELLED,
        }
    }

    /// The status an event of `event_type` brings an order to.
    pub fn of_event_type(event_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.event_type() == event_type)
    }

    /// Whether nothing can follow it.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Cancelled)
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`OrderStatus`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown order status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for OrderStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, UnknownStatus> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(64).collect()))
    }
}

/// Why an order was cancelled: a closed set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    /// The customer asked.
    CustomerRequest,
    /// The payment failed or was withdrawn.
    PaymentFailed,
    /// An item cannot be supplied.
    OutOfStock,
    /// The order looks fraudulent.
    FraudSuspected,
    /// Another reason, told in the note.
    Other,
}

impl CancellationReason {
    /// Every reason.
    pub const ALL: [CancellationReason; 5] = [
        CancellationReason::CustomerRequest,
        CancellationReason::PaymentFailed,
        CancellationReason::OutOfStock,
        CancellationReason::FraudSuspected,
        CancellationReason::Other,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CustomerRequest => "customer_request",
            Self::PaymentFailed => "payment_failed",
            Self::OutOfStock => "out_of_stock",
            Self::FraudSuspected => "fraud_suspected",
            Self::Other => "other",
        }
    }

    /// The reason named `name`.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// A payment received for an order: its amount must be the order's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// The payment provider's reference.
    pub reference: String,
    /// Exact amount paid.
    #[serde(with = "crate::money::text")]
    pub amount: Decimal,
    /// ISO 4217 code of the amount.
    pub currency: String,
}

/// An order handed to a carrier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shipment {
    /// The carrier's name.
    pub carrier: String,
    /// The carrier's tracking number.
    pub tracking_number: String,
}

/// An order delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Who took the parcel, if the carrier said.
    #[serde(default)]
    pub received_by: Option<String>,
}

/// An order cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cancellation {
    /// Why.
    pub reason: CancellationReason,
    /// More words, if any.
    #[serde(default)]
    pub note: Option<String>,
}

/// One change of an order's life, with its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// `order.paid`.
    Payment(Payment),
    /// `order.shipped`.
    Shipment(Shipment),
    /// `order.delivered`.
    Delivery(Delivery),
    /// `order.cancelled`.
    Cancellation(Cancellation),
}

impl Change {
    /// The status it brings an order to.
    pub fn target(&self) -> OrderStatus {
        match self {
            Change::Payment(_) => OrderStatus::Paid,
            Change::Shipment(_) => OrderStatus::Shipped,
            Change::Delivery(_) => OrderStatus::Delivered,
            Change::Cancellation(_) => OrderStatus::Cancelled,
        }
    }

    /// Its event type.
    pub fn event_type(&self) -> &'static str {
        self.target().event_type()
    }

    /// The name of its resource under `/orders/{id}/` and of its field in
    /// the encodings: `payment`, `shipment`, `delivery`, `cancellation`.
    pub fn name(&self) -> &'static str {
        match self {
            Change::Payment(_) => "payment",
            Change::Shipment(_) => "shipment",
            Change::Delivery(_) => "delivery",
            Change::Cancellation(_) => "cancellation",
        }
    }
}

/// A change of an order, as published on the orders topic (keyed by
/// `order_id`, so it follows the order's creation on its partition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderChange {
    /// About the event itself; `event_type` is the change's.
    pub metadata: EventMetadata,
    /// The order changed.
    #[serde(with = "crate::model::uuid_text")]
    pub order_id: Uuid,
    /// The version of the order the client saw (`If-Match`): the change
    /// applies only to that version.
    #[serde(default)]
    pub expected_version: Option<u32>,
    /// What changed.
    pub change: Change,
}

/// One step of an order's history, as a state carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The version the step made.
    pub version: u32,
    /// The status it reached.
    pub status: OrderStatus,
    /// The event applied.
    #[serde(with = "crate::model::uuid_text")]
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// When it was accepted.
    pub occurred_at: DateTime<Utc>,
}

/// The full state of an order after a version was applied: what a billing
/// or shipping service needs without calling back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    /// About this message; its event id is [`state_event_id`].
    pub metadata: EventMetadata,
    /// The order, and the message key.
    #[serde(with = "crate::model::uuid_text")]
    pub order_id: Uuid,
    /// 1 at creation, one more per applied change.
    pub version: u32,
    /// Where the order is.
    pub status: OrderStatus,
    /// The customer, in full.
    pub customer: Customer,
    /// The items, in full (never more than [`crate::model::MAX_ITEMS`]
    /// are read).
    #[serde(deserialize_with = "crate::model::bounded_items")]
    pub items: Vec<OrderItem>,
    /// Totals.
    pub totals: Totals,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// The promotion code applied at creation.
    #[serde(default)]
    pub promotion_code: Option<String>,
    /// The payment, once paid.
    #[serde(default)]
    pub payment: Option<Payment>,
    /// The shipment, once shipped.
    #[serde(default)]
    pub shipment: Option<Shipment>,
    /// The delivery, once delivered.
    #[serde(default)]
    pub delivery: Option<Delivery>,
    /// The cancellation, once cancelled.
    #[serde(default)]
    pub cancellation: Option<Cancellation>,
    /// Every applied step, oldest first (never more than [`MAX_HISTORY`]
    /// are read).
    #[serde(deserialize_with = "bounded_history")]
    pub history: Vec<HistoryEntry>,
    /// When the latest applied step was accepted.
    pub updated_at: DateTime<Utc>,
}

/// Reads at most [`MAX_HISTORY`] history entries, in every encoding.
fn bounded_history<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<HistoryEntry>, D::Error> {
    crate::model::bounded(d, MAX_HISTORY)
}

/// The event id of the state message of `order_id` at `version`: the same
/// on every publication of it, so a reader can tell a copy.
pub fn state_event_id(order_id: Uuid, version: u32) -> Uuid {
    Uuid::new_v5(
        &STATE_NAMESPACE,
        format!("{ORDER_STATE}:{order_id}:{version}").as_bytes(),
    )
}

/// The UUID namespace of [`state_event_id`].
const STATE_NAMESPACE: Uuid = Uuid::from_u128(0x6f72_6465_722d_7374_6174_652d_7631_0001);

/// Every rule of a change's data, as the HTTP edge and the consumer check
/// it; paths are relative to the change (`payment.amount`).
pub fn validate_change(errors: &mut ValidationErrors, change: &Change) {
    match change {
        Change::Payment(p) => {
            validation::text(errors, "payment.reference", &p.reference, MAX_REFERENCE);
            let exponent = validation::currency(errors, "payment.currency", &p.currency);
            if p.amount <= Decimal::ZERO {
                errors.add("payment.amount", "must be greater than 0");
            } else {
                validation::scale(errors, "payment.amount", p.amount, exponent);
            }
        }
        Change::Shipment(s) => {
            validation::text(errors, "shipment.carrier", &s.carrier, MAX_REFERENCE);
            validation::text(
                errors,
                "shipment.tracking_number",
                &s.tracking_number,
                MAX_REFERENCE,
            );
        }
        Change::Delivery(d) => {
            if let Some(who) = &d.received_by {
                validation::text(errors, "delivery.received_by", who, MAX_NOTE);
            }
        }
        Change::Cancellation(c) => {
            if let Some(note) = &c.note {
                validation::text(errors, "cancellation.note", note, MAX_NOTE);
            }
        }
    }
}

/// Every rule of an order change as the consumer reads it.
pub fn order_change(e: &OrderChange) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    validation::metadata(
        &mut errors,
        &e.metadata,
        e.change.event_type(),
        ORDER_CHANGE_SCHEMA_VERSION,
    );
    if e.expected_version == Some(0) {
        errors.add("expected_version", "must be at least 1");
    }
    validate_change(&mut errors, &e.change);
    errors.into_result(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_reached_by_its_own_event_type() {
        for status in OrderStatus::ALL {
            assert_eq!(
                OrderStatus::of_event_type(status.event_type()),
                Some(status)
            );
            assert_eq!(status.as_str().parse::<OrderStatus>(), Ok(status));
            let json = serde_json::to_string(&status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
        assert!("Paid".parse::<OrderStatus>().is_err());
        assert_eq!(OrderStatus::of_event_type("order.refunded"), None);
    }

    #[test]
    fn a_change_is_written_tagged_by_its_name() {
        let change = Change::Cancellation(Cancellation {
            reason: CancellationReason::OutOfStock,
            note: None,
        });
        let json = serde_json::to_value(&change).unwrap();
        assert_eq!(json["cancellation"]["reason"], "out_of_stock");
        assert_eq!(change.event_type(), ORDER_CANCELLED);
        for reason in CancellationReason::ALL {
            assert_eq!(CancellationReason::named(reason.as_str()), Some(reason));
        }
    }

    #[test]
    fn payments_are_exact_in_their_currency() {
        let pay = |amount: &str, currency: &str| {
            let mut errors = ValidationErrors::default();
            validate_change(
                &mut errors,
                &Change::Payment(Payment {
                    reference: "pay-1".into(),
                    amount: amount.parse().unwrap(),
                    currency: currency.into(),
                }),
            );
            errors
        };
        assert!(pay("39.98", "EUR").0.is_empty());
        assert!(pay("39.985", "EUR").has("payment.amount"));
        assert!(pay("1.5", "JPY").has("payment.amount"));
        assert!(pay("0", "EUR").has("payment.amount"));
        assert!(pay("10", "XXX").has("payment.currency"));
    }

    #[test]
    fn state_event_ids_differ_by_version_and_repeat_by_version() {
        let order = Uuid::from_u128(7);
        assert_eq!(state_event_id(order, 2), state_event_id(order, 2));
        assert_ne!(state_event_id(order, 2), state_event_id(order, 3));
    }
}
