//! The broker a benchmark runs on: Apache Kafka, three KRaft nodes on this
//! machine as production runs them (the reference), or Tansu's memory
//! broker (a quick run). One broker serves every part of every run, warmed
//! before the first (a JVM's first seconds are its compiler's); each part
//! starts on empty topics, so one part's topics never hold another's
//! messages.

use harness::broker::Tansu;
use harness::cluster::{Cluster, NODES, SHIPPED_JVM};

use crate::system::Source;

/// Which broker a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerKind {
    /// Apache Kafka (`scripts/install-kafka.sh`): three nodes, replication
    /// factor 3, `min.insync.replicas` 2.
    Kafka,
    /// Tansu, memory storage (`scripts/install-tansu.sh`): one process.
    Tansu,
}

impl BrokerKind {
    /// The broker as the results record it: its version and how it runs.
    pub fn describe(self) -> String {
        match self {
            Self::Kafka => format!(
                "Apache Kafka {}, {NODES} KRaft nodes (broker and controller each; JVM options of \
                 Kafka's start scripts: {}), replication factor 3, min.insync.replicas 2, \
                 plaintext, on the same machine",
                harness::cluster::kafka_version(&harness::cluster::kafka_home()),
                SHIPPED_JVM.join(" "),
            ),
            Self::Tansu => tansu_version().map_or_else(
                || "Tansu (version unknown), memory storage".to_owned(),
                |v| format!("{v}, memory storage"),
            ),
        }
    }
}

/// Tansu's own name for its version.
fn tansu_version() -> Option<String> {
    let output = std::process::Command::new(harness::broker::tansu_binary())
        .arg("--version")
        .output()
        .ok()?;
    let version = String::from_utf8(output.stdout).ok()?;
    Some(version.trim().to_owned()).filter(|v| !v.is_empty())
}

/// A running broker with the pipeline's topics.
pub enum Broker {
    Kafka(Box<Cluster>),
    Tansu(Tansu),
}

impl Broker {
    /// Starts a broker of `kind` and creates the topics.
    pub async fn start(kind: BrokerKind) -> Self {
        match kind {
            BrokerKind::Kafka => {
                Self::Kafka(Box::new(Cluster::start_with_jvm(NODES, SHIPPED_JVM).await))
            }
            BrokerKind::Tansu => Self::Tansu(Tansu::start()),
        }
    }

    /// Empties the pipeline's topics for the next part: Kafka's deleted and
    /// created again, Tansu restarted (its storage is memory).
    pub async fn fresh(&mut self) {
        match self {
            Self::Kafka(cluster) => cluster.recreate_topics().await,
            Self::Tansu(tansu) => *tansu = Tansu::start(),
        }
    }

    /// Its clients' `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        match self {
            Self::Kafka(cluster) => &cluster.bootstrap,
            Self::Tansu(tansu) => &tansu.bootstrap,
        }
    }

    /// Its processes, for the CPU they use.
    pub fn cpu(&self) -> Source {
        match self {
            Self::Kafka(cluster) => Source::Pids(cluster.pids()),
            Self::Tansu(tansu) => Source::Pid(tansu.pid()),
        }
    }
}
