//! Plain Kafka clients: the pipeline's topics (the standard names, a
//! scenario's own, and creating them), a mock cluster with them, a raw
//! publisher (tests control every byte and header), and the readers of a
//! topic from the beginning with a fresh group: until a count of messages
//! came ([`read_topic`]), or up to its end when asked
//! ([`read_topic_to_high_watermarks`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use uuid::Uuid;

use crate::events::Outgoing;

/// Partitions of every topic in tests.
pub const PARTITIONS: i32 = 3;

/// librdkafka's in-process mock cluster with the pipeline's topics (the mock
/// takes no topic configuration: it never compacts `orders-state`).
pub fn mock_cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in contract::topics::ALL {
        cluster.create_topic(topic, PARTITIONS, 1).expect("topic");
    }
    cluster
}

/// Topic names of one scenario.
#[derive(Debug, Clone)]
pub struct Topics {
    /// Order events.
    pub orders: String,
    /// Their dead letters (`<orders>-dlq`, as the consumer names them).
    pub orders_dlq: String,
    /// User events.
    pub users: String,
    /// Their dead letters.
    pub users_dlq: String,
    /// Each order's full state (`<orders>-state`, compacted), which the
    /// consumer publishes (`ORDERS_STATE_TOPIC`).
    pub orders_state: String,
}

impl Topics {
    /// `orders` and `users` with their DLQs, and `orders`' state topic.
    pub fn named(orders: &str, users: &str) -> Self {
        Self {
            orders: orders.to_owned(),
            orders_dlq: format!("{orders}-dlq"),
            users: users.to_owned(),
            users_dlq: format!("{users}-dlq"),
            orders_state: format!("{orders}-state"),
        }
    }

    /// The standard names, used on a broker of the scenario's own.
    pub fn standard() -> Self {
        Self::named(contract::topics::ORDERS, contract::topics::USERS)
    }

    /// All of them, in the order of `contract::topics::ALL`.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.orders,
            &self.orders_dlq,
            &self.users,
            &self.users_dlq,
            &self.orders_state,
        ]
    }

    /// Whether `topic` is compacted (`cleanup.policy=compact`): the one
    /// that is, by its standard name, `contract::topics::compacted`.
    pub fn compacted(&self, topic: &str) -> bool {
        self.all()
            .iter()
            .zip(contract::topics::ALL)
            .any(|(name, standard)| *name == topic && contract::topics::compacted(standard))
    }

    /// Creates all of them, [`PARTITIONS`] partitions and `replication`
    /// replicas each, the compacted one with `cleanup.policy=compact`,
    /// through a client configured as `config`; fails naming the broker and
    /// the topic it refused.
    pub async fn create(&self, config: rdkafka::ClientConfig, replication: i32) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        let bootstrap = config.get("bootstrap.servers").unwrap_or("?").to_owned();
        let admin: AdminClient<_> = config.create().expect("admin client");
        let new = self.new_topics(replication);
        let results = admin
            .create_topics(
                &new,
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
            )
            .await
            .unwrap_or_else(|e| panic!("cannot create topics on {bootstrap}: {e}"));
        for result in results {
            if let Err((topic, e)) = result {
                panic!("cannot create topic {topic} on {bootstrap}: {e}");
            }
        }
    }

    /// Deletes them all and creates them again, empty: a broker's state of
    /// a fresh start without its restart. They are created once the
    /// metadata no longer names any of them (a creation meanwhile would be
    /// refused for some and not others).
    pub async fn recreate(&self, config: rdkafka::ClientConfig, replication: i32) {
        self.delete(config.clone()).await;
        self.create(config, replication).await;
    }

    /// Deletes them all, and waits until the metadata no longer names any
    /// of them (deleting takes effect in the background).
    pub async fn delete(&self, config: rdkafka::ClientConfig) {
        use rdkafka::admin::{AdminClient, AdminOptions};
        let admin: AdminClient<_> = config.create().expect("admin client");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = admin
            .delete_topics(&self.all(), &options)
            .await
            .unwrap_or_else(|e| panic!("cannot delete topics: {e}"));
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((topic, e)) => panic!("cannot delete topic {topic}: {e}"),
            }
        }
        let names: Vec<String> = self.all().iter().map(|t| (*t).to_owned()).collect();
        crate::wait::eventually(Duration::from_secs(60), "the topics deleted", || {
            let (config, names) = (config.clone(), names.clone());
            async move {
                tokio::task::spawn_blocking(move || still_listed(config, &names))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|listed| listed)
                    .and_then(|listed| match listed.is_empty() {
                        true => Ok(()),
                        false => Err(format!("still listed: {listed:?}")),
                    })
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Each of them as created: `PARTITIONS` partitions, compacted where
    /// [`Self::compacted`] says.
    fn new_topics(&self, replication: i32) -> Vec<rdkafka::admin::NewTopic<'_>> {
        use rdkafka::admin::{NewTopic, TopicReplication};
        self.all()
            .into_iter()
            .map(|t| {
                let topic = NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(replication));
                if self.compacted(t) {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                }
            })
            .collect()
    }
}

/// The cluster's metadata (of `topic` only, if given) through a plain
/// client of `config`, or why it could not be had (blocking).
pub fn metadata(
    config: &ClientConfig,
    topic: Option<&str>,
    timeout: Duration,
) -> Result<rdkafka::metadata::Metadata, String> {
    let client: BaseConsumer = config.create().map_err(|e| e.to_string())?;
    client
        .fetch_metadata(topic, timeout)
        .map_err(|e| e.to_string())
}

/// Which of `topics` the cluster's metadata still names.
fn still_listed(config: ClientConfig, topics: &[String]) -> Result<Vec<String>, String> {
    let metadata = metadata(&config, None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|name| topics.contains(name))
        .collect())
}

/// A plain client of `bootstrap`.
pub fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

/// Publishes and waits until every message is acknowledged.
pub fn publish(bootstrap: &str, messages: &[Outgoing]) {
    publish_with(client(bootstrap), messages);
}

/// [`publish`] through a client configured as `config` says (a secured
/// cluster's login, say).
pub fn publish_with(config: ClientConfig, messages: &[Outgoing]) {
    publish_batched(config, messages, true);
}

/// Publishes each message in a record batch of its own. Tansu's memory
/// engine reports the high watermark of a partition as the base offset of
/// its last batch plus one, so tests that read watermarks publish this way.
pub fn publish_each(bootstrap: &str, messages: &[Outgoing]) {
    publish_batched(client(bootstrap), messages, false);
}

fn publish_batched(mut config: ClientConfig, messages: &[Outgoing], batched: bool) {
    let producer: ThreadedProducer<DefaultProducerContext> = config
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    for m in messages {
        producer
            .send(m.record())
            .map_err(|(e, _)| e)
            .expect("enqueue");
        if !batched {
            producer.flush(Duration::from_secs(10)).expect("published");
        }
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("all published");
}

/// Every message of `topic` from the beginning, read by a fresh group:
/// reading stops once `expected` messages are in, 300 ms after the start a
/// poll brings nothing new, and every partition is read to the high
/// watermark it has then (so a message already written beyond the count is
/// in, and an exact-count assertion can fail); or when `wait` is over, with
/// what came.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    wait: Duration,
) -> Vec<OwnedMessage> {
    read_topic_with(client(bootstrap), topic, expected, wait)
}

/// [`read_topic`] through a client configured as `config` says.
pub fn read_topic_with(
    config: ClientConfig,
    topic: &str,
    expected: usize,
    wait: Duration,
) -> Vec<OwnedMessage> {
    let consumer = fresh_reader(config).expect("reader");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: Vec<OwnedMessage> = Vec::new();
    let mut next = BTreeMap::<i32, i64>::new();
    let started = Instant::now();
    while started.elapsed() < wait {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                next.insert(m.partition(), m.offset() + 1);
                out.push(m.detach());
            }
            // The client moves to another node and the caller's count
            // decides.
            Some(Err(e)) if a_node_going_away(&e) => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if out.len() >= expected
                && started.elapsed() > Duration::from_millis(300)
                && at_the_end(&consumer, topic, &next) =>
            {
                break
            }
            None => {}
        }
    }
    out
}

/// Whether every partition of `topic` is read (`next` offset per
/// partition) up to its high watermark now; `true` when the watermarks
/// cannot be had (a node down: the caller's count decides, as before).
fn at_the_end(consumer: &BaseConsumer, topic: &str, next: &BTreeMap<i32, i64>) -> bool {
    high_watermarks(consumer, topic).map_or(true, |ends| {
        ends.iter()
            .all(|(p, end)| next.get(p).is_some_and(|n| n >= end))
    })
}

/// Every message of `topic` up to the high watermarks its partitions had
/// when asked, read from the beginning by a fresh group, in (partition,
/// offset) order: what the topic held then, whatever its count; an error
/// when that end is not reached within `wait`. Not for Tansu, which can
/// report a high watermark below a partition's end after a batch: there,
/// wait for a known count ([`read_topic`]).
pub fn read_topic_to_high_watermarks(
    config: ClientConfig,
    topic: &str,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, String> {
    let consumer = fresh_reader(config).map_err(|e| e.to_string())?;
    let mut ends = high_watermarks(&consumer, topic)?;
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    let mut assignment = TopicPartitionList::new();
    for p in ends.keys() {
        assignment
            .add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&assignment).map_err(|e| e.to_string())?;
    let started = Instant::now();
    while !ends.is_empty() {
        if started.elapsed() > wait {
            return Err(format!(
                "{topic}: partitions {:?} not read to their end within {wait:?}",
                ends.keys().collect::<Vec<_>>()
            ));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if ends
                    .get(&m.partition())
                    .is_some_and(|end| m.offset() + 1 >= *end)
                {
                    ends.remove(&m.partition());
                }
                out.push(m.detach());
            }
            Some(Err(e)) if a_node_going_away(&e) => {}
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => {}
        }
    }
    out.sort_by_key(|m| (m.partition(), m.offset()));
    Ok(out)
}

/// The high watermark of each partition of `topic` that holds messages.
fn high_watermarks(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, String> {
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .map_err(|e| format!("watermarks of {topic}[{p}]: {e}"))?;
        if high > low {
            ends.insert(p, high);
        }
    }
    Ok(ends)
}

/// Each non-empty partition's high watermark of `topic` (of the harness's
/// [`PARTITIONS`]), as a client configured by `config` reads them.
pub fn end_offsets(config: ClientConfig, topic: &str) -> Result<BTreeMap<i32, i64>, String> {
    let consumer = fresh_reader(config).map_err(|e| e.to_string())?;
    high_watermarks(&consumer, topic)
}

/// A reader of a group of its own that commits nothing.
fn fresh_reader(mut config: ClientConfig) -> KafkaResult<BaseConsumer> {
    config
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
}

/// Whether a reader's error is a node of a cluster going away: news, not an
/// end (over TLS a node killed mid-handshake reports an SSL error).
fn a_node_going_away(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::SSL
        )
    )
}

/// Header `name` of `m` as text (see `platform::kafka::header`).
pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    platform::kafka::header(m, name).map(str::to_owned)
}

/// The offsets `group` has committed on each partition of `topic` (the
/// next message it will read), read with a client outside the group.
pub fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Option<i64>> {
    try_committed(client(bootstrap), group, topic, Duration::from_secs(10))
        .expect("committed offsets")
}

/// [`committed`] through a client configured as `config`, or the error of
/// a broker that did not answer within `wait` (its group coordinator gone,
/// say).
pub fn try_committed(
    mut config: ClientConfig,
    group: &str,
    topic: &str,
    wait: Duration,
) -> Result<Vec<Option<i64>>, KafkaError> {
    let consumer: BaseConsumer = config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(partitions, wait)?;
    Ok((0..PARTITIONS)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => None,
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_topics_are_the_contracts() {
        assert_eq!(Topics::standard().all(), contract::topics::ALL);
    }

    #[test]
    fn a_scenarios_state_topic_is_its_compacted_one() {
        let topics = Topics::named("orders-1", "users-1");
        assert_eq!(topics.orders_state, "orders-1-state");
        let compacted: Vec<&str> = topics
            .all()
            .into_iter()
            .filter(|t| topics.compacted(t))
            .collect();
        assert_eq!(compacted, ["orders-1-state"]);
    }
}
