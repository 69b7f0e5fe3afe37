//! What a write of events takes, gives and how it fails: the event with
//! where it was read ([`Persistable`]), what became of it ([`Outcome`]),
//! the error of a write ([`PersistError`]), and
//! how a database error is sorted into retry, pause or give up. Shared by
//! the transaction ([`crate::persist`]) and the bulk writes of each table
//! ([`crate::rows`]), which both depend on it and not on each other.

use crate::decode::Decoded;
use crate::identity::{Conflict, Identity};
use crate::lifecycle::Refusal;

/// One event to persist, with where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Persistable<'a> {
    /// The event, its encoding and fingerprint.
    pub decoded: &'a Decoded,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// Whether it came back from a dead-letter topic (it carries
    /// `dlq-replay-count`): it may be older than what is stored.
    pub replayed: bool,
}

impl Persistable<'_> {
    /// Whether it is an order change (applied on its own, in order).
    pub fn is_change(&self) -> bool {
        matches!(self.decoded.event, crate::decode::DomainEvent::Change(_))
    }

    /// What [`crate::identity::decide`] knows the event by.
    pub(crate) fn identity(&self) -> Identity {
        let event = &self.decoded.event;
        Identity {
            domain: event.domain(),
            event_id: event.metadata().event_id,
            aggregate_id: event.aggregate_id(),
            fingerprint: self.decoded.fingerprint.as_str().to_owned(),
        }
    }
}

/// What persisting one event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded for the first time.
    Stored,
    /// Already recorded with the same content (a redelivery): nothing changed.
    Duplicate,
    /// Its id is recorded with other content: nothing changed; it must be
    /// dead-lettered.
    Conflict(Conflict),
    /// An order change the state machine refuses: nothing changed; it
    /// must be dead-lettered.
    Refused(Refusal),
}

/// What to do about a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistErrorKind {
    /// The database cannot be reached (refused, reset, no answer in time):
    /// maybe an outage for everyone, which the circuit breaker decides.
    Unavailable,
    /// Worth another try: lock or statement timeout, serialization
    /// conflict, deadlock, resource shortage, a concurrent writer.
    Transient,
    /// The same data will fail again: constraint violation, bad value.
    Permanent,
}

/// A failed write, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", match kind {
    PersistErrorKind::Unavailable => "database unavailable",
    PersistErrorKind::Transient => "transient database error",
    PersistErrorKind::Permanent => "permanent database error",
})]
pub struct PersistError {
    /// Retry, pause or give up.
    pub kind: PersistErrorKind,
    /// What failed.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl PersistError {
    /// An error of `kind` caused by `source`.
    pub fn new(
        kind: PersistErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// Whether the write failed because one of its ids is stored already.
    pub fn is_unique_violation(&self) -> bool {
        self.source
            .downcast_ref::<sqlx::Error>()
            .is_some_and(unique_violation)
    }

    /// A permanent error described by `reason`.
    pub fn permanent(reason: impl std::fmt::Display) -> Self {
        Self::new(PersistErrorKind::Permanent, reason.to_string())
    }
}

/// Sorts a database error by what to do about it (SQLSTATE classes, see the
/// PostgreSQL manual's appendix A).
pub fn classify(error: sqlx::Error) -> PersistError {
    use store::db::Failure;
    let kind = match Failure::of(&error) {
        Failure::NoConnectionInTime | Failure::Connection => PersistErrorKind::Unavailable,
        Failure::StatementTimeout | Failure::Contention => PersistErrorKind::Transient,
        Failure::MissingTable | Failure::Refused => PersistErrorKind::Permanent,
    };
    PersistError::new(kind, error)
}

/// Whether `error` is PostgreSQL's unique violation.
fn unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// Sorts an error of a write of rows found new: a unique violation means
/// one of them is stored already (by another writer meanwhile, when the
/// batch was decided over what was read: worth another try, which finds it
/// stored); anything else as [`classify`] does.
pub(crate) fn written(error: sqlx::Error) -> PersistError {
    if unique_violation(&error) {
        return PersistError::new(PersistErrorKind::Transient, error);
    }
    classify(error)
}
