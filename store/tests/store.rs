//! The schema against a real PostgreSQL: both sets of migrations on one
//! database, rows the read side cannot take are errors, and the read
//! model of an order's life (status, version, history, and what became of
//! each change).

use std::str::FromStr;
use std::time::Duration;

use contract::dead_letter::{ErrorKind, FailureClass};
use contract::lifecycle::OrderStatus;
use contract::Domain;
use harness::database::TestDatabase;
use store::read::{self, OrderEvent};
use store::rejections::{self, NewRejection};

/// The outbox beside the consumer's tables: each set applies, ignores the
/// other's rows in `_sqlx_migrations`, and applies again as a no-op in
/// either order.
#[tokio::test]
async fn both_migration_sets_share_a_database_in_either_order() {
    let db = TestDatabase::create().await;
    store::outbox::prepare(&db.pool)
        .await
        .expect("outbox first");
    store::schema::migrate(&db.pool)
        .await
        .expect("read model second");
    store::outbox::prepare(&db.pool)
        .await
        .expect("outbox again");
    store::schema::migrate(&db.pool)
        .await
        .expect("read model again");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    let expected =
        store::schema::read_model().iter().count() + store::schema::outbox().iter().count();
    assert_eq!(applied as usize, expected);
    let (rows, oldest) = store::outbox::backlog(&db.pool, Duration::from_secs(5))
        .await
        .expect("backlog of the empty outbox");
    assert_eq!((rows, oldest), (0, 0.0));
    db.drop().await;
}

/// A rejection is read back with its kind and class; one whose class this
/// build does not know (written by a newer consumer, or by hand) fails the
/// read instead of vanishing from the answer.
#[tokio::test]
async fn a_rejection_reads_back_typed_and_an_unknown_class_is_an_error() {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    let mut conn = db.pool.acquire().await.expect("connection");
    let id = uuid::Uuid::now_v7().to_string();
    let row = NewRejection {
        group: "order-consumer",
        topic: "orders",
        partition: 1,
        offset: 7,
        domain: Domain::Orders,
        aggregate_id: &id,
        event_id: None,
        event_type: None,
        kind: ErrorKind::Permanent,
        class: FailureClass::Validation,
        dlq_topic: "orders-dlq",
        dlq_at: Some((1, 3)),
    };
    rejections::record(&mut conn, &row).await.expect("record");
    rejections::record(&mut conn, &row)
        .await
        .expect("the same message again updates its row");
    let read = rejections::of(&mut conn, Domain::Orders, &id, 10)
        .await
        .expect("read");
    assert_eq!(read.len(), 1);
    assert_eq!(
        (read[0].error_kind, read[0].error_class),
        (ErrorKind::Permanent, FailureClass::Validation)
    );
    assert_eq!(
        (read[0].dlq_partition, read[0].dlq_offset),
        (Some(1), Some(3))
    );
    let found = store::read::find(&mut conn, Domain::Orders, &id)
        .await
        .expect("find");
    assert_eq!(
        found.rejection.map(|r| r.error_class),
        Some(FailureClass::Validation)
    );

    sqlx::query("UPDATE rejections SET error_class = 'from_a_newer_release'")
        .execute(&mut *conn)
        .await
        .expect("forge");
    let refused = rejections::of(&mut conn, Domain::Orders, &id, 10).await;
    assert!(
        matches!(refused, Err(sqlx::Error::Decode(_))),
        "{refused:?}"
    );
    let refused = store::read::find(&mut conn, Domain::Orders, &id).await;
    assert!(
        matches!(refused, Err(sqlx::Error::Decode(_))),
        "{refused:?}"
    );
    drop(conn);
    db.drop().await;
}

/// An order stored as the consumer stores a creation: its row, and its
/// event with `aggregate_version` left NULL (as creations stored before
/// versions were kept; read as 1).
async fn created(conn: &mut sqlx::PgConnection, order_id: uuid::Uuid, offset: i64) -> uuid::Uuid {
    let event_id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO orders (order_id, customer_id, customer_name, customer_email, shipping_address,
                             currency, subtotal, total, item_count, event_id, schema_version,
                             occurred_at, correlation_id)
         VALUES ($1, 'c-1', 'Ada', 'ada@example.com', '{}', 'EUR', 39.98, 39.98, 2, $2, 2,
                 now() - interval '1 hour', 'corr-1')",
    )
    .bind(order_id)
    .bind(event_id)
    .execute(&mut *conn)
    .await
    .expect("order row");
    sqlx::query(
        "INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type,
                                  payload, source_topic, source_partition, source_offset,
                                  occurred_at, correlation_id, recorded_at)
         VALUES ($1, 'order.created', $2, 2, 'application/json', '{}', 'orders', 1, $3,
                 now() - interval '1 hour', 'corr-1', now() - interval '1 hour')",
    )
    .bind(event_id)
    .bind(order_id.to_string())
    .bind(offset)
    .execute(&mut *conn)
    .await
    .expect("creation event");
    event_id
}

/// A change applied as the consumer applies one: the order row's status,
/// version, time and the change's data, and the event with the version it
/// made, in one transaction, `minutes_ago` minutes ago.
async fn changed(
    pool: &sqlx::PgPool,
    order_id: uuid::Uuid,
    (version, status, kind, data): (i32, &str, &str, serde_json::Value),
    offset: i64,
    minutes_ago: i32,
) -> uuid::Uuid {
    let event_id = uuid::Uuid::new_v4();
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&format!(
        "UPDATE orders SET status = $2, version = $3,
             changed_at = now() - make_interval(mins => $4), {kind} = $5
         WHERE order_id = $1 AND version = $3 - 1"
    ))
    .bind(order_id)
    .bind(status)
    .bind(version)
    .bind(minutes_ago)
    .bind(&data)
    .execute(&mut *tx)
    .await
    .expect("order row changed");
    sqlx::query(
        "INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type,
                                  payload, source_topic, source_partition, source_offset,
                                  occurred_at, correlation_id, recorded_at, aggregate_version)
         VALUES ($1, $2, $3, 1, 'application/json', $4, 'orders', 1, $5,
                 now() - make_interval(mins => $6), 'corr-change',
                 now() - make_interval(mins => $6), $7)",
    )
    .bind(event_id)
    .bind(
        contract::lifecycle::OrderStatus::from_str(status)
            .expect("a status")
            .event_type(),
    )
    .bind(order_id.to_string())
    .bind(&data)
    .bind(offset)
    .bind(minutes_ago)
    .bind(version)
    .execute(&mut *tx)
    .await
    .expect("change event");
    tx.commit().await.expect("commit");
    event_id
}

/// A change refused as the consumer refuses one (a rejection row), its
/// dead letter at `orders-dlq/1@offset`.
async fn refused(
    conn: &mut sqlx::PgConnection,
    order_id: &str,
    event_type: &str,
    class: FailureClass,
    offset: i64,
) -> uuid::Uuid {
    let event_id = uuid::Uuid::new_v4();
    rejections::record(
        conn,
        &NewRejection {
            group: "order-consumer",
            topic: "orders",
            partition: 1,
            offset,
            domain: Domain::Orders,
            aggregate_id: order_id,
            event_id: Some(event_id),
            event_type: Some(event_type),
            kind: ErrorKind::Permanent,
            class,
            dlq_topic: "orders-dlq",
            dlq_at: Some((1, offset)),
        },
    )
    .await
    .expect("rejection");
    event_id
}

/// An order's status, version, time of change and each change's data come
/// with its row, and its history in version order (a creation stored
/// without a version counts as 1), each step's status following from its
/// event type; the version alone answers for the ETag.
#[tokio::test]
async fn an_order_reads_with_its_status_version_and_history() {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    let mut conn = db.pool.acquire().await.expect("connection");
    let order_id = uuid::Uuid::now_v7();
    let id = order_id.to_string();

    let creation = created(&mut conn, order_id, 10).await;
    let found = read::find(&mut conn, Domain::Orders, &id)
        .await
        .expect("find");
    let record = found.record.expect("stored");
    let life = record.lifecycle.expect("an order's life");
    assert_eq!(
        (life.status, life.version, life.changed_at),
        (OrderStatus::Created, 1, None)
    );
    assert_eq!(life.history.len(), 1);
    assert_eq!(
        (life.history[0].version, life.history[0].event_id),
        (1, creation)
    );
    assert_eq!(record.body["status"], "created");
    assert_eq!(record.body["version"], 1);
    assert_eq!(record.body["payment"], serde_json::Value::Null);

    let payment = serde_json::json!({"reference": "pay-1", "amount": "39.98", "currency": "EUR"});
    let paid = changed(
        &db.pool,
        order_id,
        (2, "paid", "payment", payment.clone()),
        11,
        30,
    )
    .await;
    let shipment = serde_json::json!({"carrier": "DHL", "tracking_number": "JD01"});
    let shipped = changed(
        &db.pool,
        order_id,
        (3, "shipped", "shipment", shipment.clone()),
        12,
        10,
    )
    .await;
    // Another order's events stay out of this one's history.
    created(&mut conn, uuid::Uuid::now_v7(), 13).await;

    let found = read::find(&mut conn, Domain::Orders, &id)
        .await
        .expect("find");
    let record = found.record.expect("stored");
    let life = record.lifecycle.clone().expect("an order's life");
    assert_eq!((life.status, life.version), (OrderStatus::Shipped, 3));
    let changed_at = life.changed_at.expect("changed");
    let age = chrono::Utc::now() - changed_at;
    assert!(
        (9..=11).contains(&age.num_minutes()),
        "the latest change's time: {changed_at}"
    );
    let steps: Vec<_> = life
        .history
        .iter()
        .map(|h| (h.version, h.status, h.event_id, h.event_type.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            (1, OrderStatus::Created, creation, "order.created"),
            (2, OrderStatus::Paid, paid, "order.paid"),
            (3, OrderStatus::Shipped, shipped, "order.shipped"),
        ]
    );
    assert_eq!(record.body["status"], "shipped");
    assert_eq!(record.body["version"], 3);
    assert_eq!(record.body["payment"], payment);
    assert_eq!(record.body["shipment"], shipment);
    assert_eq!(record.body["delivery"], serde_json::Value::Null);
    assert_eq!(
        record.body["history"][2]["status"], "shipped",
        "the body carries the history too: {}",
        record.body
    );
    assert_eq!(record.body["history"][1]["event_id"], paid.to_string());

    let version = read::order_version(&mut conn, &id)
        .await
        .expect("version")
        .expect("stored");
    assert_eq!(version.version, 3);
    assert_eq!(version.fingerprint, record.fingerprint);
    assert_eq!(
        read::order_version(&mut conn, &uuid::Uuid::now_v7().to_string())
            .await
            .expect("version"),
        None
    );

    let user = read::find(&mut conn, Domain::Users, &id)
        .await
        .expect("find");
    assert_eq!(user, read::Found::default(), "no user by that id");
    drop(conn);
    db.drop().await;
}

/// The events view: applied changes with the version each made and
/// refused ones with their class (never their content), merged in the
/// order the consumer decided them; for an order never stored, its refused
/// changes alone; past the limit, the newest refused ones kept and the
/// answer marked truncated.
#[tokio::test]
async fn order_events_merge_applied_and_refused_oldest_first() {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    let mut conn = db.pool.acquire().await.expect("connection");
    let order_id = uuid::Uuid::now_v7();
    let id = order_id.to_string();

    let creation = created(&mut conn, order_id, 20).await;
    // Refused now, yet decided between the payment (30 minutes ago) and
    // the shipment (10 minutes ago): dated as the consumer would have.
    let early = refused(
        &mut conn,
        &id,
        "order.shipped",
        FailureClass::InvalidTransition,
        21,
    )
    .await;
    sqlx::query(
        "UPDATE rejections SET rejected_at = now() - interval '40 minutes' WHERE event_id = $1",
    )
    .bind(early)
    .execute(&mut *conn)
    .await
    .expect("dated");
    let payment = serde_json::json!({"reference": "pay-1", "amount": "39.98", "currency": "EUR"});
    let paid = changed(&db.pool, order_id, (2, "paid", "payment", payment), 22, 30).await;
    let stale = refused(
        &mut conn,
        &id,
        "order.cancelled",
        FailureClass::VersionConflict,
        23,
    )
    .await;

    let timeline = read::order_events(&mut conn, &id, 100)
        .await
        .expect("events");
    assert!(!timeline.truncated);
    let seen: Vec<_> = timeline
        .events
        .iter()
        .map(|e| match e {
            OrderEvent::Applied(a) => ("applied", Some(a.event_id), Some(a.version), None),
            OrderEvent::Refused(r) => ("refused", r.event_id, None, Some(r.error_class)),
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("applied", Some(creation), Some(1), None),
            (
                "refused",
                Some(early),
                None,
                Some(FailureClass::InvalidTransition)
            ),
            ("applied", Some(paid), Some(2), None),
            (
                "refused",
                Some(stale),
                None,
                Some(FailureClass::VersionConflict)
            ),
        ]
    );
    let OrderEvent::Refused(r) = &timeline.events[3] else {
        panic!("refused: {:?}", timeline.events[3]);
    };
    assert_eq!(r.event_type.as_deref(), Some("order.cancelled"));
    assert_eq!((r.dlq_partition, r.dlq_offset), (Some(1), Some(23)));
    let json = serde_json::to_value(&timeline.events).expect("json");
    assert_eq!(json[0]["outcome"], "applied");
    assert_eq!(json[0]["source_offset"], 20);
    assert_eq!(json[3]["outcome"], "refused");
    assert_eq!(json[3]["error_class"], "version_conflict");
    assert!(
        json[3].get("payload").is_none() && json[2].get("payload").is_none(),
        "outcomes, not content: {json}"
    );

    // An order never stored: its refused changes alone.
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut ids = Vec::new();
    for offset in 0..5 {
        ids.push(
            refused(
                &mut conn,
                &unknown,
                "order.paid",
                FailureClass::UnknownOrder,
                100 + offset,
            )
            .await,
        );
        sqlx::query("UPDATE rejections SET rejected_at = now() - make_interval(mins => $2) WHERE event_id = $1")
            .bind(ids[ids.len() - 1])
            .bind(10 - offset as i32)
            .execute(&mut *conn)
            .await
            .expect("dated");
    }
    let all = read::order_events(&mut conn, &unknown, 5)
        .await
        .expect("events");
    assert!(!all.truncated, "exactly at the limit");
    assert_eq!(all.events.len(), 5);
    let cut = read::order_events(&mut conn, &unknown, 3)
        .await
        .expect("events");
    assert!(cut.truncated);
    let kept: Vec<_> = cut
        .events
        .iter()
        .map(|e| match e {
            OrderEvent::Refused(r) => r.event_id,
            OrderEvent::Applied(a) => panic!("nothing applied: {a:?}"),
        })
        .collect();
    assert_eq!(
        kept,
        [Some(ids[2]), Some(ids[3]), Some(ids[4])],
        "the newest three, oldest first"
    );
    assert_eq!(
        read::order_events(&mut conn, &uuid::Uuid::now_v7().to_string(), 5)
            .await
            .expect("events"),
        read::Timeline::default()
    );
    drop(conn);
    db.drop().await;
}
