//! On a three-node Apache Kafka cluster, as production runs it (KRaft,
//! replication factor 3, `min.insync.replicas=2`, unclean leader election
//! off, clients over SASL_SSL with each component's ACLs enforced; see
//! `harness::cluster`): what broker faults do to orders in flight.
//! Each scenario runs under load and ends with every `202` persisted exactly
//! once and each partition stored in offset order; the count of `503`s is
//! printed with the load's tally.

use std::time::{Duration, Instant};

use harness::broker::Broker;
use harness::cluster::{Cluster, BROKER_SESSION_TIMEOUT, NODES};
use harness::database::{wait_for_count, TestDatabase};
use harness::load::post_orders;
use harness::process::Service;
use harness::stack::{consumer_env, producer_env, wait_for_metric, Stack, DRAIN, READY};
use harness::wait::eventually;

async fn kafka_stack() -> Stack {
    Stack::start_on(
        Broker::cluster(NODES, true).await,
        TestDatabase::create().await,
        None,
    )
    .await
}

fn cluster(stack: &mut Stack) -> &mut Cluster {
    stack.broker.cluster.as_mut().expect("a cluster")
}

/// Waits until the pipeline has persisted `n` orders: the group is joined
/// and fetching before the fault.
async fn running(stack: &Stack, n: i64) {
    let persisted = wait_for_count(&stack.db.pool, "SELECT count(*) FROM orders", n, DRAIN).await;
    assert!(persisted >= n, "the pipeline runs before the fault");
}

/// Checks, right after the fault, that the load of `total` orders was
/// still under way when it struck (else the scenario proved nothing).
async fn under_load(stack: &Stack, total: i64) {
    let persisted = stack.count("SELECT count(*) FROM orders").await;
    println!("{persisted} of {total} orders persisted when the fault struck");
    assert!(
        persisted < total,
        "the fault came after the load: {persisted} persisted"
    );
}

/// The sum of the offsets `group` has committed on the orders topic, or
/// `None` while the broker does not answer within `wait`.
async fn committed_sum(stack: &Stack, group: &str, wait: Duration) -> Option<i64> {
    let (config, group, topic) = (
        stack.broker.client(),
        group.to_owned(),
        stack.broker.topics.orders.clone(),
    );
    tokio::task::spawn_blocking(move || {
        harness::kafka::try_committed(config, &group, &topic, wait)
            .ok()
            .map(|offsets| offsets.into_iter().flatten().sum())
    })
    .await
    .expect("committed offsets")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_killed_and_restarted_under_load_keeps_every_202() {
    let mut stack = kafka_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(240)).await });
    running(&stack, 200).await;
    for n in 0..NODES {
        cluster(&mut stack).kill(n);
    }
    println!("all {NODES} nodes killed -9 under load");
    under_load(&stack, 3000).await;
    for n in 0..NODES {
        cluster(&mut stack).restart(n);
    }
    println!("all {NODES} nodes restarted over their own data");
    let report = load.await.expect("load");
    println!(
        "answered 503 (or not at all) during the outage: {}, longest wait for a 202: {:?}",
        report.statuses.get(&503).copied().unwrap_or(0)
            + report.statuses.get(&0).copied().unwrap_or(0),
        report.longest_wait
    );
    stack
        .assert_exactly_once("whole-cluster restart", &report)
        .await;
}

/// The leader of a partition the load writes to dies without a controlled
/// shutdown: the controller moves its leaderships to in-sync replicas, the
/// producer and the consumer follow, nothing acknowledged is lost, and the
/// node is not started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_of_a_busy_partition_killed_under_load_loses_nothing() {
    let mut stack = kafka_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(180)).await });
    running(&stack, 200).await;
    let topic = stack.broker.topics.orders.clone();
    let leader = cluster(&mut stack)
        .leader(&topic, 0)
        .expect("partition 0 has a leader");
    let index = cluster(&mut stack).index_of(leader);
    cluster(&mut stack).kill(index);
    println!("node {leader}, leader of {topic}[0], killed -9 under load");
    under_load(&stack, 3000).await;
    let report = load.await.expect("load");
    let moved = cluster(&mut stack).leader(&topic, 0);
    println!("leader of {topic}[0] afterwards: {moved:?}");
    assert!(
        moved.is_some_and(|m| m != leader),
        "the leadership moved to another node"
    );
    stack
        .assert_exactly_once("leader of a busy partition killed", &report)
        .await;
}

/// Java's `String.hashCode`, as Kafka uses it to place a group's offsets.
fn java_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of `group` (Kafka's
/// `Utils.abs(group.hashCode()) % offsets.topic.num.partitions`): its
/// leader is the group's coordinator.
fn offsets_partition(group: &str, partitions: i32) -> i32 {
    (java_hash(group) & 0x7fff_ffff) % partitions
}

#[test]
fn groups_are_placed_as_kafka_places_them() {
    // Values Java's String.hashCode gives.
    assert_eq!(java_hash(""), 0);
    assert_eq!(java_hash("a"), 97);
    assert_eq!(java_hash("order-consumer"), -1_677_273_195);
    assert_eq!(java_hash("e2e-ärger"), 22_828_049);
    assert_eq!(offsets_partition("order-consumer", 6), 5);
}

/// The node that coordinates the consumer's group is killed -9 under load:
/// the group's coordinator moves to another node and the consumer commits
/// again once the controller has fenced the dead node (its broker session
/// timeout) and the consumer has found the new coordinator, with no restart
/// of anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_coordinator_killed_under_load_the_group_commits_again_by_itself() {
    let mut stack = kafka_stack().await;
    let group = stack
        .consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("a group")
        .to_owned();
    let session = Duration::from_millis(
        stack
            .consumer
            .env_value("KAFKA_SESSION_TIMEOUT_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(10_000),
    );
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(180)).await });
    running(&stack, 200).await;
    // The cluster's offsets topic has 6 partitions (harness::cluster).
    let partition = offsets_partition(&group, 6);
    let coordinator = cluster(&mut stack)
        .leader("__consumer_offsets", partition)
        .expect("the group has a coordinator");
    let before = committed_sum(&stack, &group, Duration::from_secs(15))
        .await
        .expect("the coordinator answers before the fault");
    let index = cluster(&mut stack).index_of(coordinator);
    cluster(&mut stack).kill(index);
    let killed = Instant::now();
    println!("node {coordinator}, coordinator of group {group}, killed -9 with {before} offsets committed");
    under_load(&stack, 3000).await;
    let resumed = eventually(
        (BROKER_SESSION_TIMEOUT + 3 * session + Duration::from_secs(30))
            .saturating_sub(killed.elapsed()),
        "the group to commit again",
        || async {
            let sum = committed_sum(&stack, &group, Duration::from_secs(2)).await;
            if sum > Some(before) {
                Ok(killed.elapsed())
            } else {
                Err(format!("committed {sum:?}"))
            }
        },
    )
    .await
    .ok();
    // No group can commit before the controller fences the dead node (its
    // broker session timeout) and moves its leaderships, the coordinator's
    // among them; then the consumer finds the new coordinator, and this
    // test's own client (a new one each look, over SASL_SSL, on a loaded
    // machine) has to find it too. Measured 8.5 to 16 s here; the bound
    // says the group resumes by itself, soon after the fencing.
    let bound = BROKER_SESSION_TIMEOUT + 3 * session;
    println!(
        "the group committed again {resumed:?} after the kill (broker session timeout \
         {BROKER_SESSION_TIMEOUT:?}, the consumer's {session:?})"
    );
    let resumed = resumed.expect("the group commits again");
    assert!(
        resumed <= bound,
        "the group commits again by itself within {bound:?} of the kill: took {resumed:?}"
    );
    let report = load.await.expect("load");
    stack
        .assert_exactly_once("group coordinator killed", &report)
        .await;
}

/// A rolling restart, the operator's everyday task: each node in turn
/// stopped with SIGTERM (a controlled shutdown moves its leaderships
/// first), started again, and the next one only once every partition is
/// fully replicated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_node_under_load_loses_nothing() {
    let mut stack = kafka_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 4000, 16, Duration::from_secs(240)).await });
    running(&stack, 200).await;
    for n in 0..NODES {
        let started = Instant::now();
        assert!(
            cluster(&mut stack).stop(n),
            "node {n} shuts down within the deadline:\n{}",
            cluster(&mut stack).log_tail(n, 20)
        );
        let stopped = started.elapsed();
        if n == 0 {
            under_load(&stack, 4000).await;
        }
        cluster(&mut stack).restart(n);
        cluster(&mut stack).wait_fully_replicated().await;
        println!(
            "node {} stopped in {stopped:?}, back and fully replicated after {:?}",
            cluster(&mut stack).node_id(n),
            started.elapsed()
        );
    }
    let report = load.await.expect("load");
    stack.assert_exactly_once("rolling restart", &report).await;
}

/// Two of three nodes die: no write can reach two in-sync replicas, so
/// `POST /orders` is answered `503` within `PRODUCE_TIMEOUT_MS`; when the
/// nodes return, everything resumes, and every order the load's clients
/// retried until their `202` is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_nodes_down_answers_503_within_the_produce_timeout_then_resumes() {
    let mut stack = kafka_stack().await;
    let url = stack.producer.url("/orders");
    let produce_timeout = Duration::from_millis(
        stack
            .producer
            .env_value("PRODUCE_TIMEOUT_MS")
            .and_then(|v| v.parse().ok())
            .expect("the stack sets PRODUCE_TIMEOUT_MS"),
    );
    let before = post_orders(&url, 50, 4, Duration::from_secs(60)).await;
    assert_eq!(before.gave_up, 0, "orders are accepted before the fault");
    cluster(&mut stack).kill(1);
    cluster(&mut stack).kill(2);
    println!("nodes 2 and 3 of 3 killed -9");
    let client = reqwest::Client::new();
    let key = uuid::Uuid::new_v4().to_string();
    let mut answers = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let answer = client
            .post(&url)
            .header("Idempotency-Key", &key)
            .json(&harness::load::order_body(1))
            .timeout(produce_timeout + Duration::from_secs(5))
            .send()
            .await
            .expect("the producer answers while the brokers are down");
        let took = started.elapsed();
        let retry_after = answer.headers().contains_key("retry-after");
        answers.push((answer.status().as_u16(), took));
        assert_eq!(
            answer.status(),
            503,
            "no write without two in-sync replicas"
        );
        assert!(retry_after, "a 503 says when to retry");
        // The bound is the service's; the slack is this busy machine's
        // HTTP round trip.
        assert!(
            took <= produce_timeout + Duration::from_millis(500),
            "answered within PRODUCE_TIMEOUT_MS ({produce_timeout:?}): took {took:?}"
        );
    }
    println!("with one node of three: {answers:?}");
    let started = Instant::now();
    let not_ready = eventually(
        Duration::from_secs(30),
        "the producer's /readyz to turn 503",
        || async {
            let status = client
                .get(stack.producer.url("/readyz"))
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            if status == 503 {
                Ok(started.elapsed())
            } else {
                Err(format!("answered {status}"))
            }
        },
    )
    .await
    .ok();
    println!("producer /readyz turned 503 after {not_ready:?}");
    assert!(not_ready.is_some(), "the producer says it is not ready");
    cluster(&mut stack).restart(1);
    cluster(&mut stack).restart(2);
    cluster(&mut stack).wait_serving(NODES).await;
    stack.producer.wait_ready("/readyz", READY).await;
    let after = post_orders(&url, 200, 8, Duration::from_secs(120)).await;
    // The refused request, retried with its key as a client would.
    let retried = post_orders_with_key(&url, &key).await;
    let mut report = before;
    report.sent += after.sent + 1;
    report.attempts += after.attempts;
    report.gave_up += after.gave_up;
    report.accepted.extend(after.accepted);
    report.accepted.push(retried);
    for (code, n) in after.statuses {
        *report.statuses.entry(code).or_default() += n;
    }
    stack
        .assert_exactly_once("two of three nodes down, then back", &report)
        .await;
}

/// Posts order 1 under `key` until it gets its `202`; its order id.
async fn post_orders_with_key(url: &str, key: &str) -> uuid::Uuid {
    let client = reqwest::Client::new();
    eventually(
        Duration::from_secs(60),
        "the retried order accepted",
        || async {
            let answer = client
                .post(url)
                .header("Idempotency-Key", key)
                .json(&harness::load::order_body(1))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if answer.status() != 202 {
                return Err(format!("answered {}", answer.status()));
            }
            let body: serde_json::Value = answer.json().await.expect("JSON");
            Ok(body["order_id"]
                .as_str()
                .and_then(|id| id.parse().ok())
                .expect("an order id"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// An operator's pod restarting during a deploy: a consumer stopped with
/// SIGTERM while it joins its group for the first time (before any message
/// and any commit), and a successor started at once. The successor must
/// consume within the session timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_during_its_first_join_and_started_again_consumes_within_its_session_timeout(
) {
    let stack = kafka_stack().await;
    let Stack {
        db,
        broker,
        producer,
        mut consumer,
    } = stack;
    // The group the ACLs grant, with no message and no commit yet: the
    // stack's consumer leaves it before anything is posted.
    let env = consumer_env(&broker, &db.url);
    let session = Duration::from_millis(
        env.iter()
            .find(|(k, _)| *k == "KAFKA_SESSION_TIMEOUT_MS")
            .and_then(|(_, v)| v.parse().ok())
            .expect("the stack sets KAFKA_SESSION_TIMEOUT_MS"),
    );
    consumer
        .sigterm(Duration::from_secs(30))
        .expect("the stack's consumer leaves the group");
    let mut first = Service::start("consumer", "CONSUMER_HTTP_ADDR", &env);
    first.wait_ready("/healthz", READY).await;
    let status = first
        .sigterm(Duration::from_secs(30))
        .expect("the first consumer exits");
    println!("first consumer stopped during its first join: {status}");
    let successor = Service::start("consumer", "CONSUMER_HTTP_ADDR", &env);
    let report = post_orders(&producer.url("/orders"), 20, 4, Duration::from_secs(60)).await;
    let started = Instant::now();
    let persisted = wait_for_count(
        &db.pool,
        "SELECT count(*) FROM orders",
        1,
        session + Duration::from_secs(30),
    )
    .await;
    let took = started.elapsed();
    println!(
        "the successor persisted its first order {took:?} after the orders were accepted \
         (session timeout {session:?})"
    );
    assert!(persisted >= 1, "the successor consumes");
    // A consumer stopped while its join is in flight cannot leave: the
    // coordinator admits it after it is gone, and the group waits for that
    // member's session to expire (measured: 0.2 s when the join had not
    // reached the coordinator, the whole session when it had). The bound is
    // that session and the successor's join after it, not the rebalance
    // timeout (max.poll.interval.ms, five minutes).
    let bound = session + Duration::from_secs(10);
    assert!(
        took <= bound,
        "the successor consumes within the session timeout ({session:?}) and a join: took {took:?}"
    );
    let stack = Stack {
        db,
        broker,
        producer,
        consumer: successor,
    };
    stack
        .assert_exactly_once("consumer restarted during its first join", &report)
        .await;
}

/// Three consumer members (cooperative-sticky assignment, the classic
/// group protocol) rebalancing under load: two join mid-stream, then the
/// first is killed -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_rebalancing_under_load_on_apache_kafka_keep_order_and_lose_nothing() {
    super::rebalances_under_load(Broker::cluster(NODES, true).await, 2, None).await;
}

/// The same with KIP-848's group protocol (`KAFKA_GROUP_PROTOCOL=consumer`),
/// which Apache Kafka 4.1 serves: the broker assigns the partitions and
/// owns the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consumers_rebalancing_under_load_with_kip_848_keep_order_and_lose_nothing() {
    super::rebalances_under_load(Broker::cluster(NODES, true).await, 2, Some("consumer")).await;
}

/// The path from the clients to one node goes dark under load (packets
/// dropped, nothing closed) while the nodes still reach each other, so the
/// node keeps its leaderships: writes to its partitions fail as `503`s and
/// reads from them stall until the clients' socket timeout gives up on the
/// silent connections. Once the path heals everything resumes, and every
/// `202` is stored exactly once, each partition in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_path_to_one_node_under_load_loses_nothing() {
    let broker = Broker::with_cluster(Cluster::start_proxied(NODES, true, Some(0)).await);
    let db = TestDatabase::create().await;
    // librdkafka gives up on a silent connection after socket.timeout.ms
    // (60 s by default) and opens a new one.
    let mut producer = producer_env(&broker);
    producer.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let mut consumer = consumer_env(&broker, &db.url);
    consumer.push(("KAFKA_SOCKET_TIMEOUT_MS", "10000".to_owned()));
    let mut stack = Stack::launch(db, broker, &consumer, &producer).await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(240)).await });
    running(&stack, 200).await;
    let node = cluster(&mut stack).node_id(0);
    cluster(&mut stack)
        .proxy
        .as_ref()
        .expect("a proxy in front of node 1")
        .black_hole();
    println!("the clients' path to node {node} black-holed: nothing forwarded, nothing closed");
    under_load(&stack, 3000).await;
    // The fault holds until the producer has seen writes fail on it.
    let failed = wait_for_metric(
        &stack.producer,
        "kafka_producer_messages_total",
        &["outcome=\"failed\""],
        1.0,
        Duration::from_secs(60),
    )
    .await;
    println!("writes failed {failed:?} after the path went dark");
    assert!(
        failed.is_some(),
        "writes to the dark node's partitions fail"
    );
    // ... and until the consumer has given up on its silent connection to
    // the node (socket.timeout.ms), not only the producer.
    let dark = cluster(&mut stack)
        .proxy
        .as_ref()
        .expect("a proxy")
        .addr
        .to_string();
    let started = Instant::now();
    let gave_up = |logs: &str| {
        logs.lines()
            .any(|l| l.contains(dark.as_str()) && l.contains("imed out"))
    };
    eventually(
        Duration::from_secs(60),
        &format!("the consumer to time out its requests to {dark}"),
        || {
            std::future::ready(if gave_up(&stack.consumer.logs()) {
                Ok(())
            } else {
                Err(stack.consumer.log_tail(20))
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "the consumer timed out its requests to {dark} {:?} later",
        started.elapsed()
    );
    cluster(&mut stack)
        .proxy
        .as_ref()
        .expect("a proxy")
        .restore();
    println!("path to node {node} healed (black-holed connections stay dead)");
    let report = load.await.expect("load");
    stack
        .assert_exactly_once("black-holed path to one node", &report)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_consumer_on_apache_kafka_loses_and_duplicates_nothing() {
    super::kill_9_of_the_consumer(Broker::cluster(NODES, true).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_on_apache_kafka_dead_letters_nothing() {
    super::postgres_unavailable_for_a_while(Broker::cluster(NODES, true).await).await;
}
