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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_broker_of_two_killed_under_load_the_other_carries_on() {
    let mut stack = durable_stack().await;
    let url = stack.producer.url("/orders");
    let load =
        tokio::spawn(async move { post_orders(&url, 3000, 16, Duration::from_secs(180)).await });
    running(&stack, 200).await;
    stack.broker.cluster.as_mut().expect("a cluster").kill(0);
    println!("broker 0 of 2 killed -9 under load");
    let report = load.await.expect("load");
    println!(
        "answered 503 (or not at all): {}, longest wait for a 202: {:?}",
        report.statuses.get(&503).copied().unwrap_or(0)
            + report.statuses.get(&0).copied().unwrap_or(0),
        report.longest_wait
    );
    stack
        .assert_exactly_once("one broker of two killed", &report)
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
