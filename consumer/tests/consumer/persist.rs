//! A batch is stored exactly as one-at-a-time processing would store it,
//! whatever it contains and whatever the database holds, against the real
//! PostgreSQL: batches of generated events with repeated event ids,
//! repeated order and user ids, and the same or other bodies, persisted
//! whole in one database (after a batch of their own kind) and one by one
//! in another, leave the same rows and get the same outcomes; and every
//! stored order's items add up to its totals.

use std::time::Duration;

use crate::support::context::{self, inconsistent_orders, migrated_database};
use crate::support::{Table, TestDatabase};
use consumer::decode::{Decoded, DomainEvent};
use consumer::persist::{Outcome, Persistable, Store};
use consumer::rows::{EventRows, ItemRows, OrderRows};
use contract::{topics, Format, OrderEvent, UserEvent};
use harness::wait::eventually;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use rust_decimal::Decimal;
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
    decoded_event(if pick.user {
        DomainEvent::User(user(pick))
    } else {
        DomainEvent::Order(order(pick))
    })
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

/// Whether no two events of `batch` share an event id or an order or user
/// id: a batch the store writes without reading first.
fn new_to_itself(batch: &[Persistable<'_>]) -> bool {
    let mut events = std::collections::HashSet::new();
    let mut aggregates = std::collections::HashSet::new();
    batch.iter().all(|p| {
        let event = &p.decoded.event;
        events.insert(event.metadata().event_id)
            && aggregates.insert((event.domain(), event.aggregate_id()))
    })
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
            topic: topics::ORDERS,
            partition: 0,
            offset: n as i64,
            replayed: false,
        })
        .collect()
}

#[test]
fn a_batch_stores_exactly_what_one_message_at_a_time_would() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (whole, single) =
        runtime.block_on(async { (migrated_database().await, migrated_database().await) });
    let deadline = Duration::from_secs(30);
    let (batch_store, single_store) = (
        Store::new(whole.pool.clone(), deadline),
        Store::new(single.pool.clone(), deadline),
    );
    let mut runner = TestRunner::new(Config::with_cases(48));
    let seen = std::cell::RefCell::new(std::collections::BTreeMap::<String, usize>::new());
    // Two batches one after the other: the second meets what the first
    // stored, as a redelivered or overlapping batch does. Half the cases
    // cut off a tail of at most three, which seldom repeats itself and so
    // is written without reading first.
    let cuts = (0_usize..16, any::<bool>());
    let result = runner.run(&(batches(), cuts), |(picks, (at, tail))| {
        runtime.block_on(async {
            empty(&whole).await;
            empty(&single).await;
            let events: Vec<Decoded> = picks.iter().copied().map(decoded).collect();
            let items = persistables(&events);
            let cut = if tail {
                items.len().saturating_sub(at % 4)
            } else {
                at.min(items.len())
            };
            let (first, second) = items.split_at(cut);
            let mut together = Vec::new();
            for batch in [first, second] {
                together.extend(
                    batch_store
                        .persist(batch)
                        .await
                        .map_err(|e| TestCaseError::fail(e.to_string()))?,
                );
            }
            // A second batch that repeats nothing of its own is written
            // without reading first; an outcome other than stored means it
            // met the first batch's rows: the case the fallback is for.
            let collided = new_to_itself(second)
                && together[first.len()..]
                    .iter()
                    .any(|o| *o != Outcome::Stored);
            if collided {
                *seen
                    .borrow_mut()
                    .entry("second batch new to itself met stored rows".into())
                    .or_default() += 1;
            }
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
            prop_assert_eq!(inconsistent_orders(&whole.pool).await, 0);
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
        "second batch new to itself met stored rows",
    ] {
        assert!(seen.contains_key(kind), "no case produced {kind}: {seen:?}");
    }
}

/// Text that needs escaping on the way to the server: tabs, newlines,
/// carriage returns, backslashes, `\N` and `\.` spelled out, any Unicode.
fn awkward_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\\\\t\n\r.N a-z]{1,16}",
        "\\PC{1,40}",
        Just("\\N".to_owned()),
        Just("\\.".to_owned()),
    ]
    .prop_filter("PostgreSQL text holds no NUL", |s| !s.contains('\0'))
}

/// What the database holds of one order and one user, as text.
async fn stored_text(db: &TestDatabase, order: &OrderEvent, user: &UserEvent) -> Vec<String> {
    let order_row: (String, String, String, Option<String>, bool, bool) = sqlx::query_as(
        "SELECT o.customer_name, o.customer_email, o.correlation_id, o.promotion_code,
                o.shipping_address = $2::jsonb, e.payload = $3::jsonb
         FROM orders o JOIN event_store e ON e.event_id = o.event_id
         WHERE o.order_id = $1",
    )
    .bind(order.order_id)
    .bind(serde_json::to_value(&order.customer.address).expect("address"))
    .bind(serde_json::to_value(order).expect("payload"))
    .fetch_one(&db.pool)
    .await
    .expect("order row");
    let items: Vec<(String, String)> =
        sqlx::query_as("SELECT sku, name FROM order_items WHERE order_id = $1 ORDER BY line_no")
            .bind(order.order_id)
            .fetch_all(&db.pool)
            .await
            .expect("items");
    let user_row: (String, String, Option<String>, bool) = sqlx::query_as(
        "SELECT u.name, u.email, e.trace_id, u.address IS NOT DISTINCT FROM $2::jsonb
         FROM users u JOIN event_store e ON e.event_id = u.event_id WHERE u.user_id = $1",
    )
    .bind(&user.user_id)
    .bind(
        user.address
            .as_ref()
            .map(|a| serde_json::to_value(a).expect("address")),
    )
    .fetch_one(&db.pool)
    .await
    .expect("user row");
    let mut text = vec![
        order_row.0,
        order_row.1,
        order_row.2,
        format!("{:?}", order_row.3),
        format!("address as sent: {}", order_row.4),
        format!("payload as sent: {}", order_row.5),
    ];
    for (sku, name) in items {
        text.push(sku);
        text.push(name);
    }
    text.extend([
        user_row.0,
        user_row.1,
        format!("{:?}", user_row.2),
        format!("user address as sent: {}", user_row.3),
    ]);
    let (price, at): (String, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT i.unit_price::text, o.occurred_at FROM order_items i
         JOIN orders o USING (order_id) WHERE order_id = $1 AND line_no = 0",
    )
    .bind(order.order_id)
    .fetch_one(&db.pool)
    .await
    .expect("price and time");
    text.extend([price, format!("{at:?}")]);
    text
}

#[test]
fn any_text_is_stored_exactly_as_it_was_read() {
    let (runtime, db) = migrated();
    let store = Store::new(db.pool.clone(), Duration::from_secs(30));
    let mut runner = TestRunner::new(Config::with_cases(64));
    let strategy = (
        proptest::collection::vec(awkward_text(), 8),
        proptest::option::of(awkward_text()),
        (1i64..=i64::MAX, 0u32..=18),
        (0i64..=253_402_300_799, 0u32..1_000_000_000),
    );
    let result = runner.run(&strategy, |(texts, optional, price, at)| {
        runtime.block_on(async {
            let mut order = harness::events::order_event(0);
            order.customer.name = texts[0].clone();
            order.customer.email = texts[1].clone();
            order.metadata.correlation_id = texts[2].clone();
            order.promotion_code = optional.clone();
            order.customer.address.line1 = texts[3].clone();
            order.items[0].sku = texts[4].clone();
            order.items[0].name = texts[5].clone();
            // Any positive price of up to 18 decimals, any time of years
            // 1970 to 9999 to the nanosecond (the database keeps micros).
            order.items[0].unit_price = Decimal::new(price.0, price.1);
            order.metadata.occurred_at =
                chrono::DateTime::from_timestamp(at.0, at.1).expect("in range");
            let mut user = harness::events::user_event(0);
            user.name = texts[6].clone();
            user.email = texts[7].clone();
            user.metadata.trace_id = optional.clone();
            user.address = optional.clone().map(|line1| {
                let mut address = order.customer.address.clone();
                address.line1 = line1;
                address
            });
            let events = [
                decoded_event(DomainEvent::Order(order.clone())),
                decoded_event(DomainEvent::User(user.clone())),
            ];
            let outcomes = store
                .persist(&persistables(&events))
                .await
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(outcomes, vec![Outcome::Stored, Outcome::Stored]);
            let mut expected = vec![
                order.customer.name.clone(),
                order.customer.email.clone(),
                order.metadata.correlation_id.clone(),
                format!("{:?}", order.promotion_code),
                "address as sent: true".to_owned(),
                "payload as sent: true".to_owned(),
            ];
            for item in &order.items {
                expected.push(item.sku.clone());
                expected.push(item.name.clone());
            }
            expected.extend([
                user.name.clone(),
                user.email.clone(),
                format!("{:?}", user.metadata.trace_id),
                "user address as sent: true".to_owned(),
                order.items[0].unit_price.to_string(),
                format!(
                    "{:?}",
                    chrono::DateTime::from_timestamp(at.0, at.1 / 1000 * 1000).expect("in range")
                ),
            ]);
            prop_assert_eq!(stored_text(&db, &order, &user).await, expected);
            Ok(())
        })
    });
    runtime.block_on(db.drop());
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Returns once a backend of `db` waits on a lock (the store's write,
/// blocked by another writer's uncommitted rows); fails after 10 s.
async fn waiting_on_a_lock(db: &TestDatabase) {
    eventually(
        Duration::from_secs(10),
        "the store's write to wait for the other writer's rows",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&db.pool)
            .await
            .expect("activity");
            (waiting > 0).then_some(())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// A NUL in a text field (PostgreSQL text cannot hold one) fails the
/// write as a permanent error, not a retry and not a panic.
#[test]
fn a_nul_in_text_is_a_permanent_error() {
    let (runtime, db) = migrated();
    runtime.block_on(async {
        let store = Store::new(db.pool.clone(), Duration::from_secs(30));
        let mut order = harness::events::order_event(0);
        order.customer.name = "Ada\0Lovelace".to_owned();
        let events = [decoded_event(DomainEvent::Order(order))];
        let error = store
            .persist(&persistables(&events))
            .await
            .expect_err("a NUL is refused");
        assert_eq!(
            error.kind,
            consumer::persist::PersistErrorKind::Permanent,
            "{error}"
        );
        db.drop().await;
    });
}

/// A runtime and a migrated database of the test's own.
fn migrated() -> (tokio::runtime::Runtime, TestDatabase) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let db = runtime.block_on(migrated_database());
    (runtime, db)
}

fn decoded_event(event: DomainEvent) -> Decoded {
    let fingerprint = event.fingerprint();
    Decoded {
        event,
        format: Format::Json,
        fingerprint,
    }
}

/// Two members writing the same new events at once (a rebalance hands a
/// partition over while its old owner still writes): one stores them, the
/// other finds them stored (its write collided with the first and was
/// decided again, or came after it) or fails as transient (never permanent,
/// which would dead-letter valid events), and its retry finds them stored.
#[test]
fn two_writers_of_the_same_events_store_them_once() {
    let (runtime, db) = migrated();
    runtime.block_on(async {
        let (a, b) = (
            Store::new(db.pool.clone(), Duration::from_secs(30)),
            Store::new(db.pool.clone(), Duration::from_secs(30)),
        );
        for round in 0..10 {
            let events: Vec<Decoded> = (0..50)
                .map(|n| decoded_event(DomainEvent::Order(harness::events::order_event(n))))
                .collect();
            let items = persistables(&events);
            let (first, second) = tokio::join!(a.persist(&items), b.persist(&items));
            let mut stored = 0;
            for result in [first, second] {
                match result {
                    Ok(outcomes) if outcomes.iter().all(|o| *o == Outcome::Stored) => stored += 1,
                    Ok(outcomes) => assert!(
                        outcomes.iter().all(|o| *o == Outcome::Duplicate),
                        "round {round}: {outcomes:?}"
                    ),
                    Err(e) => {
                        assert_eq!(
                            e.kind,
                            consumer::persist::PersistErrorKind::Transient,
                            "round {round}: {e}"
                        );
                        let retried = a.persist(&items).await.expect("retry");
                        assert!(retried.iter().all(|o| *o == Outcome::Duplicate));
                    }
                }
            }
            assert_eq!(stored, 1, "round {round}: one writer stores the events");
        }
        let rows = context::rows(&db.pool, Table::EventStore).await;
        assert_eq!(rows, 500, "every event stored once");
        db.drop().await;
    });
}

/// A batch written without reading first (all its events new to it) whose
/// rows another writer holds uncommitted: its write waits on their locks
/// until the other commits, collides, and the batch is decided again over
/// what is stored, so every event is a duplicate and nothing fails.
#[test]
fn a_batch_whose_events_another_writer_commits_first_finds_them_stored() {
    let (runtime, db) = migrated();
    runtime.block_on(async {
        let store = Store::new(db.pool.clone(), Duration::from_secs(30));
        let events: Vec<Decoded> = (0..20)
            .map(|n| decoded_event(DomainEvent::Order(harness::events::order_event(n))))
            .collect();
        let items = persistables(&events);
        let mut conn = db.pool.acquire().await.expect("connection");
        let mut tx = sqlx::Connection::begin(&mut *conn).await.expect("begin");
        let mut rows = (
            EventRows::default(),
            OrderRows::default(),
            ItemRows::default(),
        );
        for (item, decoded) in items.iter().zip(&events) {
            rows.0.push(item, Some(1)).expect("event row");
            let DomainEvent::Order(order) = &decoded.event else {
                unreachable!("orders only")
            };
            rows.1
                .push(order, decoded.fingerprint.as_str())
                .expect("order row");
            rows.2.push(order).expect("item rows");
        }
        rows.0.insert(&mut tx).await.expect("events");
        rows.1.insert(&mut tx).await.expect("orders");
        rows.2.insert(&mut tx).await.expect("items");
        let (outcomes, ()) = tokio::join!(store.persist(&items), async {
            waiting_on_a_lock(&db).await;
            tx.commit().await.expect("the other writer commits");
        });
        let outcomes = outcomes.expect("the collision is decided again, not failed");
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Duplicate),
            "{outcomes:?}"
        );
        drop(conn);
        db.drop().await;
    });
}
