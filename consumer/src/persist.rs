//! Persisting events: the current state (`orders` + `order_items`, `users`)
//! and the event-store row, in one transaction per batch, one `COPY` per table.
//! Idempotent and conflict-aware: [`crate::identity::decide`] sorts the batch
//! into new events, redeliveries and conflicts over what the database
//! already holds, and only the new ones are written.
//!
//! Most batches are wholly new, so they are first written without reading
//! anything (see [`Store::persist`]); the read is made only when the batch
//! repeats itself or the write finds one of its ids stored.
//!
//! Every call has a deadline measured here, not only the server's
//! `statement_timeout`: behind a path that swallows packets (a dead NAT, a
//! firewall that drops, a hung pooler) an answer may never come, and the
//! server's own timer cannot help. A call past its deadline counts as
//! "database unavailable" and its connection is closed, never reused.

use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use contract::{Domain, DomainEvent};

use crate::apply::{self, StateTopic};
use crate::identity::{self, Decision, Identity, Known};
pub use crate::persistable::{classify, Outcome, PersistError, PersistErrorKind, Persistable};
use crate::rows::{EventRows, ItemRows, OrderRows, UserRows};
use store::rejections::NewRejection;

/// No answer from the database within the client's deadline.
#[derive(Debug, thiserror::Error)]
#[error("no answer within {0:?}; the connection was closed")]
pub struct DeadlineExceeded(pub Duration);

/// Writes events to PostgreSQL.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    deadline: Duration,
    state: StateTopic,
}

/// Longest a probe may take: it only asks `SELECT 1`.
const PROBE_DEADLINE: Duration = Duration::from_secs(5);

impl Store {
    /// A store over `pool` whose transactions must finish within `deadline`.
    pub fn new(pool: PgPool, deadline: Duration) -> Self {
        Self {
            pool,
            deadline,
            state: StateTopic::default(),
        }
    }

    /// The same store, publishing order states as `state` says.
    pub fn with_state_topic(mut self, state: StateTopic) -> Self {
        self.state = state;
        self
    }

    /// The pool, for tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `work` on a pooled connection within `deadline` (see
    /// [`store::db::within`]).
    async fn with_connection<T>(
        &self,
        deadline: Duration,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, PersistError>,
    ) -> Result<T, PersistError> {
        let unavailable =
            || PersistError::new(PersistErrorKind::Unavailable, DeadlineExceeded(deadline));
        store::db::within(&self.pool, deadline, classify, unavailable, work).await
    }

    /// Whether the database answers at all.
    pub async fn probe(&self) -> Result<(), PersistError> {
        self.with_connection(self.deadline.min(PROBE_DEADLINE), async |conn| {
            sqlx::query("SELECT 1")
                .execute(conn)
                .await
                .map(drop)
                .map_err(classify)
        })
        .await
    }

    /// Persists `batch` in one transaction: every new event, or none. Returns
    /// what happened to each event, in order.
    ///
    /// A batch whose events are all new among themselves is written first
    /// as if the database held none of them: every event id, order id and
    /// user id of it is then a primary key written, so if the database holds
    /// any of them the write fails with a unique violation, changes nothing,
    /// and the batch is decided again over what is read (the outcomes are
    /// those the read would have given; `tests/persist.rs` compares them
    /// with one-by-one processing). If it holds none, the read would have
    /// found nothing and decided the same, so it is skipped: its two or three
    /// round trips and an index probe per id, for every new batch.
    pub async fn persist(&self, batch: &[Persistable<'_>]) -> Result<Vec<Outcome>, PersistError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if batch.iter().any(Persistable::is_change) {
            return self
                .with_connection(self.deadline, async |conn| {
                    let mut tx = conn.begin().await.map_err(classify)?;
                    let outcomes = in_order(&mut tx, batch, &self.state).await?;
                    tx.commit().await.map_err(classify)?;
                    Ok(outcomes)
                })
                .await;
        }
        let identities: Vec<Identity> = batch.iter().map(Persistable::identity).collect();
        self.with_connection(self.deadline, async |conn| {
            let unread = identity::decide(&identities, Known::default());
            if unread.iter().all(|d| *d == Decision::Store) {
                let mut tx = conn.begin().await.map_err(classify)?;
                match write(&mut tx, batch, &unread, &self.state).await {
                    Ok(()) => {
                        tx.commit().await.map_err(classify)?;
                        return Ok(outcomes(unread));
                    }
                    Err(e) if e.is_unique_violation() => {
                        tracing::debug!("a batch holds stored ids; deciding it over what is read");
                        tx.rollback().await.map_err(classify)?;
                    }
                    Err(e) => return Err(e),
                }
            }
            let mut tx = conn.begin().await.map_err(classify)?;
            let decisions = identity::decide(&identities, known(&mut tx, &identities).await?);
            write(&mut tx, batch, &decisions, &self.state).await?;
            tx.commit().await.map_err(classify)?;
            Ok(outcomes(decisions))
        })
        .await
    }
}

/// A batch holding order changes, in one transaction and in offset order:
/// each run of creations and users decided over what is read and written
/// in bulk, each change applied on its own (it may depend on a creation
/// just before it).
async fn in_order(
    tx: &mut PgConnection,
    batch: &[Persistable<'_>],
    state: &StateTopic,
) -> Result<Vec<Outcome>, PersistError> {
    let mut done = Vec::with_capacity(batch.len());
    let mut rest = batch;
    while let Some(first) = rest.first() {
        if let DomainEvent::Change(change) = &first.decoded.event {
            done.push(apply::change(tx, first, change, state).await?);
            rest = &rest[1..];
            continue;
        }
        let run = rest
            .iter()
            .position(Persistable::is_change)
            .unwrap_or(rest.len());
        let (bulk, after) = rest.split_at(run);
        let identities: Vec<Identity> = bulk.iter().map(Persistable::identity).collect();
        let decisions = identity::decide(&identities, known(tx, &identities).await?);
        write(tx, bulk, &decisions, state).await?;
        done.extend(outcomes(decisions));
        rest = after;
    }
    Ok(done)
}

impl Store {
    /// Records that a message was dead-lettered (see
    /// [`crate::rejections`]); a second record of the same message (a
    /// redelivery dead-lettered again) replaces the first.
    pub async fn record_rejection(&self, row: &NewRejection<'_>) -> Result<(), PersistError> {
        self.with_connection(self.deadline, async |conn| {
            store::rejections::record(conn, row).await.map_err(classify)
        })
        .await
    }
}

/// What the database holds for the events and aggregates of `batch`.
async fn known(tx: &mut PgConnection, batch: &[Identity]) -> Result<Known, PersistError> {
    let event_ids: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    let ids_of = |domain: Domain| -> Vec<&str> {
        batch
            .iter()
            .filter(|e| e.domain == domain)
            .map(|e| e.aggregate_id.as_str())
            .collect()
    };
    let mut known = Known::default();
    for event in store::write::events(tx, &event_ids)
        .await
        .map_err(classify)?
    {
        // Only this consumer writes the event store, with the types of the
        // contract: another type is a store that is not ours to decide on.
        let domain = Domain::of_event_type(&event.event_type).ok_or_else(|| {
            PersistError::permanent(format!(
                "event {} is stored with the unknown type {:?}",
                event.event_id, event.event_type
            ))
        })?;
        known.events.insert(
            event.event_id,
            (domain, event.aggregate_id, event.fingerprint),
        );
    }
    let orders = ids_of(Domain::Orders);
    if !orders.is_empty() {
        for (id, fingerprint) in store::write::orders(tx, &orders).await.map_err(classify)? {
            known.aggregates.insert((Domain::Orders, id), fingerprint);
        }
    }
    let users = ids_of(Domain::Users);
    if !users.is_empty() {
        for (id, fingerprint) in store::write::users(tx, &users).await.map_err(classify)? {
            known.aggregates.insert((Domain::Users, id), fingerprint);
        }
    }
    Ok(known)
}

/// Writes the creations and users of `batch` decided [`Decision::Store`],
/// with the first state of each order created.
async fn write(
    tx: &mut PgConnection,
    batch: &[Persistable<'_>],
    decisions: &[Decision],
    state: &StateTopic,
) -> Result<(), PersistError> {
    let mut events = EventRows::default();
    let mut orders = OrderRows::default();
    let mut items = ItemRows::default();
    let mut users = UserRows::default();
    let mut states = Vec::new();
    for (p, decision) in batch.iter().zip(decisions) {
        if *decision != Decision::Store {
            continue;
        }
        let fingerprint = p.decoded.fingerprint.as_str();
        match &p.decoded.event {
            DomainEvent::Order(o) => {
                events.push(p, Some(1))?;
                orders.push(o, fingerprint)?;
                items.push(o)?;
                states.push(state.row(&apply::creation_state(o))?);
            }
            DomainEvent::User(u) => {
                events.push(p, None)?;
                users.push(u, fingerprint)?;
            }
            DomainEvent::Change(_) => {
                return Err(PersistError::permanent(
                    "an order change is applied on its own, not written in bulk",
                ))
            }
        }
    }
    events.insert(tx).await?;
    orders.insert(tx).await?;
    items.insert(tx).await?;
    users.insert(tx).await?;
    state.insert(tx, &states).await
}

fn outcomes(decisions: Vec<Decision>) -> Vec<Outcome> {
    decisions
        .into_iter()
        .map(|d| match d {
            Decision::Store => Outcome::Stored,
            Decision::Duplicate => Outcome::Duplicate,
            Decision::Conflict(c) => Outcome::Conflict(c),
        })
        .collect()
}
