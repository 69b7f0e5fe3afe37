//! The delivery invariants, with the real consumer against librdkafka's mock
//! cluster and the local PostgreSQL. Each test fails if its invariant breaks.

use std::future::ready;
use std::time::Duration;

use crate::support::context::{inconsistent_orders, new_group, GROUP_PREFIX};
use crate::support::{Table, TestContext, WAIT};
use chrono::{DateTime, Utc};
use contract::{headers, topics, Domain, Format};
use harness::events::{
    headers_for, order_event, order_message, user_event, user_message, Outgoing,
};
use harness::kafka::header;
use harness::wait::{eventually, stays_quiet_for};
use rdkafka::message::Message;

/// How long a test that saw everything arrive watches for one thing more
/// (a redelivery, a second dead letter) before it calls the count final.
const SETTLE: Duration = Duration::from_secs(1);

/// The consumer's sessions waiting on a row lock, as a `FROM` clause.
macro_rules! consumer_lock_waits {
    () => {
        " FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'pubsubkafka-consumer' \
         AND wait_event_type = 'Lock'"
    };
}

/// How many of the consumer's sessions wait on a row lock.
const CONSUMER_LOCK_WAITERS: &str = concat!("SELECT count(*)", consumer_lock_waits!());

/// When the consumer's current wait on a row lock began, if it waits.
const LOCK_WAIT_STARTED: &str = concat!("SELECT max(query_start)", consumer_lock_waits!());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_messages_in_every_encoding_land_exactly_once_and_redelivery_adds_no_row() {
    let ctx = TestContext::spawn().await;
    let mut messages = Vec::new();
    for (n, format) in Format::ALL.iter().cycle().take(30).enumerate() {
        messages.push(order_message(&order_event(n), *format));
    }
    for (n, format) in Format::ALL.iter().cycle().take(9).enumerate() {
        messages.push(user_message(&user_event(n), *format));
    }
    ctx.publish(&messages);

    let consumer = ctx.start_consumer(&[]);
    assert_eq!(ctx.wait_for_rows(Table::Orders, 30).await, 30);
    assert_eq!(ctx.wait_for_rows(Table::Users, 9).await, 9);
    assert_eq!(ctx.wait_for_rows(Table::EventStore, 39).await, 39);
    assert_eq!(ctx.rows(Table::OrderItems).await, 60);
    let total: String = sqlx::query_scalar("SELECT sum(total)::text FROM orders")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(total, "1349.40", "30 orders of 44.98 EUR, exact");
    let formats: i64 = ctx
        .count("SELECT count(DISTINCT content_type) FROM event_store")
        .await;
    assert_eq!(formats, 3);

    // The same messages again, and a second group reading everything from
    // the start: every one is a redelivery.
    ctx.publish(&messages);
    let other = ctx.start_consumer_in(&new_group(), &[]);
    // The new group reads both copies of every message: each a duplicate.
    let duplicates = |metrics: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("kafka_consumer_messages_total{outcome=\"duplicate\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let expected = 2.0 * messages.len() as f64;
    eventually(WAIT, "every copy read as a duplicate", || {
        let metrics = other.metrics();
        let seen = duplicates(&metrics);
        ready(if seen >= expected {
            Ok(())
        } else {
            Err(format!(
                "{seen} of {expected} read as duplicates:\n{metrics}"
            ))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    other.stop();
    consumer.stop();
    assert_eq!(ctx.rows(Table::Orders).await, 30);
    assert_eq!(ctx.rows(Table::Users).await, 9);
    assert_eq!(ctx.rows(Table::EventStore).await, 39);
    assert_eq!(ctx.rows(Table::OrderItems).await, 60);
    assert_eq!(
        ctx.topic_size(topics::ORDERS_DLQ),
        0,
        "nothing dead-lettered"
    );
    ctx.tear_down().await;
}

fn on_partition(mut m: Outgoing, partition: i32) -> Outgoing {
    m.partition = Some(partition);
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_messages_go_to_the_dlq_intact_without_blocking_their_partition() {
    let ctx = TestContext::spawn().await;

    let valid = |n| on_partition(order_message(&order_event(n), Format::Json), 0);
    let mut invalid_event = order_event(100);
    invalid_event.items[0].quantity = 0;
    let mut tampered_totals = order_event(101);
    tampered_totals.totals.subtotal = rust_decimal::Decimal::ONE;
    let mut wrong_key = order_message(&order_event(102), Format::Protobuf);
    wrong_key.key = b"someone-else".to_vec();
    let no_content_type = valid(103).without_header(headers::CONTENT_TYPE);
    let xml = valid(104).with_header(headers::CONTENT_TYPE, "application/xml");
    let future_avro =
        order_message(&order_event(105), Format::Avro).with_header(headers::SCHEMA_VERSION, "9");
    let unknown_type = valid(106).with_header(headers::EVENT_TYPE, "order.teleported");
    let mut bad_user = user_message(&user_event(107), Format::Json);
    bad_user.value = br#"{"not": "a user"}"#.to_vec();
    bad_user.partition = Some(1);

    let poison: Vec<(Outgoing, &str)> = vec![
        (
            on_partition(
                Outgoing {
                    value: b"{not json".to_vec(),
                    ..valid(110)
                },
                0,
            ),
            "decode",
        ),
        (
            on_partition(
                Outgoing {
                    value: vec![0xff, 0x00, 0x13],
                    headers: headers_for(Format::Protobuf, Domain::Orders, 2),
                    ..valid(111)
                },
                0,
            ),
            "decode",
        ),
        (
            on_partition(order_message(&invalid_event, Format::Avro), 0),
            "validation",
        ),
        (
            on_partition(order_message(&tampered_totals, Format::Json), 0),
            "validation",
        ),
        (on_partition(wrong_key, 0), "key_mismatch"),
        (no_content_type, "missing_header"),
        (xml, "unsupported_content_type"),
        (on_partition(future_avro, 0), "unsupported_schema_version"),
        (unknown_type, "unknown_event_type"),
        (bad_user, "decode"),
        (
            on_partition(
                Outgoing {
                    value: harness::events::avro_item_count_bomb(),
                    headers: headers_for(Format::Avro, Domain::Orders, 2),
                    ..valid(112)
                },
                0,
            ),
            "decode",
        ),
    ];
    // Valid orders before, between and after the poison, on one partition.
    let mut stream = vec![valid(0)];
    for (n, (p, _)) in poison.iter().enumerate() {
        stream.push(p.clone());
        stream.push(valid(n + 1));
    }
    stream.push(valid(50));
    ctx.publish(&stream);
    let valid_count = (stream.len() - poison.len()) as i64;

    let consumer = ctx.start_consumer(&[]);
    assert_eq!(
        ctx.wait_for_rows(Table::Orders, valid_count).await,
        valid_count,
        "every valid order around the poison is persisted"
    );
    let orders_dlq = ctx.read(topics::ORDERS_DLQ, poison.len() - 1);
    let users_dlq = ctx.read(topics::USERS_DLQ, 1);
    let metrics = consumer.metrics();
    consumer.stop();
    println!(
        "published {} messages: {} valid, {} poison; dead-lettered {} + {}",
        stream.len(),
        valid_count,
        poison.len(),
        orders_dlq.len(),
        users_dlq.len()
    );
    assert_eq!(
        orders_dlq.len(),
        poison.len() - 1,
        "every order poison dead-lettered once"
    );
    assert_eq!(users_dlq.len(), 1);

    for (sent, class) in &poison {
        let dlq = if sent.topic == topics::USERS {
            &users_dlq
        } else {
            &orders_dlq
        };
        let found = dlq
            .iter()
            .find(|m| {
                m.payload() == Some(sent.value.as_slice()) && m.key() == Some(sent.key.as_slice())
            })
            .unwrap_or_else(|| panic!("poison of class {class} not in the DLQ"));
        for (k, v) in &sent.headers {
            assert_eq!(
                header(found, k).as_ref(),
                Some(v),
                "original header {k} kept"
            );
        }
        assert_eq!(
            header(found, headers::DLQ_ERROR_CLASS).as_deref(),
            Some(*class)
        );
        assert_eq!(
            header(found, headers::DLQ_ERROR_KIND).as_deref(),
            Some("permanent")
        );
        assert_eq!(
            header(found, headers::DLQ_RETRY_COUNT).as_deref(),
            Some("0")
        );
        assert_eq!(
            header(found, headers::DLQ_ORIGINAL_TOPIC).as_deref(),
            Some(sent.topic.as_str())
        );
        assert_eq!(
            header(found, headers::DLQ_CONSUMER_GROUP).map(|g| g.starts_with(GROUP_PREFIX)),
            Some(true)
        );
        for name in [
            headers::DLQ_ORIGINAL_PARTITION,
            headers::DLQ_ORIGINAL_OFFSET,
            headers::DLQ_ORIGINAL_TIMESTAMP,
            headers::DLQ_ERROR_MESSAGE,
            headers::DLQ_FAILED_AT,
        ] {
            assert!(header(found, name).is_some(), "{name} missing");
        }
        if let Some(p) = sent.partition {
            assert_eq!(
                header(found, headers::DLQ_ORIGINAL_PARTITION),
                Some(p.to_string())
            );
        }
    }
    assert!(metrics.contains("kafka_dlq_messages_total{error_class=\"validation\",error_kind=\"permanent\",topic=\"orders\"} 2"), "{metrics}");
    // Each dead letter is recorded for the read side, pointing at its copy
    // in the DLQ: every poison here names an order or user (by its value, or
    // by its key when the value cannot be read).
    let rejections: Vec<(String, i64, String, i32, i64, String, String)> = sqlx::query_as(
        "SELECT source_topic, source_offset, dlq_topic, dlq_partition, dlq_offset,
                error_class, aggregate_id FROM rejections",
    )
    .fetch_all(&ctx.db.pool)
    .await
    .unwrap();
    assert_eq!(rejections.len(), poison.len(), "{rejections:?}");
    for (topic, offset, dlq_topic, dlq_partition, dlq_offset, class, aggregate) in &rejections {
        let dlq = if topic == topics::USERS {
            &users_dlq
        } else {
            &orders_dlq
        };
        assert_eq!(dlq_topic, &topics::dlq_of(topic));
        let letter = dlq
            .iter()
            .find(|m| m.partition() == *dlq_partition && m.offset() == *dlq_offset)
            .unwrap_or_else(|| panic!("no dead letter at {dlq_partition}/{dlq_offset}"));
        assert_eq!(
            header(letter, headers::DLQ_ORIGINAL_OFFSET),
            Some(offset.to_string())
        );
        assert_eq!(
            header(letter, headers::DLQ_ERROR_CLASS).as_ref(),
            Some(class)
        );
        let key = String::from_utf8_lossy(letter.key().unwrap_or_default()).into_owned();
        if class != "key_mismatch" {
            assert_eq!(&key, aggregate, "the id is the message's");
        }
    }
    assert_eq!(ctx.rows(Table::EventStore).await, valid_count);
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_that_heals_within_the_retries_is_persisted() {
    let ctx = TestContext::spawn_migrated().await;
    let blocked = order_event(1);
    let lock = harness::database::lock_order(&ctx.db.pool, blocked.order_id).await;
    let others: Vec<_> = (2..6).map(order_event).collect();
    let mut messages = vec![order_message(&blocked, Format::Json)];
    messages.extend(others.iter().map(|e| order_message(e, Format::Json)));
    ctx.publish(&messages);

    // Lock waits of 200 ms, then 0.3 s, 0.6 s, 1.2 s between the tries.
    let consumer = ctx.start_consumer(&[
        ("MAX_RETRIES", "3"),
        ("RETRY_BACKOFF_MS", "300"),
        ("DB_LOCK_TIMEOUT_MS", "200"),
    ]);
    // Once the consumer is seen waiting on the lock, let it fail at least
    // once more, then release the row.
    let waiting = ctx.wait_for_count(CONSUMER_LOCK_WAITERS, 1).await;
    assert_eq!(waiting, 1, "the consumer reached the locked row");
    // Each try waits on the lock anew (a statement of its own): the batch's
    // try, the message's own first try, then a retry after its failure.
    // Three distinct waits seen mean at least one retry, whichever way
    // the batch was cut.
    let waits = std::cell::RefCell::new(std::collections::BTreeSet::new());
    eventually(WAIT, "three tries waiting on the locked row", || async {
        let started: Option<DateTime<Utc>> = sqlx::query_scalar(LOCK_WAIT_STARTED)
            .fetch_one(&ctx.db.pool)
            .await
            .map_err(|e| e.to_string())?;
        waits.borrow_mut().extend(started);
        match waits.borrow().len() {
            n if n >= 3 => Ok(()),
            n => Err(format!("{n} lock waits seen")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    lock.rollback().await.unwrap();
    assert_eq!(ctx.wait_for_rows(Table::Orders, 5).await, 5);
    let metrics = consumer.metrics();
    consumer.stop();
    // Exported at 0 from the start: counted, not merely present.
    let retried = harness::metrics::sample(
        &metrics,
        "kafka_consumer_messages_total{outcome=\"retried\",topic=\"orders\"}",
    );
    assert!(retried.is_some_and(|n| n >= 1.0), "{metrics}");
    assert!(
        ctx.topic_size(topics::ORDERS_DLQ) == 0,
        "nothing dead-lettered"
    );
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_failure_that_outlasts_the_retries_is_dead_lettered_with_its_retry_count() {
    let ctx = TestContext::spawn_migrated().await;
    let blocked = order_event(1);
    let lock = harness::database::lock_order(&ctx.db.pool, blocked.order_id).await;
    let sent = order_message(&blocked, Format::Protobuf);
    ctx.publish(&[sent.clone(), order_message(&order_event(2), Format::Json)]);

    let consumer = ctx.start_consumer(&[
        ("MAX_RETRIES", "2"),
        ("RETRY_BACKOFF_MS", "100"),
        ("DB_LOCK_TIMEOUT_MS", "100"),
    ]);
    let dlq = ctx.read(topics::ORDERS_DLQ, 1);
    assert_eq!(
        ctx.wait_for_count(
            "SELECT count(*) FROM orders WHERE correlation_id <> 'lock'",
            1
        )
        .await,
        1
    );
    consumer.stop();
    lock.rollback().await.unwrap();
    assert_eq!(dlq.len(), 1);
    let letter = &dlq[0];
    assert_eq!(letter.payload(), Some(sent.value.as_slice()));
    assert_eq!(letter.key(), Some(sent.key.as_slice()));
    assert_eq!(
        header(letter, headers::DLQ_ERROR_KIND).as_deref(),
        Some("transient")
    );
    assert_eq!(
        header(letter, headers::DLQ_ERROR_CLASS).as_deref(),
        Some("database_transient")
    );
    assert_eq!(
        header(letter, headers::DLQ_RETRY_COUNT).as_deref(),
        Some("2")
    );
    assert!(
        header(letter, headers::DLQ_ERROR_MESSAGE)
            .unwrap()
            .contains("lock"),
        "the reason is kept"
    );
    assert_eq!(
        ctx.rows(Table::Orders).await,
        1,
        "the dead-lettered order is not stored"
    );
    let recorded: (String, Option<uuid::Uuid>, String, String, i64) = sqlx::query_as(
        "SELECT aggregate_id, event_id, error_kind, error_class, dlq_offset FROM rejections",
    )
    .fetch_one(&ctx.db.pool)
    .await
    .unwrap();
    assert_eq!(
        recorded,
        (
            blocked.order_id.to_string(),
            Some(blocked.metadata.event_id),
            "transient".to_owned(),
            "database_transient".to_owned(),
            letter.offset()
        ),
        "recorded for the read side, with where the dead letter sits"
    );
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unreachable_mid_stream_sends_nothing_to_the_dlq_and_all_persist_once_back() {
    let ctx = TestContext::spawn().await;
    let proxy = harness::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let via_proxy = ctx
        .db
        .url
        .replace("127.0.0.1:5432", &proxy.addr.to_string());
    assert_ne!(
        via_proxy, ctx.db.url,
        "the test database URL goes through the proxy"
    );

    let first: Vec<_> = (0..20)
        .map(|n| order_message(&order_event(n), Format::Json))
        .collect();
    ctx.publish(&first);
    let consumer = ctx.start_consumer_via(&via_proxy, &[("MAX_RETRIES", "1")]);
    assert_eq!(ctx.wait_for_rows(Table::Orders, 20).await, 20);

    proxy.cut();
    let second: Vec<_> = (20..120)
        .map(|n| order_message(&order_event(n), Format::Avro))
        .collect();
    ctx.publish(&second);
    let started = std::time::Instant::now();
    let during = consumer
        .wait_for_metrics("the circuit to open after the cut", |metrics| {
            harness::metrics::sample(metrics, "kafka_consumer_circuit_open") == Some(1.0)
        })
        .await;
    println!("circuit opened {:?} after the cut", started.elapsed());
    assert_eq!(
        harness::metrics::sample(&during, "kafka_consumer_circuit_open"),
        Some(1.0),
        "circuit open during the outage:\n{during}"
    );
    assert_eq!(
        ctx.rows(Table::Orders).await,
        20,
        "nothing written while down"
    );

    proxy.restore();
    assert_eq!(
        ctx.wait_for_rows(Table::Orders, 120).await,
        120,
        "everything persisted once the database is back"
    );
    let after = consumer.metrics();
    consumer.stop();
    assert_eq!(
        harness::metrics::sample(&after, "kafka_consumer_circuit_open"),
        Some(0.0),
        "{after}"
    );
    let dead_lettered = ctx.topic_size(topics::ORDERS_DLQ);
    println!(
        "published 120, persisted {}, dead-lettered {dead_lettered}",
        ctx.rows(Table::Orders).await,
    );
    assert_eq!(dead_lettered, 0, "no valid order was dead-lettered");
    assert_eq!(ctx.rows(Table::EventStore).await, 120);
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_crashed_without_commit_and_restarted_loses_nothing_and_duplicates_nothing() {
    let ctx = TestContext::spawn().await;
    let total = 600;
    let messages: Vec<_> = (0..total)
        .map(|n| order_message(&order_event(n), Format::ALL[n % 3]))
        .collect();
    ctx.publish(&messages[..300]);

    // Small batches so the crash lands mid-stream.
    let small = [("BATCH_SIZE", "10"), ("BATCH_WAIT_MS", "5")];
    let first = ctx.start_consumer(&small);
    let before_crash = ctx.wait_for_rows(Table::Orders, 50).await;
    assert!(before_crash >= 50);
    first.crash();
    let at_crash = ctx.rows(Table::Orders).await;
    ctx.publish(&messages[300..]);

    let second = ctx.start_consumer(&small);
    let persisted = ctx.wait_for_rows(Table::Orders, total as i64).await;
    // Redeliveries of what the crash left uncommitted may still be in
    // flight once every order is in: watch a second for an extra event.
    stays_quiet_for(SETTLE, "no event stored twice", || async {
        let events = ctx.rows(Table::EventStore).await;
        (events > total as i64).then_some(events)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    second.stop();
    let events = ctx.rows(Table::EventStore).await;
    let distinct = ctx
        .count("SELECT count(DISTINCT order_id) FROM orders")
        .await;
    println!("sent {total}, persisted {at_crash} before the crash, {persisted} in all, {events} events, {} duplicated", events - distinct);
    assert_eq!(persisted, total as i64, "nothing lost");
    assert_eq!(
        events, total as i64,
        "nothing duplicated in the event store"
    );
    assert_eq!(distinct, total as i64);
    assert_eq!(
        ctx.topic_size(topics::ORDERS_DLQ),
        0,
        "nothing dead-lettered"
    );
    ctx.tear_down().await;
}

/// Whether the server closed `s`: whatever it said before closing, then the
/// close (a read that waits is a connection still open).
async fn closed_by_server(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => matches!(
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        ),
        Err(_) => false,
    }
}

/// `event` with `items` in place of its own, its totals recomputed.
fn with_items(
    mut event: contract::OrderEvent,
    items: &[(&str, u32, &str)],
) -> contract::OrderEvent {
    event.items = items
        .iter()
        .map(|(sku, quantity, price)| {
            let unit_price: rust_decimal::Decimal = price.parse().expect("price");
            contract::OrderItem {
                sku: (*sku).into(),
                name: "Thing".into(),
                quantity: *quantity,
                unit_price,
                line_total: unit_price * rust_decimal::Decimal::from(*quantity),
                inventory_status: contract::InventoryStatus::Unknown,
            }
        })
        .collect();
    event.totals.subtotal = event.items.iter().map(|i| i.line_total).sum();
    event.totals.total = event.totals.subtotal;
    event.totals.item_count = event.items.iter().map(|i| i.quantity).sum();
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_id_twice_in_a_batch_stores_the_first_body_and_dead_letters_a_different_second() {
    let ctx = TestContext::spawn().await;
    let first = with_items(order_event(1), &[("SKU-1", 1, "1.00")]);
    // The same order and event id with other items: a reused Idempotency-Key.
    let reused_key = with_items(
        first.clone(),
        &[("SKU-2", 1, "21.00"), ("SKU-3", 2, "21.00")],
    );
    // Another order under the same event id.
    let mut other_order = order_event(2);
    other_order.metadata.event_id = first.metadata.event_id;
    // A true redelivery of the first, byte for byte.
    let messages = [
        on_partition(order_message(&first, Format::Json), 0),
        on_partition(order_message(&reused_key, Format::Json), 0),
        on_partition(order_message(&other_order, Format::Protobuf), 0),
        on_partition(order_message(&first, Format::Json), 0),
    ];
    ctx.publish(&messages);

    let consumer = ctx.start_consumer(&[]);
    let dlq = ctx.read(topics::ORDERS_DLQ, 2);
    assert_eq!(ctx.wait_for_rows(Table::Orders, 1).await, 1);
    let metrics = consumer
        .wait_for_metrics("both conflicting bodies counted", |metrics| {
            let conflicts = harness::metrics::sample(
                metrics,
                "kafka_consumer_messages_total{outcome=\"conflict\",topic=\"orders\"}",
            );
            conflicts == Some(2.0)
        })
        .await;
    consumer.stop();
    println!(
        "one event id, four messages: {} orders, {} dead-lettered",
        ctx.rows(Table::Orders).await,
        dlq.len()
    );
    assert_eq!(
        inconsistent_orders(&ctx.db.pool).await,
        0,
        "an order's items do not add up to its totals"
    );
    assert_eq!(ctx.rows(Table::Orders).await, 1);
    assert_eq!(ctx.rows(Table::EventStore).await, 1);
    let stored: String = sqlx::query_scalar("SELECT order_id::text FROM orders")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(stored, first.order_id.to_string());
    let total: String = sqlx::query_scalar("SELECT total::text FROM orders")
        .fetch_one(&ctx.db.pool)
        .await
        .unwrap();
    assert_eq!(total, "1.00", "the first body is the one kept");
    assert_eq!(dlq.len(), 2, "both conflicting bodies dead-lettered");
    for (sent, letter) in [(&messages[1], &dlq), (&messages[2], &dlq)] {
        let found = letter
            .iter()
            .find(|m| m.payload() == Some(sent.value.as_slice()))
            .expect("the conflicting message, bytes intact");
        assert_eq!(
            header(found, headers::DLQ_ERROR_CLASS).as_deref(),
            Some("conflict")
        );
        assert_eq!(
            header(found, headers::DLQ_ERROR_KIND).as_deref(),
            Some("permanent")
        );
    }
    assert_eq!(
        harness::metrics::sample(
            &metrics,
            "kafka_consumer_messages_total{outcome=\"conflict\",topic=\"orders\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_to_dead_letter_whole_is_dead_lettered_reduced_and_never_blocks_its_partition(
) {
    let ctx = TestContext::spawn().await;
    let valid = |n| on_partition(order_message(&order_event(n), Format::Json), 0);
    // Near the broker's default limit: accepted as it is, but its dead
    // letter, with the dlq-* headers added, is not.
    let huge = Outgoing {
        value: vec![b'x'; 999_700],
        ..valid(90)
    };
    let stream = [valid(1), huge.clone(), valid(2), valid(3)];
    ctx.publish(&stream);

    let consumer = ctx.start_consumer(&[]);
    let dlq = ctx.read(topics::ORDERS_DLQ, 1);
    assert_eq!(
        ctx.wait_for_rows(Table::Orders, 3).await,
        3,
        "the orders after it are persisted"
    );
    let committed = ctx.committed_to(4).await;
    let metrics = consumer.metrics();
    consumer.stop();
    println!(
        "999 700-byte poison: dead-lettered {}, committed {committed:?}",
        dlq.len()
    );
    assert_eq!(committed[0], Some(4), "the partition is committed past it");
    assert_eq!(dlq.len(), 1);
    let letter = &dlq[0];
    assert_eq!(letter.key(), Some(huge.key.as_slice()), "original key");
    assert_eq!(
        header(letter, headers::DLQ_VALUE_TRUNCATED).as_deref(),
        Some("true")
    );
    assert_eq!(
        header(letter, headers::DLQ_ORIGINAL_VALUE_BYTES).as_deref(),
        Some("999700")
    );
    let kept = letter.payload().unwrap_or_default();
    assert!(
        kept.len() < huge.value.len() && !kept.is_empty(),
        "{}",
        kept.len()
    );
    assert!(
        huge.value.starts_with(kept),
        "the kept bytes are the value's start"
    );
    assert_eq!(
        header(letter, headers::DLQ_ERROR_CLASS).as_deref(),
        Some("decode")
    );
    assert_eq!(
        header(letter, headers::DLQ_ORIGINAL_OFFSET).as_deref(),
        Some("1")
    );
    assert_eq!(
        harness::metrics::sample(&metrics, "kafka_dlq_reduced_total{topic=\"orders\"}"),
        Some(1.0),
        "{metrics}"
    );
    ctx.tear_down().await;
}

/// A stream that turns to poison (a bad producer deploy) is held, not
/// emptied into its DLQ: past DLQ_FLOOD_MAX_IN_ROW dead letters in a row
/// the partition stops where it is, its committed offset on the first
/// message not dead-lettered, while other partitions go on. Nothing after
/// the held message is stored before it (offset order), and the hold is no
/// stall: the consumer stays ready (other partitions go on; the hold has its
/// own alert). Retries after DLQ_FLOOD_RETRY_SECS hold it again while it
/// still fails; a consumer started with the guard off (or with the fix)
/// takes it from there and loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_that_would_flood_its_dlq_is_held_and_resumes_where_it_stopped() {
    let ctx = TestContext::spawn().await;

    let valid =
        |n, partition| on_partition(order_message(&order_event(n), Format::Json), partition);
    let broken = |n| Outgoing {
        value: b"{not json".to_vec(),
        ..valid(n, 0)
    };
    let mut stream: Vec<Outgoing> = vec![valid(0, 0), valid(1, 0)];
    stream.extend((10..18).map(broken));
    stream.extend([valid(2, 0), valid(3, 0)]);
    stream.extend((20..23).map(|n| valid(n, 1)));
    ctx.publish(&stream);

    let guarded = [
        ("DLQ_FLOOD_MAX_IN_ROW", "3"),
        ("DLQ_FLOOD_RETRY_SECS", "1"),
        ("MAX_RETRIES", "0"),
        ("STALL_TIMEOUT_SECS", "5"),
    ];
    let consumer = ctx.start_consumer(&guarded);
    // The 2 orders before the poison and the other partition's 3.
    let stored = ctx.wait_for_rows(Table::Orders, 5).await;
    assert_eq!(stored, 5, "{stored} orders stored");
    assert_eq!(ctx.read(topics::ORDERS_DLQ, 3).len(), 3);
    // Retries every second find the same poison: held again each time.
    let trips = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("kafka_consumer_dlq_flood_trips_total{topic=\"orders\"} "))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // Seven trips a second apart: held past STALL_TIMEOUT_SECS since the
    // last batch finished.
    let metrics = consumer
        .wait_for_metrics("seven flood trips", |metrics| trips(metrics) >= 7)
        .await;
    println!(
        "held: {:?}",
        metrics
            .lines()
            .filter(|l| l.contains("dlq_flood"))
            .collect::<Vec<_>>()
    );
    assert!(
        trips(&metrics) >= 7,
        "held, then held again on each retry:\n{metrics}"
    );
    assert!(
        metrics.contains("kafka_consumer_dlq_flood_held{partition=\"0\",topic=\"orders\"} 1"),
        "{metrics}"
    );
    // Held for six retries (over STALL_TIMEOUT_SECS with messages
    // waiting): the orders after the poison are not stored before it, and
    // the hold is not a stall.
    let stored = ctx.rows(Table::Orders).await;
    assert_eq!(stored, 5, "nothing after the held message is stored");
    let (ready, said) = consumer.readiness();
    assert_eq!(ready, 200, "held is not stalled: {said}");
    consumer.stop();
    assert_eq!(
        ctx.topic_size(topics::ORDERS_DLQ),
        3,
        "no dead letter past the limit"
    );
    assert_eq!(
        ctx.committed()[0],
        Some(5),
        "the held partition's position is its first message not dead-lettered"
    );

    let off = [("DLQ_FLOOD_MAX_IN_ROW", "0"), ("MAX_RETRIES", "0")];
    let consumer = ctx.start_consumer(&off);
    assert_eq!(
        ctx.wait_for_rows(Table::Orders, 7).await,
        7,
        "the orders after the poison"
    );
    assert_eq!(ctx.read(topics::ORDERS_DLQ, 8).len(), 8);
    consumer.stop();
    assert_eq!(
        ctx.topic_size(topics::ORDERS_DLQ),
        8,
        "each poison message dead-lettered once"
    );
    ctx.tear_down().await;
}

/// A dead letter whose record for the read side cannot be written (the
/// database refuses it) is not passed over: its offset is not stored, so it
/// waits and is dead-lettered again until the record is written; the
/// partition then goes on. Nothing is lost, and "rejected" is never missing
/// for a message that was dead-lettered and committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejection_the_database_refuses_to_record_keeps_its_message_waiting() {
    let ctx = TestContext::spawn_migrated().await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse() RETURNS trigger AS $$
         BEGIN RAISE EXCEPTION 'refused for the test'; END; $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse BEFORE INSERT ON rejections
             FOR EACH ROW EXECUTE FUNCTION refuse();",
    )
    .execute(&ctx.db.pool)
    .await
    .unwrap();
    let poison_event = order_event(1);
    let poison = on_partition(
        Outgoing {
            value: b"{broken".to_vec(),
            ..order_message(&poison_event, Format::Json)
        },
        0,
    );
    let after = on_partition(order_message(&order_event(2), Format::Json), 0);
    ctx.publish(&[poison, after]);
    let consumer = ctx.start_consumer(&[]);
    let dlq = ctx.read(topics::ORDERS_DLQ, 1);
    assert!(!dlq.is_empty(), "dead-lettered");
    // No event marks "not committed, on purpose": watch the partition's
    // position while the dead letter waits for its record (in that time
    // it is dead-lettered again, so the waiting is exercised).
    stays_quiet_for(
        Duration::from_secs(2),
        "nothing committed past the unrecorded dead letter",
        || ready(ctx.committed()[0]),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ctx.rows(Table::Rejections).await, 0, "refused");
    sqlx::query("DROP TRIGGER refuse ON rejections")
        .execute(&ctx.db.pool)
        .await
        .unwrap();
    // The partition goes on once the record is written.
    ctx.committed_to(2).await;
    assert_eq!(ctx.rows(Table::Orders).await, 1);
    let recorded: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, source_offset FROM rejections")
            .fetch_all(&ctx.db.pool)
            .await
            .unwrap();
    assert_eq!(
        recorded,
        vec![(poison_event.order_id.to_string(), 0)],
        "one record per message read, however often it was dead-lettered"
    );
    consumer.stop();
    ctx.tear_down().await;
}

/// A dead letter the DLQ refuses for good even reduced (whole, cut to
/// 64 KiB, without value) is counted and passed over: its partition goes on
/// and is committed past it, never retried without end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_refused_even_reduced_is_counted_and_passed_over() {
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    let ctx = TestContext::spawn().await;
    let valid = |n| on_partition(order_message(&order_event(n), Format::Json), 0);
    let poison = Outgoing {
        value: b"{not json".to_vec(),
        ..valid(50)
    };
    ctx.publish(&[valid(1), poison, valid(2)]);
    // The next three writes to the cluster, the dead letter's three forms,
    // are refused for good.
    ctx.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_POLICY_VIOLATION; 3],
    );

    let consumer = ctx.start_consumer(&[]);
    assert_eq!(
        ctx.wait_for_rows(Table::Orders, 2).await,
        2,
        "the orders around it are persisted"
    );
    let committed = ctx.committed_to(3).await;
    let metrics = consumer.metrics();
    consumer.stop();
    assert_eq!(committed[0], Some(3), "the partition is committed past it");
    assert_eq!(
        harness::metrics::sample(&metrics, "kafka_dlq_dropped_total{topic=\"orders\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        ctx.topic_size(topics::ORDERS_DLQ) == 0,
        "nothing reached the DLQ"
    );
    ctx.tear_down().await;
}

/// The consumer's own HTTP port holds up to what the producer's does: a
/// flood of made-up methods and paths adds no metric series, and slow
/// clients that never finish a request head neither starve `/healthz` nor
/// stay connected past `HTTP_HEADER_TIMEOUT_MS`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumers_http_port_bounds_labels_and_slow_clients() {
    use tokio::io::AsyncWriteExt;

    let ctx = TestContext::spawn().await;
    let consumer = ctx.start_consumer(&[("HTTP_HEADER_TIMEOUT_MS", "1000")]);
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", consumer.addr);
    let series = |metrics: &str| -> std::collections::BTreeSet<String> {
        metrics
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_owned()))
            .collect()
    };
    for n in 0..3 {
        let method = reqwest::Method::from_bytes(format!("PROBE{n}").as_bytes()).expect("method");
        http.request(method, url(&format!("/p-{n}")))
            .send()
            .await
            .expect("answer");
    }
    // The first scrape adds its own series.
    let _ = consumer.metrics();
    let before = consumer.metrics();
    for n in 0..300 {
        let method =
            reqwest::Method::from_bytes(format!("M{n:04}{}", n * 7919).as_bytes()).expect("method");
        http.request(method, url(&format!("/x/{n}")))
            .send()
            .await
            .expect("answer");
    }
    let after = consumer.metrics();
    let added: Vec<_> = series(&after)
        .difference(&series(&before))
        .cloned()
        .collect();
    assert!(
        added.is_empty(),
        "new series: {:?}",
        &added[..added.len().min(5)]
    );

    let mut slow = Vec::new();
    for _ in 0..100 {
        let mut s = tokio::net::TcpStream::connect(consumer.addr)
            .await
            .expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("part of a head");
        slow.push(s);
    }
    let healthy = http.get(url("/healthz")).send().await.expect("answer");
    assert_eq!(
        healthy.status(),
        200,
        "slow clients do not starve the probe"
    );
    // Each client is read until the server closes it; one closed stays
    // counted, so the probe only reads the ones still open.
    let open = std::sync::Arc::new(tokio::sync::Mutex::new(slow));
    // The 1 s limit plus slack for a loaded machine, and well under the
    // 10 s default: a limit not applied fails here.
    let cut_off_within = Duration::from_secs(5);
    let cut_off = std::time::Instant::now();
    eventually(cut_off_within, "every slow client cut off", || {
        let open = open.clone();
        async move {
            let mut open = open.lock().await;
            let mut still = Vec::new();
            for mut s in open.drain(..) {
                if !closed_by_server(&mut s).await {
                    still.push(s);
                }
            }
            *open = still;
            if open.is_empty() {
                Ok(())
            } else {
                Err(format!("{} of 100 still open", open.len()))
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "slow clients all closed {:?} after the healthy probe",
        cut_off.elapsed()
    );
    consumer.stop();
    ctx.tear_down().await;
}
