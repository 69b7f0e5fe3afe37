//! A producer service running in process against librdkafka's mock cluster,
//! and an independent Kafka consumer to read back what it published.

use std::net::SocketAddr;
use std::time::Duration;

use platform::Env;
use producer::{Application, ProducerConfig};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use harness::telemetry::install as telemetry;

pub struct TestApp {
    pub addr: SocketAddr,
    /// Where `/metrics` and the probes are, when `METRICS_ADDR` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub cluster: MockCluster<'static, DefaultProducerContext>,
    pub stop: CancellationToken,
    pub handle: Option<JoinHandle<std::io::Result<()>>>,
    pub http: reqwest::Client,
}

impl TestApp {
    /// Starts the service with `extra` settings on a fresh mock cluster.
    pub async fn spawn(extra: &[(&str, &str)]) -> Self {
        telemetry("warn");
        let cluster = MockCluster::new(1).expect("mock cluster");
        for topic in ["orders", "users"] {
            cluster
                .create_topic(topic, harness::kafka::PARTITIONS, 1)
                .expect("create topic");
        }
        let bootstrap = cluster.bootstrap_servers();
        let mut vars = vec![
            ("PRODUCER_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS".to_owned(), bootstrap),
            ("PRODUCE_TIMEOUT_MS".to_owned(), "2000".to_owned()),
            ("SHUTDOWN_TIMEOUT_SECS".to_owned(), "10".to_owned()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ProducerConfig::from_env(&Env::from_pairs(vars)).expect("config");
        let app = Application::build(config, prometheus::Registry::new())
            .await
            .expect("producer starts");
        let addr = app.local_addr().expect("bound");
        let metrics_addr = app.metrics_addr();
        let stop = CancellationToken::new();
        let handle = tokio::spawn(app.run(stop.clone()));
        Self {
            addr,
            metrics_addr,
            cluster,
            stop,
            handle: Some(handle),
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The exposition at `/metrics`.
    pub async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// Posts the example order; the status it got.
    pub async fn post_order(&self) -> u16 {
        self.post("/orders")
            .json(&order_body())
            .send()
            .await
            .expect("POST /orders")
            .status()
            .as_u16()
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("content-type", "application/json")
    }

    /// Stops the service and waits for it to finish.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("join").expect("clean stop");
        }
    }

    /// Every message of `topic` currently stored, read by an independent
    /// consumer from the beginning; waits until `expected` arrived or a few
    /// seconds passed.
    pub fn read_topic(&self, topic: &str, expected: usize) -> Vec<OwnedMessage> {
        read_topic(
            &self.cluster.bootstrap_servers(),
            topic,
            expected,
            Duration::from_secs(5),
        )
    }

    /// Whether `topic` holds no message at all: read to the high
    /// watermarks its partitions have when asked (every write the service
    /// answered for is acknowledged by then), not until a quiet moment,
    /// which an empty read can pass before the first fetch answers.
    pub fn topic_is_empty(&self, topic: &str) -> bool {
        harness::kafka::read_topic_to_high_watermarks(
            harness::kafka::client(&self.cluster.bootstrap_servers()),
            topic,
            Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("reading {topic} to its end: {e}"))
        .is_empty()
    }
}

pub use harness::kafka::{header, read_topic};

pub fn key(message: &OwnedMessage) -> String {
    String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned()
}

pub fn order_body() -> serde_json::Value {
    contract::request::example_order()
}
