//! The Kafka options, only on the subcommands that talk to Kafka (`dlq`,
//! `lag`, `dev`): `order` reads PostgreSQL only and offers none.

use std::sync::OnceLock;

use platform::kafka::ObservedContext;
use platform::Env;

/// Kafka options of the subcommands that talk to Kafka.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...), instead of
    /// KAFKA_BOOTSTRAP_SERVERS.
    #[arg(long, value_name = "HOST:PORT,...")]
    pub bootstrap_server: Option<String>,
}

impl KafkaArgs {
    /// The tool's environment, with `--bootstrap-server` over
    /// KAFKA_BOOTSTRAP_SERVERS.
    pub fn environment(&self) -> Env {
        let env = Env::from_process();
        match &self.bootstrap_server {
            Some(servers) => env.with("KAFKA_BOOTSTRAP_SERVERS", servers),
            None => env,
        }
    }
}

/// A consumer of the tool (a reader or a prober), whose librdkafka lines go
/// through [`observed`].
pub type Reader = rdkafka::consumer::BaseConsumer<ObservedContext>;

/// Creates a [`Reader`] from `config`.
pub fn reader(config: &rdkafka::ClientConfig) -> rdkafka::error::KafkaResult<Reader> {
    config.create_with_context(observed())
}

/// A [`Reader`] whose remembered errors ([`ObservedContext::last_error`])
/// are its own; its lines still go through [`observed`]'s throttle.
pub fn reader_apart(config: &rdkafka::ClientConfig) -> rdkafka::error::KafkaResult<Reader> {
    config.create_with_context(observed().apart())
}

/// The context of every Kafka client the tool makes: librdkafka's log lines
/// and errors go through the services' throttle, one throttle for the
/// process (one line per kind per ten seconds, whichever client saw it),
/// not a line per try while a broker is down.
pub fn observed() -> ObservedContext {
    static SHARED: OnceLock<ObservedContext> = OnceLock::new();
    SHARED.get_or_init(ObservedContext::default).clone()
}
