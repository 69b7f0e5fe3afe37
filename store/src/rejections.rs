//! The `rejections` table: what became of each message the consumer
//! dead-lettered whose order or user id it could read. The consumer
//! records ([`record`]); the read side and the operator tool read
//! ([`of`], and [`crate::read::find`]'s newest one).

use chrono::{DateTime, Utc};
use contract::dead_letter::{ErrorKind, FailureClass};
use contract::Domain;
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;
use uuid::Uuid;

/// One time a message about an order or user was dead-lettered, as read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rejection {
    /// The event's id, when the message could be read.
    pub event_id: Option<Uuid>,
    /// The event's type (`order.paid`), when the message could be read.
    pub event_type: Option<String>,
    /// `permanent` or `transient` (retried, then given up).
    pub error_kind: ErrorKind,
    /// The failure's class, as in the dead letter's `dlq-error-class`.
    pub error_class: FailureClass,
    /// When it was dead-lettered.
    pub rejected_at: DateTime<Utc>,
    /// The consumer group that dead-lettered it.
    pub consumer_group: String,
    /// Where the message was read.
    pub source_topic: String,
    /// Its partition there.
    pub source_partition: i32,
    /// Its offset there.
    pub source_offset: i64,
    /// The dead-letter topic.
    pub dlq_topic: String,
    /// Its partition there (absent: refused even reduced, passed over).
    pub dlq_partition: Option<i32>,
    /// Its offset there.
    pub dlq_offset: Option<i64>,
}

/// One dead-lettered message to record.
#[derive(Debug, Clone, Copy)]
pub struct NewRejection<'a> {
    /// The consumer group that dead-lettered it.
    pub group: &'a str,
    /// Where it was read.
    pub topic: &'a str,
    /// Its partition there.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The domain of the order or user it is about.
    pub domain: Domain,
    /// The order or user id, in the form the tables hold it.
    pub aggregate_id: &'a str,
    /// The event's id, when the value could be read.
    pub event_id: Option<Uuid>,
    /// The event's type, when the value could be read.
    pub event_type: Option<&'a str>,
    /// Permanent or transient.
    pub kind: ErrorKind,
    /// Which failure.
    pub class: FailureClass,
    /// The DLQ topic.
    pub dlq_topic: &'a str,
    /// Where the DLQ stored it, `(partition, offset)` (`None`: passed over).
    pub dlq_at: Option<(i32, i64)>,
}

/// Records `r`. One row per message read (group, topic, partition,
/// offset): dead-lettering the same message again after a redelivery
/// updates its row.
pub async fn record(conn: &mut PgConnection, r: &NewRejection<'_>) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO rejections (consumer_group, source_topic, source_partition,
             source_offset, domain, aggregate_id, event_id, error_kind, error_class,
             dlq_topic, dlq_partition, dlq_offset, event_type)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT (consumer_group, source_topic, source_partition, source_offset)
         DO UPDATE SET error_kind = EXCLUDED.error_kind,
             error_class = EXCLUDED.error_class, dlq_topic = EXCLUDED.dlq_topic,
             dlq_partition = EXCLUDED.dlq_partition, dlq_offset = EXCLUDED.dlq_offset,
             event_type = EXCLUDED.event_type, rejected_at = now()",
        r.group,
        r.topic,
        r.partition,
        r.offset,
        r.domain.resource(),
        r.aggregate_id,
        r.event_id,
        r.kind.as_str(),
        r.class.as_str(),
        r.dlq_topic,
        r.dlq_at.map(|(partition, _)| partition),
        r.dlq_at.map(|(_, offset)| offset),
        r.event_type,
    )
    .execute(conn)
    .await
    .map(drop)
}

/// Every time `id` of `domain` was dead-lettered, oldest first, at most
/// `limit`.
pub async fn of(
    conn: &mut PgConnection,
    domain: Domain,
    id: &str,
    limit: i64,
) -> Result<Vec<Rejection>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT event_id, event_type, error_kind, error_class, rejected_at, consumer_group,
                source_topic, source_partition, source_offset, dlq_topic, dlq_partition,
                dlq_offset
         FROM rejections WHERE domain = $1 AND aggregate_id = $2
         ORDER BY rejected_at, source_offset LIMIT $3",
        domain.resource(),
        id,
        limit,
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            Ok(Rejection {
                event_id: row.event_id,
                event_type: row.event_type,
                error_kind: named(&row.error_kind)?,
                error_class: named(&row.error_class)?,
                rejected_at: row.rejected_at,
                consumer_group: row.consumer_group,
                source_topic: row.source_topic,
                source_partition: row.source_partition,
                source_offset: row.source_offset,
                dlq_topic: row.dlq_topic,
                dlq_partition: row.dlq_partition,
                dlq_offset: row.dlq_offset,
            })
        })
        .collect()
}

/// A stored kind or class: one this build does not know is an error,
/// never passed over.
pub(crate) fn named<T>(stored: &str) -> Result<T, sqlx::Error>
where
    T: std::str::FromStr<Err = contract::dead_letter::UnknownName>,
{
    stored.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
