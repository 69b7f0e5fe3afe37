//! Applying an order change, inside the batch's transaction: the order row
//! locked, the change decided by the state machine ([`crate::lifecycle`]),
//! the order's status and version written with the event-store row in the
//! same transaction, and the order's full state after it put in the
//! outbox, from which the relay publishes it to `orders-state`.
//!
//! Every order's state is published: version 1 at its creation
//! ([`creation_state`], written with the batch that stores it), then one
//! per applied change.

use contract::lifecycle::{OrderState, OrderStatus, ORDER_STATE};
use contract::{EventCodec, EventMetadata, Format, OrderChange, OrderEvent};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgConnection;

use crate::identity::Conflict;
use crate::lifecycle::{self, Current, Refusal};
use crate::persistable::{classify, Outcome, PersistError, PersistErrorKind, Persistable};
use crate::rows::EventRows;

/// Names the writer of the state messages.
const PRODUCER: &str = concat!("consumer/", env!("CARGO_PKG_VERSION"));

/// Where and how order states are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTopic {
    /// `ORDERS_STATE_TOPIC`.
    pub topic: String,
    /// The encoding of the state messages.
    pub format: Format,
}

impl Default for StateTopic {
    fn default() -> Self {
        Self {
            topic: contract::topics::ORDERS_STATE.to_owned(),
            format: Format::Json,
        }
    }
}

/// One outbox row of a state, ready to insert.
#[derive(Debug, Clone)]
pub struct StateRow {
    key: String,
    headers: Value,
    value: Vec<u8>,
}

impl StateTopic {
    /// The outbox row of `state`.
    pub fn row(&self, state: &OrderState) -> Result<StateRow, PersistError> {
        let value = state.encode(self.format).map_err(PersistError::permanent)?;
        let meta = &state.metadata;
        let mut headers = vec![
            json!([contract::headers::CONTENT_TYPE, self.format.content_type()]),
            json!([
                contract::headers::SCHEMA_VERSION,
                meta.schema_version.to_string()
            ]),
            json!([contract::headers::EVENT_TYPE, ORDER_STATE]),
            json!([contract::headers::CORRELATION_ID, meta.correlation_id]),
        ];
        if let (Some(trace), Some(span)) = (&meta.trace_id, &meta.span_id) {
            headers.push(json!([
                contract::headers::TRACEPARENT,
                format!("00-{trace}-{span}-01")
            ]));
        }
        Ok(StateRow {
            key: state.order_id.to_string(),
            headers: Value::Array(headers),
            value,
        })
    }

    /// Puts `rows` in the outbox, in order.
    pub async fn insert(
        &self,
        tx: &mut PgConnection,
        rows: &[StateRow],
    ) -> Result<(), PersistError> {
        if rows.is_empty() {
            return Ok(());
        }
        let new = rows.iter().map(|r| store::outbox::NewRow {
            shard: store::outbox::shard_of(&r.key),
            topic: &self.topic,
            key: &r.key,
            headers: &r.headers,
            value: &r.value,
        });
        store::outbox::insert(tx, new).await.map_err(classify)
    }
}

/// What a state message says about itself, before [`lifecycle::fold`]
/// sets its id, type and time: written by this consumer, in the
/// correlation and trace of the event that made the version.
fn state_metadata(cause: &EventMetadata) -> EventMetadata {
    EventMetadata {
        producer: PRODUCER.to_owned(),
        span_id: None,
        ..cause.clone()
    }
}

/// The state of an order just created (version 1).
pub fn creation_state(order: &OrderEvent) -> OrderState {
    lifecycle::fold(order, &[], state_metadata(&order.metadata))
}

/// Applies `change` (read as `p`) in the transaction `tx` is in.
pub async fn change(
    tx: &mut PgConnection,
    p: &Persistable<'_>,
    change: &OrderChange,
    topic: &StateTopic,
) -> Result<Outcome, PersistError> {
    // The lock first: a second consumer applying the same change (a
    // rebalance) waits here, then finds the event stored below.
    let locked = store::write::lock_order(tx, change.order_id)
        .await
        .map_err(classify)?;
    if let Some(again) = already_stored(tx, p, change).await? {
        return Ok(again);
    }
    let Some(locked) = locked else {
        return Ok(Outcome::Refused(Refusal::UnknownOrder));
    };
    let (status, version) = match lifecycle::next(&current(locked)?, change, p.replayed) {
        Ok(next) => next,
        Err(refusal) => return Ok(Outcome::Refused(refusal)),
    };
    write(tx, change, status, version).await?;
    let mut events = EventRows::default();
    events.push(p, Some(version))?;
    events.insert(tx).await?;
    let state = stored_state(tx, change).await?;
    if state.version != version || state.status != status {
        return Err(PersistError::permanent(format!(
            "the stored events of order {} add up to version {} ({}), not {version} ({status})",
            change.order_id, state.version, state.status
        )));
    }
    topic.insert(tx, &[topic.row(&state)?]).await?;
    Ok(Outcome::Stored)
}

/// What to answer for a change whose event id is stored: a redelivery
/// (the same change) or a conflict; `None` when it is not stored.
async fn already_stored(
    tx: &mut PgConnection,
    p: &Persistable<'_>,
    change: &OrderChange,
) -> Result<Option<Outcome>, PersistError> {
    let stored = store::write::events(tx, &[change.metadata.event_id])
        .await
        .map_err(classify)?;
    Ok(stored.first().map(|stored| {
        let same = stored.aggregate_id == change.order_id.to_string()
            && stored.event_type == change.change.event_type()
            && stored
                .fingerprint
                .as_deref()
                .is_none_or(|f| f == p.decoded.fingerprint.as_str());
        if same {
            Outcome::Duplicate
        } else {
            Outcome::Conflict(Conflict::EventIdReused)
        }
    }))
}

/// Writes the order's new `status` and `version` and the change's data to
/// its row (locked by this transaction).
async fn write(
    tx: &mut PgConnection,
    change: &OrderChange,
    status: OrderStatus,
    version: u32,
) -> Result<(), PersistError> {
    let mut tagged = serde_json::to_value(&change.change).map_err(PersistError::permanent)?;
    // The contract writes a change tagged by its name: `{"payment": {...}}`.
    let data = tagged
        .get_mut(change.change.name())
        .map(serde_json::Value::take)
        .ok_or_else(|| {
            PersistError::permanent(format!(
                "a {} is not written under its name",
                change.change.name()
            ))
        })?;
    let applied = store::write::Applied {
        order_id: change.order_id,
        status: status.as_str(),
        version: i32::try_from(version).map_err(PersistError::permanent)?,
        changed_at: change.metadata.occurred_at,
        kind: change.change.name(),
        data: &data,
    };
    if store::write::apply(tx, &applied).await.map_err(classify)? {
        Ok(())
    } else {
        // The row is locked by this transaction: never expected.
        Err(PersistError::new(
            PersistErrorKind::Transient,
            "the order's version moved under its lock",
        ))
    }
}

/// The stored order as the machine sees it.
fn current(locked: store::write::LockedOrder) -> Result<Current, PersistError> {
    Ok(Current {
        status: locked.status.parse().map_err(PersistError::permanent)?,
        version: u32::try_from(locked.version).map_err(PersistError::permanent)?,
        total: locked
            .total
            .parse::<Decimal>()
            .map_err(PersistError::permanent)?,
        currency: locked.currency.trim().to_owned(),
        latest_at: locked.latest_at,
    })
}

/// The order's state as its stored events (this change's included) add
/// up to.
async fn stored_state(
    tx: &mut PgConnection,
    change: &OrderChange,
) -> Result<OrderState, PersistError> {
    let events = store::write::order_events(tx, change.order_id)
        .await
        .map_err(classify)?;
    let mut events = events.into_iter();
    let creation: OrderEvent = match events.next() {
        Some(first) if first.event_type == contract::model::ORDER_CREATED => {
            serde_json::from_value(first.payload).map_err(PersistError::permanent)?
        }
        _ => {
            return Err(PersistError::permanent(format!(
                "order {} has no stored creation first",
                change.order_id
            )))
        }
    };
    let changes = events
        .map(|e| serde_json::from_value::<OrderChange>(e.payload))
        .collect::<Result<Vec<_>, _>>()
        .map_err(PersistError::permanent)?;
    Ok(lifecycle::fold(
        &creation,
        &changes,
        state_metadata(&change.metadata),
    ))
}
