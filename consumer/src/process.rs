//! What happens to a batch of messages, without Kafka: decode and validate
//! each, persist the valid ones in one transaction, and when that fails,
//! fall back to one message at a time to isolate the culprit, retrying
//! transient failures. The verdicts say what the loop must still do
//! (dead-letter) before it may store the offsets.

use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use crate::dead_letter::{ErrorKind, Failure};
use crate::decode::{self, DomainEvent, Rejection};
use crate::persist::{PersistError, Persistable, Persisted, Store};
use crate::retry::RetryPolicy;

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored (or found already stored: a redelivery).
    Persisted,
    /// Must go to the DLQ before its offset is stored.
    DeadLetter(Failure),
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    /// One verdict per message, for the first `verdicts.len()` messages.
    pub verdicts: Vec<Verdict>,
    /// Set when processing stopped early; the messages past the verdicts are
    /// untouched and must be read again.
    pub halted: Option<Halt>,
    /// New and duplicate events written.
    pub persisted: Persisted,
    /// Retries made.
    pub retries: u64,
}

/// Why a batch stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    /// The database is unreachable for everyone: open the circuit.
    Outage(String),
    /// Shutdown was requested during a retry wait.
    Stopping,
}

fn rejected(rejection: &Rejection) -> Verdict {
    Verdict::DeadLetter(Failure {
        kind: ErrorKind::Permanent,
        class: rejection.class(),
        message: rejection.to_string(),
        retries: 0,
    })
}

fn content_type(message: &OwnedMessage) -> &str {
    decode::header(message, contract::headers::CONTENT_TYPE).unwrap_or("")
}

fn persistable<'a>(message: &'a OwnedMessage, event: &'a DomainEvent) -> Persistable<'a> {
    Persistable {
        event,
        content_type: content_type(message),
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
    }
}

/// An unreachable database is an outage only if a fresh probe fails too;
/// otherwise the error was this statement's and counts as transient.
async fn is_outage(store: &Store, error: &PersistError) -> bool {
    matches!(error, PersistError::Unavailable(_)) && store.probe().await.is_err()
}

/// Processes `batch` (messages in the order they were read).
pub async fn process_batch(
    store: &Store,
    policy: RetryPolicy,
    batch: &[OwnedMessage],
    stop: &CancellationToken,
) -> BatchOutcome {
    let decoded: Vec<Result<DomainEvent, Rejection>> = batch.iter().map(decode::decode).collect();
    let valid: Vec<Persistable<'_>> = batch
        .iter()
        .zip(&decoded)
        .filter_map(|(m, d)| d.as_ref().ok().map(|e| persistable(m, e)))
        .collect();
    let mut outcome = BatchOutcome {
        verdicts: Vec::with_capacity(batch.len()),
        halted: None,
        persisted: Persisted::default(),
        retries: 0,
    };
    let batch_error = match store.persist(&valid).await {
        Ok(persisted) => {
            outcome.persisted = persisted;
            outcome.verdicts = decoded
                .iter()
                .map(|d| match d {
                    Ok(_) => Verdict::Persisted,
                    Err(r) => rejected(r),
                })
                .collect();
            return outcome;
        }
        Err(error) => error,
    };
    if is_outage(store, &batch_error).await {
        outcome.halted = Some(Halt::Outage(batch_error.to_string()));
        return outcome;
    }
    tracing::warn!(error = %batch_error, size = batch.len(), "batch failed; persisting one by one");
    for (message, decoded) in batch.iter().zip(&decoded) {
        let event = match decoded {
            Err(rejection) => {
                outcome.verdicts.push(rejected(rejection));
                continue;
            }
            Ok(event) => event,
        };
        match persist_with_retries(
            store,
            policy,
            persistable(message, event),
            stop,
            &mut outcome,
        )
        .await
        {
            Ok(verdict) => outcome.verdicts.push(verdict),
            Err(halt) => {
                outcome.halted = Some(halt);
                return outcome;
            }
        }
    }
    outcome
}

/// One message: retried on transient errors with backoff, dead-lettered
/// when they outlast the policy or at once on a permanent error.
async fn persist_with_retries(
    store: &Store,
    policy: RetryPolicy,
    item: Persistable<'_>,
    stop: &CancellationToken,
    outcome: &mut BatchOutcome,
) -> Result<Verdict, Halt> {
    let mut delays = policy.delays();
    let mut retries = 0u32;
    loop {
        let error = match store.persist(&[item]).await {
            Ok(persisted) => {
                outcome.persisted.new += persisted.new;
                outcome.persisted.duplicates += persisted.duplicates;
                return Ok(Verdict::Persisted);
            }
            Err(error) => error,
        };
        if is_outage(store, &error).await {
            return Err(Halt::Outage(error.to_string()));
        }
        let kind = match error {
            PersistError::Permanent(_) => ErrorKind::Permanent,
            PersistError::Transient(_) | PersistError::Unavailable(_) => ErrorKind::Transient,
        };
        let delay = match kind {
            ErrorKind::Transient => delays.next(),
            ErrorKind::Permanent => None,
        };
        let Some(delay) = delay else {
            return Ok(Verdict::DeadLetter(Failure {
                kind,
                class: error.class(),
                message: error.to_string(),
                retries,
            }));
        };
        tracing::warn!(%error, retry = retries + 1, ?delay, "transient failure; retrying");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(Halt::Stopping),
        }
        retries += 1;
        outcome.retries += 1;
    }
}
