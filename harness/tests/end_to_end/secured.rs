//! Over SASL_SSL, as the design requires in production: SCRAM-SHA-512
//! logins (a user each for the producer, the consumer and the operator
//! tool) and TLS whose CA the clients verify, on a durable two-broker
//! cluster.

use std::process::{Command, Output};
use std::time::Duration;

use harness::broker::Broker;
use harness::cluster::{Role, Security};
use harness::database::TestDatabase;
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{header, publish_with, read_topic_with};
use harness::load::post_orders;
use harness::process::{binary, Service};
use harness::stack::{consumer_env, producer_env, Stack, DRAIN};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_sasl_ssl_orders_dead_letters_replay_and_lag_all_work() {
    let stack = Stack::start_on(
        Broker::cluster(2, true).await,
        TestDatabase::create().await,
        None,
    )
    .await;
    let security = stack.broker.security().expect("secured").clone();
    let bootstrap = stack.broker.bootstrap.clone();

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
        &["dlq", "replay", "--group", "secured-replay", "--json"],
    ));
    assert_eq!(replay["replayed"], 1, "{replay}");
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
    ));
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
