//! Kafka side of the consumer tests: a mock cluster with the four topics, a
//! raw publisher (so tests control every byte and header), a DLQ reader, and
//! the consumer service run in its own runtime so a test can crash it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Once;
use std::time::{Duration, Instant};

use chrono::Utc;
use consumer::{Application, ConsumerConfig};
use contract::{EventCodec, Format, OrderEvent, UserEvent};
use platform::Env;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PARTITIONS: i32 = 3;

pub fn telemetry() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let config = platform::telemetry::TelemetryConfig::from_env(
            &Env::from_pairs([("LOG_LEVEL", "warn,consumer=info"), ("LOG_FORMAT", "text")]),
            "consumer-test",
        )
        .expect("telemetry config");
        std::mem::forget(platform::telemetry::init(&config).expect("telemetry"));
    });
}

pub fn cluster() -> MockCluster<'static, DefaultProducerContext> {
    let cluster = MockCluster::new(1).expect("mock cluster");
    for topic in ["orders", "orders-dlq", "users", "users-dlq"] {
        cluster.create_topic(topic, PARTITIONS, 1).expect("topic");
    }
    cluster
}

/// A message as a test wants it published.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

pub fn headers_for(format: Format, event_type: &str, version: u32) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), format.content_type().into()),
        ("schema-version".into(), version.to_string()),
        ("event-type".into(), event_type.into()),
        ("correlation-id".into(), "test".into()),
    ]
}

pub fn order_event(n: usize) -> OrderEvent {
    let request: contract::request::CreateOrderRequest = serde_json::from_value(serde_json::json!({
        "customer": {"id": format!("c-{n}"), "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"line1": "12 St James's Sq", "city": "London", "postal_code": "SW1Y 4JH", "country": "GB"}},
        "items": [{"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price": "19.99"},
                  {"sku": "SKU-2", "name": "Gadget", "quantity": 1, "unit_price": "5.00", "inventory_status": "backordered"}],
        "currency": "EUR"
    }))
    .expect("request");
    let order_id = Uuid::new_v4();
    request.validate().expect("valid").into_event(
        order_id,
        contract::EventMetadata {
            event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, order_id.as_bytes()),
            event_type: "order.created".into(),
            schema_version: 2,
            occurred_at: Utc::now(),
            producer: "test".into(),
            correlation_id: format!("corr-{n}"),
            trace_id: None,
            span_id: None,
        },
    )
}

pub fn user_event(n: usize) -> UserEvent {
    UserEvent {
        metadata: contract::EventMetadata {
            event_id: Uuid::new_v4(),
            event_type: "user.registered".into(),
            schema_version: 1,
            occurred_at: Utc::now(),
            producer: "test".into(),
            correlation_id: format!("corr-u{n}"),
            trace_id: None,
            span_id: None,
        },
        user_id: format!("u-{n}-{}", Uuid::new_v4().simple()),
        name: "Ada".into(),
        email: "ada@example.com".into(),
        address: None,
    }
}

pub fn order_message(event: &OrderEvent, format: Format) -> Outgoing {
    Outgoing {
        topic: "orders".into(),
        partition: None,
        key: event.order_id.to_string().into_bytes(),
        value: event.encode(format).expect("encode"),
        headers: headers_for(format, "order.created", 2),
    }
}

pub fn user_message(event: &UserEvent, format: Format) -> Outgoing {
    Outgoing {
        topic: "users".into(),
        partition: None,
        key: event.user_id.clone().into_bytes(),
        value: event.encode(format).expect("encode"),
        headers: headers_for(format, "user.registered", 1),
    }
}

/// Publishes and waits until every message is acknowledged.
pub fn publish(bootstrap: &str, messages: &[Outgoing]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    for m in messages {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &m.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v),
            });
        }
        let mut record = BaseRecord::to(&m.topic)
            .key(&m.key)
            .payload(&m.value)
            .headers(headers);
        if let Some(p) = m.partition {
            record = record.partition(p);
        }
        producer.send(record).map_err(|(e, _)| e).expect("enqueue");
    }
    producer
        .flush(Duration::from_secs(10))
        .expect("all published");
}

/// Every message of `topic` from the beginning, read by a fresh group.
pub fn read_topic(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    wait: Duration,
) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("reader-{}", Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment
            .add_partition_offset(topic, p, rdkafka::Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let started = Instant::now();
    while started.elapsed() < wait {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None if out.len() >= expected && started.elapsed() > Duration::from_millis(300) => {
                break
            }
            None => {}
        }
    }
    out
}

pub fn header(m: &OwnedMessage, name: &str) -> Option<String> {
    m.headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The consumer service, running in a runtime of its own.
pub struct RunningConsumer {
    pub addr: SocketAddr,
    stop: CancellationToken,
    runtime: Option<tokio::runtime::Runtime>,
    handle: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl RunningConsumer {
    pub fn start(bootstrap: &str, database_url: &str, group: &str, extra: &[(&str, &str)]) -> Self {
        telemetry();
        let mut vars: Vec<(String, String)> = vec![
            ("CONSUMER_HTTP_ADDR".into(), "127.0.0.1:0".into()),
            ("KAFKA_BOOTSTRAP_SERVERS".into(), bootstrap.into()),
            ("DATABASE_URL".into(), database_url.into()),
            ("KAFKA_CONSUMER_GROUP".into(), group.into()),
            ("RETRY_BACKOFF_MS".into(), "100".into()),
            ("CIRCUIT_PROBE_MS".into(), "200".into()),
            ("SHUTDOWN_TIMEOUT_SECS".into(), "10".into()),
            ("KAFKA_STATISTICS_INTERVAL_MS".into(), "500".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ConsumerConfig::from_env(&Env::from_pairs(vars)).expect("config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let stop = CancellationToken::new();
        let (addr, handle) = std::thread::scope(|s| {
            s.spawn(|| {
                runtime.block_on(async {
                    let app = Application::build(config, prometheus::Registry::new())
                        .await
                        .expect("consumer starts");
                    let addr = app.local_addr().expect("bound");
                    (addr, tokio::spawn(app.run(stop.clone())))
                })
            })
            .join()
            .expect("start thread")
        });
        Self {
            addr,
            stop,
            runtime: Some(runtime),
            handle: Some(handle),
        }
    }

    /// Graceful stop: finish the batch, commit, leave the group.
    pub fn stop(mut self) {
        self.stop.cancel();
        let runtime = self.runtime.take().expect("running");
        let handle = self.handle.take().expect("running");
        std::thread::spawn(move || {
            runtime.block_on(handle).expect("join").expect("clean stop");
            runtime.shutdown_timeout(Duration::from_secs(5));
        })
        .join()
        .expect("stop thread");
    }

    /// A crash: every task dropped where it stands, no final commit.
    pub fn crash(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    pub fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.addr);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
        })
        .join()
        .unwrap()
    }
}

impl Drop for RunningConsumer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            self.stop.cancel();
            runtime.shutdown_background();
        }
    }
}
