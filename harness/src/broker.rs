//! The broker of a scenario: a Tansu broker as a separate process on
//! loopback, with the pipeline's topics (the prebuilt memory-storage build,
//! found through `TANSU_BIN` or at `.tools/tansu/tansu`, installed by
//! `scripts/install-tansu.sh`), an Apache Kafka cluster of
//! [`crate::cluster`], or a broker named by `KAFKA_BOOTSTRAP_SERVERS`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kafka::PARTITIONS;

/// The Tansu binary; fails with how to install it when it is missing.
pub fn tansu_binary() -> PathBuf {
    let path = std::env::var_os("TANSU_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".tools/tansu/tansu"));
    assert!(
        path.is_file(),
        "no Tansu broker binary at {}: run `scripts/install-tansu.sh` (or `scripts/test.sh`, which runs it) \
         or set TANSU_BIN to a tansu executable",
        path.display()
    );
    path
}

/// A running Tansu broker.
pub struct Tansu {
    /// `127.0.0.1:<port>`, for `KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap: String,
    port: u16,
    /// The address the broker tells clients to use (its own, or a proxy's).
    advertised: String,
    binary: PathBuf,
    /// Whether clients must log in (SASL).
    pub authentication: bool,
    extra_args: Vec<String>,
    log: Option<PathBuf>,
    child: Option<Child>,
}

impl Tansu {
    /// Starts a broker on a free port and creates the topics.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra `tansu broker` arguments (such as
    /// `--authentication`), without creating topics when authentication is on.
    pub fn start_with(extra_args: &[&str]) -> Self {
        let port = crate::free_port();
        Self::launch(port, format!("127.0.0.1:{port}"), extra_args)
    }

    /// Starts a broker on `port` that advertises `advertised` (a proxy in
    /// front of it, see [`crate::proxy::Proxy::start_on`]) as its address,
    /// so every client connection goes through the proxy.
    pub fn start_advertising(port: u16, advertised: std::net::SocketAddr) -> Self {
        Self::launch(port, advertised.to_string(), &[])
    }

    fn launch(port: u16, advertised: String, extra_args: &[&str]) -> Self {
        let mut broker = Self {
            bootstrap: advertised.clone(),
            port,
            advertised,
            binary: tansu_binary(),
            authentication: false,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log: None,
            child: None,
        };
        broker.spawn();
        if extra_args.is_empty() {
            broker.create_topics();
        }
        broker
    }

    /// Starts the process (again) and waits until it listens.
    pub fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let advertised = format!("tcp://{}", self.advertised);
        let mut command = Command::new(&self.binary);
        command
            .arg("broker")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(["--cluster-id", "pubsubkafka-test"])
            .args(&self.extra_args);
        if self.authentication {
            command.arg("--authentication");
        }
        match &self.log {
            Some(path) => {
                let out = crate::process::log_file(path);
                let err = out.try_clone().expect("log file");
                command.stdout(Stdio::from(out)).stderr(Stdio::from(err));
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command.spawn().expect("start tansu");
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "tansu did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Creates the pipeline's topics (memory storage starts empty), the
    /// compacted one with `cleanup.policy=compact` (Tansu takes it). A topic
    /// a client's metadata request created first is left as it is.
    pub fn create_topics(&self) {
        let topics = Topics::standard();
        for topic in topics.all() {
            let config: &[&str] = if topics.compacted(topic) {
                &["cleanup.policy=compact"]
            } else {
                &[]
            };
            self.create_topic_with(topic, PARTITIONS, config);
        }
    }

    /// Creates `topic` with `partitions` partitions, unless it exists.
    pub fn create_topic(&self, topic: &str, partitions: i32) {
        self.create_topic_with(topic, partitions, &[]);
    }

    /// [`Self::create_topic`] with topic configuration (`name=value` each).
    fn create_topic_with(&self, topic: &str, partitions: i32, config: &[&str]) {
        let mut command = Command::new(&self.binary);
        command
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--partitions", &partitions.to_string()]);
        for entry in config {
            command.args(["--config", entry]);
        }
        let output = command.arg(topic).output().expect("tansu topic create");
        // Tansu prints its error on stdout ("Topic with this name already
        // exists."), not stderr.
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success() || said.contains("already exists"),
            "creating topic {topic} failed: {said}"
        );
    }

    /// Creates a SCRAM-SHA-512 user.
    pub fn create_user(&self, name: &str, password: &str) -> std::process::Output {
        Command::new(&self.binary)
            .args([
                "user",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .args(["--mechanism", "scram512", name, password])
            .output()
            .expect("tansu user create")
    }

    /// The port it listens on itself (its clients may be told another).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the broker process with SIGKILL (memory storage: its data is
    /// gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port; a memory broker gets its topics
    /// again.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
        if self.extra_args.is_empty() {
            self.create_topics();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.stop();
    }
}

pub use crate::kafka::Topics;

/// The broker of one end-to-end scenario: another broker when
/// `KAFKA_BOOTSTRAP_SERVERS` is set (with topics of the scenario's own, so
/// scenarios do not see each other's messages), else a Tansu process of its
/// own with the standard topic names, or an Apache Kafka cluster of its own.
pub struct Broker {
    /// For `KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap: String,
    /// The scenario's topics.
    pub topics: Topics,
    /// The process, when the suite started one memory broker.
    pub tansu: Option<Tansu>,
    /// The cluster, when the scenario started an Apache Kafka one.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Broker {
    /// The broker named by `KAFKA_BOOTSTRAP_SERVERS`, or a new Tansu.
    pub async fn for_scenario() -> Self {
        match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
            Ok(bootstrap) if !bootstrap.trim().is_empty() => Self::external(bootstrap).await,
            _ => Self::tansu(),
        }
    }

    /// A Tansu process of the scenario's own (for scenarios that stop it).
    pub fn tansu() -> Self {
        let tansu = Tansu::start();
        Self {
            bootstrap: tansu.bootstrap.clone(),
            topics: Self::tansu_topics(),
            tansu: Some(tansu),
            cluster: None,
        }
    }

    /// A test client of this broker (logged in as the harness's super user
    /// when the broker is secured: no ACL limits what the test itself does).
    pub fn client(&self) -> rdkafka::ClientConfig {
        match &self.cluster {
            Some(cluster) => cluster.admin_config(),
            None => crate::kafka::client(&self.bootstrap),
        }
    }

    /// The consumer group of the scenario's consumer: on a secured cluster
    /// the one the ACLs grant, else one of its own.
    pub fn consumer_group(&self) -> String {
        match self.security() {
            Some(_) => crate::cluster::CONSUMER_GROUP.to_owned(),
            None => format!("e2e-{}", uuid::Uuid::new_v4().simple()),
        }
    }

    /// What its clients need to log in, when it is secured.
    pub fn security(&self) -> Option<&crate::cluster::Security> {
        self.cluster.as_ref().and_then(|c| c.security.as_ref())
    }

    /// An Apache Kafka cluster of `nodes` nodes of the scenario's own (see
    /// [`crate::cluster`]).
    pub async fn cluster(nodes: usize, secured: bool) -> Self {
        Self::with_cluster(crate::cluster::Cluster::start(nodes, secured).await)
    }

    /// The scenario's own `cluster`.
    pub fn with_cluster(cluster: crate::cluster::Cluster) -> Self {
        Self {
            bootstrap: cluster.bootstrap.clone(),
            topics: cluster.topics.clone(),
            tansu: None,
            cluster: Some(cluster),
        }
    }

    /// The standard topic names, used on a broker of the scenario's own.
    pub fn tansu_topics() -> Topics {
        Topics::standard()
    }

    async fn external(bootstrap: String) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let topics = Topics::named(&format!("orders-{id}"), &format!("users-{id}"));
        let replication: i32 = std::env::var("E2E_REPLICATION_FACTOR")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(1);
        topics
            .create(crate::kafka::client(&bootstrap), replication)
            .await;
        Self {
            bootstrap,
            topics,
            tansu: None,
            cluster: None,
        }
    }
}
