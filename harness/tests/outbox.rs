//! Outbox mode end to end, every part a process: two producer replicas in
//! outbox mode, the consumer, a Tansu broker reached through a proxy, the
//! local PostgreSQL. With the broker unreachable for a minute under load,
//! every order gets `202` at once and, once the broker is back, is
//! persisted exactly once in per-partition order, relayed by both replicas
//! without a row published twice; a relay killed with `kill -9` in the
//! middle of its batches loses nothing and persists nothing twice; one
//! killed while its path to the database is black-holed (its sessions left
//! open on the server, holding its shards) has its shards published by
//! another replica within the relay's deadline.
//!
//! The producers' outbox is a database of its own, as deployed: the
//! consumer's database holds the consumer's outbox (its order states),
//! which a test's table lock on the producers' outbox must not stall.

use std::time::{Duration, Instant};

use harness::broker::{Broker, Tansu};
use harness::database::{outbox_drained, outbox_waiting, wait_for_count, TestDatabase};
use harness::kafka::read_topic_with;
use harness::load::{post_orders, LoadReport};
use harness::process::Service;
use harness::proxy::Proxy;
use harness::stack::{consumer_env, producer_env, Stack, DRAIN, READY};
use harness::wait::eventually;

/// How long a test waits for an effect before it fails; a passing run goes
/// on as soon as the effect shows.
const WAIT: Duration = Duration::from_secs(30);

/// Tansu behind a proxy every client connection crosses, so that the
/// broker can be made unreachable without losing what it holds (a memory
/// broker stopped would).
fn broker_behind_proxy() -> (Broker, Proxy) {
    let port = harness::free_port();
    let front: std::net::SocketAddr = format!("127.0.0.1:{}", harness::free_port())
        .parse()
        .expect("address");
    let proxy = Proxy::start_on(front, format!("127.0.0.1:{port}").parse().expect("address"));
    let tansu = Tansu::start_advertising(port, front);
    let broker = Broker {
        bootstrap: tansu.bootstrap.clone(),
        topics: Broker::tansu_topics(),
        tansu: Some(tansu),
        cluster: None,
    };
    (broker, proxy)
}

fn outbox_producer_env(broker: &Broker, db: &TestDatabase) -> Vec<(&'static str, String)> {
    let mut env = producer_env(broker);
    env.extend([
        ("PRODUCER_MODE", "outbox".to_owned()),
        ("OUTBOX_DATABASE_URL", db.url.clone()),
        ("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()),
    ]);
    env
}

fn merge(a: LoadReport, b: LoadReport) -> LoadReport {
    let mut all = a;
    all.sent += b.sent;
    all.accepted.extend(b.accepted);
    all.gave_up += b.gave_up;
    all.attempts += b.attempts;
    for (code, n) in b.statuses {
        *all.statuses.entry(code).or_default() += n;
    }
    all.longest_wait = all.longest_wait.max(b.longest_wait);
    all
}

async fn metric(service: &Service, name: &str) -> f64 {
    let text = reqwest::get(service.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    // `name` may carry labels: `family{a="x",b="y"}`. A labelled series
    // not created yet counts 0; a family the service does not export is
    // an error, never a 0.
    let (family, labels) = match name.split_once('{') {
        Some((family, rest)) => (family, rest.trim_end_matches('}').split(',').collect()),
        None => (name, Vec::new()),
    };
    assert!(
        text.contains(&format!("# TYPE {family} ")),
        "no {family} in the /metrics of {}",
        service.url("")
    );
    harness::metrics::sum(&text, family, &labels).unwrap_or(0.0)
}

/// `orders` posted while `broker_path` is cut (each waits in the outbox),
/// then the relay's batches stopped between the broker's acknowledgement
/// and their delete, inside the transactions holding their shards: the
/// table held in SHARE mode by the returned transaction (roll it back to
/// let the deletes go on), the broker reachable again, and the producer's
/// count of acknowledged orders once it is above 0. Also the load's report
/// and the rows waiting before the relay ran.
async fn relay_stopped_before_its_deletes(
    stack: &Stack,
    outbox: &TestDatabase,
    broker_path: &Proxy,
    orders: usize,
) -> (
    LoadReport,
    i64,
    sqlx::Transaction<'static, sqlx::Postgres>,
    f64,
) {
    broker_path.cut();
    let report = post_orders(
        &stack.producer.url("/orders"),
        orders,
        8,
        Duration::from_secs(60),
    )
    .await;
    let backlog = outbox_waiting(&outbox.pool).await;
    println!("{report}; {backlog} rows waiting");
    assert_eq!(backlog as usize, report.accepted.len());
    let mut hold = outbox.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE outbox IN SHARE MODE")
        .execute(&mut *hold)
        .await
        .expect("lock");
    broker_path.restore();
    // The broker's acknowledgements, as the producer counts them (a fresh
    // reader of the topic may take longer to join than a loaded machine
    // gives it).
    let acked = r#"kafka_producer_messages_total{outcome="acked",topic="orders"}"#;
    let published = eventually(DRAIN, "the relay to publish", || async {
        let published = metric(&stack.producer, acked).await;
        (published > 0.0).then_some(published)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    (report, backlog, hold, published)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_without_the_broker_refuses_no_order_and_two_replicas_relay_each_once() {
    let (broker, proxy) = broker_behind_proxy();
    let (db, outbox) = (TestDatabase::create().await, TestDatabase::create().await);
    let mut consumer = consumer_env(&broker, &db.url);
    consumer.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let producer = outbox_producer_env(&broker, &outbox);
    let stack = Stack::launch(db, broker, &consumer, &producer).await;
    let mut second = Service::start("producer", "PRODUCER_HTTP_ADDR", &producer);
    second.wait_ready("/readyz", READY).await;
    let urls = [stack.producer.url("/orders"), second.url("/orders")];
    let split = |count: usize| {
        let urls = urls.clone();
        async move {
            let (a, b) = tokio::join!(
                post_orders(&urls[0], count, 4, Duration::from_secs(120)),
                post_orders(&urls[1], count, 4, Duration::from_secs(120))
            );
            merge(a, b)
        }
    };

    let before = split(200).await;
    let persisted = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", 400, DRAIN).await;
    assert_eq!(persisted, 400, "the pipeline runs before the fault");

    proxy.cut();
    let cut = Instant::now();
    println!("broker unreachable");
    let during = split(1000).await;
    println!(
        "{during} while the broker was unreachable ({:?})",
        cut.elapsed()
    );
    let backlog = outbox_waiting(&outbox.pool).await;
    assert!(backlog > 0, "the accepted orders wait in the outbox");
    let ready = reqwest::get(stack.producer.url("/readyz"))
        .await
        .expect("answer");
    assert_eq!(ready.status(), 200, "ready while the outbox answers");
    eventually(WAIT, "the backlog's age measured", || async {
        let age = metric(&stack.producer, "outbox_oldest_age_seconds").await;
        (age > 0.0).then_some(age)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // The scenario: the broker stays away a whole minute, whatever the
    // load took (not a wait for an effect).
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(cut.elapsed())).await;
    let stored_during = stack.count("SELECT count(*) FROM orders").await;
    println!(
        "after {:?} without the broker: {backlog} rows waited at the end of the load, {stored_during} orders stored",
        cut.elapsed()
    );
    proxy.restore();
    println!("broker reachable again");

    let report = merge(before, during);
    assert_eq!(
        report.statuses.keys().copied().collect::<Vec<_>>(),
        vec![202],
        "every request answered 202 at its first try: {report}"
    );
    stack
        .assert_exactly_once("outbox, broker away a minute", &report)
        .await;
    outbox_drained(&outbox.pool, DRAIN).await;
    let relayed = (
        metric(&stack.producer, "outbox_relayed_total").await,
        metric(&second, "outbox_relayed_total").await,
    );
    let published = read_topic_with(
        stack.broker.client(),
        &stack.broker.topics.orders,
        report.accepted.len(),
        Duration::from_secs(10),
    )
    .len();
    println!(
        "relayed {} by one replica, {} by the other; {published} messages on the topic",
        relayed.0, relayed.1
    );
    assert_eq!(
        relayed.0 + relayed.1,
        report.accepted.len() as f64,
        "each row relayed once"
    );
    assert_eq!(published, report.accepted.len(), "no row published twice");
    second.sigterm(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_batch_loses_nothing_and_persists_nothing_twice() {
    let (broker, proxy) = broker_behind_proxy();
    let (db, outbox) = (TestDatabase::create().await, TestDatabase::create().await);
    let mut consumer = consumer_env(&broker, &db.url);
    consumer.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let mut producer = outbox_producer_env(&broker, &outbox);
    producer.push(("OUTBOX_WRITE_TIMEOUT_MS", "20000".to_owned()));
    let mut stack = Stack::launch(db, broker, &consumer, &producer).await;

    let (report, backlog, hold, in_flight) =
        relay_stopped_before_its_deletes(&stack, &outbox, &proxy, 3000).await;
    stack.producer.kill9();
    // The lag tool shows the backlog beside the consumer group's lag.
    let group = stack
        .consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("a group")
        .to_owned();
    let lag = std::process::Command::new(harness::process::binary("pubsubkafka"))
        .args(["lag", "--group", &group, "--allow-new-group", "--json"])
        .args(["--outbox", &outbox.url])
        .env("KAFKA_BOOTSTRAP_SERVERS", &stack.broker.bootstrap)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka lag");
    let shown: serde_json::Value = serde_json::from_slice(&lag.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&lag.stderr)));
    println!("lag --outbox: {}", shown["outbox"]);
    assert_eq!(shown["outbox"]["rows"], backlog, "{shown}");
    assert!(shown["outbox"]["oldest_seconds"].as_f64() > Some(0.0));
    assert_eq!(shown["groups"][0]["group"], group.as_str());
    hold.rollback().await.expect("unlock");
    let left = outbox_waiting(&outbox.pool).await;
    println!("relay killed -9 mid-batch: its batches published, {left} of {backlog} rows left");
    assert_eq!(left, backlog, "killed before any batch was deleted");
    assert!(in_flight > 0.0);
    stack.producer.restart();
    stack.producer.wait_ready("/readyz", READY).await;
    stack
        .assert_exactly_once("outbox relay killed -9", &report)
        .await;
    let published = read_topic_with(
        stack.broker.client(),
        &stack.broker.topics.orders,
        report.accepted.len() + 1,
        Duration::from_secs(10),
    )
    .len();
    println!(
        "{published} messages for {} orders: {} published twice, stored once",
        report.accepted.len(),
        published - report.accepted.len()
    );
    assert!(
        published > report.accepted.len(),
        "the killed batches were published again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_cut_off_from_the_database_and_killed_frees_its_shards_within_its_deadline() {
    let (broker, kafka_path) = broker_behind_proxy();
    let (db, outbox) = (TestDatabase::create().await, TestDatabase::create().await);
    // The first replica reaches PostgreSQL through a path that can be
    // black-holed: a lost host, a pooler or a NAT keeps the server's side
    // of its connections open after it is gone.
    let server: sqlx::postgres::PgConnectOptions = outbox.url.parse().expect("test database URL");
    let server_addr = format!("{}:{}", server.get_host(), server.get_port());
    let db_path = Proxy::start(
        tokio::net::lookup_host(&server_addr)
            .await
            .expect("resolve the database server")
            .next()
            .expect("an address"),
    );
    let cut_off_url = outbox
        .url
        .replacen(&server_addr, &db_path.addr.to_string(), 1);
    assert_ne!(cut_off_url, outbox.url, "the proxied URL names the proxy");
    let mut consumer = consumer_env(&broker, &db.url);
    consumer.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let mut replica = outbox_producer_env(&broker, &outbox);
    replica.extend([
        ("OUTBOX_WRITE_TIMEOUT_MS", "5000".to_owned()),
        ("PRODUCE_TIMEOUT_MS", "3000".to_owned()),
    ]);
    let mut first = replica.clone();
    first.retain(|(k, _)| *k != "OUTBOX_DATABASE_URL");
    first.push(("OUTBOX_DATABASE_URL", cut_off_url));
    let mut stack = Stack::launch(db, broker, &consumer, &first).await;

    let (report, _, hold, _) =
        relay_stopped_before_its_deletes(&stack, &outbox, &kafka_path, 1000).await;
    db_path.black_hole();
    stack.producer.kill9();
    hold.rollback().await.expect("unlock");
    let cut_off = Instant::now();
    let holding: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'pubsubkafka-producer'
           AND state IN ('idle in transaction', 'active') AND pid <> pg_backend_pid()",
    )
    .fetch_one(&outbox.pool)
    .await
    .expect("sessions");
    println!("the dead relay left {holding} sessions in their transactions");
    assert!(holding > 0, "the dead relay's sessions outlive it");

    let mut second = Service::start("producer", "PRODUCER_HTTP_ADDR", &replica);
    second.wait_ready("/readyz", READY).await;
    // What the README promises: the relay's deadline (of the replicas'
    // OUTBOX_WRITE_TIMEOUT_MS and PRODUCE_TIMEOUT_MS) plus a poll; a few
    // seconds more for the second replica's start on a loaded machine.
    let relay_deadline =
        producer::outbox::relay_deadline(Duration::from_millis(5000), Duration::from_millis(3000));
    let bound = relay_deadline + Duration::from_secs(10);
    let held = std::cell::Cell::new(0.0f64);
    eventually(
        bound.saturating_sub(cut_off.elapsed()),
        "the other replica to empty the outbox within the bound from the cut-off",
        || async {
            held.set(
                metric(&second, "outbox_shards_held_total")
                    .await
                    .max(held.get()),
            );
            match outbox_waiting(&outbox.pool).await {
                0 => Ok(()),
                n => Err(format!("{n} rows still wait ({} held passes)", held.get())),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let held = held.get();
    let freed = cut_off.elapsed();
    println!(
        "relay cut off and killed mid-batch: the other replica emptied the outbox {freed:?} after, \
         {held} passes found a shard held"
    );
    assert!(held > 0.0, "the held shards were counted");
    stack
        .assert_exactly_once("outbox relay cut off and killed", &report)
        .await;
    second.sigterm(Duration::from_secs(30));
}
