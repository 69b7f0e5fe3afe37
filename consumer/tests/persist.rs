//! A batch is stored exactly as one-at-a-time processing would store it,
//! whatever it contains, against the real PostgreSQL: batches of generated
//! events with repeated event ids, repeated order and user ids, and the same
//! or other bodies, persisted whole in one database and one by one in
//! another, leave the same rows and get the same outcomes; and every stored
//! order's items add up to its totals.

mod support;

use std::time::Duration;

use consumer::decode::{Decoded, DomainEvent};
use consumer::persist::{Outcome, Persistable, Store};
use contract::{fingerprint, Format, OrderEvent, UserEvent};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
use support::TestDatabase;
use uuid::Uuid;

/// One generated message: which event id, which order or user id, which body.
#[derive(Debug, Clone, Copy)]
struct Pick {
    user: bool,
    event: u8,
    id: u8,
    body: u8,
}

fn order(pick: Pick) -> OrderEvent {
    let mut e = harness::events::order_event(0);
    e.metadata.event_id = Uuid::from_u128(1000 + u128::from(pick.event));
    e.order_id = Uuid::from_u128(2000 + u128::from(pick.id));
    // Three bodies: one, two or three units of the first item.
    let quantity = u32::from(pick.body) + 1;
    e.items.truncate(1);
    e.items[0].quantity = quantity;
    e.items[0].line_total = e.items[0].unit_price * Decimal::from(quantity);
    e.totals.subtotal = e.items[0].line_total;
    e.totals.total = e.totals.subtotal;
    e.totals.item_count = quantity;
    e
}

fn user(pick: Pick) -> UserEvent {
    let mut e = harness::events::user_event(0);
    e.metadata.event_id = Uuid::from_u128(1000 + u128::from(pick.event));
    e.user_id = format!("u-{}", pick.id);
    e.name = format!("Name {}", pick.body);
    e
}

fn decoded(pick: Pick) -> Decoded {
    let event = if pick.user {
        DomainEvent::User(user(pick))
    } else {
        DomainEvent::Order(order(pick))
    };
    let fingerprint = match &event {
        DomainEvent::Order(e) => fingerprint::order(e),
        DomainEvent::User(e) => fingerprint::user(e),
    };
    Decoded {
        event,
        format: Format::Json,
        fingerprint,
    }
}

fn batches() -> impl Strategy<Value = Vec<Pick>> {
    proptest::collection::vec(
        (any::<bool>(), 0u8..4, 0u8..3, 0u8..3).prop_map(|(user, event, id, body)| Pick {
            user,
            event,
            id,
            body,
        }),
        1..16,
    )
}

/// Every row the pipeline keeps, in a comparable order.
async fn rows(db: &TestDatabase) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT 'event ' || event_id || ' ' || aggregate_id || ' ' || content_fingerprint FROM event_store
         UNION ALL
         SELECT 'order ' || order_id || ' ' || event_id || ' ' || total || ' ' || item_count FROM orders
         UNION ALL
         SELECT 'item ' || order_id || ' ' || line_no || ' ' || quantity || ' ' || line_total FROM order_items
         UNION ALL
         SELECT 'user ' || user_id || ' ' || event_id || ' ' || name FROM users
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("rows")
}

async fn inconsistent_orders(db: &TestDatabase) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM orders o
         LEFT JOIN (SELECT order_id, sum(line_total) AS sum, sum(quantity) AS qty
                    FROM order_items GROUP BY order_id) i USING (order_id)
         WHERE i.sum IS DISTINCT FROM o.subtotal OR i.qty IS DISTINCT FROM o.item_count",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count")
}

async fn empty(db: &TestDatabase) {
    sqlx::query("TRUNCATE event_store, order_items, orders, users")
        .execute(&db.pool)
        .await
        .expect("truncate");
}

fn persistables(events: &[Decoded]) -> Vec<Persistable<'_>> {
    events
        .iter()
        .enumerate()
        .map(|(n, decoded)| Persistable {
            decoded,
            topic: "orders",
            partition: 0,
            offset: n as i64,
        })
        .collect()
}

#[test]
fn a_batch_stores_exactly_what_one_message_at_a_time_would() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (whole, single) = runtime.block_on(async {
        let whole = TestDatabase::create().await;
        let single = TestDatabase::create().await;
        for db in [&whole, &single] {
            consumer::db::migrate(&db.pool).await.expect("migrations");
        }
        (whole, single)
    });
    let deadline = Duration::from_secs(30);
    let (batch_store, single_store) = (
        Store::new(whole.pool.clone(), deadline),
        Store::new(single.pool.clone(), deadline),
    );
    let mut runner = TestRunner::new(Config::with_cases(48));
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<String, usize>::new());
    let result = runner.run(&batches(), |picks| {
        runtime.block_on(async {
            empty(&whole).await;
            empty(&single).await;
            let events: Vec<Decoded> = picks.iter().copied().map(decoded).collect();
            let items = persistables(&events);
            let together = batch_store
                .persist(&items)
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut alone: Vec<Outcome> = Vec::new();
            for item in &items {
                let outcome = single_store
                    .persist(std::slice::from_ref(item))
                    .await
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                alone.extend(outcome);
            }
            prop_assert_eq!(&together, &alone, "outcomes of {:?}", picks);
            for outcome in &together {
                *seen.borrow_mut().entry(format!("{outcome:?}")).or_default() += 1;
            }
            prop_assert_eq!(
                rows(&whole).await,
                rows(&single).await,
                "rows of {:?}",
                picks
            );
            prop_assert_eq!(inconsistent_orders(&whole).await, 0);
            Ok(())
        })
    });
    runtime.block_on(async {
        whole.drop().await;
        single.drop().await;
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = seen.into_inner();
    println!("outcomes over every case: {seen:?}");
    for kind in [
        "Stored",
        "Duplicate",
        "Conflict(EventIdReused)",
        "Conflict(IdReused)",
    ] {
        assert!(seen.contains_key(kind), "no case produced {kind}: {seen:?}");
    }
}
