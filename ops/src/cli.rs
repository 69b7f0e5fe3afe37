//! What every subcommand shares on its way out: how a failure is
//! reported: its cause chain on standard error, never a backtrace, and with
//! `--json` one error object on standard output, for scripts.
//!
//! The error object is `{"error": {"code": CODE, "message": TEXT, "causes":
//! [TEXT, ...]}}`; `code` is one of [`Code`]'s names, stable across
//! releases, and the exit status is 1 ([`FAILURE`]) whatever the code, 2
//! for arguments the tool refused ([`USAGE`]).

use std::io::Write;
use std::process::ExitCode;

use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;

use crate::dead_letters::DlqError;
use crate::lag::{BadGroupSpec, LagError};
use crate::order::OrderError;
use crate::terminal::print_json;

/// Exit status of a command that failed.
pub const FAILURE: u8 = 1;
/// Exit status of a command whose arguments were refused (clap's own).
pub const USAGE: u8 = 2;

/// What kind of failure stopped a command: the `code` of its JSON error
/// object. The names are an interface: scripts branch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The command line was refused (an unknown option, a missing value).
    Usage,
    /// An option's value cannot be used (`--rate 0`, a bad `--group`, an
    /// id that is not one).
    BadArgument,
    /// An environment variable cannot be used (`invalid VAR=value`).
    Configuration,
    /// No broker answered: down, unreachable, or too slow.
    KafkaUnavailable,
    /// The broker refused the credentials or the operation (ACLs).
    KafkaUnauthorized,
    /// Any other Kafka failure.
    KafkaError,
    /// The topic does not exist.
    UnknownTopic,
    /// The topic has no such partition.
    UnknownPartition,
    /// The offset is outside the partition's watermarks.
    OffsetOutOfRange,
    /// Nothing where the command looked (an offset inside the watermarks
    /// that holds no message: compacted, or a transaction marker).
    NotFound,
    /// The consumer group is not known to the broker.
    UnknownGroup,
    /// The lag's age could not be read (the principal lacks `Read`).
    LagUndated,
    /// Another replay holds the group.
    Busy,
    /// Messages known to be in a topic did not arrive in time.
    Stalled,
    /// PostgreSQL could not be reached in time.
    DatabaseUnavailable,
    /// PostgreSQL refused or failed the query.
    DatabaseError,
    /// Anything else (a bug, an I/O error).
    Internal,
}

/// The JSON error object.
#[derive(Debug, Serialize)]
struct ErrorObject {
    error: ErrorBody,
}

#[derive(Debug, Serialize)]
struct ErrorBody {
    code: Code,
    message: String,
    causes: Vec<String>,
}

/// The code of `error`: that of the outermost error in its chain the tool
/// knows.
pub fn code(error: &anyhow::Error) -> Code {
    error.chain().find_map(known).unwrap_or(Code::Internal)
}

fn known(error: &(dyn std::error::Error + 'static)) -> Option<Code> {
    if let Some(e) = error.downcast_ref::<DlqError>() {
        return Some(match e {
            DlqError::Kafka(k) => kafka(k),
            DlqError::NoTopic(_) => Code::UnknownTopic,
            DlqError::NoPartition { .. } => Code::UnknownPartition,
            DlqError::OffsetOutOfRange { .. } => Code::OffsetOutOfRange,
            DlqError::BadArgument(_) => Code::BadArgument,
            DlqError::NotFound(_) => Code::NotFound,
            DlqError::Busy(_) => Code::Busy,
            DlqError::Stalled { .. } => Code::Stalled,
        });
    }
    if let Some(e) = error.downcast_ref::<LagError>() {
        return Some(match e {
            LagError::Kafka(k) => kafka(k),
            LagError::UnknownTopic { .. } => Code::UnknownTopic,
            LagError::TimeLag { .. } => Code::LagUndated,
            LagError::UnknownGroup { .. } => Code::UnknownGroup,
            LagError::Refused { .. } => Code::KafkaUnauthorized,
        });
    }
    if let Some(e) = error.downcast_ref::<OrderError>() {
        return Some(match e {
            OrderError::BadId { .. } => Code::BadArgument,
            OrderError::NoAnswer(_) => Code::DatabaseUnavailable,
        });
    }
    if let Some(e) = error.downcast_ref::<KafkaError>() {
        return Some(kafka(e));
    }
    if let Some(e) = error.downcast_ref::<sqlx::Error>() {
        return Some(database(e));
    }
    if error.is::<BadGroupSpec>() {
        return Some(Code::BadArgument);
    }
    if error.is::<platform::ConfigError>() {
        return Some(Code::Configuration);
    }
    None
}

fn kafka(error: &KafkaError) -> Code {
    use RDKafkaErrorCode as K;
    match error.rdkafka_error_code() {
        Some(
            K::BrokerTransportFailure
            | K::AllBrokersDown
            | K::Resolve
            | K::MessageTimedOut
            | K::OperationTimedOut
            | K::TimedOutQueue
            | K::RequestTimedOut
            | K::BrokerNotAvailable
            | K::NetworkException,
        ) => Code::KafkaUnavailable,
        Some(
            K::Authentication
            | K::SaslAuthenticationFailed
            | K::TopicAuthorizationFailed
            | K::GroupAuthorizationFailed
            | K::ClusterAuthorizationFailed,
        ) => Code::KafkaUnauthorized,
        Some(K::UnknownTopicOrPartition | K::UnknownTopic) => Code::UnknownTopic,
        Some(K::UnknownPartition) => Code::UnknownPartition,
        Some(K::OffsetOutOfRange) => Code::OffsetOutOfRange,
        _ => Code::KafkaError,
    }
}

fn database(error: &sqlx::Error) -> Code {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Code::DatabaseUnavailable
        }
        sqlx::Error::Configuration(_) => Code::Configuration,
        _ => Code::DatabaseError,
    }
}

/// Reports `error`: its message and cause chain on standard error (no
/// backtrace, whatever RUST_BACKTRACE says: an operator's error is not a
/// bug), and with `json` the error object on standard output. The exit
/// status to end with.
pub fn report(error: &anyhow::Error, json: bool) -> ExitCode {
    let mut chain = error.chain().map(ToString::to_string);
    let message = chain.next().unwrap_or_default();
    let causes: Vec<String> = chain.collect();
    {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "error: {message}");
        for cause in &causes {
            let _ = writeln!(err, "  caused by: {cause}");
        }
    }
    if json {
        print_error(code(error), message, causes);
    }
    ExitCode::from(FAILURE)
}

/// Reports arguments clap refused: its own text on standard error (or
/// help and version on standard output, which are not failures), and with
/// `json` the error object on standard output.
pub fn refused(error: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let shown = error.print();
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return if shown.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(FAILURE)
        };
    }
    if json {
        let text = error.render().to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ")
            .to_owned();
        print_error(Code::Usage, message, Vec::new());
    }
    ExitCode::from(USAGE)
}

/// Whether the command line asks for JSON, read before it is parsed (a
/// command line clap refuses still gets its error as JSON).
pub fn asks_for_json(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

fn print_error(code: Code, message: String, causes: Vec<String>) {
    let object = ErrorObject {
        error: ErrorBody {
            code,
            message,
            causes,
        },
    };
    // Nothing else can be said if standard output is gone.
    let _ = print_json(&object);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outermost_known_error_names_the_code() {
        let refused = KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure);
        let error = anyhow::Error::from(DlqError::Kafka(refused)).context("listing");
        assert_eq!(code(&error), Code::KafkaUnavailable);
        let error = anyhow::Error::from(DlqError::OffsetOutOfRange {
            topic: "orders-dlq".into(),
            partition: 0,
            offset: 9,
            low: 0,
            high: 3,
        });
        assert_eq!(code(&error), Code::OffsetOutOfRange);
        let error = anyhow::Error::from(platform::ConfigError::new("LOG_FORMAT", "xml", "json"));
        assert_eq!(code(&error), Code::Configuration);
        assert_eq!(code(&anyhow::anyhow!("something else")), Code::Internal);
        let denied = KafkaError::MetadataFetch(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert_eq!(
            code(&anyhow::Error::from(LagError::Kafka(denied))),
            Code::KafkaUnauthorized
        );
        let refused = LagError::Refused {
            group: "order-consumer".into(),
            cause: "FindCoordinator response error: Group authorization failed.".into(),
        };
        assert_eq!(code(&anyhow::Error::from(refused)), Code::KafkaUnauthorized);
    }

    #[test]
    fn codes_are_snake_case_names() {
        let shown = serde_json::to_value(Code::KafkaUnavailable).unwrap_or_default();
        assert_eq!(shown, "kafka_unavailable");
        let shown = serde_json::to_value(Code::OffsetOutOfRange).unwrap_or_default();
        assert_eq!(shown, "offset_out_of_range");
    }

    #[test]
    fn json_is_asked_for_before_the_end_of_options_only() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        assert!(asks_for_json(args(&["pubsubkafka", "lag", "--json"])));
        assert!(!asks_for_json(args(&[
            "pubsubkafka",
            "order",
            "--",
            "--json"
        ])));
        assert!(!asks_for_json(args(&["pubsubkafka", "lag"])));
    }
}
