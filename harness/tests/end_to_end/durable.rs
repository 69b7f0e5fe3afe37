//! On a durable cluster (two Tansu brokers over PostgreSQL storage): what
//! a broker restart or a broker's death does to orders in flight.

use std::time::Duration;

use harness::broker::Broker;
use harness::database::{wait_for_count, TestDatabase};
use harness::load::post_orders;
use harness::stack::{Stack, DRAIN};

async fn durable_stack() -> Stack {
    Stack::start_on(
        Broker::cluster(2, false).await,
        TestDatabase::create().await,
        None,
    )
    .await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_killed_and_restarted_under_load_keeps_every_202() {
    let mut stack = durable_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(180)).await });
    running(&stack, 200).await;
    let cluster = stack.broker.cluster.as_mut().expect("a cluster");
    for n in 0..cluster.len() {
        cluster.kill(n);
    }
    println!("both brokers killed -9 under load");
    under_load(&stack, 3000).await;
    let cluster = stack.broker.cluster.as_mut().expect("a cluster");
    tokio::time::sleep(Duration::from_secs(5)).await;
    for n in 0..cluster.len() {
        cluster.restart(n);
    }
    println!("both brokers restarted over the same storage");
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

/// The producer must carry on with one broker of two: every request gets
/// its 202. The consumer carries on too unless the dead broker was its group
/// coordinator: Tansu 0.6.0 gives every broker node id 111, so a client
/// cannot tell the coordinator moved and keeps calling the dead address
/// (with Apache Kafka the coordinator moves to another node id). So the
/// broker is started again once the load is over, and every 202 must then be
/// persisted exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broker_of_two_killed_under_load_the_other_carries_on() {
    let mut stack = durable_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(180)).await });
    running(&stack, 200).await;
    stack.broker.cluster.as_mut().expect("a cluster").kill(0);
    println!("broker 0 of 2 killed -9 under load");
    under_load(&stack, 3000).await;
    let report = load.await.expect("load");
    let refused = report.statuses.get(&503).copied().unwrap_or(0)
        + report.statuses.get(&0).copied().unwrap_or(0);
    println!(
        "answered 503 (or not at all): {refused}, longest wait for a 202: {:?}",
        report.longest_wait
    );
    let accepted = report.accepted.len() as i64;
    let persisted = wait_for_count(
        &stack.db.pool,
        "SELECT count(*) FROM orders",
        accepted,
        Duration::from_secs(20),
    )
    .await;
    println!(
        "persisted with one broker: {persisted} of {accepted} (fewer: the dead broker was the \
         group coordinator)"
    );
    stack.broker.cluster.as_mut().expect("a cluster").restart(0);
    stack
        .assert_exactly_once("one broker of two killed, then restarted", &report)
        .await;
}

/// A cluster restarted from a storage that lost the producer's epoch (as a
/// storage restored from a backup would) no longer knows the service's
/// idempotent producer: the service must get its orders accepted again
/// without a restart, and every 202 must be persisted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_forgot_the_producer_accepts_its_orders_again() {
    let mut stack = durable_stack().await;
    let url = stack.producer.url("/orders");
    let before = post_orders(&url, 20, 4, Duration::from_secs(30)).await;
    assert_eq!(before.gave_up, 0, "orders are accepted before the fault");
    let cluster = stack.broker.cluster.as_mut().expect("a cluster");
    let moved = sqlx::query("DELETE FROM producer_epoch")
        .execute(cluster.storage())
        .await
        .expect("forget the producer's epochs")
        .rows_affected();
    assert!(moved > 0, "the producer's epoch is stored");
    for n in 0..cluster.len() {
        cluster.kill(n);
        cluster.restart(n);
    }
    println!("{moved} producer epoch(s) deleted from the storage; brokers restarted");
    let after = post_orders(&url, 50, 4, Duration::from_secs(60)).await;
    println!(
        "after the fault: {after}, longest wait for a 202: {:?}",
        after.longest_wait
    );
    let mut report = before;
    report.sent += after.sent;
    report.attempts += after.attempts;
    report.gave_up += after.gave_up;
    report.accepted.extend(after.accepted);
    for (code, n) in after.statuses {
        *report.statuses.entry(code).or_default() += n;
    }
    stack
        .assert_exactly_once("producer forgotten by the cluster", &report)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_consumer_on_the_durable_cluster_loses_and_duplicates_nothing() {
    super::kill_9_of_the_consumer(Broker::cluster(2, false).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_unavailable_on_the_durable_cluster_dead_letters_nothing() {
    super::postgres_unavailable_for_a_while(Broker::cluster(2, false).await).await;
}
