//! What happens to a batch of messages, without Kafka: decode and validate
//! each, persist the valid ones in one transaction, and when that fails,
//! fall back to one message at a time to isolate the culprit, retrying
//! transient failures. The verdicts say what the loop must still do
//! (dead-letter) before it may store the offsets.

use std::future::Future;

use contract::redact::scrub;
use rdkafka::message::{Message, OwnedMessage};
use tokio_util::sync::CancellationToken;

use contract::topics::Domains;

use crate::decode::{self, Decoded};
use crate::failure::{ErrorKind, Failure, FailureClass};
use crate::flood::FloodGuard;
use crate::partition::Partition;
use crate::persist::{Outcome, PersistError, PersistErrorKind, Persistable, Store};
use crate::retry::RetryPolicy;

/// Where events are stored: PostgreSQL in the service, a scripted stand-in
/// in the unit tests of the batch decisions below.
pub trait EventStore: Sync {
    /// Persists `batch` in one transaction; the outcome of each event.
    fn persist(
        &self,
        batch: &[Persistable<'_>],
    ) -> impl Future<Output = Result<Vec<Outcome>, PersistError>> + Send;
    /// Whether the store answers at all.
    fn probe(&self) -> impl Future<Output = Result<(), PersistError>> + Send;
}

impl EventStore for Store {
    fn persist(
        &self,
        batch: &[Persistable<'_>],
    ) -> impl Future<Output = Result<Vec<Outcome>, PersistError>> + Send {
        Store::persist(self, batch)
    }
    fn probe(&self) -> impl Future<Output = Result<(), PersistError>> + Send {
        Store::probe(self)
    }
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored for the first time.
    Persisted,
    /// Found already stored with the same content: a redelivery.
    Duplicate,
    /// Must go to the DLQ before its offset is stored.
    DeadLetter(Failure),
}

/// A message's verdict and the retries it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// What became of it.
    pub verdict: Verdict,
    /// Transient failures retried before the verdict.
    pub retries: u32,
}

/// What became of a batch.
#[derive(Debug)]
pub struct BatchOutcome {
    /// One per message, for the first `handled.len()` messages.
    pub handled: Vec<Handled>,
    /// Set when processing stopped early; the messages past the verdicts are
    /// untouched and must be read again.
    pub halted: Option<Halt>,
}

/// Why a batch stopped early.
#[derive(Debug)]
pub enum Halt {
    /// The database is unreachable for everyone: open the circuit.
    Outage(PersistError),
    /// Shutdown was requested during a retry wait.
    Stopping,
}

fn decode_message(message: &OwnedMessage, topics: &Domains) -> Result<Decoded, Failure> {
    let Some(domain) = topics.domain(message.topic()) else {
        return Err(Failure::permanent(
            FailureClass::EventTypeMismatch,
            "the topic carries no domain this consumer knows",
        ));
    };
    decode::decode(message, domain).map_err(|r| Failure::permanent(r.class(), &r))
}

fn persistable<'a>(message: &'a OwnedMessage, decoded: &'a Decoded) -> Persistable<'a> {
    Persistable {
        decoded,
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        replayed: platform::kafka::header(message, contract::headers::DLQ_REPLAY_COUNT).is_some(),
    }
}

fn verdict(outcome: Outcome) -> Verdict {
    match outcome {
        Outcome::Stored => Verdict::Persisted,
        Outcome::Duplicate => Verdict::Duplicate,
        Outcome::Conflict(conflict) => {
            Verdict::DeadLetter(Failure::permanent(FailureClass::Conflict, conflict))
        }
        Outcome::Refused(refusal) => {
            Verdict::DeadLetter(Failure::permanent(refusal.class(), refusal))
        }
    }
}

/// An unreachable database is an outage only if a fresh probe fails too;
/// otherwise the error was this statement's and counts as transient.
async fn is_outage(store: &impl EventStore, error: &PersistError) -> bool {
    error.kind == PersistErrorKind::Unavailable && store.probe().await.is_err()
}

/// Processes `batch` (messages in the order they were read). `flood` is a
/// copy of the worker's flood guard: nothing past a message it would hold
/// is written (the outcome stops at that message, and the worker reads the
/// rest again), so a held partition is stored in offset order.
pub async fn process_batch(
    store: &impl EventStore,
    policy: RetryPolicy,
    topics: &Domains,
    batch: &[&OwnedMessage],
    flood: FloodGuard,
    stop: &CancellationToken,
) -> BatchOutcome {
    let mut decoded: Vec<Result<Decoded, Failure>> =
        batch.iter().map(|m| decode_message(m, topics)).collect();
    let upto = flood_cut(batch, &decoded, flood);
    let batch = &batch[..upto];
    decoded.truncate(upto);
    let valid: Vec<Persistable<'_>> = batch
        .iter()
        .zip(&decoded)
        .filter_map(|(m, d)| d.as_ref().ok().map(|d| persistable(m, d)))
        .collect();
    let batch_error = match store.persist(&valid).await {
        Ok(outcomes) => {
            return BatchOutcome {
                handled: all_handled(decoded, outcomes),
                halted: None,
            }
        }
        Err(error) => error,
    };
    if is_outage(store, &batch_error).await {
        return BatchOutcome {
            handled: Vec::new(),
            halted: Some(Halt::Outage(batch_error)),
        };
    }
    tracing::warn!(
        error = %scrub(&batch_error.to_string()),
        size = batch.len(),
        "batch failed; persisting one by one"
    );
    one_by_one(store, policy, batch, decoded, stop).await
}

/// How many of `batch` to write: up to and including the first message
/// `flood` (a copy of the worker's guard) would hold, or all.
fn flood_cut(
    batch: &[&OwnedMessage],
    decoded: &[Result<Decoded, Failure>],
    mut flood: FloodGuard,
) -> usize {
    flood
        .first_held(
            batch
                .iter()
                .zip(decoded)
                .map(|(m, d)| (Partition::of(*m), d.is_err())),
        )
        .map_or(batch.len(), |held| held + 1)
}

/// The verdicts of a batch written in one transaction: the undecodable
/// ones dead-lettered, the others as `outcomes` (in order) say.
fn all_handled(decoded: Vec<Result<Decoded, Failure>>, outcomes: Vec<Outcome>) -> Vec<Handled> {
    let mut outcomes = outcomes.into_iter();
    decoded
        .into_iter()
        .map(|d| Handled {
            verdict: match d {
                Ok(_) => outcomes.next().map_or(Verdict::Persisted, verdict),
                Err(failure) => Verdict::DeadLetter(failure),
            },
            retries: 0,
        })
        .collect()
}

/// The fallback after a failed batch: each message on its own, retried,
/// until the end or a halt.
async fn one_by_one(
    store: &impl EventStore,
    policy: RetryPolicy,
    batch: &[&OwnedMessage],
    decoded: Vec<Result<Decoded, Failure>>,
    stop: &CancellationToken,
) -> BatchOutcome {
    let mut outcome = BatchOutcome {
        handled: Vec::with_capacity(batch.len()),
        halted: None,
    };
    for (message, decoded) in batch.iter().zip(decoded) {
        let handled = match decoded {
            Err(failure) => Handled {
                verdict: Verdict::DeadLetter(failure),
                retries: 0,
            },
            Ok(decoded) => {
                match persist_with_retries(store, policy, persistable(message, &decoded), stop)
                    .await
                {
                    Ok(handled) => handled,
                    Err(halt) => {
                        outcome.halted = Some(halt);
                        return outcome;
                    }
                }
            }
        };
        outcome.handled.push(handled);
    }
    outcome
}

/// What a failed write of one message means: its failure kind and class,
/// and the wait before the next try (`None`: no more tries, from `delays`).
fn sort_failure(
    error: &PersistError,
    delays: &mut impl Iterator<Item = std::time::Duration>,
) -> (ErrorKind, FailureClass, Option<std::time::Duration>) {
    match error.kind {
        PersistErrorKind::Permanent => {
            (ErrorKind::Permanent, FailureClass::DatabaseConstraint, None)
        }
        PersistErrorKind::Transient => (
            ErrorKind::Transient,
            FailureClass::DatabaseTransient,
            delays.next(),
        ),
        PersistErrorKind::Unavailable => (
            ErrorKind::Transient,
            FailureClass::DatabaseUnavailable,
            delays.next(),
        ),
    }
}

/// One message: retried on transient errors with backoff, dead-lettered
/// when they outlast the policy or at once on a permanent error.
async fn persist_with_retries(
    store: &impl EventStore,
    policy: RetryPolicy,
    item: Persistable<'_>,
    stop: &CancellationToken,
) -> Result<Handled, Halt> {
    let mut delays = policy.delays();
    let mut retries = 0u32;
    loop {
        let error = match store.persist(&[item]).await {
            Ok(outcomes) => {
                return Ok(Handled {
                    verdict: outcomes
                        .first()
                        .copied()
                        .map_or(Verdict::Persisted, verdict),
                    retries,
                })
            }
            Err(error) => error,
        };
        if is_outage(store, &error).await {
            return Err(Halt::Outage(error));
        }
        let (kind, class, delay) = sort_failure(&error, &mut delays);
        let Some(delay) = delay else {
            return Ok(Handled {
                verdict: Verdict::DeadLetter(Failure {
                    kind,
                    class,
                    message: scrub(&error.to_string()),
                    retries,
                }),
                retries,
            });
        };
        tracing::warn!(
            error = %scrub(&error.to_string()),
            retry = retries + 1,
            ?delay,
            "transient failure; retrying"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return Err(Halt::Stopping),
        }
        retries += 1;
    }
}

#[cfg(test)]
mod tests {
    //! The batch decisions with a scripted store: fast, and beside the
    //! proofs against real PostgreSQL in `tests/`.

    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::time::Duration;

    use contract::Format;
    use harness::events::{order_event, order_message};
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    use super::*;
    use crate::flood::FloodLimits;
    use crate::identity::Conflict;

    /// Answers each `persist` call with the next scripted answer (the
    /// number of events it was given is kept), and each probe as told.
    struct Scripted {
        answers: Mutex<VecDeque<Result<Vec<Outcome>, PersistErrorKind>>>,
        calls: Mutex<Vec<usize>>,
        reachable: bool,
    }

    impl Scripted {
        fn new(answers: Vec<Result<Vec<Outcome>, PersistErrorKind>>, reachable: bool) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                calls: Mutex::new(Vec::new()),
                reachable,
            }
        }

        fn calls(&self) -> Vec<usize> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl EventStore for Scripted {
        async fn persist(&self, batch: &[Persistable<'_>]) -> Result<Vec<Outcome>, PersistError> {
            self.calls.lock().unwrap().push(batch.len());
            let answer = self.answers.lock().unwrap().pop_front();
            match answer.expect("no answer scripted for this call") {
                Ok(outcomes) => Ok(outcomes),
                Err(kind) => Err(PersistError::new(kind, "scripted")),
            }
        }

        async fn probe(&self) -> Result<(), PersistError> {
            if self.reachable {
                Ok(())
            } else {
                Err(PersistError::new(PersistErrorKind::Unavailable, "scripted"))
            }
        }
    }

    fn valid(n: usize) -> OwnedMessage {
        let m = order_message(&order_event(n), Format::Json);
        OwnedMessage::new(
            Some(m.value.clone()),
            Some(m.key.clone()),
            "orders".into(),
            Timestamp::NotAvailable,
            0,
            n as i64,
            Some(m.kafka_headers()),
        )
    }

    fn poison(n: usize) -> OwnedMessage {
        let m = order_message(&order_event(n), Format::Json);
        OwnedMessage::new(
            Some(b"{not json".to_vec()),
            Some(m.key.clone()),
            "orders".into(),
            Timestamp::NotAvailable,
            0,
            n as i64,
            Some(m.kafka_headers()),
        )
    }

    fn policy(retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries: retries,
            initial_backoff: Duration::from_millis(1),
        }
    }

    async fn run(store: &Scripted, retries: u32, messages: &[OwnedMessage]) -> BatchOutcome {
        let batch: Vec<&OwnedMessage> = messages.iter().collect();
        process_batch(
            store,
            policy(retries),
            &Domains::default(),
            &batch,
            FloodGuard::new(FloodLimits::OFF),
            &CancellationToken::new(),
        )
        .await
    }

    fn verdicts(outcome: &BatchOutcome) -> Vec<String> {
        outcome
            .handled
            .iter()
            .map(|h| match &h.verdict {
                Verdict::Persisted => "persisted".to_owned(),
                Verdict::Duplicate => "duplicate".to_owned(),
                Verdict::DeadLetter(f) => format!("dead:{}:{}", f.class.as_str(), f.retries),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_stored_whole_gives_each_message_its_own_outcome() {
        let store = Scripted::new(
            vec![Ok(vec![
                Outcome::Stored,
                Outcome::Duplicate,
                Outcome::Conflict(Conflict::EventIdReused),
            ])],
            true,
        );
        let outcome = run(&store, 3, &[valid(0), poison(1), valid(2), valid(3)]).await;
        assert_eq!(
            verdicts(&outcome),
            ["persisted", "dead:decode:0", "duplicate", "dead:conflict:0"]
        );
        assert_eq!(store.calls(), [3], "one transaction for the valid three");
        assert!(outcome.halted.is_none());
    }

    #[tokio::test]
    async fn a_refused_change_is_dead_lettered_under_its_class() {
        use crate::lifecycle::Refusal;
        use contract::lifecycle::OrderStatus;
        let store = Scripted::new(
            vec![Ok(vec![
                Outcome::Refused(Refusal::UnknownOrder),
                Outcome::Refused(Refusal::Stale { stored: 3 }),
                Outcome::Refused(Refusal::NotAllowed {
                    from: OrderStatus::Delivered,
                    to: OrderStatus::Cancelled,
                }),
            ])],
            true,
        );
        let outcome = run(&store, 3, &[valid(0), valid(1), valid(2)]).await;
        assert_eq!(
            verdicts(&outcome),
            [
                "dead:unknown_order:0",
                "dead:version_conflict:0",
                "dead:invalid_transition:0"
            ]
        );
        let Verdict::DeadLetter(failure) = &outcome.handled[2].verdict else {
            unreachable!("dead-lettered above")
        };
        assert_eq!(failure.kind, ErrorKind::Permanent, "refused for good");
        assert_eq!(
            failure.message,
            "an order that is delivered cannot become cancelled"
        );
    }

    /// The regression of a held partition stored out of offset order: the
    /// orders after the message the flood guard holds were written with the
    /// batch while the held offsets stayed uncommitted.
    #[tokio::test]
    async fn nothing_past_the_message_the_flood_guard_holds_is_written() {
        let store = Scripted::new(vec![Ok(vec![Outcome::Stored, Outcome::Stored])], true);
        let messages = [
            valid(0),
            poison(1),
            poison(2),
            poison(3),
            valid(4),
            valid(5),
        ];
        let batch: Vec<&OwnedMessage> = messages.iter().collect();
        let guard = FloodGuard::new(FloodLimits {
            max_in_row: 2,
            window: 100,
            max_percent: 100,
            retry_after: Duration::from_secs(60),
        });
        let outcome = process_batch(
            &store,
            policy(0),
            &Domains::default(),
            &batch,
            guard,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(
            verdicts(&outcome),
            [
                "persisted",
                "dead:decode:0",
                "dead:decode:0",
                "dead:decode:0"
            ],
            "the outcome stops at the held message"
        );
        assert_eq!(
            store.calls(),
            [1],
            "only the order before the poison was written"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_is_retried_one_by_one_and_only_the_culprit_is_dead_lettered() {
        let store = Scripted::new(
            vec![
                Err(PersistErrorKind::Transient),
                Ok(vec![Outcome::Stored]),
                Err(PersistErrorKind::Permanent),
                Ok(vec![Outcome::Stored]),
            ],
            true,
        );
        let outcome = run(&store, 3, &[valid(0), valid(1), valid(2)]).await;
        assert_eq!(
            verdicts(&outcome),
            ["persisted", "dead:database_constraint:0", "persisted"]
        );
        assert_eq!(store.calls(), [3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn a_transient_failure_is_retried_as_the_policy_says_then_dead_lettered() {
        let store = Scripted::new(
            vec![
                Err(PersistErrorKind::Transient),
                Err(PersistErrorKind::Transient),
                Err(PersistErrorKind::Transient),
                Err(PersistErrorKind::Transient),
                Ok(vec![Outcome::Stored]),
            ],
            true,
        );
        let outcome = run(&store, 2, &[valid(0), valid(1)]).await;
        assert_eq!(
            verdicts(&outcome),
            ["dead:database_transient:2", "persisted"]
        );
        assert_eq!(outcome.handled[0].retries, 2);
        assert_eq!(store.calls(), [2, 1, 1, 1, 1]);
    }

    #[tokio::test]
    async fn an_unavailable_database_a_probe_confirms_halts_the_batch_untouched() {
        let store = Scripted::new(vec![Err(PersistErrorKind::Unavailable)], false);
        let outcome = run(&store, 3, &[valid(0), poison(1)]).await;
        assert!(
            outcome.handled.is_empty(),
            "nothing decided, nothing dead-lettered"
        );
        assert!(matches!(outcome.halted, Some(Halt::Outage(_))));
    }

    #[tokio::test]
    async fn an_unavailable_statement_with_a_healthy_probe_is_only_transient() {
        let store = Scripted::new(
            vec![
                Err(PersistErrorKind::Unavailable),
                Ok(vec![Outcome::Stored]),
                Ok(vec![Outcome::Duplicate]),
            ],
            true,
        );
        let outcome = run(&store, 3, &[valid(0), valid(1)]).await;
        assert_eq!(verdicts(&outcome), ["persisted", "duplicate"]);
        assert!(outcome.halted.is_none());
    }

    #[tokio::test]
    async fn a_stop_during_a_retry_wait_halts_with_the_rest_untouched() {
        let store = Scripted::new(
            vec![
                Err(PersistErrorKind::Transient),
                Ok(vec![Outcome::Stored]),
                Err(PersistErrorKind::Transient),
            ],
            true,
        );
        let stop = CancellationToken::new();
        stop.cancel();
        let messages = [valid(0), valid(1), valid(2)];
        let batch: Vec<&OwnedMessage> = messages.iter().collect();
        let policy = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_secs(60),
        };
        let outcome = process_batch(
            &store,
            policy,
            &Domains::default(),
            &batch,
            FloodGuard::new(FloodLimits::OFF),
            &stop,
        )
        .await;
        assert_eq!(verdicts(&outcome), ["persisted"], "the first is done");
        assert!(matches!(outcome.halted, Some(Halt::Stopping)));
    }
}
