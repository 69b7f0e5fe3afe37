//! Reading a dead-letter topic as `dlq list` and `dlq replay` do, against a
//! Tansu broker process.

use std::time::Duration;

use contract::topics;
use harness::broker::Tansu;
use harness::events::{order_event, order_message};
use harness::kafka::{client, publish_each};
use ops::dead_letters::Snapshot;

/// A reader slower than the snapshot's time bound (a replay paced by
/// `--rate`) still reads every message: only the time spent waiting for
/// the broker counts against the bound, not the reader's own.
#[test]
fn a_slow_reader_still_reads_the_whole_snapshot() {
    let broker = Tansu::start();
    broker.create_topics();
    let messages: Vec<_> = (0..12)
        .map(|n| {
            let mut m = order_message(&order_event(n), contract::Format::Json);
            m.topic = topics::ORDERS_DLQ.into();
            m
        })
        .collect();
    publish_each(&broker.bootstrap, &messages);
    let mut config = client(&broker.bootstrap);
    config
        .set("group.id", "snapshot-test")
        .set("enable.auto.commit", "false");
    // Bound: six times the timeout, 6 s; the reader takes 12 x 600 ms.
    let snapshot = Snapshot::open(&config, topics::ORDERS_DLQ, None, Duration::from_secs(1))
        .expect("open the snapshot");
    assert_eq!(snapshot.expected(), 12);
    let mut read = 0;
    for message in snapshot {
        message.expect("a message, not an error");
        read += 1;
        // The reader's own pace (as `--rate` paces a replay), the scenario
        // under test: not a wait for anything to happen.
        std::thread::sleep(Duration::from_millis(600));
    }
    assert_eq!(read, 12, "every message of the snapshot");
}
