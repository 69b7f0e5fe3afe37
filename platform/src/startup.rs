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
    let version = crate::metrics::VERSION;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some(first) = args.first() else {
        return;
    };
    match (first.to_str(), args.len()) {
        (Some("--version" | "-V"), 1) => println!("{name} {version}"),
        (Some("--help" | "-h"), 1) => println!(
            "{name} {version}: {description}\n\nUsage: {name} [--version | --help]\n\n\
             Takes no arguments: its configuration comes from the environment \
             (the README's configuration table)."
        ),
        _ => {
            eprintln!(
                "{name}: unexpected argument {first:?}: it takes only --version or --help; \
                 its configuration comes from the environment (the README's configuration table)"
            );
            std::process::exit(2);
        }
    }
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

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
