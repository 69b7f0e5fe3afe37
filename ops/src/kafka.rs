//! The Kafka options, only on the subcommands that talk to Kafka (`dlq`,
//! `lag`, `dev`): `order` reads PostgreSQL only and offers none.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use platform::kafka::{KafkaSettings, ObservedContext};
use platform::Env;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Kafka options of the subcommands that talk to Kafka.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers (host:port,...), instead of
    /// KAFKA_BOOTSTRAP_SERVERS.
    #[arg(
        long,
        value_name = "HOST:PORT,...",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
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

/// Most events [`heard`] takes from a reader's queue.
const QUEUED_EVENTS: usize = 64;

/// An error `reader` heard that `wanted` picks, and what it said: queued
/// for its next poll (a consumer's errors wait there), or reported through
/// its context. Only for a reader with nothing assigned: a message the
/// poll brings is dropped.
pub fn heard(
    reader: &Reader,
    wanted: impl Fn(RDKafkaErrorCode) -> bool,
) -> Option<(RDKafkaErrorCode, String)> {
    for _ in 0..QUEUED_EVENTS {
        match reader.poll(Duration::ZERO) {
            Some(Err(e)) => match e.rdkafka_error_code() {
                Some(code) if wanted(code) => return Some((code, e.to_string())),
                _ => {}
            },
            Some(Ok(_)) => {}
            None => break,
        }
    }
    let (code, reason) = reader.context().last_error()?;
    wanted(code).then(|| (code, format!("{reason} ({code:?})")))
}

/// How long a command waits for a cluster that does not answer at all.
pub const REACH_DEADLINE: Duration = Duration::from_secs(10);

/// Each metadata request of [`reach`].
const REACH_TRY: Duration = Duration::from_millis(250);

/// Whether `code` says waiting longer is pointless: every bootstrap broker
/// refused the connection or did not resolve, or the cluster refused our
/// credentials.
fn hopeless(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
    )
}

/// A cluster a command cannot talk to.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach Kafka at {bootstrap}{}", said.as_deref().map(|s| format!(": {s}")).unwrap_or_default())]
pub struct Unreachable {
    /// Its bootstrap servers.
    pub bootstrap: String,
    /// What the client heard, when it heard why.
    pub said: Option<String>,
    /// The failure, with its code.
    #[source]
    pub error: KafkaError,
}

/// Asks the cluster for its metadata before a command talks to it
/// (blocking); the number of its brokers. A cluster whose every bootstrap
/// broker refuses the connection or does not resolve, or that refuses our
/// credentials, fails the command at once, with that cause, instead of
/// after each call's time-out; one that does not answer, after
/// [`REACH_DEADLINE`].
pub fn reach(settings: &KafkaSettings) -> Result<usize, Box<Unreachable>> {
    let unreachable = |said, error| {
        Box::new(Unreachable {
            bootstrap: settings.bootstrap_servers.clone(),
            said,
            error,
        })
    };
    let reader = reader_apart(&settings.client_config(&[("client.id", "pubsubkafka-probe")]))
        .map_err(|e| unreachable(None, e))?;
    let started = Instant::now();
    loop {
        let error = match reader.fetch_metadata(None, REACH_TRY) {
            Ok(metadata) => return Ok(metadata.brokers().len()),
            Err(e) => e,
        };
        if let Some((code, _)) = heard(&reader, hopeless) {
            // The code says it all but for a refused login, whose reason
            // the context keeps.
            let said = reader.context().authentication_failed();
            return Err(unreachable(said, KafkaError::MetadataFetch(code)));
        }
        if started.elapsed() >= REACH_DEADLINE {
            return Err(unreachable(None, error));
        }
    }
}

/// [`reach`] on a thread of its own, for async callers.
pub async fn reach_async(settings: &KafkaSettings) -> anyhow::Result<usize> {
    let settings = settings.clone();
    Ok(tokio::task::spawn_blocking(move || reach(&settings)).await??)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn an_empty_bootstrap_server_option_is_refused_not_the_default() {
        use clap::Parser;
        assert!(Cli::try_parse_from(["t", "--bootstrap-server", ""]).is_err());
        let given = Cli::try_parse_from(["t", "--bootstrap-server", "k:9092"]);
        assert_eq!(
            given.ok().and_then(|c| c.kafka.bootstrap_server).as_deref(),
            Some("k:9092")
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Whatever `--bootstrap-server` says (hosts that never resolve,
        /// separators alone, empty entries, long or non-ASCII text), the
        /// command's settings refuse it, or the probe answers an error
        /// naming it: never a cluster, never a panic, never the default.
        #[test]
        fn a_bootstrap_that_names_no_broker_is_an_error(
            bootstrap in prop_oneof![
                "[a-z]{1,30}\\.invalid:[0-9]{1,5}(,[a-z]{1,10}\\.invalid:[0-9]{1,5}){0,3}",
                "[,: ]{0,8}",
                "[^0-9.]{0,300}",
            ]
        ) {
            let env = Env::from_pairs([("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str())]);
            let Ok(settings) = KafkaSettings::from_env(&env) else {
                return Ok(());
            };
            if bootstrap.is_empty() {
                // The environment's rule: an empty variable is unset (the
                // option itself refuses an empty value).
                return Ok(());
            }
            prop_assert_eq!(&settings.bootstrap_servers, &bootstrap);
            let unreachable = reach(&settings).expect_err("no broker there");
            prop_assert_eq!(&unreachable.bootstrap, &bootstrap);
            prop_assert!(
                unreachable.to_string().starts_with("cannot reach Kafka at"),
                "{}", unreachable
            );
        }
    }
}
