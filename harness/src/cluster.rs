//! An Apache Kafka cluster for the end-to-end suite, as production runs it:
//! KRaft nodes (each a broker and a controller, with its own node id) as
//! real JVM processes on loopback, from the jars `scripts/install-kafka.sh`
//! installs at `.tools/kafka` (or `KAFKA_HOME`). Topics get replication
//! factor 3 and `min.insync.replicas=2` (fewer on a smaller cluster),
//! unclean leader election is off and topics are never created by a
//! client's request.
//!
//! Secured, clients reach the brokers over SASL_SSL only: SCRAM-SHA-512
//! logins (a user each for the producer, the consumer, the replay job and
//! the lag exporter, and a super user for the harness itself) over Kafka's
//! own TLS, with a CA and a server certificate made at start-up. The
//! StandardAuthorizer refuses whatever no ACL allows, and the ACLs are the
//! ones the chart, Terraform and the manifests grant: read from
//! `helm/pubsubkafka/files/acls.json`, the one source of them. Between the
//! nodes (replication and the controller quorum) they log in with SASL PLAIN
//! as the super user, on listeners clients are not told of.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use crate::kafka::{Topics, PARTITIONS};

/// Nodes of a cluster as production runs it.
pub const NODES: usize = 3;

/// The nodes' JVM options in tests: a small heap (three fit a small
/// machine beside the services) and the serial collector.
pub const TEST_JVM: &[&str] = &["-Xms64m", "-Xmx384m", "-XX:+UseSerialGC"];

/// The JVM options Apache Kafka's own start scripts give a broker
/// (`kafka-server-start.sh`'s heap, `kafka-run-class.sh`'s collector):
/// what a benchmark of the broker users run should run.
pub const SHIPPED_JVM: &[&str] = &[
    "-Xms1G",
    "-Xmx1G",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
];

/// Longest a node may take from its start to serving clients.
const START_DEADLINE: Duration = Duration::from_secs(90);

/// How long the controller waits for a node's heartbeat before it fences
/// the node and moves its leaderships (Kafka's default, set explicitly).
pub const BROKER_SESSION_TIMEOUT: Duration = Duration::from_secs(9);

/// Longest a controlled shutdown may take before the node is killed.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(60);

/// The group the consumer of a secured cluster's scenario joins, and the
/// replay job's: the names the ACLs grant.
pub const CONSUMER_GROUP: &str = contract::topics::DEFAULT_CONSUMER_GROUP;
/// See [`CONSUMER_GROUP`].
pub const REPLAY_GROUP: &str = "dlq-replay";

/// The super user the nodes and the harness log in as.
const SUPER_USER: &str = "pubsubkafka-admin";

/// Where the broker's jars are: `KAFKA_HOME`, or `.tools/kafka`.
pub fn kafka_home() -> PathBuf {
    let home = std::env::var_os("KAFKA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(".tools/kafka"));
    assert!(
        home.join("libs").is_dir() && home.join("classes/Acls.class").is_file(),
        "no Apache Kafka at {}: run `scripts/install-kafka.sh` (or `scripts/test.sh`, which runs \
         it) or set KAFKA_HOME to a folder it installed",
        home.display()
    );
    home
}

/// The broker version installed at `home`.
pub fn kafka_version(home: &Path) -> String {
    std::fs::read_to_string(home.join("VERSION"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// The `java` to run: `JAVA_HOME`'s, or the one on PATH.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/java"))
        .filter(|java| java.is_file())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// Who a client of a secured cluster logs in as: the principals the Helm
/// chart and the Kubernetes manifests give each component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The producer service.
    Producer,
    /// The consumer service.
    Consumer,
    /// The operator tool's `dlq` commands (the replay job).
    Operator,
    /// The lag exporter (`pubsubkafka lag` and `serve`), and a read-only
    /// console.
    LagExporter,
    /// The console allowed to replay (`pubsubkafka console --allow-replay`).
    Console,
}

impl Role {
    /// Every role, in the order of `acls.json`.
    pub const ALL: [Role; 5] = [
        Role::Producer,
        Role::Consumer,
        Role::Operator,
        Role::LagExporter,
        Role::Console,
    ];

    /// The component's name in the chart and in `acls.json`.
    pub fn component(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Operator => "dlq-replay",
            Role::LagExporter => "lag-exporter",
            Role::Console => "console",
        }
    }

    /// The SCRAM user (and so the ACL principal `User:<user>`): the
    /// chart's and the manifests' `pubsubkafka-<component>`.
    pub fn user(self) -> String {
        match self {
            Role::Producer => "pubsubkafka-producer",
            Role::Consumer => "pubsubkafka-consumer",
            Role::Operator => "pubsubkafka-dlq-replay",
            Role::LagExporter => "pubsubkafka-lag-exporter",
            Role::Console => "pubsubkafka-console",
        }
        .to_owned()
    }
}

/// One ACL binding: `principal` may do `operation` to a resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// `User:<name>`.
    pub principal: String,
    /// `TOPIC`, `GROUP` or `CLUSTER`, as Kafka names them.
    pub resource_type: String,
    /// The topic or group (`kafka-cluster` for the cluster).
    pub resource: String,
    /// As Kafka names it: `READ`, `IDEMPOTENT_WRITE`, ...
    pub operation: String,
}

/// The ACL bindings `helm/pubsubkafka/files/acls.json` grants, with its
/// symbolic names resolved: the topics `topics` names, and the groups
/// `consumer_group` and `replay_group`.
pub fn grants(topics: &Topics, consumer_group: &str, replay_group: &str) -> Vec<Grant> {
    let path = crate::workspace_root().join("helm/pubsubkafka/files/acls.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let source: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let resolve = |name: &str| -> String {
        match name {
            "orders" => topics.orders.clone(),
            "orders-dlq" => topics.orders_dlq.clone(),
            "users" => topics.users.clone(),
            "users-dlq" => topics.users_dlq.clone(),
            "orders-state" => topics.orders_state.clone(),
            "consumer-group" => consumer_group.to_owned(),
            "dlq-replay-group" => replay_group.to_owned(),
            other => panic!("{}: unknown name {other:?}", path.display()),
        }
    };
    let mut out = Vec::new();
    for role in Role::ALL {
        let entries = source["roles"][role.component()]
            .as_array()
            .unwrap_or_else(|| panic!("{}: no roles.{}", path.display(), role.component()));
        for entry in entries {
            let kind = entry["type"].as_str().unwrap_or_default();
            let names: Vec<String> = match kind {
                "cluster" => vec!["kafka-cluster".to_owned()],
                "topic" | "group" => entry["names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|n| n.as_str())
                    .map(resolve)
                    .collect(),
                other => panic!("{}: unknown resource type {other:?}", path.display()),
            };
            for operation in entry["operations"].as_array().into_iter().flatten() {
                let operation = operation.as_str().unwrap_or_default();
                for name in &names {
                    out.push(Grant {
                        principal: format!("User:{}", role.user()),
                        resource_type: kind.to_ascii_uppercase(),
                        resource: name.clone(),
                        operation: screaming_snake(operation),
                    });
                }
            }
        }
    }
    out
}

/// `IdempotentWrite` -> `IDEMPOTENT_WRITE`, Kafka's enum name.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// What a client of a secured cluster needs: the CA to trust, and a login.
#[derive(Debug, Clone)]
pub struct Security {
    /// The CA that signed the brokers' certificate.
    pub ca: PathBuf,
    /// Another CA, which did not.
    pub wrong_ca: PathBuf,
    password: String,
}

impl Security {
    /// The password of `role`.
    pub fn password(&self, role: Role) -> String {
        format!("{}-{}", self.password, role.user())
    }

    fn super_password(&self) -> String {
        format!("{}-{SUPER_USER}", self.password)
    }

    /// The `KAFKA_*` settings of a service logging in as `role`.
    pub fn env(&self, role: Role) -> Vec<(&'static str, String)> {
        self.env_of(role.user(), self.password(role))
    }

    fn env_of(&self, user: String, password: String) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KAFKA_SASL_USERNAME", user),
            ("KAFKA_SASL_PASSWORD", password),
            ("KAFKA_SSL_CA_LOCATION", self.ca.display().to_string()),
        ]
    }

    /// A client configuration logging in as `role`.
    pub fn client(&self, bootstrap: &str, role: Role) -> ClientConfig {
        Self::config(bootstrap, self.env(role))
    }

    /// A client configuration logging in as the harness's super user, whom
    /// no ACL limits.
    pub fn super_client(&self, bootstrap: &str) -> ClientConfig {
        Self::config(
            bootstrap,
            self.env_of(SUPER_USER.to_owned(), self.super_password()),
        )
    }

    fn config(bootstrap: &str, env: Vec<(&'static str, String)>) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (variable, value) in env {
            let property = variable["KAFKA_".len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            config.set(property, value);
        }
        config
    }

    /// Kafka's own client settings for `login` (the super user when
    /// `None`), for Kafka's tools.
    fn java_client_properties(&self, bootstrap: &str, login: Option<Role>) -> String {
        let (user, password) = match login {
            Some(role) => (role.user(), self.password(role)),
            None => (SUPER_USER.to_owned(), self.super_password()),
        };
        format!(
            "bootstrap.servers={bootstrap}\nsecurity.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
             sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"{user}\" password=\"{password}\";\nssl.truststore.type=PEM\n\
             ssl.truststore.location={}\n",
            self.ca.display()
        )
    }
}

/// A CA, a server certificate it signed for 127.0.0.1 (with its key, in
/// one PEM file, as Kafka's PEM keystore takes it), and another CA.
struct Certificates {
    ca: PathBuf,
    wrong_ca: PathBuf,
    keystore: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (install Debian's openssl package)");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Certificates {
    fn make(dir: &Path) -> Self {
        self_signed(dir, "ca.key", "ca.pem", "pubsubkafka test CA");
        self_signed(dir, "other-ca.key", "other-ca.pem", "another CA");
        sign_server_certificate(dir);
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        let keystore = dir.join("keystore.pem");
        std::fs::write(
            &keystore,
            format!("{}{}", read("server.key"), read("server.pem")),
        )
        .expect("keystore");
        Self {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("other-ca.pem"),
            keystore,
        }
    }
}

/// A self-signed CA named `name`: its key and certificate in `dir`.
fn self_signed(dir: &Path, key: &str, cert: &str, name: &str) {
    let subject = format!("/CN={name}");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", key, "-out",
            cert, "-subj", &subject,
        ],
    );
}

/// `server.key` and `server.pem` in `dir`: a certificate for 127.0.0.1 and
/// localhost, signed by the CA `ca.pem`.
fn sign_server_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n",
    )
    .expect("certificate extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "server.pem",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A random KRaft cluster id: 16 bytes in URL-safe base64, unpadded.
fn cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut bits = 0u32;
    let mut held = 0;
    let mut out = String::new();
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

/// One KRaft node: a broker and a controller in one process.
struct Node {
    id: i32,
    client_port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn spawn(&mut self, home: &Path, jvm: &[&str]) {
        let out = crate::process::log_file(&self.log);
        let err = out.try_clone().expect("log file");
        let child = Command::new(java())
            .args(jvm)
            .arg("-Djava.awt.headless=true")
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                home.join("log4j2.yaml").display()
            ))
            .arg("-cp")
            .arg(format!("{}/libs/*", home.display()))
            .arg("kafka.Kafka")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("start java (Apache Kafka needs Java 17 or later)");
        self.child = Some(child);
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        crate::process::tail(&self.log, lines)
    }

    /// The first lines of its log that say why it failed (errors and
    /// exceptions): a node that exits logs its whole shutdown after the
    /// cause, so the tail alone does not show it.
    fn log_causes(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains(" ERROR ") || l.contains(" FATAL ") || l.contains("Exception"))
            .take(lines)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Where the nodes of a cluster listen: per node its client, internal and
/// controller ports; and the port of a proxy in front of one node's client
/// listener, which that node advertises instead of its own.
struct Layout {
    ports: Vec<[u16; 3]>,
    front: Option<(usize, u16)>,
    /// The super user's password between the nodes.
    internal_password: String,
}

impl Layout {
    fn new(nodes: usize, proxied: Option<usize>) -> Self {
        let internal_password = uuid::Uuid::new_v4().simple().to_string();
        let ports: Vec<[u16; 3]> = (0..nodes)
            .map(|_| [crate::free_port(), crate::free_port(), crate::free_port()])
            .collect();
        let front = proxied.map(|n| (n, crate::free_port()));
        Self {
            ports,
            front,
            internal_password,
        }
    }

    /// The client port node `n` tells clients to use.
    fn advertised(&self, n: usize) -> u16 {
        match self.front {
            Some((proxied, port)) if proxied == n => port,
            _ => self.ports[n][0],
        }
    }

    /// Every node's advertised client address, comma-separated.
    fn bootstrap(&self) -> String {
        (0..self.ports.len())
            .map(|n| format!("127.0.0.1:{}", self.advertised(n)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Writes each node's configuration into `dir`.
    fn write_nodes(&self, dir: &Path, certs: Option<&Certificates>) -> Vec<Node> {
        (0..self.ports.len())
            .map(|n| {
                let id = n as i32 + 1;
                let path = dir.join(format!("node-{id}.properties"));
                std::fs::write(&path, self.node_config(n, dir, certs)).expect("node configuration");
                Node {
                    id,
                    client_port: self.ports[n][0],
                    config: path,
                    log: dir.join(format!("node-{id}.log")),
                    child: None,
                }
            })
            .collect()
    }

    /// The `server.properties` of node `n` (0-based).
    fn node_config(&self, n: usize, dir: &Path, certs: Option<&Certificates>) -> String {
        let [client, internal, controller] = self.ports[n];
        let id = n as i32 + 1;
        let voters = self
            .ports
            .iter()
            .enumerate()
            .map(|(n, [_, _, controller])| format!("{}@127.0.0.1:{controller}", n + 1))
            .collect::<Vec<_>>()
            .join(",");
        let replication = self.ports.len().min(3);
        let min_insync = replication.min(2);
        let plain = format!(
            "org.apache.kafka.common.security.plain.PlainLoginModule required username=\"{SUPER_USER}\" \
             password=\"{password}\" user_{SUPER_USER}=\"{password}\";",
            password = self.internal_password
        );
        let advertised_port = self.advertised(n);
        let data = dir.join(format!("node-{id}"));
        let client_protocol = if certs.is_some() {
            "SASL_SSL"
        } else {
            "PLAINTEXT"
        };
        let mut config = format!(
            "process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             listeners=CLIENT://127.0.0.1:{client},INTERNAL://127.0.0.1:{internal},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=CLIENT://127.0.0.1:{advertised_port},INTERNAL://127.0.0.1:{internal}\n\
             listener.security.protocol.map=CLIENT:{client_protocol},INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT\n\
             inter.broker.listener.name=INTERNAL\n\
             controller.listener.names=CONTROLLER\n\
             sasl.mechanism.inter.broker.protocol=PLAIN\n\
             sasl.mechanism.controller.protocol=PLAIN\n\
             listener.name.internal.sasl.enabled.mechanisms=PLAIN\n\
             listener.name.controller.sasl.enabled.mechanisms=PLAIN\n\
             listener.name.internal.plain.sasl.jaas.config={plain}\n\
             listener.name.controller.plain.sasl.jaas.config={plain}\n\
             log.dirs={data}\n\
             num.partitions={PARTITIONS}\n\
             default.replication.factor={replication}\n\
             min.insync.replicas={min_insync}\n\
             offsets.topic.replication.factor={replication}\n\
             offsets.topic.num.partitions=6\n\
             transaction.state.log.replication.factor={replication}\n\
             transaction.state.log.min.isr={min_insync}\n\
             unclean.leader.election.enable=false\n\
             auto.create.topics.enable=false\n\
             group.initial.rebalance.delay.ms=0\n\
             broker.session.timeout.ms={broker_session}\n",
            broker_session = BROKER_SESSION_TIMEOUT.as_millis(),
            data = data.display(),
        );
        if let Some(certs) = certs {
            config.push_str(&secured_config(certs));
        }
        config
    }
}

/// What a secured node adds to its configuration: SCRAM logins over TLS on
/// the client listener, and the authorizer.
fn secured_config(certs: &Certificates) -> String {
    format!(
        "listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512\n\
         listener.name.client.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
         listener.name.client.ssl.keystore.type=PEM\n\
         listener.name.client.ssl.keystore.location={keystore}\n\
         authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
         allow.everyone.if.no.acl.found=false\n\
         super.users=User:{SUPER_USER}\n",
        keystore = certs.keystore.display(),
    )
}

/// Formats every node's storage for a new cluster id, with the SCRAM users
/// of a secured cluster (they live in the metadata log: formatting puts
/// them there before the first start, on every node alike).
fn format_nodes(home: &Path, members: &[Node], security: Option<&Security>) {
    let cluster_id = cluster_id();
    let mut scram = Vec::new();
    if let Some(security) = security {
        scram.push((SUPER_USER.to_owned(), security.super_password()));
        for role in Role::ALL {
            scram.push((role.user(), security.password(role)));
        }
    }
    std::thread::scope(|scope| {
        for node in members {
            let (scram, cluster_id) = (&scram, &cluster_id);
            scope.spawn(move || format_storage(home, node, cluster_id, scram));
        }
    });
}

/// A running Apache Kafka cluster.
pub struct Cluster {
    /// Every node's client listener, comma-separated.
    pub bootstrap: String,
    /// Set when the cluster is secured.
    pub security: Option<Security>,
    /// The pipeline's topics on it.
    pub topics: Topics,
    /// With [`Self::start_proxied`]: the proxy every client connection to
    /// that node crosses.
    pub proxy: Option<crate::proxy::Proxy>,
    home: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    /// Every node's JVM options.
    jvm: &'static [&'static str],
}

impl Cluster {
    /// Starts `nodes` KRaft nodes with the pipeline's topics; secured: with
    /// SASL_SSL, SCRAM users and the ACLs of `acls.json` enforced.
    pub async fn start(nodes: usize, secured: bool) -> Self {
        Self::start_proxied(nodes, secured, None).await
    }

    /// A plaintext cluster of `nodes` whose JVMs run with `jvm` (such as
    /// [`SHIPPED_JVM`]) instead of [`TEST_JVM`].
    pub async fn start_with_jvm(nodes: usize, jvm: &'static [&'static str]) -> Self {
        Self::launch(nodes, false, None, jvm).await
    }

    /// [`Self::start`], with node `proxied` (0-based) advertising a proxy
    /// in front of its client listener, so that every client connection to
    /// it can be cut or black-holed ([`Self::proxy`]) while the nodes still
    /// reach each other.
    pub async fn start_proxied(nodes: usize, secured: bool, proxied: Option<usize>) -> Self {
        Self::launch(nodes, secured, proxied, TEST_JVM).await
    }

    async fn launch(
        nodes: usize,
        secured: bool,
        proxied: Option<usize>,
        jvm: &'static [&'static str],
    ) -> Self {
        assert!(nodes > 0, "a cluster has a node");
        let home = kafka_home();
        let dir =
            crate::process::log_dir().join(format!("kafka-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let certs = secured.then(|| Certificates::make(&dir));
        let security = certs.as_ref().map(|certs| Security {
            ca: certs.ca.clone(),
            wrong_ca: certs.wrong_ca.clone(),
            password: uuid::Uuid::new_v4().simple().to_string(),
        });
        let layout = Layout::new(nodes, proxied);
        let members = layout.write_nodes(&dir, certs.as_ref());
        format_nodes(&home, &members, security.as_ref());
        let proxy = layout.front.map(|(n, port)| {
            crate::proxy::Proxy::start_on(
                ([127, 0, 0, 1], port).into(),
                ([127, 0, 0, 1], members[n].client_port).into(),
            )
        });
        let mut cluster = Self {
            bootstrap: layout.bootstrap(),
            security,
            topics: Topics::standard(),
            proxy,
            home,
            dir,
            nodes: members,
            jvm,
        };
        for n in 0..nodes {
            cluster.nodes[n].spawn(&cluster.home, cluster.jvm);
        }
        cluster.wait_serving(nodes).await;
        cluster.create_topics().await;
        if cluster.security.is_some() {
            cluster.create_acls();
        }
        cluster
    }

    /// The nodes' process ids (of those running).
    pub fn pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter_map(|node| node.child.as_ref().map(Child::id))
            .collect()
    }

    /// The broker version.
    pub fn version(&self) -> String {
        kafka_version(&self.home)
    }

    /// A client of the harness's own, whom no ACL limits.
    pub fn admin_config(&self) -> ClientConfig {
        match &self.security {
            Some(security) => security.super_client(&self.bootstrap),
            None => crate::kafka::client(&self.bootstrap),
        }
    }

    /// Waits until `count` brokers are registered and serving, failing
    /// with the nodes' logs after [`START_DEADLINE`].
    pub async fn wait_serving(&mut self, count: usize) {
        let started = Instant::now();
        let config = self.admin_config();
        loop {
            // The last answer, or why there was none: said if the deadline
            // passes, never swallowed.
            let seen = {
                let config = config.clone();
                tokio::task::spawn_blocking(move || -> Result<usize, String> {
                    let metadata = crate::kafka::metadata(&config, None, Duration::from_secs(2))?;
                    Ok(metadata.brokers().len())
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r)
            };
            if seen == Ok(count) {
                return;
            }
            for node in &mut self.nodes {
                let alive = node.running();
                assert!(
                    alive || node.child.is_none(),
                    "Kafka node {} exited at start-up; why:\n{}\nlast lines:\n{}",
                    node.id,
                    node.log_causes(15),
                    node.log_tail(30)
                );
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "Kafka did not serve {count} brokers within {START_DEADLINE:?} (saw {seen:?}); \
                 node logs in {}:\n{}",
                self.dir.display(),
                self.nodes
                    .iter()
                    .map(|n| format!("node {}:\n{}", n.id, n.log_tail(15)))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every partition of the pipeline's topics has all its
    /// replicas in sync (what an operator waits for between two restarts
    /// of a rolling restart), failing after [`START_DEADLINE`].
    pub async fn wait_fully_replicated(&self) {
        let started = Instant::now();
        let config = self.admin_config();
        loop {
            let config = config.clone();
            // The partitions behind, or why they could not be read: said if
            // the deadline passes, never swallowed.
            let lagging = tokio::task::spawn_blocking(move || -> Result<Vec<String>, String> {
                let metadata = crate::kafka::metadata(&config, None, Duration::from_secs(5))?;
                Ok(metadata
                    .topics()
                    .iter()
                    .flat_map(|t| {
                        t.partitions()
                            .iter()
                            .filter(|p| p.isr().len() < p.replicas().len() || p.leader() < 0)
                            .map(move |p| format!("{}[{}]", t.name(), p.id()))
                    })
                    .collect())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
            if lagging.as_ref().is_ok_and(Vec::is_empty) {
                return;
            }
            assert!(
                started.elapsed() < START_DEADLINE,
                "partitions not fully replicated within {START_DEADLINE:?}: {lagging:?}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Deletes the pipeline's topics and creates them again, empty.
    pub async fn recreate_topics(&self) {
        let replication = self.nodes.len().min(3) as i32;
        self.topics.recreate(self.admin_config(), replication).await;
    }

    async fn create_topics(&self) {
        let replication = self.nodes.len().min(3) as i32;
        self.topics.create(self.admin_config(), replication).await;
    }

    /// Grants what `acls.json` grants.
    fn create_acls(&self) {
        self.change_acls(true, &grants(&self.topics, CONSUMER_GROUP, REPLAY_GROUP));
    }

    /// Adds (or, with `add` false, removes) `grants` through Kafka's own
    /// Admin API, as the super user of a secured cluster.
    pub fn change_acls(&self, add: bool, grants: &[Grant]) {
        let security = self.security.as_ref().expect("a secured cluster");
        let properties = self.dir.join("admin.properties");
        std::fs::write(
            &properties,
            security.java_client_properties(&self.bootstrap, None),
        )
        .expect("admin client properties");
        let bindings: String = grants
            .iter()
            .map(|g| {
                format!(
                    "{} {} {} {}\n",
                    g.principal, g.resource_type, g.resource, g.operation
                )
            })
            .collect();
        let verb = if add { "add" } else { "remove" };
        let output = run_java(
            &self.home,
            &["Acls", verb, &properties.display().to_string()],
            &bindings,
        );
        assert!(
            output.status.success(),
            "ACLs {verb} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// How many nodes it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node id of node `n` (0-based index).
    pub fn node_id(&self, n: usize) -> i32 {
        self.nodes[n].id
    }

    /// The index of the node with `id`.
    pub fn index_of(&self, id: i32) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    /// Node `n`'s client address.
    pub fn address(&self, n: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[n].client_port)
    }

    /// Kills node `n` with SIGKILL: no controlled shutdown.
    pub fn kill(&mut self, n: usize) {
        if let Some(mut child) = self.nodes[n].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops node `n` with SIGTERM (a controlled shutdown: its leaderships
    /// move first); true when it exited within [`SHUTDOWN_DEADLINE`].
    pub fn stop(&mut self, n: usize) -> bool {
        match self.nodes[n].child.take() {
            Some(child) => crate::process::terminate(child, SHUTDOWN_DEADLINE).is_some(),
            None => true,
        }
    }

    /// Starts node `n` again over its own data, after [`Self::kill`] or
    /// [`Self::stop`] (killing it first if it still runs).
    pub fn restart(&mut self, n: usize) {
        self.kill(n);
        let home = self.home.clone();
        self.nodes[n].spawn(&home, self.jvm);
    }

    /// The last `lines` lines of node `n`'s log.
    pub fn log_tail(&self, n: usize, lines: usize) -> String {
        self.nodes[n].log_tail(lines)
    }

    /// The leader's node id of `topic`'s `partition`, as the cluster's
    /// metadata says now (`None` while it has none).
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        let metadata =
            crate::kafka::metadata(&self.admin_config(), Some(topic), Duration::from_secs(5))
                .ok()?;
        let leader = metadata
            .topics()
            .first()?
            .partitions()
            .iter()
            .find(|p| p.id() == partition)?
            .leader();
        (leader >= 0).then_some(leader)
    }

    /// Runs one of Kafka's own command-line tools (a class of `kafka-tools`,
    /// such as `org.apache.kafka.tools.consumer.group.ConsumerGroupCommand`),
    /// logged in as the super user when the cluster is secured.
    pub fn kafka_tool(&self, class: &str, args: &[&str]) -> std::process::Output {
        self.kafka_tool_as(None, class, args)
    }

    /// [`Self::kafka_tool`] logged in as `login` (the super user when
    /// `None`) on a secured cluster.
    pub fn kafka_tool_as(
        &self,
        login: Option<Role>,
        class: &str,
        args: &[&str],
    ) -> std::process::Output {
        let mut all: Vec<String> = vec![class.to_owned(), "--bootstrap-server".to_owned()];
        all.push(self.bootstrap.clone());
        if let Some(security) = &self.security {
            let name = login.map_or("admin", Role::component);
            let properties = self.dir.join(format!("tool-{name}.properties"));
            std::fs::write(
                &properties,
                security.java_client_properties(&self.bootstrap, login),
            )
            .expect("tool client properties");
            all.push("--command-config".to_owned());
            all.push(properties.display().to_string());
        }
        all.extend(args.iter().map(|a| a.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        run_java(&self.home, &all, "")
    }

    /// What Kafka's own group tool (`kafka-consumer-groups --describe`)
    /// says of `group`: a row per partition it lists, and the table as
    /// printed (for failure messages). Panics, with what it printed, when
    /// the tool fails.
    pub fn describe_group(&self, group: &str) -> (Vec<GroupOffsets>, String) {
        let described = self.kafka_tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &["--describe", "--group", group],
        );
        let table = String::from_utf8_lossy(&described.stdout).into_owned();
        assert!(
            described.status.success(),
            "kafka-consumer-groups --describe --group {group}: {table}{}",
            String::from_utf8_lossy(&described.stderr)
        );
        (group_offsets(&table, group), table)
    }
}

/// One partition's row of `kafka-consumer-groups --describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupOffsets {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// `CURRENT-OFFSET`: the committed offset (`None`: `-`).
    pub committed: Option<i64>,
    /// `LOG-END-OFFSET`.
    pub log_end: Option<i64>,
    /// `LAG`.
    pub lag: Option<i64>,
}

/// The rows of `group` in the table `kafka-consumer-groups --describe`
/// prints (`GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG ...`).
pub fn group_offsets(table: &str, group: &str) -> Vec<GroupOffsets> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() >= 6 && f[0] == group)
        .filter_map(|f| {
            Some(GroupOffsets {
                topic: f[1].to_owned(),
                partition: f[2].parse().ok()?,
                committed: f[3].parse().ok(),
                log_end: f[4].parse().ok(),
                lag: f[5].parse().ok(),
            })
        })
        .collect()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in 0..self.nodes.len() {
            self.kill(n);
        }
        // The data goes; a failed test keeps it (and the logs) for study.
        if !std::thread::panicking() {
            for node in &self.nodes {
                let _ = std::fs::remove_dir_all(self.dir.join(format!("node-{}", node.id)));
            }
        }
    }
}

/// Formats node `node`'s storage for `cluster_id`, with `scram` users.
fn format_storage(home: &Path, node: &Node, cluster_id: &str, scram: &[(String, String)]) {
    let mut args = vec![
        "kafka.tools.StorageTool".to_owned(),
        "format".to_owned(),
        // One argument: an id may start with '-', which would read as an
        // option.
        format!("--cluster-id={cluster_id}"),
        "--config".to_owned(),
        node.config.display().to_string(),
    ];
    for (user, password) in scram {
        args.push("--add-scram".to_owned());
        args.push(format!("SCRAM-SHA-512=[name={user},password={password}]"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_java(home, &args, "");
    assert!(
        output.status.success(),
        "formatting node {}'s storage failed: {}{}",
        node.id,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `args` (a main class and its arguments) on the broker's class path
/// with the harness's compiled tools, feeding it `input`.
fn run_java(home: &Path, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = Command::new(java())
        .args([
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
        ])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            home.join("log4j2-tools.yaml").display()
        ))
        .arg("-cp")
        .arg(format!(
            "{}/libs/*:{}",
            home.display(),
            home.join("classes").display()
        ))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start java (Apache Kafka needs Java 17 or later)");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).expect("java's input");
    }
    child.wait_with_output().expect("java ran")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_tools_table_is_read_row_by_row() {
        let table = "\nGROUP      TOPIC      PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST  CLIENT-ID\n\
                     dlq-replay orders-dlq 0          3               5               2    -            -     -\n\
                     dlq-replay orders-dlq 1          -               4               -    -            -     -\n\
                     other      orders     0          1               1               0    -            -     -\n";
        let rows = group_offsets(table, "dlq-replay");
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            GroupOffsets {
                topic: "orders-dlq".into(),
                partition: 0,
                committed: Some(3),
                log_end: Some(5),
                lag: Some(2)
            }
        );
        assert_eq!((rows[1].committed, rows[1].lag), (None, None));
    }

    #[test]
    fn cluster_ids_are_sixteen_bytes_of_url_safe_base64() {
        let id = cluster_id();
        assert_eq!(id.len(), 22, "{id}");
        assert!(id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(cluster_id(), id);
    }

    #[test]
    fn only_the_consumer_writes_the_order_state() {
        let topics = Topics::named("shop.orders", "shop.users");
        let on_state: Vec<Grant> = grants(&topics, CONSUMER_GROUP, REPLAY_GROUP)
            .into_iter()
            .filter(|g| g.resource_type == "TOPIC" && g.resource == "shop.orders-state")
            .collect();
        let consumer = format!("User:{}", Role::Consumer.user());
        let mut consumers: Vec<&str> = on_state
            .iter()
            .filter(|g| g.principal == consumer)
            .map(|g| g.operation.as_str())
            .collect();
        consumers.sort_unstable();
        assert_eq!(consumers, ["DESCRIBE", "WRITE"]);
        let others: Vec<&Grant> = on_state
            .iter()
            .filter(|g| g.principal != consumer)
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }

    #[test]
    fn operations_take_kafkas_enum_names() {
        assert_eq!(screaming_snake("IdempotentWrite"), "IDEMPOTENT_WRITE");
        assert_eq!(screaming_snake("Read"), "READ");
        assert_eq!(screaming_snake("DescribeConfigs"), "DESCRIBE_CONFIGS");
    }
}
