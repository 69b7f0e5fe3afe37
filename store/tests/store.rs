//! The schema against a real PostgreSQL: both sets of migrations on one
//! database, and rows the read side cannot take are errors.

use std::time::Duration;

use contract::dead_letter::{ErrorKind, FailureClass};
use contract::Domain;
use harness::database::TestDatabase;
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
