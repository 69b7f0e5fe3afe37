//! The Kafka options, only on the subcommands that talk to Kafka (`dlq`,
//! `lag`, `dev`): `order` reads PostgreSQL only and offers none.

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
