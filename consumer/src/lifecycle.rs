//! The order state machine, where the state lives: which change may follow
//! which, at which version, and the full state an order's stored events
//! add up to ([`fold`]), which is what `orders-state` carries.
//!
//! created → paid → shipped → delivered; cancelled from created or paid;
//! nothing after delivered or cancelled. A payment must be of the order's
//! total, in its currency. Creation is version 1 and each applied change
//! adds one.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use contract::dead_letter::FailureClass;
use contract::lifecycle::{
    state_event_id, Change, HistoryEntry, OrderChange, OrderState, OrderStatus, ORDER_STATE,
    ORDER_STATE_SCHEMA_VERSION,
};
use contract::{EventMetadata, OrderEvent};

/// What the machine needs to know of a stored order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// Its status.
    pub status: OrderStatus,
    /// Its version.
    pub version: u32,
    /// What a payment must be.
    pub total: Decimal,
    /// The currency of every amount.
    pub currency: String,
    /// When its latest applied event (the creation or a change) was
    /// accepted.
    pub latest_at: DateTime<Utc>,
}

/// Why a change is refused for good. The texts name statuses, versions
/// and rules, never the change's data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No order with the change's id is stored.
    #[error("no order with this id is stored")]
    UnknownOrder,
    /// The change expects another version (`If-Match`).
    #[error("the change expects version {expected}; the order is at version {stored}")]
    VersionMismatch {
        /// What the client saw.
        expected: u32,
        /// What is stored.
        stored: u32,
    },
    /// A replayed change accepted before the order's latest applied event:
    /// applying it would put older intent over newer state.
    #[error("stale replay: the change was accepted before version {stored} of the order")]
    Stale {
        /// The stored version it is older than.
        stored: u32,
    },
    /// The status does not allow the change.
    #[error("an order that is {from} cannot become {to}")]
    NotAllowed {
        /// The stored status.
        from: OrderStatus,
        /// Where the change would take it.
        to: OrderStatus,
    },
    /// A payment that is not the order's total in its currency.
    #[error("the payment does not match the order's total and currency")]
    PaymentMismatch,
}

impl Refusal {
    /// `dlq-error-class`.
    pub fn class(&self) -> FailureClass {
        match self {
            Refusal::UnknownOrder => FailureClass::UnknownOrder,
            Refusal::VersionMismatch { .. } | Refusal::Stale { .. } => {
                FailureClass::VersionConflict
            }
            Refusal::NotAllowed { .. } | Refusal::PaymentMismatch => {
                FailureClass::InvalidTransition
            }
        }
    }
}

/// Whether the machine lets an order go from `from` to `to`.
pub fn allowed(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::*;
    matches!(
        (from, to),
        (Created, Paid)
            | (Paid, Shipped)
            | (Shipped, Delivered)
            | (Created, Cancelled)
            | (Paid, Cancelled)
    )
}

/// The status and version `change` takes `current` to, or why not.
/// `replayed`: the message came back from a dead-letter topic (it carries
/// `dlq-replay-count`), so it may be older than what is stored.
pub fn next(
    current: &Current,
    change: &OrderChange,
    replayed: bool,
) -> Result<(OrderStatus, u32), Refusal> {
    if let Some(expected) = change.expected_version {
        if expected != current.version {
            return Err(Refusal::VersionMismatch {
                expected,
                stored: current.version,
            });
        }
    }
    if replayed && change.metadata.occurred_at < current.latest_at {
        return Err(Refusal::Stale {
            stored: current.version,
        });
    }
    let to = change.change.target();
    if !allowed(current.status, to) {
        return Err(Refusal::NotAllowed {
            from: current.status,
            to,
        });
    }
    if let Change::Payment(p) = &change.change {
        if p.amount != current.total || p.currency != current.currency {
            return Err(Refusal::PaymentMismatch);
        }
    }
    let version = current.version.checked_add(1).ok_or(Refusal::NotAllowed {
        from: current.status,
        to,
    })?;
    Ok((to, version))
}

/// The full state of an order at the version its `changes` (applied, in
/// version order, after `creation`) bring it to. `metadata` describes
/// the state message: its producer and correlation id; its id and type
/// are set here.
pub fn fold(creation: &OrderEvent, changes: &[OrderChange], metadata: EventMetadata) -> OrderState {
    let mut state = OrderState {
        metadata,
        order_id: creation.order_id,
        version: 1,
        status: OrderStatus::Created,
        customer: creation.customer.clone(),
        items: creation.items.clone(),
        totals: creation.totals.clone(),
        currency: creation.currency.clone(),
        promotion_code: creation.promotion_code.clone(),
        payment: None,
        shipment: None,
        delivery: None,
        cancellation: None,
        history: vec![entry(
            1,
            OrderStatus::Created,
            creation.metadata.event_id,
            &creation.metadata.event_type,
            creation.metadata.occurred_at,
        )],
        updated_at: creation.metadata.occurred_at,
    };
    for change in changes {
        state.version += 1;
        state.status = change.change.target();
        state.updated_at = change.metadata.occurred_at;
        match &change.change {
            Change::Payment(p) => state.payment = Some(p.clone()),
            Change::Shipment(s) => state.shipment = Some(s.clone()),
            Change::Delivery(d) => state.delivery = Some(d.clone()),
            Change::Cancellation(c) => state.cancellation = Some(c.clone()),
        }
        state.history.push(entry(
            state.version,
            state.status,
            change.metadata.event_id,
            &change.metadata.event_type,
            change.metadata.occurred_at,
        ));
    }
    state.metadata.event_id = state_event_id(state.order_id, state.version);
    ORDER_STATE.clone_into(&mut state.metadata.event_type);
    state.metadata.schema_version = ORDER_STATE_SCHEMA_VERSION;
    state.metadata.occurred_at = state.updated_at;
    state
}

fn entry(
    version: u32,
    status: OrderStatus,
    event_id: Uuid,
    event_type: &str,
    occurred_at: DateTime<Utc>,
) -> HistoryEntry {
    HistoryEntry {
        version,
        status,
        event_id,
        event_type: event_type.to_owned(),
        occurred_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::lifecycle::{Cancellation, CancellationReason, Delivery, Payment, Shipment};
    use proptest::prelude::*;

    fn current(status: OrderStatus, version: u32) -> Current {
        Current {
            status,
            version,
            total: "39.98".parse().unwrap(),
            currency: "EUR".into(),
            latest_at: DateTime::from_timestamp(1_000, 0).unwrap(),
        }
    }

    fn change_of(change: Change, at: i64, expected: Option<u32>) -> OrderChange {
        OrderChange {
            metadata: EventMetadata {
                event_id: Uuid::now_v7(),
                event_type: change.event_type().into(),
                schema_version: 1,
                occurred_at: DateTime::from_timestamp(at, 0).unwrap(),
                producer: "test".into(),
                correlation_id: "c".into(),
                trace_id: None,
                span_id: None,
            },
            order_id: Uuid::from_u128(1),
            expected_version: expected,
            change,
        }
    }

    fn payment(amount: &str) -> Change {
        Change::Payment(Payment {
            reference: "p".into(),
            amount: amount.parse().unwrap(),
            currency: "EUR".into(),
        })
    }

    fn any_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            Just(payment("39.98")),
            Just(Change::Shipment(Shipment {
                carrier: "c".into(),
                tracking_number: "t".into()
            })),
            Just(Change::Delivery(Delivery::default())),
            Just(Change::Cancellation(Cancellation {
                reason: CancellationReason::Other,
                note: None
            })),
        ]
    }

    #[test]
    fn the_legal_paths_and_nothing_else() {
        use OrderStatus::*;
        let legal = [
            (Created, Paid),
            (Paid, Shipped),
            (Shipped, Delivered),
            (Created, Cancelled),
            (Paid, Cancelled),
        ];
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                assert_eq!(
                    allowed(from, to),
                    legal.contains(&(from, to)),
                    "{from} → {to}"
                );
            }
        }
    }

    #[test]
    fn a_payment_must_be_the_total_in_the_currency() {
        let c = current(OrderStatus::Created, 1);
        assert_eq!(
            next(&c, &change_of(payment("39.98"), 2_000, None), false),
            Ok((OrderStatus::Paid, 2))
        );
        assert_eq!(
            next(&c, &change_of(payment("39.99"), 2_000, None), false),
            Err(Refusal::PaymentMismatch)
        );
        assert_eq!(
            next(&c, &change_of(payment("39.980"), 2_000, None), false),
            Ok((OrderStatus::Paid, 2)),
            "amounts compare by value"
        );
    }

    #[test]
    fn if_match_and_stale_replays_are_version_conflicts() {
        let c = current(OrderStatus::Paid, 2);
        let ship = || {
            Change::Shipment(Shipment {
                carrier: "c".into(),
                tracking_number: "t".into(),
            })
        };
        let refused = next(&c, &change_of(ship(), 2_000, Some(1)), false).unwrap_err();
        assert_eq!(refused.class(), FailureClass::VersionConflict);
        assert_eq!(
            next(&c, &change_of(ship(), 2_000, Some(2)), false),
            Ok((OrderStatus::Shipped, 3))
        );
        // Older than the latest applied event: refused only as a replay.
        let old = change_of(ship(), 500, None);
        assert_eq!(next(&c, &old, false), Ok((OrderStatus::Shipped, 3)));
        assert_eq!(next(&c, &old, true), Err(Refusal::Stale { stored: 2 }));
    }

    proptest! {
        /// Whatever changes arrive, in any order: each applied one is
        /// allowed from the status before it, the version grows by one per
        /// applied change, nothing follows a final status, and the fold of
        /// the applied ones ends at the same status and version.
        #[test]
        fn any_sequence_keeps_the_machine(changes in proptest::collection::vec(any_change(), 0..12)) {
            let mut c = current(OrderStatus::Created, 1);
            let mut applied = Vec::new();
            for (n, change) in changes.into_iter().enumerate() {
                let change = change_of(change, 2_000 + n as i64, None);
                match next(&c, &change, false) {
                    Ok((status, version)) => {
                        prop_assert!(allowed(c.status, status));
                        prop_assert!(!c.status.is_final());
                        prop_assert_eq!(version, c.version + 1);
                        c.status = status;
                        c.version = version;
                        applied.push(change);
                    }
                    Err(refusal) => {
                        prop_assert_eq!(refusal.class(), FailureClass::InvalidTransition);
                    }
                }
            }
            let creation = harness::events::order_event(0);
            let state = fold(&creation, &applied, creation.metadata.clone());
            prop_assert_eq!(state.status, c.status);
            prop_assert_eq!(state.version, c.version);
            prop_assert_eq!(state.history.len(), applied.len() + 1);
            prop_assert!(state.history.len() <= contract::lifecycle::MAX_HISTORY);
            prop_assert_eq!(state.metadata.event_id, state_event_id(state.order_id, state.version));
        }
    }
}
