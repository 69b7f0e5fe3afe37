//! What every service does at start-up, and how it can fail: binding its
//! address, creating Kafka clients, registering metrics, and telling a
//! broker that refuses its credentials (stop, with a message that says so)
//! from one that is merely down (start, and wait for it).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

/// How long start-up asks the broker before it goes on without it.
const CREDENTIALS_CHECK: Duration = Duration::from_secs(5);

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The HTTP address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// librdkafka refused the client configuration or the subscription.
    #[error("Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A metric could not be registered.
    #[error("metrics registration failed: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The broker refused our credentials.
    #[error("Kafka authentication failed (check KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM): {0}")]
    Authentication(String),
    /// We refused the broker's certificate.
    #[error("Kafka TLS handshake failed (check KAFKA_SSL_CA_LOCATION: the brokers' certificate must be signed by that CA and name the address used): {0}")]
    Tls(String),
    /// A database the service needs could not be prepared.
    #[error("database: {what}: {source}")]
    Database {
        /// What could not be done, and what to check.
        what: &'static str,
        /// What the driver or the database said (its type is the
        /// service's: platform does not depend on a database driver).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What the client of `context` refused or was refused, if anything.
pub fn refusal(context: &crate::kafka::ObservedContext) -> Option<StartError> {
    context
        .authentication_failed()
        .map(StartError::Authentication)
        .or_else(|| context.tls_failed().map(StartError::Tls))
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// What one look at the broker found.
#[derive(Debug)]
pub enum Probe {
    /// It answered.
    Answered,
    /// It refused our credentials.
    Refused(String),
    /// It did not answer (yet).
    Silent,
}

/// Looks at the broker with `probe` for a few seconds: a refusal of our
/// credentials or of the broker's certificate (said by the probe, or
/// noticed by the client's context and reported by `refused`) stops
/// start-up; an answer, or silence to the end, lets it go on (requests get
/// 503 and consumption waits until the broker answers).
pub async fn check_credentials<F: Future<Output = Probe>>(
    mut probe: impl FnMut() -> F,
    refused: impl Fn() -> Option<StartError>,
) -> Result<(), StartError> {
    let started = Instant::now();
    while started.elapsed() < CREDENTIALS_CHECK {
        let seen = probe().await;
        if let Some(refusal) = refused() {
            return Err(refusal);
        }
        match seen {
            Probe::Answered => return Ok(()),
            Probe::Refused(reason) => return Err(StartError::Authentication(reason)),
            Probe::Silent => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    tracing::warn!("Kafka not reachable at start-up; waiting for it");
    Ok(())
}

/// A service takes its configuration from the environment, not from
/// arguments: `--version` (`-V`) and `--help` (`-h`) answer and exit 0,
/// anything else is refused with exit code 2 before anything starts.
/// `name` and `description` are the binary's (its `CARGO_PKG_NAME` and
/// `CARGO_PKG_DESCRIPTION`); the version is the workspace's.
pub fn answer_arguments(name: &str, description: &str) {
    let _ = answer_commands(name, description, &[]);
}

/// A task a service binary runs instead of the service, named by its one
/// argument (`consumer migrate`), then exits.
#[derive(Debug, Clone, Copy)]
pub struct Command {
    /// The argument.
    pub name: &'static str,
    /// What it does, for `--help`.
    pub about: &'static str,
}

/// Like [`answer_arguments`], and the binary's `commands` too: the one
/// given, if any (`None`: run the service).
pub fn answer_commands(
    name: &str,
    description: &str,
    commands: &[Command],
) -> Option<&'static str> {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let first = args.first()?;
    match parse(first.to_str(), args.len(), commands) {
        Parsed::Command(command) => return Some(command),
        Parsed::Version => println!("{name} {}", crate::metrics::VERSION),
        Parsed::Help => println!("{}", help(name, description, commands)),
        Parsed::Refused => {
            let takes: Vec<&str> = commands.iter().map(|c| c.name).collect();
            let takes = [takes.as_slice(), &["--version", "--help"]].concat();
            eprintln!(
                "{name}: unexpected argument {first:?}: it takes only {}; \
                 its configuration comes from the environment (docs/configuration.md)",
                takes.join(" or ")
            );
            std::process::exit(2);
        }
    }
    std::process::exit(0);
}

/// What the arguments asked for.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Command(&'static str),
    Version,
    Help,
    Refused,
}

fn parse(first: Option<&str>, count: usize, commands: &[Command]) -> Parsed {
    if count != 1 {
        return Parsed::Refused;
    }
    match first {
        Some("--version" | "-V") => Parsed::Version,
        Some("--help" | "-h") => Parsed::Help,
        Some(arg) => commands
            .iter()
            .find(|c| c.name == arg)
            .map_or(Parsed::Refused, |c| Parsed::Command(c.name)),
        None => Parsed::Refused,
    }
}

fn help(name: &str, description: &str, commands: &[Command]) -> String {
    let version = crate::metrics::VERSION;
    let usage: Vec<&str> = commands.iter().map(|c| c.name).collect();
    let usage = [usage.as_slice(), &["--version", "--help"]].concat();
    let mut help = format!(
        "{name} {version}: {description}\n\nUsage: {name} [{}]\n",
        usage.join(" | ")
    );
    for command in commands {
        help.push_str(&format!("\n  {:<10}{}", command.name, command.about));
    }
    if !commands.is_empty() {
        help.push('\n');
    }
    help.push_str(
        "\nWithout arguments it runs the service. Its configuration comes from the \
         environment (docs/configuration.md).",
    );
    help
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn a_command_is_one_argument_among_those_the_binary_takes() {
        let commands = [Command {
            name: "migrate",
            about: "apply the migrations",
        }];
        assert_eq!(
            parse(Some("migrate"), 1, &commands),
            Parsed::Command("migrate")
        );
        assert_eq!(parse(Some("migrate"), 2, &commands), Parsed::Refused);
        assert_eq!(parse(Some("migrate"), 1, &[]), Parsed::Refused);
        assert_eq!(parse(Some("-V"), 1, &commands), Parsed::Version);
        assert_eq!(parse(Some("--help"), 1, &[]), Parsed::Help);
        assert_eq!(parse(Some("--migrate"), 1, &commands), Parsed::Refused);
        let help = help("consumer", "d", &commands);
        assert!(
            help.contains("Usage: consumer [migrate | --version | --help]"),
            "{help}"
        );
        assert!(help.contains("migrate   apply the migrations"), "{help}");
    }

    #[tokio::test]
    async fn a_refusal_stops_start_up_and_silence_does_not() {
        let tries = Cell::new(0);
        let refused = check_credentials(
            || {
                tries.set(tries.get() + 1);
                async { Probe::Silent }
            },
            || {
                (tries.get() >= 2)
                    .then(|| StartError::Authentication("SASL authentication error".into()))
            },
        )
        .await;
        assert!(
            matches!(refused, Err(StartError::Authentication(ref r)) if r.contains("SASL")),
            "{refused:?}"
        );
        let answered = check_credentials(|| async { Probe::Answered }, || None).await;
        assert!(answered.is_ok());
        let said = check_credentials(|| async { Probe::Refused("no".into()) }, || None).await;
        assert!(matches!(said, Err(StartError::Authentication(_))));
    }
}
