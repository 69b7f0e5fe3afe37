//! Over SASL_SSL, as the design requires in production, on a three-node
//! Apache Kafka cluster: SCRAM-SHA-512 logins (a user each for the
//! producer, the consumer, the replay job and the lag exporter) over
//! Kafka's own TLS, whose CA the clients verify, and the ACLs of
//! `helm/pubsubkafka/files/acls.json` enforced.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use harness::broker::Broker;
use harness::cluster::{Cluster, Role, Security};
use harness::database::TestDatabase;
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{header, publish_with, read_topic_with};
use harness::load::post_orders;
use harness::process::{binary, Service};
use harness::stack::{consumer_env, producer_env, Stack, DRAIN};
use harness::wait::eventually;

/// Runs the operator tool logged in as `role`.
fn tool(bootstrap: &str, security: &Security, role: Role, args: &[&str]) -> Output {
    Command::new(binary("pubsubkafka"))
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .envs(security.env(role))
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "pubsubkafka failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The pipeline on a secured cluster of its own, what its clients need to
/// log in, and where they connect.
async fn secured_stack() -> (Stack, Security, String) {
    let stack = Stack::start_on(
        Broker::cluster(harness::cluster::NODES, true).await,
        TestDatabase::create().await,
        None,
    )
    .await;
    let security = stack.broker.security().expect("secured").clone();
    let bootstrap = stack.broker.bootstrap.clone();
    (stack, security, bootstrap)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_ssl_orders_dead_letters_replay_and_lag_all_work() {
    let (stack, security, bootstrap) = secured_stack().await;

    let report = post_orders(
        &stack.producer.url("/orders"),
        50,
        8,
        Duration::from_secs(60),
    )
    .await;
    stack.assert_exactly_once("over SASL_SSL", &report).await;

    // Poison from a client of the operator's, logged in and over TLS.
    let poison = Outgoing {
        value: b"{not an order".to_vec(),
        ..order_message(&order_event(7), contract::Format::Json)
    };
    publish_with(stack.broker.client(), std::slice::from_ref(&poison));
    let dlq = read_topic_with(stack.broker.client(), "orders-dlq", 1, DRAIN);
    assert_eq!(dlq.len(), 1, "the poison is dead-lettered over SASL_SSL");
    assert_eq!(
        header(&dlq[0], "dlq-error-class").as_deref(),
        Some("decode")
    );

    let listing = json(&tool(
        &bootstrap,
        &security,
        Role::Operator,
        &["dlq", "list", "--json"],
    ));
    assert_eq!(listing["total"], 1, "{listing}");
    let replay = json(&tool(
        &bootstrap,
        &security,
        Role::Operator,
        &[
            "dlq",
            "replay",
            "--group",
            harness::cluster::REPLAY_GROUP,
            "--json",
        ],
    ));
    assert_eq!(replay["replayed"], 1, "{replay}");
    // What the replay committed, as Kafka's own group tool reads it: the
    // group's position moved past every dead letter the replay read (the
    // replayed poison fails again and is dead-lettered anew, after it).
    let cluster = stack.broker.cluster.as_ref().expect("a cluster");
    let (rows, table) = cluster.describe_group(harness::cluster::REPLAY_GROUP);
    let committed: i64 = rows
        .iter()
        .filter(|r| r.topic == "orders-dlq")
        .filter_map(|r| r.committed)
        .sum();
    assert_eq!(
        Some(committed),
        replay["read"].as_i64(),
        "the replay committed past each dead letter it read ({replay}):\n{table}"
    );
    let group = stack
        .consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("a group")
        .to_owned();
    let lag = json(&tool(
        &bootstrap,
        &security,
        Role::LagExporter,
        &["lag", "--json", "--group", &group],
    ))["groups"][0]
        .clone();
    println!(
        "over SASL_SSL: {} orders persisted, 1 dead letter listed and replayed, lag {}",
        report.accepted.len(),
        lag["total"]
    );
    assert!(
        lag["partitions"].as_array().is_some_and(|p| !p.is_empty()),
        "{lag}"
    );
}

/// Starts `name` with `env` and expects it to stop at start-up saying `why`.
fn refused(name: &str, var: &str, env: &[(&str, String)], why: &str, secret: &str) {
    let mut service = Service::start(name, var, env);
    let status = service
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("{name} hung instead of failing:\n{}", service.log_tail(20)));
    let logs = service.logs();
    println!("{name}: exit {status} saying {why:?}");
    assert!(!status.success(), "{name} must fail");
    assert!(
        logs.contains(why),
        "{name} says why:\n{}",
        service.log_tail(20)
    );
    assert!(!logs.contains(secret), "{name} never logs the password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_a_wrong_ca_stops_each_service_with_its_cause() {
    let broker = Broker::cluster(1, true).await;
    let db = TestDatabase::create().await;
    let security = broker.security().expect("secured").clone();
    let wrong_password = "not-the-password-0123";
    let with = |mut env: Vec<(&'static str, String)>, name: &'static str, value: String| {
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
        env
    };
    for (name, var, env) in [
        ("producer", "PRODUCER_HTTP_ADDR", producer_env(&broker)),
        (
            "consumer",
            "CONSUMER_HTTP_ADDR",
            consumer_env(&broker, &db.url),
        ),
    ] {
        let bad_password = with(
            env.clone(),
            "KAFKA_SASL_PASSWORD",
            wrong_password.to_owned(),
        );
        refused(
            name,
            var,
            &bad_password,
            "Kafka authentication failed",
            wrong_password,
        );
        let bad_ca = with(
            env,
            "KAFKA_SSL_CA_LOCATION",
            security.wrong_ca.display().to_string(),
        );
        refused(
            name,
            var,
            &bad_ca,
            "Kafka TLS handshake failed",
            &security.password(Role::Producer),
        );
    }
}

/// Whether `e` is the broker refusing for want of an ACL.
fn unauthorized(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

/// Writes one message to `topic` as `config` logs in (not idempotent, so
/// that only the topic's ACL is asked); the broker's answer.
fn write(mut config: ClientConfig, topic: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = config
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "10000")
        .create()
        .expect("producer");
    let record = FutureRecord::to(topic).key("k").payload("v");
    futures::executor::block_on(producer.send(record, Duration::from_secs(10)))
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// Reads `topic` as `config` logs in, from the beginning; the messages it
/// got, or the broker's refusal.
fn read(mut config: ClientConfig, group: &str, topic: &str) -> Result<usize, KafkaError> {
    let consumer: BaseConsumer = config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    for p in 0..harness::kafka::PARTITIONS {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment)?;
    let mut read = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => read += 1,
            Some(Err(e)) if unauthorized(&e) => return Err(e),
            _ if read > 0 => break,
            _ => {}
        }
    }
    Ok(read)
}

/// Commits `group`'s offsets on `topic` (one the principal may read, so
/// that only the group is in question) with Kafka's own group tool logged
/// in as `role`: what it printed when the broker refused, `Ok` when it
/// committed.
fn commit(cluster: &Cluster, role: Role, group: &str, topic: &str) -> Result<(), String> {
    let output = cluster.kafka_tool_as(
        Some(role),
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &[
            "--reset-offsets",
            "--group",
            group,
            "--topic",
            topic,
            "--to-earliest",
            "--execute",
        ],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && !said.contains("Error") {
        Ok(())
    } else {
        Err(said)
    }
}

/// Least privilege, both halves: each principal does its job (the
/// scenario above) and is refused what it must not do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_principal_is_refused_what_its_acls_do_not_grant() {
    let broker = Broker::cluster(harness::cluster::NODES, true).await;
    let security = broker.security().expect("secured").clone();
    let topics = broker.topics.clone();
    // Something to read, written by the harness's super user.
    publish_with(
        broker.client(),
        &[order_message(&order_event(1), contract::Format::Json)],
    );
    let consumer_group = harness::cluster::CONSUMER_GROUP;
    let replay_group = harness::cluster::REPLAY_GROUP;
    let bootstrap = broker.bootstrap.clone();
    let blocking = tokio::task::spawn_blocking(move || {
        let as_role = |role| security.client(&bootstrap, role);
        let mut outcomes: Vec<(String, Result<(), KafkaError>)> = Vec::new();
        outcomes.push((
            "the producer reading orders".into(),
            read(as_role(Role::Producer), consumer_group, &topics.orders).map(|_| ()),
        ));
        outcomes.push((
            "the consumer writing orders".into(),
            write(as_role(Role::Consumer), &topics.orders),
        ));
        outcomes.push((
            "the consumer writing users".into(),
            write(as_role(Role::Consumer), &topics.users),
        ));
        for topic in topics.all() {
            outcomes.push((
                format!("the lag exporter writing {topic}"),
                write(as_role(Role::LagExporter), topic),
            ));
        }
        outcomes.push((
            "the replay job reading orders".into(),
            read(as_role(Role::Operator), replay_group, &topics.orders).map(|_| ()),
        ));
        // And what each may do, so a refusal above is the ACL's and not a
        // broken login: the consumer reads orders in its own group.
        let allowed = read(as_role(Role::Consumer), consumer_group, &topics.orders);
        (outcomes, allowed)
    });
    let (outcomes, consumer_read) = blocking.await.expect("clients");
    let mut refusals = Vec::new();
    for (what, outcome) in outcomes {
        match outcome {
            Err(e) if unauthorized(&e) => refusals.push(format!("{what}: {e}")),
            other => panic!("{what} must be refused for want of an ACL, got {other:?}"),
        }
    }
    assert_eq!(
        consumer_read.expect("the consumer may read orders"),
        1,
        "the consumer reads the message"
    );
    // No principal commits another's group (each on a topic it may read,
    // so that only the group is in question), asked with Kafka's own tool.
    let cluster = broker.cluster.as_ref().expect("a cluster");
    let topics = &broker.topics;
    for (role, group, topic) in [
        (Role::Consumer, replay_group, &topics.orders),
        (Role::Operator, consumer_group, &topics.orders_dlq),
        (Role::LagExporter, consumer_group, &topics.orders),
    ] {
        let what = format!("{} committing group {group}", role.user());
        match commit(cluster, role, group, topic) {
            Err(said) if said.contains("GroupAuthorizationException") => {
                refusals.push(format!("{what}: GroupAuthorizationException"));
            }
            other => panic!("{what} must be refused for want of an ACL, got {other:?}"),
        }
    }
    commit(cluster, Role::Operator, replay_group, &topics.orders_dlq)
        .expect("the replay job may commit its own group");
    println!(
        "refused, each for want of an ACL:\n  {}",
        refusals.join("\n  ")
    );
}

/// The time lag needs `Read` on the topics: the exporter reads the message
/// at each committed offset to date it. With the ACLs of `acls.json` it is
/// measured; without `Read` (what the Terraform module once granted) the
/// measurement fails with that cause, and never reads 0 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_exporter_dates_the_lag_with_read_and_fails_loudly_without_it() {
    let (mut stack, security, bootstrap) = secured_stack().await;
    let group = harness::cluster::CONSUMER_GROUP;
    let first = post_orders(
        &stack.producer.url("/orders"),
        6,
        2,
        Duration::from_secs(60),
    )
    .await;
    stack.assert_exactly_once("before the lag", &first).await;
    stack
        .consumer
        .sigterm(Duration::from_secs(30))
        .expect("the consumer stops");
    let behind = post_orders(
        &stack.producer.url("/orders"),
        6,
        2,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(behind.accepted.len(), 6, "orders wait for the consumer");
    let lag_as_exporter = || {
        tool(
            &bootstrap,
            &security,
            Role::LagExporter,
            &["lag", "--json", "--group", group],
        )
    };
    // Every partition behind must be dated at least a second old.
    let dated = |lag: &serde_json::Value| -> Option<bool> {
        let partitions = lag["partitions"].as_array()?;
        let behind: Vec<&serde_json::Value> = partitions
            .iter()
            .filter(|p| p["lag"].as_i64().unwrap_or(0) > 0)
            .collect();
        if behind.is_empty() {
            return None;
        }
        Some(
            behind
                .iter()
                .all(|p| p["lag_seconds"].as_i64().unwrap_or(0) >= 1),
        )
    };
    let measured = eventually(
        Duration::from_secs(30),
        "the lag dated with the granted ACLs",
        || {
            let lag = json(&lag_as_exporter())["groups"][0].clone();
            std::future::ready(if dated(&lag) == Some(true) {
                Ok(lag)
            } else {
                Err(lag.to_string())
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "with Read: total lag {}, dated {}",
        measured["total"], measured["partitions"]
    );
    // Kafka's own tool says the same, partition by partition.
    let cluster = stack.broker.cluster.as_ref().expect("a cluster");
    let (rows, table) = cluster.describe_group(group);
    let mut compared = 0;
    for p in measured["partitions"].as_array().expect("partitions") {
        let (topic, partition) = (
            p["topic"].as_str().expect("topic"),
            p["partition"].as_i64().expect("partition"),
        );
        let row = rows
            .iter()
            .find(|r| r.topic == topic && i64::from(r.partition) == partition);
        // Kafka's tool lists a group without members only where it
        // committed; `lag` lists every partition (the log as lag where
        // nothing was committed).
        let Some(row) = row else {
            assert!(
                p["committed"].is_null(),
                "kafka-consumer-groups lists {topic}[{partition}], which has a commit:\n{table}"
            );
            continue;
        };
        assert_eq!(
            (
                p["committed"].as_i64(),
                p["high"].as_i64(),
                p["lag"].as_i64()
            ),
            (row.committed, row.log_end, row.lag),
            "{topic}[{partition}]: pubsubkafka lag and kafka-consumer-groups agree:\n{table}"
        );
        compared += 1;
    }
    assert!(compared > 0, "some partition was compared:\n{table}");
    println!("pubsubkafka lag equals kafka-consumer-groups --describe on {compared} partitions");

    // A principal that may not describe the group (the replay job's) is
    // told so, not that the broker timed out.
    let other = tool(
        &bootstrap,
        &security,
        Role::Operator,
        &["lag", "--json", "--group", group],
    );
    let said = String::from_utf8_lossy(&other.stdout);
    assert!(!other.status.success(), "measured without Describe: {said}");
    let error: serde_json::Value = serde_json::from_str(&said).expect("one JSON error");
    assert_eq!(error["error"]["code"], "kafka_unauthorized", "{said}");
    assert!(
        said.contains("Group authorization failed") && said.contains("needs Describe on the group"),
        "the refusal says why: {said}"
    );
    println!("without Describe on the group: {}", said.trim());

    // The old Terraform grants: Describe only.
    let read_grants: Vec<_> =
        harness::cluster::grants(&stack.broker.topics, group, harness::cluster::REPLAY_GROUP)
            .into_iter()
            .filter(|g| {
                g.principal == format!("User:{}", Role::LagExporter.user())
                    && g.resource_type == "TOPIC"
                    && g.operation == "READ"
            })
            .collect();
    assert_eq!(read_grants.len(), 4, "Read on the four topics is granted");
    stack
        .broker
        .cluster
        .as_ref()
        .expect("a cluster")
        .change_acls(false, &read_grants);
    let refusal = eventually(
        Duration::from_secs(30),
        "the measurement to fail without Read",
        || {
            let output = lag_as_exporter();
            std::future::ready(if output.status.success() {
                let lag: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
                assert_ne!(
                    dated(&lag),
                    Some(false),
                    "a lag that cannot be dated is never reported as 0 seconds: {lag}"
                );
                Err(format!("still measured: {lag}"))
            } else {
                Ok(String::from_utf8_lossy(&output.stderr).into_owned())
            })
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("without Read: {}", refusal.trim());
    assert!(
        refusal.contains("to date the time lag") && refusal.contains("needs Describe and Read"),
        "the failure says why: {refusal}"
    );

    // Serving, the same failure is the exporter's readiness and a metric.
    let addr = format!("127.0.0.1:{}", harness::free_port());
    let mut env = security.env(Role::LagExporter);
    env.push(("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone()));
    let exporter = Service::start_command(
        "pubsubkafka",
        &["lag", "--serve", &addr, "--group", group, "--interval", "1"],
        &env,
        &addr,
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let up = format!("group=\"{group}\"");
    let (ready, metric) = eventually(
        Duration::from_secs(30),
        "the exporter not ready and saying its group is down",
        || async {
            let ready = match client.get(exporter.url("/readyz")).send().await {
                Ok(r) => Some(r.status().as_u16()),
                Err(_) => None,
            };
            let metrics = match client.get(exporter.url("/metrics")).send().await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            let metric = harness::metrics::sum(&metrics, "kafka_lag_exporter_up", &[&up]);
            if ready == Some(503) && metric == Some(0.0) {
                Ok((ready, metric))
            } else {
                Err(format!(
                    "/readyz {ready:?}, kafka_lag_exporter_up {metric:?}\n{}",
                    exporter.log_tail(10)
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("serving without Read: /readyz {ready:?}, kafka_lag_exporter_up {metric:?}");
}
