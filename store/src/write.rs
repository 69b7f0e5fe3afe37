//! What the consumer asks before it writes a batch: which of its events,
//! orders and users are stored already, with the fingerprint of the
//! content stored. (The rows themselves go in with `COPY`, in
//! `consumer::rows`: a statement the query macros cannot check.)

use sqlx::PgConnection;
use uuid::Uuid;

/// An event found in the event store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownEvent {
    /// Its id.
    pub event_id: Uuid,
    /// Its `event-type` (its domain, see `contract::Domain::of_event_type`).
    pub event_type: String,
    /// Its order's or user's id.
    pub aggregate_id: String,
    /// The fingerprint of its content (`None` for rows stored before
    /// fingerprints were kept).
    pub fingerprint: Option<String>,
}

/// The events among `ids` that are stored.
pub async fn events(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<KnownEvent>, sqlx::Error> {
    sqlx::query_as!(
        KnownEvent,
        "SELECT event_id, event_type, aggregate_id, content_fingerprint AS fingerprint
         FROM event_store WHERE event_id = ANY($1)",
        ids
    )
    .fetch_all(conn)
    .await
}

/// The orders among `ids` (UUIDs in text) that are stored: each id, in
/// the form the table gives it, and its content's fingerprint.
pub async fn orders(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT order_id::text AS "order_id!", content_fingerprint
           FROM orders WHERE order_id = ANY($1::text[]::uuid[])"#,
        // Borrowed ids, unchecked by the macro (it expects owned text):
        // the batch's ids are not copied for the query.
        ids as &[&str]
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.order_id, r.content_fingerprint))
        .collect())
}

/// The users among `ids` that are stored, with their content's fingerprint.
pub async fn users(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<Vec<(String, Option<String>)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT user_id, content_fingerprint FROM users WHERE user_id = ANY($1)",
        ids as &[&str]
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.user_id, r.content_fingerprint))
        .collect())
}

/// What the state machine needs of a stored order, read under the row's
/// lock (`FOR UPDATE`): one change of an order at a time, whichever
/// consumer applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedOrder {
    /// Its status, as stored.
    pub status: String,
    /// Its version.
    pub version: i32,
    /// Its total, as PostgreSQL writes the number.
    pub total: String,
    /// Its currency.
    pub currency: String,
    /// When its latest applied event was accepted: the latest change's,
    /// else the creation's.
    pub latest_at: chrono::DateTime<chrono::Utc>,
}

/// Locks the order `order_id` for the transaction `conn` is in, and reads
/// what the state machine needs of it; `None` when it is not stored.
pub async fn lock_order(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Option<LockedOrder>, sqlx::Error> {
    sqlx::query_as!(
        LockedOrder,
        r#"SELECT status, version, total::text AS "total!", currency::text AS "currency!",
                  COALESCE(changed_at, occurred_at) AS "latest_at!"
           FROM orders WHERE order_id = $1 FOR UPDATE"#,
        order_id
    )
    .fetch_optional(conn)
    .await
}

/// One stored event of an order, as the event store holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The version it made (1 for a creation stored before versions were
    /// kept).
    pub version: i32,
    /// Its type.
    pub event_type: String,
    /// The event, as the contract writes it in JSON.
    pub payload: serde_json::Value,
}

/// Every stored event of the order `order_id`, in version order.
pub async fn order_events(
    conn: &mut PgConnection,
    order_id: Uuid,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as!(
        StoredEvent,
        r#"SELECT COALESCE(aggregate_version, 1) AS "version!", event_type, payload
           FROM event_store
           WHERE aggregate_id = $1::uuid::text AND event_type LIKE 'order.%'
           ORDER BY 1"#,
        order_id
    )
    .fetch_all(conn)
    .await
}

/// An applied change: the order's new status and version, and the
/// change's data in the column of its kind.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The order.
    pub order_id: Uuid,
    /// Its new status.
    pub status: &'a str,
    /// Its new version.
    pub version: i32,
    /// When the change was accepted.
    pub changed_at: chrono::DateTime<chrono::Utc>,
    /// `payment`, `shipment`, `delivery` or `cancellation`.
    pub kind: &'a str,
    /// The change's data.
    pub data: &'a serde_json::Value,
}

/// Writes `applied` to its order row if the row is at the version before;
/// whether it was (a row locked by [`lock_order`] always is).
pub async fn apply(conn: &mut PgConnection, applied: &Applied<'_>) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE orders SET status = $2, version = $3, changed_at = $4,
             payment = CASE WHEN $5 = 'payment' THEN $6 ELSE payment END,
             shipment = CASE WHEN $5 = 'shipment' THEN $6 ELSE shipment END,
             delivery = CASE WHEN $5 = 'delivery' THEN $6 ELSE delivery END,
             cancellation = CASE WHEN $5 = 'cancellation' THEN $6 ELSE cancellation END
         WHERE order_id = $1 AND version = $3 - 1",
        applied.order_id,
        applied.status,
        applied.version,
        applied.changed_at,
        applied.kind,
        applied.data,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
