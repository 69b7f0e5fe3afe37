//! The read model: what the database says of one order or user, its
//! stored state (for an order, its status, version and history too), the
//! newest record of it being dead-lettered, its events (for an order, each
//! change with what became of it: [`order_events`]); and the status that
//! follows, with what the id itself tells (see [`contract::ids`]). Shared
//! by the read side's HTTP API and the operator tool.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

use contract::lifecycle::{HistoryEntry, OrderStatus};
use contract::Domain;

use crate::rejections::{named, Rejection};

/// How far ahead of this clock a server-assigned id may be and still count
/// as just accepted (the producer's clock may run ahead of ours).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The stored state of an order or user.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The event it was stored from.
    pub event_id: Uuid,
    /// When the consumer stored it.
    pub persisted_at: DateTime<Utc>,
    /// The order (customer, items, totals) or user, as stored.
    pub body: Value,
    /// The fingerprint of the content stored (`None` for rows stored before
    /// fingerprints were kept).
    pub fingerprint: Option<String>,
    /// An order's life since its creation (`None` for a user). The body
    /// holds it too: `status`, `version`, `changed_at`, each change's data
    /// (`payment`, `shipment`, `delivery`, `cancellation`) and `history`.
    pub lifecycle: Option<Lifecycle>,
}

/// Where an order is in its life, read with its row (one snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    /// Its status.
    pub status: OrderStatus,
    /// 1 at creation, one more per applied change: its `ETag`.
    pub version: u32,
    /// When the latest applied change was accepted (`None`: none yet).
    pub changed_at: Option<DateTime<Utc>>,
    /// Each applied event, its creation first, in version order.
    pub history: Vec<HistoryEntry>,
}

/// What the database holds of one id, read in one statement (one snapshot).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Found {
    /// Its stored state.
    pub record: Option<Record>,
    /// The newest time it was dead-lettered.
    pub rejection: Option<Rejection>,
}

/// One event of the event store.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct StoredEvent {
    /// The event's id.
    pub event_id: Uuid,
    /// Such as `order.created`.
    #[schema(example = "order.created")]
    pub event_type: String,
    /// Its schema version.
    pub schema_version: i32,
    /// The encoding it arrived in.
    #[schema(example = "application/json")]
    pub content_type: String,
    /// When it happened (the producer's clock).
    pub occurred_at: DateTime<Utc>,
    /// When the consumer stored it.
    pub recorded_at: DateTime<Utc>,
    /// The request's correlation id.
    pub correlation_id: String,
    /// Its W3C trace id.
    pub trace_id: Option<String>,
    /// Where it was read: topic.
    pub source_topic: String,
    /// Partition.
    pub source_partition: i32,
    /// Offset.
    pub source_offset: i64,
    /// The event as stored.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// `$1`: the order id; `$2`: the order event types (see
/// [`order_event_types`]).
const ORDER: &str = "
SELECT o.event_id, o.persisted_at, o.content_fingerprint,
       o.status AS order_status, o.version AS order_version, o.changed_at, h.history,
       CASE WHEN o.order_id IS NULL THEN NULL ELSE jsonb_build_object(
           'order_id', o.order_id,
           'customer', jsonb_build_object('id', o.customer_id, 'name', o.customer_name,
                                          'email', o.customer_email,
                                          'address', o.shipping_address),
           'items', COALESCE((
               SELECT jsonb_agg(jsonb_build_object(
                          'sku', i.sku, 'name', i.name, 'quantity', i.quantity,
                          'unit_price', i.unit_price::text, 'line_total', i.line_total::text,
                          'inventory_status', i.inventory_status) ORDER BY i.line_no)
               FROM order_items i WHERE i.order_id = o.order_id), '[]'::jsonb),
           'currency', o.currency,
           'totals', jsonb_build_object('subtotal', o.subtotal::text, 'total', o.total::text,
                                        'item_count', o.item_count),
           'promotion_code', o.promotion_code,
           'occurred_at', o.occurred_at,
           'correlation_id', o.correlation_id,
           'schema_version', o.schema_version,
           'status', o.status,
           'version', o.version,
           'changed_at', o.changed_at,
           'payment', o.payment,
           'shipment', o.shipment,
           'delivery', o.delivery,
           'cancellation', o.cancellation) END AS body,
       r.event_id AS r_event_id, r.event_type AS r_event_type, r.error_kind, r.error_class, r.rejected_at, r.consumer_group,
       r.source_topic, r.source_partition, r.source_offset, r.dlq_topic, r.dlq_partition,
       r.dlq_offset
FROM (SELECT 1) AS one
LEFT JOIN orders o ON o.order_id = $1::uuid
LEFT JOIN LATERAL (
    SELECT jsonb_agg(jsonb_build_object(
               'version', COALESCE(e.aggregate_version, 1), 'event_id', e.event_id,
               'event_type', e.event_type, 'occurred_at', e.occurred_at)
               ORDER BY COALESCE(e.aggregate_version, 1), e.stored_seq) AS history
    FROM event_store e
    WHERE o.order_id IS NOT NULL AND e.aggregate_id = $1 AND e.event_type = ANY($2)) h ON true
LEFT JOIN LATERAL (
    SELECT * FROM rejections WHERE domain = 'orders' AND aggregate_id = $1
    ORDER BY rejected_at DESC LIMIT 1) r ON true";

const USER: &str = "
SELECT u.event_id, u.persisted_at, u.content_fingerprint,
       NULL::text AS order_status, NULL::integer AS order_version,
       NULL::timestamptz AS changed_at, NULL::jsonb AS history,
       CASE WHEN u.user_id IS NULL THEN NULL ELSE jsonb_build_object(
           'user_id', u.user_id, 'name', u.name, 'email', u.email, 'address', u.address,
           'occurred_at', u.occurred_at, 'schema_version', u.schema_version) END AS body,
       r.event_id AS r_event_id, r.event_type AS r_event_type, r.error_kind, r.error_class, r.rejected_at, r.consumer_group,
       r.source_topic, r.source_partition, r.source_offset, r.dlq_topic, r.dlq_partition,
       r.dlq_offset
FROM (SELECT 1) AS one
LEFT JOIN users u ON u.user_id = $1
LEFT JOIN LATERAL (
    SELECT * FROM rejections WHERE domain = 'users' AND aggregate_id = $1
    ORDER BY rejected_at DESC LIMIT 1) r ON true";

#[derive(sqlx::FromRow)]
struct FoundRow {
    event_id: Option<Uuid>,
    persisted_at: Option<DateTime<Utc>>,
    content_fingerprint: Option<String>,
    order_status: Option<String>,
    order_version: Option<i32>,
    changed_at: Option<DateTime<Utc>>,
    history: Option<Value>,
    body: Option<Value>,
    r_event_id: Option<Uuid>,
    r_event_type: Option<String>,
    error_kind: Option<String>,
    error_class: Option<String>,
    rejected_at: Option<DateTime<Utc>>,
    consumer_group: Option<String>,
    source_topic: Option<String>,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    dlq_topic: Option<String>,
    dlq_partition: Option<i32>,
    dlq_offset: Option<i64>,
}

impl FoundRow {
    /// The row as found; a rejection whose kind or class this build does
    /// not know is an error, never passed over.
    fn into_found(self) -> Result<Found, sqlx::Error> {
        let record = match (self.event_id, self.persisted_at, self.body) {
            (Some(event_id), Some(persisted_at), Some(mut body)) => {
                let lifecycle = match (self.order_status, self.order_version) {
                    (Some(status), Some(version)) => Some(Lifecycle {
                        status: status.parse().map_err(decode)?,
                        version: u32::try_from(version).map_err(decode)?,
                        changed_at: self.changed_at,
                        history: history(self.history)?,
                    }),
                    _ => None,
                };
                if let (Some(l), Value::Object(fields)) = (&lifecycle, &mut body) {
                    fields.insert(
                        "history".to_owned(),
                        serde_json::to_value(&l.history).map_err(decode)?,
                    );
                }
                Some(Record {
                    event_id,
                    persisted_at,
                    body,
                    fingerprint: self.content_fingerprint,
                    lifecycle,
                })
            }
            _ => None,
        };
        let (Some(kind), Some(class)) = (self.error_kind, self.error_class) else {
            return Ok(Found {
                record,
                rejection: None,
            });
        };
        let error_kind = named(&kind)?;
        let error_class = named(&class)?;
        let rejection = (|| {
            Some(Rejection {
                event_id: self.r_event_id,
                event_type: self.r_event_type,
                error_kind,
                error_class,
                rejected_at: self.rejected_at?,
                consumer_group: self.consumer_group?,
                source_topic: self.source_topic?,
                source_partition: self.source_partition?,
                source_offset: self.source_offset?,
                dlq_topic: self.dlq_topic?,
                dlq_partition: self.dlq_partition,
                dlq_offset: self.dlq_offset,
            })
        })();
        Ok(Found { record, rejection })
    }
}

/// A value the read model cannot take: an error, never passed over.
fn decode(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// One applied event of an order's history, as the statement gives it.
#[derive(serde::Deserialize)]
struct HistoryRow {
    version: u32,
    event_id: Uuid,
    event_type: String,
    occurred_at: DateTime<Utc>,
}

/// An event type that is not one of an order's.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not an order event type")]
struct NotAnOrderEvent(String);

/// The history as the statement aggregates it, each step's status the one
/// its event type brings the order to.
fn history(aggregated: Option<Value>) -> Result<Vec<HistoryEntry>, sqlx::Error> {
    let Some(aggregated) = aggregated else {
        return Ok(Vec::new());
    };
    let rows: Vec<HistoryRow> = serde_json::from_value(aggregated).map_err(decode)?;
    rows.into_iter()
        .map(|row| {
            let status = OrderStatus::of_event_type(&row.event_type)
                .ok_or_else(|| decode(NotAnOrderEvent(row.event_type.clone())))?;
            Ok(HistoryEntry {
                version: row.version,
                status,
                event_id: row.event_id,
                event_type: row.event_type,
                occurred_at: row.occurred_at,
            })
        })
        .collect()
}

/// The event types of an order's life, its creation's first: the rows of
/// the event store that make its history.
pub fn order_event_types() -> [&'static str; OrderStatus::ALL.len()] {
    OrderStatus::ALL.map(OrderStatus::event_type)
}

/// What the database holds of `id` (in the form [`contract::ids::parse`]
/// gives) of `domain`.
pub async fn find(conn: &mut PgConnection, domain: Domain, id: &str) -> Result<Found, sqlx::Error> {
    let types = order_event_types();
    let query = match domain {
        Domain::Orders => sqlx::query_as(ORDER).bind(id).bind(types.as_slice()),
        Domain::Users => sqlx::query_as(USER).bind(id),
    };
    let row: FoundRow = query.fetch_one(conn).await?;
    row.into_found()
}

/// What a client holding an order's `ETag` needs to know it is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderVersion {
    /// The stored version.
    pub version: u32,
    /// The fingerprint of its creation's content.
    pub fingerprint: Option<String>,
}

/// The stored version of order `id`, read alone (an index lookup): for
/// answering a client that polls with `If-None-Match` without reading the
/// whole order.
pub async fn order_version(
    conn: &mut PgConnection,
    id: &str,
) -> Result<Option<OrderVersion>, sqlx::Error> {
    let row = sqlx::query!(
        "SELECT version, content_fingerprint FROM orders WHERE order_id = $1::text::uuid",
        id
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(OrderVersion {
            version: u32::try_from(row.version).map_err(decode)?,
            fingerprint: row.content_fingerprint,
        })
    })
    .transpose()
}

/// A change of an order the consumer applied: an event of its history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Applied {
    /// The version it made (1: the creation).
    pub version: u32,
    /// The event's id.
    pub event_id: Uuid,
    /// Such as `order.paid`.
    #[schema(example = "order.paid")]
    pub event_type: String,
    /// When it was accepted (the producer's clock).
    pub occurred_at: DateTime<Utc>,
    /// When the consumer applied it.
    pub recorded_at: DateTime<Utc>,
    /// The request's correlation id.
    pub correlation_id: String,
    /// Its W3C trace id.
    pub trace_id: Option<String>,
    /// Where it was read: topic.
    pub source_topic: String,
    /// Partition.
    pub source_partition: i32,
    /// Offset.
    pub source_offset: i64,
}

/// A change of an order (its creation included) and what became of it.
/// A refused one says its class, never its content.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OrderEvent {
    /// Applied: in the event store, and the order's history.
    Applied(Applied),
    /// Dead-lettered (`permanent`: refused for good, such as
    /// `invalid_transition`, `unknown_order`, `version_conflict`;
    /// `transient`: given up after retries, and replayable).
    Refused(Rejection),
}

impl OrderEvent {
    /// When the consumer applied or dead-lettered it.
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            OrderEvent::Applied(a) => a.recorded_at,
            OrderEvent::Refused(r) => r.rejected_at,
        }
    }
}

/// What became of each change of an order, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Timeline {
    /// Applied and refused changes, in the order the consumer decided
    /// them.
    pub events: Vec<OrderEvent>,
    /// Whether some were left out: applied ones past the limit (newest
    /// left out), or refused ones (oldest left out).
    pub truncated: bool,
}

/// What became of each change of order `id`: every applied event and
/// every dead-lettered message about it, oldest first, read in one
/// statement. At most `limit` of each outcome: its first applied events,
/// and its newest refused ones (a client sending changes the machine
/// refuses cannot hide what happened lately).
pub async fn order_events(
    conn: &mut PgConnection,
    id: &str,
    limit: i64,
) -> Result<Timeline, sqlx::Error> {
    let types = order_event_types();
    let rows = sqlx::query_as!(
        DecidedRow,
        r#"SELECT outcome AS "outcome!", version, event_id, event_type, occurred_at,
                  at AS "at!", correlation_id, trace_id, source_topic AS "source_topic!",
                  source_partition AS "source_partition!", source_offset AS "source_offset!",
                  error_kind, error_class, consumer_group, dlq_topic, dlq_partition, dlq_offset
           FROM ((SELECT 'applied' AS outcome, COALESCE(aggregate_version, 1) AS version,
                         event_id, event_type, occurred_at, recorded_at AS at, correlation_id,
                         trace_id, source_topic, source_partition, source_offset,
                         NULL::text AS error_kind, NULL::text AS error_class,
                         NULL::text AS consumer_group, NULL::text AS dlq_topic,
                         NULL::integer AS dlq_partition, NULL::bigint AS dlq_offset
                  FROM event_store WHERE aggregate_id = $1 AND event_type = ANY($2)
                  ORDER BY COALESCE(aggregate_version, 1), stored_seq LIMIT $3::bigint + 1)
                 UNION ALL
                 (SELECT 'refused', NULL, event_id, event_type, NULL, rejected_at, NULL, NULL,
                         source_topic, source_partition, source_offset, error_kind,
                         error_class, consumer_group, dlq_topic, dlq_partition, dlq_offset
                  FROM rejections WHERE domain = 'orders' AND aggregate_id = $1
                  ORDER BY rejected_at DESC, source_offset DESC LIMIT $3::bigint + 1)) AS decided
           ORDER BY at, source_offset"#,
        id,
        types.as_slice() as &[&str],
        limit,
    )
    .fetch_all(conn)
    .await?;
    let events = rows
        .into_iter()
        .map(DecidedRow::into_event)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Timeline::within(
        events,
        usize::try_from(limit).unwrap_or(0),
    ))
}

/// A row of [`order_events`]' statement: an applied event (`outcome`
/// `applied`, the event store's columns) or a refused one (the
/// rejection's).
struct DecidedRow {
    outcome: String,
    version: Option<i32>,
    event_id: Option<Uuid>,
    event_type: Option<String>,
    occurred_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
    correlation_id: Option<String>,
    trace_id: Option<String>,
    source_topic: String,
    source_partition: i32,
    source_offset: i64,
    error_kind: Option<String>,
    error_class: Option<String>,
    consumer_group: Option<String>,
    dlq_topic: Option<String>,
    dlq_partition: Option<i32>,
    dlq_offset: Option<i64>,
}

impl DecidedRow {
    /// The event the row tells of; an error naming a column its kind of
    /// row always has, when it is missing.
    fn into_event(self) -> Result<OrderEvent, sqlx::Error> {
        if self.outcome == "applied" {
            self.applied().map(OrderEvent::Applied)
        } else {
            self.refused().map(OrderEvent::Refused)
        }
    }

    fn applied(self) -> Result<Applied, sqlx::Error> {
        let version = required(self.version, "version")?;
        Ok(Applied {
            version: u32::try_from(version).map_err(decode)?,
            event_id: required(self.event_id, "event_id")?,
            event_type: required(self.event_type, "event_type")?,
            occurred_at: required(self.occurred_at, "occurred_at")?,
            recorded_at: self.at,
            correlation_id: required(self.correlation_id, "correlation_id")?,
            trace_id: self.trace_id,
            source_topic: self.source_topic,
            source_partition: self.source_partition,
            source_offset: self.source_offset,
        })
    }

    fn refused(self) -> Result<Rejection, sqlx::Error> {
        Ok(Rejection {
            event_id: self.event_id,
            event_type: self.event_type,
            error_kind: named(&required(self.error_kind, "error_kind")?)?,
            error_class: named(&required(self.error_class, "error_class")?)?,
            rejected_at: self.at,
            consumer_group: required(self.consumer_group, "consumer_group")?,
            source_topic: self.source_topic,
            source_partition: self.source_partition,
            source_offset: self.source_offset,
            dlq_topic: required(self.dlq_topic, "dlq_topic")?,
            dlq_partition: self.dlq_partition,
            dlq_offset: self.dlq_offset,
        })
    }
}

impl Timeline {
    /// The timeline of `events`, read with at most `limit` + 1 of each
    /// outcome (its first applied ones, its newest refused ones): the one
    /// past the limit, if read, left out (the newest applied one, the
    /// oldest refused one), and `truncated` said.
    fn within(mut events: Vec<OrderEvent>, limit: usize) -> Self {
        let applied = events
            .iter()
            .filter(|e| matches!(e, OrderEvent::Applied(_)))
            .count();
        let refused = events.len() - applied;
        let truncated = applied > limit || refused > limit;
        if applied > limit {
            // The newest applied one read is one past the limit.
            if let Some(last) = events
                .iter()
                .rposition(|e| matches!(e, OrderEvent::Applied(_)))
            {
                events.remove(last);
            }
        }
        if refused > limit {
            // The oldest refused one read is one past the limit.
            if let Some(first) = events
                .iter()
                .position(|e| matches!(e, OrderEvent::Refused(_)))
            {
                events.remove(first);
            }
        }
        Self { events, truncated }
    }
}

/// A column a row of its kind always has.
fn required<T>(value: Option<T>, column: &'static str) -> Result<T, sqlx::Error> {
    value.ok_or_else(|| sqlx::Error::Decode(format!("{column} is missing").into()))
}

/// The events of `id` of the domain's creation type (`order.created`,
/// `user.created`) in the order they were stored, at most `limit`. An
/// order's changes too, with what became of each: [`order_events`].
pub async fn events(
    conn: &mut PgConnection,
    domain: Domain,
    id: &str,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as!(
        StoredEvent,
        "SELECT event_id, event_type, schema_version, content_type, occurred_at, recorded_at,
                correlation_id, trace_id, source_topic, source_partition, source_offset, payload
         FROM event_store WHERE aggregate_id = $1 AND event_type = $2
         ORDER BY stored_seq LIMIT $3",
        id,
        domain.event_type(),
        limit,
    )
    .fetch_all(conn)
    .await
}

/// Whether every table the read model reads is there (a missing one is
/// [`crate::db::Failure::MissingTable`]: the consumer applies the
/// migrations on start-up).
pub async fn probe(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT 1 AS one FROM orders, order_items, users, event_store, rejections LIMIT 0")
        .fetch_optional(conn)
        .await
        .map(drop)
}

/// Why an id is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unknown {
    /// The id carries no acceptance time (the client's own id, or one
    /// derived from an `Idempotency-Key`): it may still be on its way.
    NoAcceptanceTime,
    /// Assigned longer ago than the pending window: never accepted, or the
    /// pipeline is further behind than its lag budget.
    TooOld,
    /// Assigned after now (beyond the allowed clock skew): never accepted.
    FromTheFuture,
}

impl Unknown {
    /// For people: what the answer means.
    pub fn explain(self) -> &'static str {
        match self {
            Unknown::NoAcceptanceTime => {
                "not stored and never dead-lettered; this id (the client's own, or derived from an \
                 Idempotency-Key) carries no acceptance time, so an order on its way also answers \
                 404 until the consumer stores it"
            }
            Unknown::TooOld => {
                "not stored and never dead-lettered, and assigned longer ago than the pending \
                 window: it was never accepted, or the pipeline is further behind than its lag \
                 budget"
            }
            Unknown::FromTheFuture => "no id with this time has been assigned yet",
        }
    }

    /// A stable short name.
    pub fn code(self) -> &'static str {
        match self {
            Unknown::NoAcceptanceTime => "no_acceptance_time",
            Unknown::TooOld => "past_pending_window",
            Unknown::FromTheFuture => "not_assigned_yet",
        }
    }
}

/// Where an order or user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Stored by the consumer (even if some message about it was
    /// dead-lettered: a replay stored it, or a later copy failed).
    Persisted,
    /// Dead-lettered and not stored.
    Rejected,
    /// Accepted recently (its id says when) and not stored yet.
    Pending {
        /// When its id was assigned.
        since: DateTime<Utc>,
    },
    /// Not known.
    Unknown(Unknown),
}

impl Status {
    /// The status of an id assigned at `assigned_at` (if it says), given
    /// what was `found`, at `now`, with a pending window of `window`.
    pub fn of(
        found: &Found,
        assigned_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        window: Duration,
    ) -> Self {
        if found.record.is_some() {
            return Status::Persisted;
        }
        if found.rejection.is_some() {
            return Status::Rejected;
        }
        let Some(since) = assigned_at else {
            return Status::Unknown(Unknown::NoAcceptanceTime);
        };
        let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let skew = chrono::Duration::from_std(CLOCK_SKEW).unwrap_or_default();
        if since > now + skew {
            Status::Unknown(Unknown::FromTheFuture)
        } else if now.signed_duration_since(since) > window {
            Status::Unknown(Unknown::TooOld)
        } else {
            Status::Pending { since }
        }
    }

    /// `persisted`, `rejected`, `pending` or `not_found` (the metric label).
    pub fn label(self) -> &'static str {
        match self {
            Status::Persisted => "persisted",
            Status::Rejected => "rejected",
            Status::Pending { .. } => "pending",
            Status::Unknown(_) => "not_found",
        }
    }
}

/// The status of `id` (as parsed; an order's or a server-assigned user's
/// id is a UUID) at `now`.
pub fn status_of(found: &Found, id: &str, now: DateTime<Utc>, window: Duration) -> Status {
    let assigned_at = id
        .parse::<Uuid>()
        .ok()
        .and_then(|u| contract::ids::assigned_at(&u));
    Status::of(found, assigned_at, now, window)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> Record {
        Record {
            event_id: Uuid::nil(),
            persisted_at: Utc::now(),
            body: Value::Null,
            fingerprint: None,
            lifecycle: None,
        }
    }

    fn rejection() -> Rejection {
        Rejection {
            event_id: None,
            event_type: None,
            error_kind: contract::dead_letter::ErrorKind::Permanent,
            error_class: contract::dead_letter::FailureClass::Decode,
            rejected_at: Utc::now(),
            consumer_group: "g".into(),
            source_topic: "orders".into(),
            source_partition: 0,
            source_offset: 1,
            dlq_topic: "orders-dlq".into(),
            dlq_partition: Some(0),
            dlq_offset: Some(0),
        }
    }

    const WINDOW: Duration = Duration::from_secs(300);

    #[test]
    fn stored_wins_over_rejected_and_rejected_over_pending() {
        let now = Utc::now();
        let both = Found {
            record: Some(record()),
            rejection: Some(rejection()),
        };
        assert_eq!(
            Status::of(&both, Some(now), now, WINDOW),
            Status::Persisted,
            "a replay that stored it turns the answer to persisted"
        );
        let rejected = Found {
            record: None,
            rejection: Some(rejection()),
        };
        assert_eq!(
            Status::of(&rejected, Some(now), now, WINDOW),
            Status::Rejected
        );
        assert_eq!(
            Status::of(&Found::default(), None, now, WINDOW),
            Status::Unknown(Unknown::NoAcceptanceTime)
        );
    }

    #[test]
    fn a_new_order_id_is_pending_until_the_window_passes() {
        let now = Utc::now();
        let id = contract::ids::derive::<Uuid>(
            &contract::ids::KeyDerivation::public(),
            Domain::Orders,
            None,
            None,
        )
        .aggregate;
        let found = Found::default();
        let status = status_of(&found, &id.to_string(), now, WINDOW);
        assert!(matches!(status, Status::Pending { .. }), "{status:?}");
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(
            status_of(&found, &id.to_string(), later, WINDOW),
            Status::Unknown(Unknown::TooOld)
        );
        let keyed = contract::ids::derive::<Uuid>(
            &contract::ids::KeyDerivation::public(),
            Domain::Orders,
            None,
            Some("k"),
        )
        .aggregate;
        assert_eq!(
            status_of(&found, &keyed.to_string(), now, WINDOW),
            Status::Unknown(Unknown::NoAcceptanceTime)
        );
        assert_eq!(
            status_of(&found, "u-42", now, WINDOW),
            Status::Unknown(Unknown::NoAcceptanceTime)
        );
    }

    proptest! {
        /// Whatever time a UUIDv7 claims, an unknown id is pending exactly
        /// when that time lies within the window before now (plus the skew
        /// after it), and the answer never panics.
        #[test]
        fn pending_exactly_within_the_window(offset_ms in -2_000_000_000i64..2_000_000_000i64) {
            let now = Utc::now();
            let claimed = now + chrono::Duration::milliseconds(offset_ms);
            let millis = u64::try_from(claimed.timestamp_millis()).unwrap_or(0);
            let ts = uuid::Timestamp::from_unix(uuid::NoContext, millis / 1000, u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000);
            let id = Uuid::new_v7(ts);
            let status = status_of(&Found::default(), &id.to_string(), now, WINDOW);
            let age_ms = -offset_ms;
            let pending = (-60_000..=300_000).contains(&age_ms);
            // A millisecond of truncation either side of each edge.
            if (age_ms - 300_000).abs() > 2 && (age_ms + 60_000).abs() > 2 {
                prop_assert_eq!(matches!(status, Status::Pending { .. }), pending, "{:?}", status);
            }
        }
    }
}
