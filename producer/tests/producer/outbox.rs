//! Outbox mode in process: the producer against librdkafka's mock cluster
//! and the local PostgreSQL. A broker outage refuses nothing and every
//! accepted order is published once it returns, in request order per key;
//! an outbox that does not answer is a 503; two replicas relay one outbox
//! without publishing a row twice or reordering a key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::support::{header, key, order_body, TestApp};
use contract::{headers, topics};
use harness::database::{outbox_drained, outbox_waiting, TestDatabase};
use harness::wait::eventually;
use serde_json::{json, Value};

/// How long a test waits for an effect before it fails; a passing run goes
/// on as soon as the effect shows.
const WAIT: Duration = Duration::from_secs(30);

fn outbox_env(db: &TestDatabase) -> Vec<(&'static str, String)> {
    vec![
        ("PRODUCER_MODE", "outbox".to_owned()),
        ("OUTBOX_DATABASE_URL", db.url.clone()),
        ("OUTBOX_RELAY_POLL_MS", "20".to_owned()),
    ]
}

fn pairs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The correlation ids of `messages` per key, in topic order.
fn sequences(messages: &[rdkafka::message::OwnedMessage]) -> HashMap<String, Vec<String>> {
    let mut by_key: HashMap<String, Vec<String>> = HashMap::new();
    for m in messages {
        by_key
            .entry(key(m))
            .or_default()
            .push(header(m, headers::CORRELATION_ID).unwrap_or_default());
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_refuses_nothing_and_every_order_is_published_in_order_once_it_returns() {
    let db = TestDatabase::create().await;
    let env = outbox_env(&db);
    let mut app = TestApp::spawn(&pairs(&env)).await;
    app.cluster.broker_down(1).expect("broker down");

    // Three keys, four orders each, sent one after the other per key.
    let keys: Vec<String> = (0..3).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let started = Instant::now();
    for round in 0..4 {
        for (k, order_id) in keys.iter().enumerate() {
            let mut body = order_body();
            body["order_id"] = json!(order_id);
            body["customer"]["id"] = json!(format!("c-{round}"));
            let answer = app
                .post("/orders")
                .header("x-correlation-id", format!("k{k}-r{round}"))
                .json(&body)
                .send()
                .await
                .expect("answer");
            assert_eq!(answer.status(), 202, "accepted while the broker is down");
            assert!(answer.headers().contains_key("location"));
        }
    }
    let batch = app
        .post("/orders/batch")
        .json(&json!({"orders": [{"order": order_body()}, {"order": order_body()}]}))
        .send()
        .await
        .expect("answer");
    assert_eq!(batch.status(), 200);
    let answer: Value = batch.json().await.expect("json");
    assert_eq!(answer["accepted"], 2);
    assert!(
        answer["results"][0].get("partition").is_none(),
        "no broker position yet: {answer}"
    );
    println!(
        "14 orders accepted with the broker down in {:?}",
        started.elapsed()
    );
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("answer");
    assert_eq!(ready.status(), 200, "ready: the outbox answers");
    assert_eq!(
        outbox_waiting(&db.pool).await,
        14,
        "every accepted order waits in the outbox"
    );
    // The relay reports the depth it finds on its next turn.
    eventually(WAIT, "the outbox depth of 14 reported", || async {
        let metrics = app.metrics().await;
        if harness::metrics::sample(&metrics, "outbox_depth") == Some(14.0) {
            Ok(())
        } else {
            Err(metrics)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    app.cluster.broker_up(1).expect("broker up");
    outbox_drained(&db.pool, Duration::from_secs(30)).await;
    let messages = app.read_topic(topics::ORDERS, 14);
    assert_eq!(messages.len(), 14, "each published once");
    let by_key = sequences(&messages);
    for (k, order_id) in keys.iter().enumerate() {
        let expected: Vec<String> = (0..4).map(|r| format!("k{k}-r{r}")).collect();
        assert_eq!(
            by_key.get(order_id),
            Some(&expected),
            "request order per key"
        );
    }
    let m = &messages[0];
    for name in [
        headers::CONTENT_TYPE,
        headers::SCHEMA_VERSION,
        headers::EVENT_TYPE,
        headers::CONTENT_FINGERPRINT,
        headers::TRACEPARENT,
    ] {
        assert!(
            header(m, name).is_some(),
            "{name} travels through the outbox"
        );
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("outbox_relayed_total 14"), "{metrics}");
    assert!(
        metrics.contains(r#"outbox_writes_total{outcome="written"} 14"#),
        "{metrics}"
    );
    app.shutdown().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbox_that_does_not_answer_is_a_503_with_retry_after_and_not_ready() {
    let db = TestDatabase::create().await;
    let mut env = outbox_env(&db);
    env.push(("OUTBOX_WRITE_TIMEOUT_MS", "500".to_owned()));
    let mut app = TestApp::spawn(&pairs(&env)).await;
    assert_eq!(app.post_order().await, 202);
    let mut lock = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let started = Instant::now();
    let answer = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .expect("answer");
    let took = started.elapsed();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let body: Value = answer.json().await.expect("json");
    assert_eq!(body["error"], "outbox_unavailable", "{body}");
    assert!(
        took < Duration::from_secs(3),
        "bounded by the write timeout: {took:?}"
    );
    let ready = app
        .http
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("answer");
    assert_eq!(ready.status(), 503);
    lock.rollback().await.expect("unlock");
    assert_eq!(
        app.post_order().await,
        202,
        "answers again once the outbox does"
    );
    outbox_drained(&db.pool, Duration::from_secs(30)).await;
    assert_eq!(
        app.read_topic(topics::ORDERS, 2).len(),
        2,
        "the refused one was not written"
    );
    app.shutdown().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_relay_one_outbox_without_a_duplicate_or_a_reordered_key() {
    let db = TestDatabase::create().await;
    let env = outbox_env(&db);
    let mut first = TestApp::spawn(&pairs(&env)).await;
    // The second replica publishes to the first's cluster.
    let mut second_env = pairs(&env);
    let bootstrap = first.cluster.bootstrap_servers();
    second_env.push(("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()));
    let mut second = TestApp::spawn(&second_env).await;
    first.cluster.broker_down(1).expect("broker down");

    // 40 keys, 5 orders each, alternating replicas, so both hold backlog of
    // every key when the broker returns.
    let keys: Vec<String> = (0..40).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    for round in 0..5 {
        let posts = keys.iter().enumerate().map(|(k, order_id)| {
            let app = if (k + round) % 2 == 0 {
                &first
            } else {
                &second
            };
            let mut body = order_body();
            body["order_id"] = json!(order_id);
            body["customer"]["id"] = json!(format!("c-{round}"));
            app.post("/orders")
                .header("x-correlation-id", format!("k{k}-r{round}"))
                .json(&body)
                .send()
        });
        for answer in futures::future::join_all(posts).await {
            assert_eq!(answer.expect("answer").status(), 202);
        }
    }
    assert_eq!(outbox_waiting(&db.pool).await, 200);
    first.cluster.broker_up(1).expect("broker up");
    outbox_drained(&db.pool, Duration::from_secs(60)).await;
    let messages = first.read_topic(topics::ORDERS, 200);
    assert_eq!(
        messages.len(),
        200,
        "no row published twice in normal operation"
    );
    let by_key = sequences(&messages);
    for (k, order_id) in keys.iter().enumerate() {
        let expected: Vec<String> = (0..5).map(|r| format!("k{k}-r{r}")).collect();
        assert_eq!(
            by_key.get(order_id),
            Some(&expected),
            "key {k} in request order"
        );
    }
    let relayed = |metrics: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("outbox_relayed_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let (a, b) = (
        relayed(&first.metrics().await),
        relayed(&second.metrics().await),
    );
    println!("relayed: {a} by the first replica, {b} by the second");
    assert_eq!(a + b, 200);
    second.shutdown().await;
    first.shutdown().await;
    db.drop().await;
}

/// The regression of a relay that vanished mid-batch: its session, left
/// open by whatever sits between it and the server, held its shard's lock
/// until the server's keepalives gave up (hours). Every outbox session now
/// tells the server to end a transaction left idle for the relay's
/// deadline, and a connection whose data goes unacknowledged as long.
#[tokio::test]
async fn a_transaction_left_idle_by_a_vanished_relay_is_ended_by_the_server() {
    use producer::outbox::{relay_deadline, Outbox, OutboxMetrics};
    use store::outbox::LOCK_CLASS;

    let db = TestDatabase::create().await;
    let metrics = OutboxMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let write = Duration::from_millis(1500);
    let pause = relay_deadline(write, Duration::from_millis(3000));
    assert_eq!(pause, Duration::from_millis(11_500));
    let outbox = Outbox::new(&db.url, 2, write, pause, metrics.clone()).expect("outbox");
    outbox.prepare().await.expect("table");
    let settings: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, setting FROM pg_settings WHERE name IN
           ('statement_timeout', 'idle_in_transaction_session_timeout',
            'tcp_keepalives_idle', 'tcp_user_timeout')",
    )
    .fetch_all(outbox.pool())
    .await
    .expect("settings");
    let got: HashMap<_, _> = settings.into_iter().collect();
    assert_eq!(got["statement_timeout"], "1500");
    assert_eq!(got["idle_in_transaction_session_timeout"], "11500");
    assert_eq!(got["tcp_user_timeout"], "11500");
    assert_eq!(got["tcp_keepalives_idle"], "30");

    // A relay that took shard 7's lock and went away without a word: the
    // lock is free again once the server ended its session.
    let short =
        Outbox::new(&db.url, 1, write, Duration::from_millis(300), metrics).expect("outbox");
    let mut abandoned = short.pool().acquire().await.expect("connection");
    sqlx::query("BEGIN")
        .execute(&mut *abandoned)
        .await
        .expect("begin");
    let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, 7)")
        .bind(LOCK_CLASS)
        .fetch_one(&mut *abandoned)
        .await
        .expect("lock");
    assert!(taken);
    let free = || async {
        sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_xact_lock($1, 7)")
            .bind(LOCK_CLASS)
            .fetch_one(&db.pool)
            .await
            .expect("try lock")
    };
    assert!(!free().await, "held while its session lives");
    eventually(
        Duration::from_secs(10),
        "the abandoned transaction to release the lock",
        || async { free().await.then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    drop(abandoned);
    db.drop().await;
}

/// A replica starting while a dead relay's transaction still holds row
/// locks on the table (until the server ends it) starts: with the table
/// there, start-up runs no DDL, which would wait for those locks and fail.
#[tokio::test]
async fn a_replica_starts_while_a_dead_relays_transaction_holds_the_table() {
    use producer::outbox::{Outbox, OutboxMetrics};

    let db = TestDatabase::create().await;
    let metrics = OutboxMetrics::register(&prometheus::Registry::new()).expect("metrics");
    let write = Duration::from_millis(500);
    let first =
        Outbox::new(&db.url, 2, write, Duration::from_secs(30), metrics.clone()).expect("outbox");
    first.prepare().await.expect("table");
    let mut dead = db.pool.begin().await.expect("begin");
    sqlx::query("DELETE FROM outbox WHERE id = -1")
        .execute(&mut *dead)
        .await
        .expect("row-exclusive lock");
    let second = Outbox::new(&db.url, 2, write, Duration::from_secs(30), metrics).expect("outbox");
    second
        .prepare()
        .await
        .expect("starts while the table is locked for writing");
    dead.rollback().await.expect("rollback");
    db.drop().await;
}
