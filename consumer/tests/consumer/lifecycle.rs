//! Order changes against the real PostgreSQL: each applied change bumps
//! the order's version in the transaction that appends it to the event
//! store and puts the order's full state in the outbox; refused ones
//! change nothing and say why; a redelivery is a no-op; and generated
//! sequences of changes, persisted in any batching, end where the state
//! machine says.

use std::time::Duration;

use chrono::{DateTime, Utc};
use consumer::decode::{Decoded, DomainEvent};
use consumer::lifecycle::{self, Current, Refusal};
use consumer::persist::{Outcome, Persistable, Store};
use contract::dead_letter::FailureClass;
use contract::lifecycle::{
    Cancellation, CancellationReason, Change, Delivery, OrderChange, OrderState, OrderStatus,
    Payment, Shipment,
};
use contract::{topics, EventCodec, EventMetadata, Format, OrderEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use uuid::Uuid;

use crate::support::context::migrated_database;
use crate::support::TestDatabase;

fn decoded(event: DomainEvent) -> Decoded {
    Decoded {
        fingerprint: event.fingerprint(),
        event,
        format: Format::Json,
    }
}

fn creation(n: u128) -> OrderEvent {
    let mut e = harness::events::order_event(0);
    e.order_id = Uuid::from_u128(0x5000 + n);
    e.metadata.event_id = Uuid::from_u128(0x6000 + n);
    e.metadata.occurred_at = at(1_000);
    e
}

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).expect("a time")
}

fn change(order: &OrderEvent, change: Change, seconds: i64, expected: Option<u32>) -> OrderChange {
    OrderChange {
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            event_type: change.event_type().to_owned(),
            schema_version: 1,
            occurred_at: at(seconds),
            producer: "test".into(),
            correlation_id: "c-lifecycle".into(),
            trace_id: None,
            span_id: None,
        },
        order_id: order.order_id,
        expected_version: expected,
        change,
    }
}

fn pay(order: &OrderEvent) -> Change {
    Change::Payment(Payment {
        reference: "pay-1".into(),
        amount: order.totals.total,
        currency: order.currency.clone(),
    })
}

fn ship() -> Change {
    Change::Shipment(Shipment {
        carrier: "DHL".into(),
        tracking_number: "JD0146".into(),
    })
}

fn deliver() -> Change {
    Change::Delivery(Delivery::default())
}

fn cancel() -> Change {
    Change::Cancellation(Cancellation {
        reason: CancellationReason::CustomerRequest,
        note: None,
    })
}

/// Persists `events` as one batch read at offsets from `first`.
async fn persist(store: &Store, events: &[Decoded], first: i64, replayed: bool) -> Vec<Outcome> {
    let batch: Vec<Persistable<'_>> = events
        .iter()
        .enumerate()
        .map(|(n, decoded)| Persistable {
            decoded,
            topic: topics::ORDERS,
            partition: 0,
            offset: first + n as i64,
            replayed,
        })
        .collect();
    store.persist(&batch).await.expect("persisted")
}

async fn status_and_version(db: &TestDatabase, order: Uuid) -> (String, i32) {
    sqlx::query_as("SELECT status, version FROM orders WHERE order_id = $1")
        .bind(order)
        .fetch_one(&db.pool)
        .await
        .expect("the order")
}

/// The states waiting in the outbox for `order`, oldest first.
async fn states(db: &TestDatabase, order: Uuid) -> Vec<OrderState> {
    let values: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT value FROM outbox WHERE topic = $1 AND key = $2 ORDER BY id")
            .bind(topics::ORDERS_STATE)
            .bind(order.to_string())
            .fetch_all(&db.pool)
            .await
            .expect("outbox rows");
    values
        .iter()
        .map(|v| OrderState::decode(v, Format::Json, 1).expect("a state"))
        .collect()
}

fn store(db: &TestDatabase) -> Store {
    Store::new(db.pool.clone(), Duration::from_secs(30))
}

#[tokio::test]
async fn a_life_in_one_batch_and_in_several_ends_the_same_with_each_state_published() {
    let db = migrated_database().await;
    let store = store(&db);
    let (a, b) = (creation(1), creation(2));
    let life = |o: &OrderEvent| {
        vec![
            decoded(DomainEvent::Order(o.clone())),
            decoded(DomainEvent::Change(change(o, pay(o), 2_000, Some(1)))),
            decoded(DomainEvent::Change(change(o, ship(), 3_000, None))),
            decoded(DomainEvent::Change(change(o, deliver(), 4_000, Some(3)))),
        ]
    };
    let whole = persist(&store, &life(&a), 0, false).await;
    assert_eq!(whole, vec![Outcome::Stored; 4]);
    for (n, event) in life(&b).into_iter().enumerate() {
        let got = persist(&store, &[event], 10 + n as i64, false).await;
        assert_eq!(got, vec![Outcome::Stored]);
    }
    for order in [&a, &b] {
        assert_eq!(
            status_and_version(&db, order.order_id).await,
            ("delivered".into(), 4)
        );
        let states = states(&db, order.order_id).await;
        let versions: Vec<u32> = states.iter().map(|s| s.version).collect();
        assert_eq!(versions, [1, 2, 3, 4], "one state per version, in order");
        let last = states.last().expect("a state");
        assert_eq!(last.status, OrderStatus::Delivered);
        assert_eq!(last.customer, order.customer, "the full state");
        assert_eq!(last.items, order.items);
        assert!(last.payment.is_some() && last.shipment.is_some() && last.delivery.is_some());
        let history: Vec<OrderStatus> = last.history.iter().map(|h| h.status).collect();
        assert_eq!(
            history,
            [
                OrderStatus::Created,
                OrderStatus::Paid,
                OrderStatus::Shipped,
                OrderStatus::Delivered
            ]
        );
    }
    let versions: Vec<i32> = sqlx::query_scalar(
        "SELECT aggregate_version FROM event_store WHERE aggregate_id = $1 ORDER BY aggregate_version",
    )
    .bind(a.order_id.to_string())
    .fetch_all(&db.pool)
    .await
    .expect("versions");
    assert_eq!(
        versions,
        [1, 2, 3, 4],
        "each event records the version it made"
    );
}

#[tokio::test]
async fn refused_changes_change_nothing_and_say_why() {
    let db = migrated_database().await;
    let store = store(&db);
    let order = creation(3);
    persist(
        &store,
        &[decoded(DomainEvent::Order(order.clone()))],
        0,
        false,
    )
    .await;
    let refused = |outcome: &Outcome| match outcome {
        Outcome::Refused(r) => Some(r.class()),
        _ => None,
    };
    let mut wrong_total = pay(&order);
    if let Change::Payment(p) = &mut wrong_total {
        p.amount += rust_decimal::Decimal::ONE;
    }
    let stranger = creation(99);
    let cases = [
        (
            change(&order, ship(), 2_000, None),
            FailureClass::InvalidTransition,
        ),
        (
            change(&order, deliver(), 2_000, None),
            FailureClass::InvalidTransition,
        ),
        (
            change(&order, wrong_total, 2_000, None),
            FailureClass::InvalidTransition,
        ),
        (
            change(&order, pay(&order), 2_000, Some(2)),
            FailureClass::VersionConflict,
        ),
        (
            change(&stranger, cancel(), 2_000, None),
            FailureClass::UnknownOrder,
        ),
    ];
    for (n, (c, class)) in cases.into_iter().enumerate() {
        let got = persist(
            &store,
            &[decoded(DomainEvent::Change(c))],
            1 + n as i64,
            false,
        )
        .await;
        assert_eq!(refused(&got[0]), Some(class), "case {n}: {got:?}");
        assert_eq!(
            status_and_version(&db, order.order_id).await,
            ("created".into(), 1),
            "case {n} changed nothing"
        );
    }
    assert_eq!(
        states(&db, order.order_id).await.len(),
        1,
        "only the creation's state"
    );
    // Cancelled: final.
    let cancelled = change(&order, cancel(), 3_000, Some(1));
    persist(
        &store,
        &[decoded(DomainEvent::Change(cancelled.clone()))],
        10,
        false,
    )
    .await;
    let got = persist(
        &store,
        &[decoded(DomainEvent::Change(change(
            &order,
            pay(&order),
            4_000,
            None,
        )))],
        11,
        false,
    )
    .await;
    assert_eq!(refused(&got[0]), Some(FailureClass::InvalidTransition));
    // The applied cancellation again (a redelivery): nothing new.
    let again = persist(
        &store,
        &[decoded(DomainEvent::Change(cancelled))],
        10,
        false,
    )
    .await;
    assert_eq!(again, vec![Outcome::Duplicate]);
    assert_eq!(
        status_and_version(&db, order.order_id).await,
        ("cancelled".into(), 2)
    );
    assert_eq!(states(&db, order.order_id).await.len(), 2);
}

#[tokio::test]
async fn a_replayed_change_older_than_the_stored_version_is_refused_as_stale() {
    let db = migrated_database().await;
    let store = store(&db);
    let order = creation(4);
    // Accepted at 1 500, between the creation (1 000) and the payment
    // (2 000), then dead-lettered; replayed after both.
    let old_cancellation = change(&order, cancel(), 1_500, None);
    persist(
        &store,
        &[
            decoded(DomainEvent::Order(order.clone())),
            decoded(DomainEvent::Change(change(
                &order,
                pay(&order),
                2_000,
                None,
            ))),
        ],
        0,
        false,
    )
    .await;
    let replay = decoded(DomainEvent::Change(old_cancellation.clone()));
    let got = persist(&store, std::slice::from_ref(&replay), 5, true).await;
    assert_eq!(got, vec![Outcome::Refused(Refusal::Stale { stored: 2 })]);
    assert_eq!(
        status_and_version(&db, order.order_id).await,
        ("paid".into(), 2)
    );
    // The same change read in order (not a replay) is the machine's to
    // decide: cancelling a paid order is allowed.
    let got = persist(&store, &[replay], 6, false).await;
    assert_eq!(got, vec![Outcome::Stored]);
    assert_eq!(
        status_and_version(&db, order.order_id).await,
        ("cancelled".into(), 3)
    );
}

#[tokio::test]
async fn two_consumers_applying_one_change_apply_it_once() {
    let db = migrated_database().await;
    let (first, second) = (store(&db), store(&db));
    let order = creation(5);
    persist(
        &first,
        &[decoded(DomainEvent::Order(order.clone()))],
        0,
        false,
    )
    .await;
    let payment = decoded(DomainEvent::Change(change(
        &order,
        pay(&order),
        2_000,
        None,
    )));
    let (a, b) = tokio::join!(
        persist(&first, std::slice::from_ref(&payment), 1, false),
        persist(&second, std::slice::from_ref(&payment), 1, false)
    );
    let mut outcomes = [a[0], b[0]];
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Stored]);
    assert_eq!(
        status_and_version(&db, order.order_id).await,
        ("paid".into(), 2)
    );
    assert_eq!(states(&db, order.order_id).await.len(), 2);
}

fn any_change() -> impl Strategy<Value = (u8, Option<u32>)> {
    (0u8..4, proptest::option::of(1u32..6))
}

/// Generated sequences of changes (any kind, with or without an
/// `If-Match`, right or wrong), persisted in generated batches, end at the
/// status and version the state machine alone gives, with one state in the
/// outbox per version.
#[test]
fn generated_sequences_end_where_the_machine_says() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(migrated_database());
    let store = store(&db);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    let n = std::sync::atomic::AtomicU64::new(100);
    runner
        .run(
            &(
                proptest::collection::vec(any_change(), 0..8),
                proptest::collection::vec(1usize..4, 1..8),
            ),
            |(picks, cuts)| {
                let order = creation(u128::from(
                    n.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                ));
                let mut model = Current {
                    status: OrderStatus::Created,
                    version: 1,
                    total: order.totals.total,
                    currency: order.currency.clone(),
                    latest_at: order.metadata.occurred_at,
                };
                let mut events = vec![decoded(DomainEvent::Order(order.clone()))];
                for (k, (kind, expected)) in picks.into_iter().enumerate() {
                    let kind = match kind {
                        0 => pay(&order),
                        1 => ship(),
                        2 => deliver(),
                        _ => cancel(),
                    };
                    let c = change(&order, kind, 2_000 + k as i64, expected);
                    if let Ok((status, version)) = lifecycle::next(&model, &c, false) {
                        model.status = status;
                        model.version = version;
                    }
                    events.push(decoded(DomainEvent::Change(c)));
                }
                let mut offset = 0;
                let mut cuts = cuts.into_iter().cycle();
                let mut rest = &events[..];
                while !rest.is_empty() {
                    let size = cuts.next().unwrap_or(1).min(rest.len());
                    let (batch, after) = rest.split_at(size);
                    runtime.block_on(persist(&store, batch, offset, false));
                    offset += size as i64;
                    rest = after;
                }
                let (status, version) = runtime.block_on(status_and_version(&db, order.order_id));
                prop_assert_eq!(status, model.status.as_str());
                prop_assert_eq!(version, model.version as i32);
                let states = runtime.block_on(states(&db, order.order_id));
                let versions: Vec<u32> = states.iter().map(|s| s.version).collect();
                prop_assert_eq!(versions, (1..=model.version).collect::<Vec<_>>());
                Ok(())
            },
        )
        .expect("every sequence ends where the machine says");
}

#[tokio::test]
async fn states_are_written_in_the_configured_encoding_and_say_which() {
    let db = migrated_database().await;
    for (n, format) in [Format::Protobuf, Format::Avro].into_iter().enumerate() {
        let store = store(&db).with_state_topic(consumer::apply::StateTopic {
            topic: topics::ORDERS_STATE.to_owned(),
            format,
        });
        let order = creation(200 + n as u128);
        let life = [
            decoded(DomainEvent::Order(order.clone())),
            decoded(DomainEvent::Change(change(
                &order,
                pay(&order),
                2_000,
                None,
            ))),
        ];
        persist(&store, &life, 0, false).await;
        let rows: Vec<(serde_json::Value, Vec<u8>)> =
            sqlx::query_as("SELECT headers, value FROM outbox WHERE key = $1 ORDER BY id")
                .bind(order.order_id.to_string())
                .fetch_all(&db.pool)
                .await
                .expect("outbox rows");
        assert_eq!(rows.len(), 2, "{format}");
        for (version, (headers, value)) in rows.iter().enumerate() {
            assert!(
                headers
                    .as_array()
                    .expect("pairs")
                    .contains(&serde_json::json!(["content-type", format.content_type()])),
                "{format}: {headers}"
            );
            let state = OrderState::decode(value, format, 1).expect("a state");
            assert_eq!(state.version as usize, version + 1, "{format}");
            assert_eq!(state.customer, order.customer, "{format}");
        }
    }
}
