//! A durable Kafka-protocol cluster for the end-to-end suite: Tansu 0.6.0
//! brokers (its PostgreSQL storage engine, installed by
//! `scripts/install-durable-tansu.sh`) over one fresh storage database on
//! the storage server (PostgreSQL 17 on 127.0.0.1:5433, started by
//! `scripts/tansu-storage.sh`; Tansu's storage needs 16 or later), with
//! Tansu's own schema applied. Brokers are
//! stateless over their storage, so several share it and a killed one comes
//! back with everything that was acknowledged.
//!
//! Secured, the cluster requires SCRAM-SHA-512 logins (a user each for the
//! producer, the consumer and the operator tool) and clients reach each
//! broker through TLS: Tansu 0.6.0 accepts certificate options but still
//! listens in plain TCP, so stunnel terminates TLS in front of it, with a CA
//! and a server certificate made at start-up.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;

use crate::broker::Tansu;
use crate::database::TestDatabase;

/// Tansu's storage schema, from its `v0.6.0` tag (see `harness/tansu/`).
const STORAGE_SCHEMA: &str = include_str!("../tansu/010-schema.sql");

fn tool(variable: &str, installed: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join(installed));
    assert!(
        path.is_file(),
        "no {what} at {}: run `scripts/install-durable-tansu.sh` (or `scripts/test.sh`, which runs it) \
         or set {variable}",
        path.display()
    );
    path
}

/// The Tansu build with PostgreSQL storage.
pub fn durable_tansu_binary() -> PathBuf {
    tool(
        "TANSU_DURABLE_BIN",
        ".tools/tansu-0.6.0-postgres/bin/tansu",
        "Tansu build with PostgreSQL storage",
    )
}

/// The server the brokers' storage databases are made on.
pub fn storage_server_url() -> String {
    std::env::var("TANSU_STORAGE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5433".to_owned())
}

/// The TLS terminator.
pub fn stunnel_binary() -> PathBuf {
    tool("STUNNEL_BIN", ".tools/stunnel4/usr/bin/stunnel4", "stunnel")
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
    /// The lag exporter (`pubsubkafka lag` and `serve`).
    LagExporter,
}

impl Role {
    const ALL: [Role; 4] = [
        Role::Producer,
        Role::Consumer,
        Role::Operator,
        Role::LagExporter,
    ];

    fn user(self) -> &'static str {
        match self {
            Role::Producer => "pubsubkafka-producer",
            Role::Consumer => "pubsubkafka-consumer",
            Role::Operator => "pubsubkafka-dlq-replay",
            Role::LagExporter => "pubsubkafka-lag-exporter",
        }
    }
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

    /// The `KAFKA_*` settings of a service logging in as `role`.
    pub fn env(&self, role: Role) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL".to_owned()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".to_owned()),
            ("KAFKA_SASL_USERNAME", role.user().to_owned()),
            ("KAFKA_SASL_PASSWORD", self.password(role)),
            ("KAFKA_SSL_CA_LOCATION", self.ca.display().to_string()),
        ]
    }

    /// A client configuration logging in as `role`.
    pub fn client(&self, bootstrap: &str, role: Role) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        for (variable, value) in self.env(role) {
            let property = variable["KAFKA_".len()..]
                .to_ascii_lowercase()
                .replace('_', ".");
            config.set(property, value);
        }
        config
    }
}

/// A TLS terminator in front of one broker.
struct Stunnel {
    child: Child,
}

impl Stunnel {
    fn start(dir: &Path, name: &str, accept: u16, connect: u16, certs: &Certificates) -> Self {
        let config = dir.join(format!("{name}.conf"));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\noutput = {log}\n\n[{name}]\naccept = 127.0.0.1:{accept}\n\
                 connect = 127.0.0.1:{connect}\ncert = {cert}\nkey = {key}\n",
                log = dir.join(format!("{name}.log")).display(),
                cert = certs.server_cert.display(),
                key = certs.server_key.display(),
            ),
        )
        .expect("stunnel configuration");
        let child = Command::new(stunnel_binary())
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunnel");
        wait_listening(accept, "stunnel");
        Self { child }
    }
}

impl Drop for Stunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA, a server certificate it signed for 127.0.0.1, and another CA.
struct Certificates {
    ca: PathBuf,
    wrong_ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
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
        let self_signed = |key: &str, cert: &str, name: &str| {
            let subject = format!("/CN={name}");
            openssl(
                dir,
                &[
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-keyout", key,
                    "-out", cert, "-subj", &subject,
                ],
            );
        };
        self_signed("ca.key", "ca.pem", "pubsubkafka test CA");
        self_signed("other-ca.key", "other-ca.pem", "another CA");
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
        Self {
            ca: dir.join("ca.pem"),
            wrong_ca: dir.join("other-ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

fn wait_listening(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what} did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One broker and, when secured, its TLS terminator.
struct Node {
    tansu: Tansu,
    _tls: Option<Stunnel>,
}

/// A running durable cluster.
pub struct Cluster {
    /// Every broker's client-facing address, comma-separated.
    pub bootstrap: String,
    /// Set when the cluster is secured.
    pub security: Option<Security>,
    nodes: Vec<Node>,
    /// The storage database (left for study if a test fails).
    _storage: TestDatabase,
}

impl Cluster {
    /// Starts `brokers` brokers over a fresh storage database, with the
    /// pipeline's topics; secured: with SCRAM users and TLS.
    pub async fn start(brokers: usize, secured: bool) -> Self {
        let server = storage_server_url();
        let storage = TestDatabase::create_on(
            &server,
            "Start the brokers' storage server with `scripts/tansu-storage.sh` \
             (after `scripts/install-durable-tansu.sh`) or point TANSU_STORAGE_SERVER \
             at a PostgreSQL 16+ server where tests may create databases",
        )
        .await;
        sqlx::raw_sql(STORAGE_SCHEMA)
            .execute(&storage.pool)
            .await
            .expect("Tansu's storage schema applies");
        // Tansu speaks TLS to PostgreSQL unless told not to.
        let storage_url = format!("{server}/{}?sslmode=disable", storage.name);
        let dir = crate::process::log_dir().join(format!("cluster-{}", storage.name));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let binary = durable_tansu_binary();
        let certs = secured.then(|| Certificates::make(&dir));
        let mut nodes = Vec::new();
        let mut facing = Vec::new();
        for n in 0..brokers {
            let port = crate::free_port();
            let front = if secured { crate::free_port() } else { port };
            facing.push(format!("127.0.0.1:{front}"));
            let mut tansu = Tansu::durable(
                binary.clone(),
                port,
                format!("127.0.0.1:{front}"),
                storage_url.clone(),
                dir.join(format!("broker-{n}.log")),
            );
            tansu.spawn();
            nodes.push(Node { tansu, _tls: None });
        }
        // Topics and users are made once, through the first broker, before
        // logins are required; the storage keeps them.
        nodes[0].tansu.create_topics();
        let security = certs.as_ref().map(|certs| Security {
            ca: certs.ca.clone(),
            wrong_ca: certs.wrong_ca.clone(),
            password: uuid::Uuid::new_v4().simple().to_string(),
        });
        if let (Some(security), Some(certs)) = (&security, &certs) {
            for role in Role::ALL {
                let made = nodes[0]
                    .tansu
                    .create_user(role.user(), &security.password(role));
                assert!(
                    made.status.success(),
                    "creating user {}: {}",
                    role.user(),
                    String::from_utf8_lossy(&made.stderr)
                );
            }
            for (n, node) in nodes.iter_mut().enumerate() {
                node.tansu.authentication = true;
                node.tansu.restart();
                let front = facing[n]
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .expect("a port");
                node._tls = Some(Stunnel::start(
                    &dir,
                    &format!("tls-{n}"),
                    front,
                    node.tansu.port(),
                    certs,
                ));
            }
        }
        Self {
            bootstrap: facing.join(","),
            security,
            nodes,
            _storage: storage,
        }
    }

    /// How many brokers it has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The brokers' storage database (Tansu's own tables).
    pub fn storage(&self) -> &sqlx::PgPool {
        &self._storage.pool
    }

    /// Kills broker `n` with SIGKILL.
    pub fn kill(&mut self, n: usize) {
        self.nodes[n].tansu.stop();
    }

    /// Starts broker `n` again, over the same storage.
    pub fn restart(&mut self, n: usize) {
        self.nodes[n].tansu.restart();
    }
}
