//! The HTTP-to-Kafka bridge users run instead of the producer: Apache
//! Camel, configured only (bench/peers/bridge: a YAML route from
//! platform-http `POST /orders` to camel-kafka, answered `202` after the
//! broker's ack), as a JVM child process. Its saturation is measured as the
//! producer's is, with the same body and clients, writing to a topic of
//! its own shaped as `orders`, which is checked to hold what it accepted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker::Broker;
use crate::load::{self, Target};
use crate::report::Report;
use crate::stats::percentile;
use crate::system::{peak_rss_mib, CpuMeter, Source};
use crate::Settings;

const SECTION: &str = "ingest";

/// The topic whose partitions and replication the bridge's own copies (the
/// route writes to it when run by hand).
const ORDERS: &str = "orders";

/// The JVM's heap, fixed so runs compare.
const HEAP: &str = "512m";

/// Longest the JVM may take to start Camel and its route.
const READY: Duration = Duration::from_secs(60);

/// Longest the JVM may take to stop after SIGTERM (Camel drains in flight).
const STOP: Duration = Duration::from_secs(20);

/// Longest the topic may take to show what was accepted.
const LANDED: Duration = Duration::from_secs(30);

/// The Camel bridge, running; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Bridge {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    topic: String,
}

/// Where the route, its settings and the installed jars are.
fn peer_dir() -> PathBuf {
    harness::workspace_root().join("bench/peers/bridge")
}

fn libs_dir() -> PathBuf {
    harness::workspace_root().join(".tools/bridge/libs")
}

/// The version of the jar named `prefix-<version>.jar` among the installed.
fn jar_version(libs: &Path, prefix: &str) -> Option<String> {
    std::fs::read_dir(libs).ok()?.flatten().find_map(|entry| {
        let name = entry.file_name().into_string().ok()?;
        let version = name.strip_prefix(prefix)?.strip_suffix(".jar")?;
        // `camel-main-` must not match `camel-main-something-4.18.0.jar`.
        version
            .starts_with(|c: char| c.is_ascii_digit())
            .then(|| version.to_owned())
    })
}

impl Bridge {
    /// Starts the bridge on a free port, writing to a new topic of
    /// `bootstrap` shaped as `orders` ([`Bridge::topic`]), with
    /// `worker_threads` Vert.x worker threads (each request waits for the
    /// broker's ack on one: the most requests in flight), and waits until
    /// its route answers.
    pub async fn start(bootstrap: &str, worker_threads: usize) -> anyhow::Result<Bridge> {
        let libs = libs_dir();
        ensure!(
            jar_version(&libs, "camel-main-").is_some(),
            "no Apache Camel jars at {}: run ./scripts/install-bridge.sh first",
            libs.display()
        );
        let topic = create_topic(bootstrap).await?;
        let port = harness::free_port();
        let log = harness::process::log_dir().join(format!(
            "camel-bridge-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let out =
            std::fs::File::create(&log).with_context(|| format!("bridge log {}", log.display()))?;
        let err = out.try_clone().context("bridge log")?;
        // The peer's folder is on the class path: camel-main reads
        // application.properties and routes.yaml from there.
        let classpath = format!("{}/*:{}", libs.display(), peer_dir().display());
        let child = Command::new("java")
            .args([
                &format!("-Xms{HEAP}"),
                &format!("-Xmx{HEAP}"),
                "-cp",
                &classpath,
                "org.apache.camel.main.Main",
            ])
            .current_dir(harness::workspace_root())
            .env("BRIDGE_PORT", port.to_string())
            .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
            .env("BRIDGE_TOPIC", &topic)
            .env("BRIDGE_WORKER_THREADS", worker_threads.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .context("starting java for the Camel bridge (is a JDK 17 or later on PATH?)")?;
        let mut bridge = Bridge {
            child: Some(child),
            port,
            log,
            topic,
        };
        bridge.wait_ready().await?;
        Ok(bridge)
    }

    /// Waits until the route is there: a `GET /orders` answered `405`
    /// (POST only). The HTTP server answers `404` before the route starts.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()?;
        let url = self.url();
        // Ready (`Ok`), or exited (`Err`): either ends the wait at once.
        let outcome = harness::wait::eventually(READY, "the Camel bridge's route", || {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let ready = client.get(&url).send();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                match ready.await {
                    Ok(r) if r.status().as_u16() == 405 => Some(Ok(())),
                    _ => None,
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(status)) => bail!(
                "the Camel bridge exited ({status}) before it answered:\n{}",
                self.log_tail(40)
            ),
            Err(e) => bail!("{e}:\n{}", self.log_tail(40)),
        }
    }

    /// The URL to `POST` orders to.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/orders", self.port)
    }

    /// The topic it writes to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The JVM's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines the JVM printed.
    pub fn log_tail(&self, lines: usize) -> String {
        harness::process::tail(&self.log, lines)
    }

    /// What runs, in one line: versions, components, settings, heap.
    pub fn describe() -> String {
        let libs = libs_dir();
        let version = |prefix: &str| jar_version(&libs, prefix).unwrap_or_else(|| "?".to_owned());
        format!(
            "Apache Camel {} (camel-main, YAML DSL, platform-http on Vert.x {}, camel-kafka), \
             Kafka client {}, acks=all, idempotence on, lz4, linger.ms 5, batch.size 1000000, \
             delivery.timeout.ms 5000, key a random UUID per request, 202 after the ack, \
             Vert.x worker pool as large as the clients, heap {HEAP}",
            version("camel-main-"),
            version("vertx-core-"),
            version("kafka-clients-"),
        )
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if harness::process::terminate(child, STOP).is_none() {
                eprintln!("the Camel bridge did not stop within {STOP:?}: killed");
            }
        }
    }
}

/// The partitions and replicas of each of `topic`'s partitions.
async fn shape(bootstrap: &str, topic: &str) -> anyhow::Result<(i32, i32)> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = harness::kafka::client(&bootstrap)
            .create()
            .context("metadata client")?;
        let metadata = client
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .with_context(|| format!("metadata of {topic}"))?;
        let partitions = metadata.topics().first().map(|t| t.partitions());
        let partitions = partitions.unwrap_or_default();
        let replicas = partitions.first().map_or(0, |p| p.replicas().len());
        ensure!(
            replicas > 0,
            "topic {topic} has no partitions on {bootstrap}"
        );
        Ok((i32::try_from(partitions.len())?, i32::try_from(replicas)?))
    })
    .await?
}

/// Creates a topic of its own for this run, shaped as `orders`.
async fn create_topic(bootstrap: &str) -> anyhow::Result<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let (partitions, replicas) = shape(bootstrap, ORDERS).await?;
    let topic = format!("orders-bridge-{}", uuid::Uuid::new_v4().simple());
    let admin: AdminClient<_> = harness::kafka::client(bootstrap)
        .create()
        .context("admin client")?;
    let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(replicas));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics([&new], &options).await? {
        result.map_err(|(t, e)| anyhow::anyhow!("creating topic {t}: {e}"))?;
    }
    // Wait until every partition has a leader, as the route's first send needs.
    harness::wait::eventually(
        LANDED,
        &format!("topic {topic}'s {partitions} partitions"),
        || {
            let shaped = shape(bootstrap, &topic);
            async move {
                match shaped.await {
                    Ok((p, _)) if p == partitions => Ok(()),
                    Ok((p, _)) => Err(format!("{p} partitions")),
                    Err(e) => Err(format!("{e:#}")),
                }
            }
        },
    )
    .await?;
    Ok(topic)
}

/// The sum of the high watermarks of `topic`'s partitions.
async fn high_watermarks(bootstrap: &str, topic: &str) -> anyhow::Result<i64> {
    let config = harness::kafka::client(bootstrap);
    let topic = topic.to_owned();
    let ends = tokio::task::spawn_blocking(move || harness::kafka::end_offsets(config, &topic))
        .await?
        .map_err(anyhow::Error::msg)?;
    Ok(ends.values().sum())
}

/// The messages on `topic`, which should be at least `expected`: its high
/// watermarks, summed, or when they fall short (Tansu's can lag behind a
/// partition's end) a count of the topic read from the beginning, waiting
/// up to [`LANDED`] for `expected`.
async fn messages_on(bootstrap: &str, topic: &str, expected: i64) -> anyhow::Result<i64> {
    let high = high_watermarks(bootstrap, topic).await?;
    if high >= expected {
        return Ok(high);
    }
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    let wanted = usize::try_from(expected)?;
    let read = tokio::task::spawn_blocking(move || {
        harness::kafka::read_topic(&bootstrap, &topic, wanted, LANDED).len()
    })
    .await
    .context("reading the bridge's topic")?;
    Ok(i64::try_from(read)?)
}

/// The bridge at saturation: `settings.clients` clients posting the
/// ingest benchmark's order, back to back, for a phase, after a warm-up of
/// a phase.
/// Every accepted request must have reached the topic.
pub async fn saturation(
    settings: &Settings,
    report: &mut Report,
    broker: &Broker,
) -> anyhow::Result<f64> {
    let bootstrap = broker.bootstrap();
    // As many worker threads as clients: Vert.x's default 20 would hold
    // the bridge to 20 requests in flight, whatever the load.
    let bridge = Bridge::start(bootstrap, settings.clients).await?;
    let topic = bridge.topic();
    eprintln!("HTTP bridge: {}", Bridge::describe());
    let clients = settings.clients;
    let target = Target::new(&bridge.url(), crate::ingest::order_body()?, clients)?;
    // Warm: connections open, the producer's batches sized, and a whole
    // phase for the JIT (a quarter, as the services get, leaves it compiling).
    let warm = load::closed_loop(&target, clients, settings.phase).await;
    let cpu = CpuMeter::start(&[
        ("camel bridge", Source::Pid(bridge.pid())),
        ("broker", broker.cpu()),
        ("load generator", Source::Pid(Some(std::process::id()))),
    ]);
    let sat = load::closed_loop(&target, clients, settings.phase).await;
    let cores = crate::system::record_cpu(report, "HTTP bridge saturation", &cpu);
    ensure!(
        sat.accepted > 0,
        "the Camel bridge accepted no request at saturation ({} failed):\n{}",
        sat.failed,
        bridge.log_tail(20)
    );
    // Every 202, of the warm-up too, must be a message on the topic.
    let accepted = i64::try_from(warm.accepted + sat.accepted)?;
    let landed = messages_on(bootstrap, topic, accepted).await?;
    ensure!(
        landed >= accepted,
        "the Camel bridge answered 202 to {accepted} requests but {topic} holds {landed} messages"
    );
    eprintln!("HTTP bridge: {accepted} requests accepted, {landed} messages on {topic}");

    let rate = sat.throughput();
    report.record(
        SECTION,
        &format!("HTTP bridge (Apache Camel) at saturation ({clients} clients)"),
        "req/s",
        rate,
    );
    report.record(
        SECTION,
        crate::ingest::BRIDGE_P99,
        "ms",
        percentile(&sat.latencies, 99.0) * 1000.0,
    );
    report.record(
        SECTION,
        "HTTP bridge (Apache Camel) not accepted at saturation",
        "req",
        sat.failed as f64,
    );
    let bridge_cores = crate::system::cores_of(&cores, "camel bridge");
    report.record(
        "cpu",
        "HTTP bridge: CPU per request",
        "us",
        bridge_cores / rate * 1e6,
    );
    report.record(
        "memory",
        "HTTP bridge peak RSS",
        "MiB",
        bridge.pid().and_then(peak_rss_mib).unwrap_or(f64::NAN),
    );
    Ok(rate / bridge_cores)
}
