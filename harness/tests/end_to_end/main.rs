//! The whole system as users run it: the built `producer` and `consumer`
//! binaries as processes, a Tansu broker process on loopback, the local
//! PostgreSQL, real faults; driven over HTTP only, checked in the database
//! and on the topics with independent clients. Each scenario prints what it
//! counted.
//!
//! The broker is a Tansu process of each scenario's own, or the broker named
//! by `KAFKA_BOOTSTRAP_SERVERS` when that is set (each scenario then creates
//! topics of its own); the broker-restart and SASL scenarios always start
//! their own Tansu. Tansu here is its memory-storage build: a broker restart
//! loses its topics and messages (the scenario recreates the topics and says
//! so). The scenarios of [`apache_kafka`], [`secured`] and [`lifecycle`]
//! (orders paid, shipped, delivered and cancelled, and refused) run on a
//! three-node Apache Kafka cluster of their own (see `harness::cluster`).

mod apache_kafka;
mod lifecycle;
mod secured;

use std::future::ready;
use std::time::{Duration, Instant};

use contract::headers;
use harness::broker::{Broker, Tansu};
use harness::database::{wait_for_count, TestDatabase};
use harness::events::{headers_for, order_event, order_message, Outgoing};
use harness::kafka::{header, publish, read_topic};
use harness::load::{order_body, post_orders};
use harness::process::Service;
use harness::proxy::Proxy;
use harness::stack::{
    circuit_opened, consumer_env, log_lines, producer_env, wait_for_metric, Stack, DRAIN, READY,
    SHUTDOWN_BOUND,
};
use harness::wait::eventually;
use rdkafka::message::Message;
use uuid::Uuid;

/// How long a test waits for an effect before it fails; a passing run goes
/// on as soon as the effect shows.
const WAIT: Duration = Duration::from_secs(30);

/// Customer data of every order the harness sends (and of the probe below).
const PII: [&str; 4] = ["Ada Lovelace", "ada@example.com", "SW1Y 4JH", "pii-probe"];

/// DESIGN.md: no PII in logs, whatever a request or a message held.
fn assert_no_pii_in_logs(services: &[&Service]) {
    for service in services {
        let logs = service.logs();
        assert!(!logs.is_empty(), "no logs captured to check");
        for needle in PII {
            assert!(
                !logs.contains(needle),
                "a log line holds customer data {needle:?}:\n{}",
                logs.lines()
                    .filter(|l| l.contains(needle))
                    .take(3)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_orders_are_each_persisted_exactly_once() {
    let stack = Stack::start(TestDatabase::create().await, None).await;
    let report = post_orders(
        &stack.producer.url("/orders"),
        3000,
        64,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(report.statuses.get(&202).copied(), Some(3000), "{report}");
    stack.assert_exactly_once("concurrent load", &report).await;

    // A refused order: its values must not reach the logs either.
    let mut probe = order_body(0);
    probe["customer"]["email"] = "pii-probe-not-an-email".into();
    probe["customer"]["name"] = "pii-probe-name".into();
    let refused = reqwest::Client::new()
        .post(stack.producer.url("/orders"))
        .json(&probe)
        .send()
        .await
        .expect("post");
    assert_eq!(refused.status().as_u16(), 422);
    assert_no_pii_in_logs(&[&stack.producer, &stack.consumer]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_consumer_during_load_loses_and_duplicates_nothing() {
    kill_9_of_the_consumer(Broker::for_scenario().await).await;
}

/// Three kill -9 of the consumer under load, on `broker`, each once the
/// consumer (restarted) is persisting again: mid-stream, not before it
/// joined its group.
async fn kill_9_of_the_consumer(broker: Broker) {
    let mut stack = Stack::start_on(broker, TestDatabase::create().await, None).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 32, Duration::from_secs(90)).await });
    let mut persisted = 0;
    for kill in 1..=3 {
        let progress = persisted + 150;
        let before = wait_for_count(
            &stack.db.pool,
            "SELECT count(*) FROM orders",
            progress,
            DRAIN,
        )
        .await;
        assert!(
            before >= progress,
            "the consumer persists between kills: {before} of {progress}"
        );
        stack.consumer.kill9();
        println!("kill -9 #{kill} of the consumer with {before} orders persisted");
        persisted = before;
        stack.consumer.restart();
        stack.consumer.wait_ready("/readyz", READY).await;
    }
    let report = load.await.expect("load");
    stack
        .assert_exactly_once("kill -9 of the consumer x3", &report)
        .await;
}

/// Rebalances under load: a second consumer joins the group mid-stream,
/// then the first is killed -9 and its partitions move after its session
/// times out. Every accepted order is stored once, and each partition's
/// events in offset order, though each member writes several partitions at
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_under_load_keep_each_partition_in_order_and_lose_nothing() {
    rebalances_under_load(Broker::for_scenario().await, 1, None).await;
}

/// On `broker`: `joining` more consumers join the group mid-stream, then
/// the first is killed -9; every consumer speaks the group `protocol`
/// (`KAFKA_GROUP_PROTOCOL`; librdkafka's default, the classic one, when
/// `None`).
async fn rebalances_under_load(broker: Broker, joining: usize, protocol: Option<&str>) {
    let db = TestDatabase::create().await;
    let mut env = consumer_env(&broker, &db.url);
    if let Some(protocol) = protocol {
        // The broker owns the session timeout under KIP-848's protocol.
        env.retain(|(name, _)| *name != "KAFKA_SESSION_TIMEOUT_MS");
        env.push(("KAFKA_GROUP_PROTOCOL", protocol.to_owned()));
    }
    let producer = producer_env(&broker);
    let stack = Stack::launch(db, broker, &env, &producer).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 32, Duration::from_secs(120)).await });
    let count = "SELECT count(*) FROM orders";
    let joined_at = wait_for_count(&stack.db.pool, count, 300, DRAIN).await;
    let mut others = Vec::new();
    for _ in 0..joining {
        let mut other = Service::start("consumer", "CONSUMER_HTTP_ADDR", &env);
        other.wait_ready("/readyz", READY).await;
        others.push(other);
    }
    println!(
        "{joining} more consumer(s) joined with {joined_at} orders persisted: {} members, \
         group protocol {}",
        joining + 1,
        protocol.unwrap_or("classic")
    );
    let mut first = stack.consumer;
    let killed_at = wait_for_count(&stack.db.pool, count, joined_at + 600, DRAIN).await;
    first.kill9();
    println!("the first consumer killed -9 with {killed_at} orders persisted");
    let report = load.await.expect("load");
    let second = others.remove(0);
    let stack = Stack {
        db: stack.db,
        broker: stack.broker,
        producer: stack.producer,
        consumer: second,
    };
    stack
        .assert_exactly_once(
            &format!("rebalances under load, {} members", joining + 1),
            &report,
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_each_service_under_load_drains_gracefully_and_loses_nothing() {
    let mut stack = Stack::start(TestDatabase::create().await, None).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 2000, 32, Duration::from_secs(90)).await });

    // Under load: orders flow end to end before each service is stopped.
    let pool = stack.db.pool.clone();
    let flowing = |at_least: i64| {
        let pool = pool.clone();
        async move {
            let n = wait_for_count(&pool, "SELECT count(*) FROM orders", at_least, DRAIN).await;
            assert!(n >= at_least, "orders stopped flowing at {n}");
            n
        }
    };
    let before = flowing(50).await;
    let started = Instant::now();
    let status = stack
        .producer
        .sigterm(SHUTDOWN_BOUND)
        .expect("producer exits within 30 s");
    println!(
        "producer stopped by SIGTERM in {:?} with {status}",
        started.elapsed()
    );
    assert!(status.success(), "producer exit status {status}");
    assert!(
        stack.producer.logs().contains("producer flushed"),
        "the producer flushed before exiting"
    );
    stack.producer.restart();
    stack.producer.wait_ready("/readyz", READY).await;

    flowing(before + 50).await;
    let started = Instant::now();
    let status = stack
        .consumer
        .sigterm(SHUTDOWN_BOUND)
        .expect("consumer exits within 30 s");
    println!(
        "consumer stopped by SIGTERM in {:?} with {status}",
        started.elapsed()
    );
    assert!(status.success(), "consumer exit status {status}");
    let logs = stack.consumer.logs();
    assert!(
        logs.contains("final offsets committed") && logs.contains("left the consumer group"),
        "drained and left"
    );
    stack.consumer.restart();
    stack.consumer.wait_ready("/readyz", READY).await;

    let report = load.await.expect("load");
    stack
        .assert_exactly_once("SIGTERM of each service", &report)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_for_a_while_dead_letters_nothing_and_all_persist_after() {
    postgres_unavailable_for_a_while(Broker::for_scenario().await).await;
}

/// PostgreSQL cut off from the consumer under load, then back, on `broker`.
async fn postgres_unavailable_for_a_while(broker: Broker) {
    let db = TestDatabase::create().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let via_proxy = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let stack = Stack::start_on(broker, db, Some(via_proxy)).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 2000, 32, Duration::from_secs(90)).await });

    // Orders flow before the cut.
    let flowed = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 50, DRAIN).await;
    assert!(flowed >= 50, "orders never flowed: {flowed}");
    proxy.cut();
    println!("PostgreSQL cut off from the consumer");
    let opened = circuit_opened(&stack.consumer).await;
    assert!(opened.is_some(), "circuit open during the outage");
    // The outage is held two seconds more with the circuit open, so that
    // the breaker's probes (every CIRCUIT_PROBE_MS, 250 ms) meet it several
    // times: a length of the fault, not a wait for an effect. (The load has
    // mostly been answered by now: the producer does not wait for the
    // consumer.)
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    println!("PostgreSQL reachable again");

    let report = load.await.expect("load");
    stack
        .assert_exactly_once("PostgreSQL outage", &report)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_broker_gives_503_and_the_producer_recovers_without_restart() {
    // Stopping the broker needs one the suite started.
    let mut stack = Stack::start_on(Broker::tansu(), TestDatabase::create().await, None).await;
    let client = reqwest::Client::new();
    let post = |key: &'static str| {
        client
            .post(stack.producer.url("/orders"))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .json(&order_body(1))
            .send()
    };
    assert_eq!(post("before").await.unwrap().status(), 202);
    // Memory storage loses what it holds: let the consumer take it first.
    assert_eq!(
        wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 1, DRAIN).await,
        1
    );

    let tansu = stack
        .broker
        .tansu
        .as_mut()
        .expect("a broker process of the scenario's own");
    let lines_before = [&stack.producer, &stack.consumer].map(|s| s.logs().lines().count());
    tansu.stop();
    let started = Instant::now();
    let down = post("during").await.unwrap();
    let took = started.elapsed();
    println!("broker down: POST answered {} in {took:?}", down.status());
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_secs(6),
        "within PRODUCE_TIMEOUT_MS (3 s) and slack, took {took:?}"
    );
    // Ten seconds of a dead broker, with requests failing meanwhile, is
    // reported once per kind of failure, not once per try.
    let _ = futures::future::join_all((0..20).map(|_| post("during"))).await;
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(started.elapsed())).await;
    for (service, before) in [&stack.producer, &stack.consumer]
        .into_iter()
        .zip(lines_before)
    {
        let logs = service.logs();
        let lines: Vec<&str> = logs.lines().skip(before).collect();
        println!(
            "{} log lines while the broker was down for {:?}",
            lines.len(),
            started.elapsed()
        );
        assert!(
            lines.len() <= 25,
            "the outage floods the log:\n{}",
            lines[..lines.len().min(40)].join("\n")
        );
    }

    // Memory storage: the restarted broker starts empty; topics are recreated.
    stack
        .broker
        .tansu
        .as_mut()
        .expect("a broker process")
        .restart();
    let started = Instant::now();
    eventually(
        Duration::from_secs(60),
        "the producer to recover without a restart",
        || async {
            match post("after").await.map(|r| r.status().as_u16()) {
                Ok(202) => Ok(()),
                other => Err(format!("answered {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "broker restarted: producer accepted again after {:?}",
        started.elapsed()
    );
    let persisted = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 2, DRAIN).await;
    println!("broker restart: sent 3, accepted 2, refused 1 (503), persisted {persisted}");
    assert_eq!(
        persisted, 2,
        "the consumer recovers too and persists the order accepted after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_from_an_independent_client_reaches_the_dlq_and_never_stalls_its_partition() {
    let stack = Stack::start(TestDatabase::create().await, None).await;
    let topic = stack.broker.topics.orders.clone();
    let valid = |n: usize| Outgoing {
        partition: Some(0),
        topic: topic.clone(),
        ..order_message(&order_event(n), contract::Format::Json)
    };
    let mut invalid = order_event(90);
    invalid.currency = "XXX".into();
    let poison = [
        Outgoing {
            value: b"\x00\x01garbage".to_vec(),
            ..valid(91)
        },
        Outgoing {
            headers: headers_for(contract::Format::Avro, contract::Domain::Orders, 2),
            value: b"not avro".to_vec(),
            ..valid(92)
        },
        Outgoing {
            partition: Some(0),
            topic: topic.clone(),
            ..order_message(&invalid, contract::Format::Protobuf)
        },
    ];
    let mut stream = Vec::new();
    for (n, p) in poison.iter().enumerate() {
        stream.push(valid(n));
        stream.push(p.clone());
    }
    stream.push(valid(10));
    publish(&stack.broker.bootstrap, &stream);

    let persisted = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 4, DRAIN).await;
    let dlq = read_topic(
        &stack.broker.bootstrap,
        &stack.broker.topics.orders_dlq,
        poison.len(),
        DRAIN,
    );
    println!(
        "poison: published {} ({} poison), persisted {persisted}, dead-lettered {}",
        stream.len(),
        poison.len(),
        dlq.len()
    );
    assert_eq!(
        persisted, 4,
        "the valid orders around the poison are persisted"
    );
    assert_eq!(dlq.len(), poison.len());
    for sent in &poison {
        let found = dlq
            .iter()
            .find(|m| m.payload() == Some(sent.value.as_slice()))
            .expect("poison in the DLQ with its value bytes");
        assert_eq!(found.key(), Some(sent.key.as_slice()));
        for (k, v) in &sent.headers {
            assert_eq!(header(found, k).as_ref(), Some(v));
        }
        assert_eq!(
            header(found, headers::DLQ_ERROR_KIND).as_deref(),
            Some("permanent")
        );
        assert_eq!(
            header(found, headers::DLQ_ORIGINAL_PARTITION).as_deref(),
            Some("0")
        );
    }
    assert_no_pii_in_logs(&[&stack.consumer]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_started_by_the_http_request_continues_in_the_consumer() {
    let stack = Stack::start(TestDatabase::create().await, None).await;
    let trace_id = format!("{:032x}", Uuid::new_v4().as_u128());
    let response = reqwest::Client::new()
        .post(stack.producer.url("/orders"))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&order_body(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 1, DRAIN).await,
        1
    );
    let stored: Option<String> = sqlx::query_scalar("SELECT trace_id FROM event_store")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    let lines_of = |service: &Service| {
        service
            .logs()
            .lines()
            .filter(|l| l.contains(&trace_id))
            .count()
    };
    // The lines may reach the log files a little after the row is stored.
    let (producer_lines, consumer_lines) =
        eventually(WAIT, "both services' log lines of the trace", || {
            let lines = (lines_of(&stack.producer), lines_of(&stack.consumer));
            ready(if lines.0 >= 1 && lines.1 >= 1 {
                Ok(lines)
            } else {
                Err(format!(
                    "{lines:?} lines; consumer log:\n{}",
                    stack.consumer.log_tail(20)
                ))
            })
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("trace {trace_id}: {producer_lines} producer log lines, {consumer_lines} consumer log lines, event store {stored:?}");
    assert!(producer_lines >= 1, "the producer logged the trace");
    assert!(
        consumer_lines >= 1,
        "the consumer continued the trace:\n{}",
        stack.consumer.log_tail(20)
    );
    assert_eq!(
        stored.as_deref(),
        Some(trace_id.as_str()),
        "the trace id reaches PostgreSQL"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_database_opens_the_circuit_within_its_deadline_and_all_persist_once_after() {
    let db = TestDatabase::create().await;
    let proxy = Proxy::start("127.0.0.1:5432".parse().unwrap());
    let via_proxy = db.url.replace("127.0.0.1:5432", &proxy.addr.to_string());
    let broker = Broker::for_scenario().await;
    let mut env = consumer_env(&broker, &via_proxy);
    env.push(("DB_TRANSACTION_TIMEOUT_MS", "3000".to_owned()));
    // The server's own bound must not end the wait: the client's must.
    env.push(("DB_LOCK_TIMEOUT_MS", "60000".to_owned()));
    let producer = producer_env(&broker);
    let stack = Stack::launch(db, broker, &env, &producer).await;

    // A statement in flight when the path goes dark: the consumer waits on
    // a row lock the test holds, then every answer is swallowed.
    let held = Uuid::new_v4();
    let lock = harness::database::lock_order(&stack.db.pool, held).await;
    let mut body = order_body(0);
    body["order_id"] = held.to_string().into();
    let accepted = reqwest::Client::new()
        .post(stack.producer.url("/orders"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let waiting = wait_for_count(
        &stack.db.pool,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pubsubkafka-consumer' AND wait_event_type = 'Lock'",
        1,
        DRAIN,
    )
    .await;
    assert_eq!(waiting, 1, "the consumer's statement is in flight");
    proxy.black_hole();
    println!(
        "PostgreSQL black-holed with a statement in flight: nothing forwarded, nothing closed"
    );
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 1000, 32, Duration::from_secs(120)).await });

    let opened = circuit_opened(&stack.consumer).await;
    assert!(
        opened.is_some(),
        "the circuit opens although the call never answers:\n{}",
        stack.consumer.log_tail(20)
    );
    let ready = reqwest::get(stack.consumer.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the database is away");
    lock.rollback().await.unwrap();
    // The black hole is held two seconds more with the circuit open, so
    // that the breaker's probes (every CIRCUIT_PROBE_MS, 250 ms) meet it
    // several times: a length of the fault, not a wait for an effect.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    println!("PostgreSQL path healed (black-holed connections stay dead)");

    let mut report = load.await.expect("load");
    // The order in flight at the cut got its 202 too.
    report.accepted.push(held);
    stack
        .assert_exactly_once("PostgreSQL black hole", &report)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_idempotency_key_with_another_body_is_dead_lettered_as_a_conflict() {
    let stack = Stack::start(TestDatabase::create().await, None).await;
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        client
            .post(stack.producer.url("/orders"))
            .header("idempotency-key", "checkout-7")
            .json(&body)
            .send()
    };
    let first = order_body(1);
    let mut other = order_body(1);
    other["items"][0]["quantity"] = 7.into();
    for (body, what) in [(&first, "first"), (&first, "retry"), (&other, "other body")] {
        let answer = post(body.clone()).await.unwrap();
        assert_eq!(answer.status(), 202, "{what}");
        assert_eq!(
            wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 1, DRAIN).await,
            1
        );
    }
    let dlq = read_topic(
        &stack.broker.bootstrap,
        &stack.broker.topics.orders_dlq,
        1,
        DRAIN,
    );
    let total: String = sqlx::query_scalar("SELECT total::text FROM orders")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    println!(
        "one Idempotency-Key, two bodies: stored total {total}, dead-lettered {}",
        dlq.len()
    );
    assert_eq!(total, "44.98", "the first body is stored");
    assert_eq!(
        dlq.len(),
        1,
        "the other body is dead-lettered, the retry is not"
    );
    assert_eq!(
        header(&dlq[0], headers::DLQ_ERROR_CLASS).as_deref(),
        Some("conflict")
    );
    assert!(
        wait_for_metric(
            &stack.consumer,
            "kafka_consumer_messages_total",
            &["outcome=\"conflict\""],
            1.0,
            Duration::from_secs(5)
        )
        .await
        .is_some(),
        "conflicts are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_consumer_log_line_and_trace_belongs_to_its_own_message() {
    let stack = Stack::start(TestDatabase::create().await, None).await;
    let topic = stack.broker.topics.orders.clone();
    // No traceparent: each message starts a trace of its own.
    let stream: Vec<Outgoing> = (0..40)
        .map(|n| {
            let mut m = order_message(&order_event(n), contract::Format::Json);
            m.topic = topic.clone();
            m.partition = Some(0);
            if n % 2 == 1 {
                m.value = format!("poison {n}").into_bytes();
            }
            m
        })
        .collect();
    publish(&stack.broker.bootstrap, &stream);
    assert_eq!(
        wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 20, DRAIN).await,
        20
    );
    let dlq = read_topic(
        &stack.broker.bootstrap,
        &stack.broker.topics.orders_dlq,
        20,
        DRAIN,
    );
    assert_eq!(dlq.len(), 20);
    // The lines may reach the log file a little after the effects show.
    eventually(WAIT, "the consumer's 20 + 20 log lines", || {
        let lines = (
            log_lines(&stack.consumer, "message dead-lettered").len(),
            log_lines(&stack.consumer, "event persisted").len(),
        );
        ready(if lines.0 >= 20 && lines.1 >= 20 {
            Ok(())
        } else {
            Err(format!("{lines:?} dead-letter and persisted lines"))
        })
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));

    let dead = log_lines(&stack.consumer, "message dead-lettered");
    let mut offsets: Vec<i64> = dead
        .iter()
        .filter_map(|l| l["span"]["offset"].as_i64())
        .collect();
    offsets.sort_unstable();
    let poison: Vec<i64> = (0..40).filter(|n| n % 2 == 1).collect();
    let persisted = log_lines(&stack.consumer, "event persisted");
    let traces: std::collections::BTreeSet<String> = persisted
        .iter()
        .filter_map(|l| l["span"]["trace_id"].as_str().map(str::to_owned))
        .collect();
    println!(
        "40 messages: {} dead-letter lines at offsets {offsets:?}; {} persisted lines with {} distinct traces",
        dead.len(),
        persisted.len(),
        traces.len()
    );
    assert_eq!(
        offsets, poison,
        "each dead-letter line names its own message"
    );
    assert_eq!(persisted.len(), 20);
    assert_eq!(traces.len(), 20, "unrelated messages never share a trace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_broker_gives_503_within_the_bound_and_all_accepted_persist_once_after() {
    // Every client connection to the broker crosses the proxy.
    let port = harness::free_port();
    let front: std::net::SocketAddr = format!("127.0.0.1:{}", harness::free_port())
        .parse()
        .unwrap();
    let proxy = Proxy::start_on(front, format!("127.0.0.1:{port}").parse().unwrap());
    let tansu = Tansu::start_advertising(port, front);
    let broker = Broker {
        bootstrap: tansu.bootstrap.clone(),
        topics: Broker::tansu_topics(),
        tansu: Some(tansu),
        cluster: None,
    };
    // librdkafka gives up on a silent broker connection after
    // socket.timeout.ms (60 s by default) and opens a new one.
    let mut producer_env = producer_env(&broker);
    producer_env.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let db = TestDatabase::create().await;
    let mut consumer_env = consumer_env(&broker, &db.url);
    consumer_env.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let stack = Stack::launch(db, broker, &consumer_env, &producer_env).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 8, Duration::from_secs(150)).await });
    // Once the consumer is in its group and fetching, the path goes dark
    // under every kind of request: produce, fetch, heartbeat, commit.
    let persisted = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 200, DRAIN).await;
    assert!(persisted >= 200, "the pipeline runs before the fault");
    proxy.black_hole();
    println!("broker black-holed: nothing forwarded, nothing closed");
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .post(stack.producer.url("/orders"))
        .json(&order_body(9))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .expect("an answer, not a hang");
    let took = started.elapsed();
    println!(
        "POST during the black hole: {} after {took:?}",
        answer.status()
    );
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_secs(6),
        "within PRODUCE_TIMEOUT_MS (3 s) and slack: {took:?}"
    );
    // The black hole goes on eight seconds under load (the scenario), not
    // a wait for an effect.
    tokio::time::sleep(Duration::from_secs(8)).await;
    proxy.restore();
    println!("broker path healed (black-holed connections stay dead)");

    let report = load.await.expect("load");
    stack
        .assert_exactly_once("broker black hole", &report)
        .await;
}
