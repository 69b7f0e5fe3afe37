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
