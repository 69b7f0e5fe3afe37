//! The pipeline's topics on the broker `dev --broker` names: a broker of
//! one's own rarely has them, and one that creates topics by itself (Kafka's
//! `auto.create.topics.enable`) would make them with one partition and
//! delete `orders-state` by age. Missing ones are created as the
//! in-process broker has them; topics already there are left as they are.

use std::time::Duration;

use anyhow::Context;
use platform::kafka::KafkaSettings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::types::RDKafkaErrorCode;

use platform::kafka::ObservedContext;

/// How long the broker may take to answer the creations (the request, and
/// the creation it waits for).
const TIMEOUT: Duration = Duration::from_secs(10);

/// Most replicas a created topic gets (fewer on a smaller cluster).
const MAX_REPLICAS: usize = 3;

/// The topics that were missing and are now created.
pub type Created = Vec<String>;

/// Creates those of `contract::topics::ALL` the broker lacks, `partitions`
/// partitions each, on as many brokers as the cluster has, up to three.
pub async fn ensure(kafka: &KafkaSettings, partitions: i32) -> anyhow::Result<Created> {
    let brokers = crate::kafka::reach_async(kafka).await?;
    let replicas = i32::try_from(brokers.clamp(1, MAX_REPLICAS)).unwrap_or(1);
    let admin: AdminClient<ObservedContext> = kafka
        .client_config(&[("client.id", "pubsubkafka-dev")])
        .create_with_context(crate::kafka::observed())
        .context("a Kafka admin client")?;
    let wanted: Vec<NewTopic<'_>> = contract::topics::ALL
        .iter()
        .map(|topic| {
            let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
            if contract::topics::compacted(topic) {
                new.set("cleanup.policy", "compact")
            } else {
                new
            }
        })
        .collect();
    let answers = admin
        .create_topics(
            &wanted,
            &AdminOptions::new()
                .operation_timeout(Some(TIMEOUT))
                .request_timeout(Some(TIMEOUT)),
        )
        .await
        .with_context(|| {
            format!(
                "creating the pipeline's topics on {}",
                kafka.bootstrap_servers
            )
        })?;
    let mut created = Vec::new();
    for answer in answers {
        match answer {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!(
                "cannot create topic {topic} on {}: {code}; create it yourself \
                 ({partitions} partitions{}) or give this principal the right to",
                kafka.bootstrap_servers,
                if contract::topics::compacted(&topic) {
                    ", cleanup.policy=compact"
                } else {
                    ""
                }
            ),
        }
    }
    Ok(created)
}
