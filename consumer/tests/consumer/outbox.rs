//! The consumer's outbox relay: rows left in the `outbox` table of the
//! consumer's database are published to their topic, in id order per key,
//! and deleted once the broker acknowledged them; a broker outage only
//! makes them wait.

use std::collections::HashMap;

use contract::topics;
use harness::database::{outbox_drained, outbox_waiting};
use harness::kafka::header;
use rdkafka::message::{Message, OwnedMessage};
use store::outbox::{shard_of, NewRow};

use crate::support::{TestContext, WAIT};

/// Settings of every test here: a relay that looks again soon.
const RELAY: [(&str, &str); 1] = [("OUTBOX_RELAY_POLL_MS", "20")];

/// Writes one row per `(key, version)` to the outbox of the test's
/// database, each in a transaction of its own, in the order given: the
/// value is `<key>/v<version>`, and the version travels as a header too.
async fn write_rows(ctx: &TestContext, rows: &[(&str, u32)]) {
    write_rows_to(ctx, topics::ORDERS_STATE, rows).await;
}

/// [`write_rows`] for `topic`.
async fn write_rows_to(ctx: &TestContext, topic: &str, rows: &[(&str, u32)]) {
    for (key, version) in rows {
        let headers = serde_json::json!([
            ["event-type", "order.state"],
            ["x-version", version.to_string()]
        ]);
        let value = format!("{key}/v{version}");
        let mut tx = ctx.db.pool.begin().await.expect("begin");
        store::outbox::insert(
            &mut tx,
            std::iter::once(NewRow {
                shard: shard_of(key),
                topic,
                key,
                headers: &headers,
                value: value.as_bytes(),
            }),
        )
        .await
        .expect("outbox row");
        tx.commit().await.expect("commit");
    }
}

/// The values of `messages` per key, in topic order.
fn values_by_key(messages: &[OwnedMessage]) -> HashMap<String, Vec<String>> {
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for m in messages {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        by_key.entry(key).or_default().push(value);
    }
    by_key
}

/// `versions` of `key`, as [`write_rows`] writes them.
fn expected(key: &str, versions: std::ops::RangeInclusive<u32>) -> Vec<String> {
    versions.map(|v| format!("{key}/v{v}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_are_published_in_id_order_per_key_and_deleted() {
    let ctx = TestContext::spawn().await;
    // Its start-up creates the outbox table beside the read model.
    let consumer = ctx.start_consumer(&RELAY);

    // Eight keys, four versions each, written round by round, so that every
    // shard holding a key holds the versions of others between its own.
    let keys: Vec<String> = (0..8).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let rows: Vec<(&str, u32)> = (1..=4)
        .flat_map(|version| keys.iter().map(move |k| (k.as_str(), version)))
        .collect();
    write_rows(&ctx, &rows).await;

    outbox_drained(&ctx.db.pool, WAIT).await;
    let messages = ctx.read(topics::ORDERS_STATE, rows.len());
    assert_eq!(messages.len(), rows.len(), "each row published");
    let by_key = values_by_key(&messages);
    for key in &keys {
        assert_eq!(
            by_key.get(key),
            Some(&expected(key, 1..=4)),
            "versions of {key} in the order written"
        );
    }
    let first = messages
        .iter()
        .find(|m| m.payload() == Some(format!("{}/v3", keys[0]).as_bytes()))
        .expect("a message of the first key");
    assert_eq!(header(first, "event-type").as_deref(), Some("order.state"));
    assert_eq!(
        header(first, "x-version").as_deref(),
        Some("3"),
        "headers travel in order"
    );
    let relayed = format!("outbox_relayed_total {}", rows.len());
    consumer
        .wait_for_metrics("the relay's count on the consumer's /metrics", |m| {
            m.lines().any(|l| l == relayed)
        })
        .await;
    consumer.stop();
    assert_eq!(
        ctx.topic_size(topics::ORDERS_STATE),
        rows.len() as i64,
        "no row published twice"
    );
    ctx.tear_down().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rows_wait_out_a_broker_outage_and_are_published_after() {
    let ctx = TestContext::spawn().await;
    let consumer = ctx.start_consumer(&RELAY);
    ctx.cluster.broker_down(1).expect("broker down");

    let key = uuid::Uuid::now_v7().to_string();
    write_rows(&ctx, &[(&key, 1), (&key, 2), (&key, 3)]).await;
    // The relay tried them, and without the broker's acknowledgement (its
    // producer gives up after its message timeout) keeps them.
    consumer
        .wait_for_metrics("the relay to count a publish the broker failed", |m| {
            harness::metrics::sum(m, "outbox_publish_failures_total", &[r#"kind="publish""#])
                .is_some_and(|n| n >= 1.0)
        })
        .await;
    assert_eq!(outbox_waiting(&ctx.db.pool).await, 3, "kept while down");

    ctx.cluster.broker_up(1).expect("broker up");
    outbox_drained(&ctx.db.pool, WAIT).await;
    let messages = ctx.read(topics::ORDERS_STATE, 3);
    assert_eq!(
        values_by_key(&messages).get(&key),
        Some(&expected(&key, 1..=3)),
        "every version, once, in order"
    );
    consumer.stop();
    assert_eq!(ctx.topic_size(topics::ORDERS_STATE), 3, "none twice");
    ctx.tear_down().await;
}

/// Services may share a database: the consumer's relay publishes the rows
/// of its own topic only, leaves another service's rows to it, and counts
/// only its own as its backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_publishes_and_counts_only_its_own_topics_rows() {
    let ctx = TestContext::spawn().await;
    let consumer = ctx.start_consumer(&RELAY);
    let key = uuid::Uuid::now_v7().to_string();
    // The producer's rows, in the same shard as the consumer's.
    write_rows_to(&ctx, topics::ORDERS, &[(&key, 1), (&key, 2)]).await;
    write_rows(&ctx, &[(&key, 1), (&key, 2)]).await;

    consumer
        .wait_for_metrics("its own two rows relayed and its backlog empty", |m| {
            m.lines().any(|l| l == "outbox_relayed_total 2")
                && m.lines().any(|l| l == "outbox_depth 0")
        })
        .await;
    let others: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE topic = $1")
        .bind(topics::ORDERS)
        .fetch_one(&ctx.db.pool)
        .await
        .expect("count");
    assert_eq!(others, 2, "another service's rows are left to it");
    assert_eq!(outbox_waiting(&ctx.db.pool).await, 2, "only those wait");
    let messages = ctx.read(topics::ORDERS_STATE, 2);
    assert_eq!(
        values_by_key(&messages).get(&key),
        Some(&expected(&key, 1..=2))
    );
    consumer.stop();
    assert_eq!(
        ctx.topic_size(topics::ORDERS),
        0,
        "nothing of theirs published"
    );
    ctx.tear_down().await;
}
