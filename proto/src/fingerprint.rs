//! The content fingerprint of an event: a hash of what the customer asked
//! for, without what the pipeline added (ids, times, trace context, derived
//! totals). Two requests under one `Idempotency-Key` (or one client
//! `order_id` / `user_id`) with the same body have the same fingerprint, so
//! the second is a harmless retry; with different bodies the fingerprints
//! differ, and the consumer records the second as a conflict instead of
//! dropping it in silence.
//!
//! The producer sends it in the `content-fingerprint` header; the consumer
//! computes it again from the decoded event (it never trusts the header
//! alone) and stores it beside the event.

use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::lifecycle::{Change, OrderChange};
use crate::model::{Address, InventoryStatus, OrderEvent, UserEvent};

/// Version of the canonical form below; part of every fingerprint, so a
/// future form can never be mistaken for this one.
const VERSION: &str = "v1";

/// `v1:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The text form (as in the header and the database).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(canonical: &impl Serialize) -> Self {
        // The canonical JSON goes straight into the hash (a `Sha256` is an
        // `io::Write`), not into a buffer first. Serialising plain structs
        // of strings and integers cannot fail.
        let mut hash = Sha256::new();
        let _ = serde_json::to_writer(&mut hash, canonical);
        Self(format!("{VERSION}:{:x}", hash.finalize()))
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Amounts by value: `"5.0"` and `"5.00"` are one price.
fn amount(d: Decimal) -> String {
    d.normalize().to_string()
}

#[derive(Serialize)]
struct CanonicalItem<'a> {
    sku: &'a str,
    name: &'a str,
    quantity: u32,
    unit_price: String,
    inventory_status: InventoryStatus,
}

#[derive(Serialize)]
struct CanonicalOrder<'a> {
    kind: &'static str,
    customer_id: &'a str,
    name: &'a str,
    email: &'a str,
    address: &'a Address,
    items: Vec<CanonicalItem<'a>>,
    currency: &'a str,
    promotion_code: Option<&'a str>,
}

#[derive(Serialize)]
struct CanonicalUser<'a> {
    kind: &'static str,
    name: &'a str,
    email: &'a str,
    address: Option<&'a Address>,
}

/// The fingerprint of an order's content.
pub fn order(e: &OrderEvent) -> Fingerprint {
    Fingerprint::of(&CanonicalOrder {
        kind: "order",
        customer_id: &e.customer.id,
        name: &e.customer.name,
        email: &e.customer.email,
        address: &e.customer.address,
        items: e
            .items
            .iter()
            .map(|i| CanonicalItem {
                sku: &i.sku,
                name: &i.name,
                quantity: i.quantity,
                unit_price: amount(i.unit_price),
                inventory_status: i.inventory_status,
            })
            .collect(),
        currency: &e.currency,
        promotion_code: e.promotion_code.as_deref(),
    })
}

#[derive(Serialize)]
struct CanonicalChange<'a> {
    kind: &'static str,
    order_id: String,
    expected_version: Option<u32>,
    change: &'static str,
    data: CanonicalData<'a>,
}

/// A change's data, amounts by value.
#[derive(Serialize)]
#[serde(untagged)]
enum CanonicalData<'a> {
    Payment {
        reference: &'a str,
        amount: String,
        currency: &'a str,
    },
    Other(&'a Change),
}

/// The fingerprint of an order change's content: the order, the change
/// with its data (amounts by value) and the version it expects.
pub fn change(e: &OrderChange) -> Fingerprint {
    let data = match &e.change {
        Change::Payment(p) => CanonicalData::Payment {
            reference: &p.reference,
            amount: amount(p.amount),
            currency: &p.currency,
        },
        other => CanonicalData::Other(other),
    };
    Fingerprint::of(&CanonicalChange {
        kind: "order-change",
        order_id: e.order_id.to_string(),
        expected_version: e.expected_version,
        change: e.change.name(),
        data,
    })
}

/// The fingerprint of a user's content.
pub fn user(e: &UserEvent) -> Fingerprint {
    Fingerprint::of(&CanonicalUser {
        kind: "user",
        name: &e.name,
        email: &e.email,
        address: e.address.as_ref(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Customer, EventMetadata, OrderItem, Totals};
    use chrono::Utc;
    use uuid::Uuid;

    fn order_event(price: Decimal, quantity: u32) -> OrderEvent {
        OrderEvent {
            metadata: EventMetadata {
                event_id: Uuid::new_v4(),
                event_type: "order.created".into(),
                schema_version: 2,
                occurred_at: Utc::now(),
                producer: "p".into(),
                correlation_id: Uuid::new_v4().to_string(),
                trace_id: None,
                span_id: None,
            },
            order_id: Uuid::new_v4(),
            customer: Customer {
                id: "c-1".into(),
                name: "Ada".into(),
                email: "ada@example.com".into(),
                address: Address {
                    line1: "1 Road".into(),
                    line2: None,
                    city: "London".into(),
                    postal_code: "N1".into(),
                    country: "GB".into(),
                },
            },
            items: vec![OrderItem {
                sku: "S".into(),
                name: "W".into(),
                quantity,
                unit_price: price,
                line_total: price * Decimal::from(quantity),
                inventory_status: InventoryStatus::Unknown,
            }],
            totals: Totals {
                subtotal: price,
                total: price,
                item_count: quantity,
            },
            currency: "EUR".into(),
            promotion_code: None,
        }
    }

    /// Fingerprints are stored and compared across releases: the form of
    /// `v1` never changes (a new form gets a new version).
    #[test]
    fn the_v1_form_is_stable() {
        let fingerprint = order(&order_event(Decimal::new(1999, 2), 2));
        assert_eq!(
            fingerprint.as_str(),
            "v1:f7992c79282e23b058fd22513d4c735aec27bad5f843de527d69bc60526a5761"
        );
    }

    #[test]
    fn same_content_same_fingerprint_whatever_the_ids_and_times() {
        let a = order(&order_event(Decimal::new(50, 1), 1));
        let b = order(&order_event(Decimal::new(500, 2), 1));
        assert_eq!(a, b, "5.0 and 5.00 are one price; ids and times differ");
        assert!(a.as_str().starts_with("v1:") && a.as_str().len() == 67);
        assert_ne!(a, order(&order_event(Decimal::new(50, 1), 2)));
    }

    fn payment(amount: Decimal, reference: &str, expected: Option<u32>) -> OrderChange {
        OrderChange {
            metadata: EventMetadata {
                event_id: Uuid::new_v4(),
                event_type: "order.paid".into(),
                schema_version: 1,
                occurred_at: Utc::now(),
                producer: "p".into(),
                correlation_id: Uuid::new_v4().to_string(),
                trace_id: None,
                span_id: None,
            },
            order_id: Uuid::from_u128(7),
            expected_version: expected,
            change: Change::Payment(crate::lifecycle::Payment {
                reference: reference.into(),
                amount,
                currency: "EUR".into(),
            }),
        }
    }

    #[test]
    fn a_change_is_fingerprinted_by_its_data_amounts_by_value_and_its_version() {
        let a = change(&payment(Decimal::new(3998, 2), "r", None));
        assert_eq!(
            a,
            change(&payment(Decimal::new(39980, 3), "r", None)),
            "39.98 and 39.980 are one amount; ids and times differ"
        );
        assert_ne!(a, change(&payment(Decimal::new(3998, 2), "s", None)));
        assert_ne!(a, change(&payment(Decimal::new(3999, 2), "r", None)));
        assert_ne!(a, change(&payment(Decimal::new(3998, 2), "r", Some(1))));
        let mut shipped = payment(Decimal::ONE, "r", None);
        shipped.change = Change::Shipment(crate::lifecycle::Shipment {
            carrier: "c".into(),
            tracking_number: "t".into(),
        });
        assert_ne!(a, change(&shipped));
    }
}
