//! Persisting events: the current state (`orders` + `order_items`, `users`)
//! and the event-store row, in one transaction per batch, with bulk inserts.
//! Idempotent: an event whose id is already in the event store changes
//! nothing, so redelivery is harmless.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::decode::DomainEvent;

/// One event to persist, with where it was read.
#[derive(Debug, Clone, Copy)]
pub struct Persistable<'a> {
    /// The event.
    pub event: &'a DomainEvent,
    /// Its `content-type` header.
    pub content_type: &'a str,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
}

/// What a persist attempt did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Events recorded for the first time.
    pub new: usize,
    /// Events already recorded (redeliveries): nothing changed.
    pub duplicates: usize,
}

/// Why a persist attempt failed; the kind decides retry, DLQ or pause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PersistError {
    /// The database cannot be reached (refused, reset, pool timed out):
    /// maybe an outage for everyone, which the circuit breaker decides.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Worth another try: lock or statement timeout, serialization
    /// conflict, deadlock, resource shortage.
    #[error("transient database error: {0}")]
    Transient(String),
    /// The same data will fail again: constraint violation, bad value.
    #[error("permanent database error: {0}")]
    Permanent(String),
}

impl PersistError {
    /// `dlq-error-class` of this failure.
    pub fn class(&self) -> &'static str {
        match self {
            PersistError::Unavailable(_) => "database_unavailable",
            PersistError::Transient(_) => "database_transient",
            PersistError::Permanent(_) => "database_constraint",
        }
    }
}

/// Sorts a database error by what to do about it (SQLSTATE classes, see the
/// PostgreSQL manual's appendix A).
pub fn classify(error: sqlx::Error) -> PersistError {
    let text = error.to_string();
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => PersistError::Unavailable(text),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                c if c.starts_with("08") => PersistError::Unavailable(text),
                "57P01" | "57P02" | "57P03" => PersistError::Unavailable(text),
                "40001" | "40P01" | "55P03" | "57014" => PersistError::Transient(text),
                c if c.starts_with("53") => PersistError::Transient(text),
                _ => PersistError::Permanent(text),
            }
        }
        sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => PersistError::Unavailable(text),
        _ => PersistError::Permanent(text),
    }
}

/// Writes events to PostgreSQL.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

fn permanent(e: impl std::fmt::Display) -> PersistError {
    PersistError::Permanent(e.to_string())
}

fn small(n: u32, what: &str) -> Result<i32, PersistError> {
    i32::try_from(n).map_err(|_| permanent(format!("{what} {n} is too large")))
}

#[derive(Default)]
struct EventRows {
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    aggregate_id: Vec<String>,
    schema_version: Vec<i32>,
    content_type: Vec<String>,
    payload: Vec<String>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<String>,
    trace_id: Vec<Option<String>>,
}

impl Store {
    /// A store over `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The pool, for readiness checks and tests.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Whether the database answers at all.
    pub async fn probe(&self) -> Result<(), PersistError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(classify)
    }

    /// Persists `batch` in one transaction: all of it, or none of it.
    pub async fn persist(&self, batch: &[Persistable<'_>]) -> Result<Persisted, PersistError> {
        if batch.is_empty() {
            return Ok(Persisted::default());
        }
        let mut rows = EventRows::default();
        for p in batch {
            let meta = p.event.metadata();
            let payload = match p.event {
                DomainEvent::Order(e) => serde_json::to_string(e),
                DomainEvent::User(e) => serde_json::to_string(e),
            }
            .map_err(permanent)?;
            rows.event_id.push(meta.event_id);
            rows.event_type.push(meta.event_type.clone());
            rows.aggregate_id.push(p.event.aggregate_id());
            rows.schema_version
                .push(small(meta.schema_version, "schema_version")?);
            rows.content_type.push(p.content_type.to_owned());
            rows.payload.push(payload);
            rows.topic.push(p.topic.to_owned());
            rows.partition.push(p.partition);
            rows.offset.push(p.offset);
            rows.occurred_at.push(meta.occurred_at);
            rows.correlation_id.push(meta.correlation_id.clone());
            rows.trace_id.push(meta.trace_id.clone());
        }

        let mut tx = self.pool.begin().await.map_err(classify)?;
        let new_events: HashSet<Uuid> = sqlx::query_scalar(
            r#"INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type,
                                        payload, source_topic, source_partition, source_offset,
                                        occurred_at, correlation_id, trace_id)
               SELECT e.event_id, e.event_type, e.aggregate_id, e.schema_version, e.content_type,
                      e.payload::jsonb, e.topic, e.partition, e.off, e.occurred_at, e.correlation_id, e.trace_id
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[],
                           $7::text[], $8::int4[], $9::int8[], $10::timestamptz[], $11::text[], $12::text[])
                    AS e(event_id, event_type, aggregate_id, schema_version, content_type, payload,
                         topic, partition, off, occurred_at, correlation_id, trace_id)
               ON CONFLICT (event_id) DO NOTHING
               RETURNING event_id"#,
        )
        .bind(&rows.event_id)
        .bind(&rows.event_type)
        .bind(&rows.aggregate_id)
        .bind(&rows.schema_version)
        .bind(&rows.content_type)
        .bind(&rows.payload)
        .bind(&rows.topic)
        .bind(&rows.partition)
        .bind(&rows.offset)
        .bind(&rows.occurred_at)
        .bind(&rows.correlation_id)
        .bind(&rows.trace_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?
        .into_iter()
        .collect();

        let fresh: Vec<&DomainEvent> = batch
            .iter()
            .map(|p| p.event)
            .filter(|e| new_events.contains(&e.metadata().event_id))
            .collect();
        insert_orders(&mut tx, &fresh).await?;
        insert_users(&mut tx, &fresh).await?;
        tx.commit().await.map_err(classify)?;
        Ok(Persisted {
            new: new_events.len(),
            duplicates: batch.len() - new_events.len(),
        })
    }
}

async fn insert_orders(
    tx: &mut sqlx::PgConnection,
    events: &[&DomainEvent],
) -> Result<(), PersistError> {
    let orders: Vec<&contract::OrderEvent> = events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::Order(o) => Some(o),
            DomainEvent::User(_) => None,
        })
        .collect();
    if orders.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(orders.len());
    let (mut customer_id, mut name, mut email, mut address) = (vec![], vec![], vec![], vec![]);
    let (mut currency, mut subtotal, mut total, mut count, mut promo) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut event_id, mut version, mut occurred, mut correlation) =
        (vec![], vec![], vec![], vec![]);
    let (mut i_order, mut i_line, mut i_sku, mut i_name) = (vec![], vec![], vec![], vec![]);
    let (mut i_qty, mut i_price, mut i_total, mut i_status): (
        Vec<i32>,
        Vec<Decimal>,
        Vec<Decimal>,
        Vec<&str>,
    ) = (vec![], vec![], vec![], vec![]);
    for o in &orders {
        ids.push(o.order_id);
        customer_id.push(o.customer.id.as_str());
        name.push(o.customer.name.as_str());
        email.push(o.customer.email.as_str());
        address.push(serde_json::to_string(&o.customer.address).map_err(permanent)?);
        currency.push(o.currency.as_str());
        subtotal.push(o.totals.subtotal);
        total.push(o.totals.total);
        count.push(small(o.totals.item_count, "item_count")?);
        promo.push(o.promotion_code.as_deref());
        event_id.push(o.metadata.event_id);
        version.push(small(o.metadata.schema_version, "schema_version")?);
        occurred.push(o.metadata.occurred_at);
        correlation.push(o.metadata.correlation_id.as_str());
        for (line, item) in o.items.iter().enumerate() {
            i_order.push(o.order_id);
            i_line.push(i32::try_from(line).map_err(permanent)?);
            i_sku.push(item.sku.as_str());
            i_name.push(item.name.as_str());
            i_qty.push(small(item.quantity, "quantity")?);
            i_price.push(item.unit_price);
            i_total.push(item.line_total);
            i_status.push(item.inventory_status.as_str());
        }
    }
    // A second, different creation event for an order already stored (a
    // client reusing an order_id) leaves the first one as it is.
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        r#"INSERT INTO orders (order_id, customer_id, customer_name, customer_email, shipping_address,
                               currency, subtotal, total, item_count, promotion_code,
                               event_id, schema_version, occurred_at, correlation_id)
           SELECT o.order_id, o.customer_id, o.customer_name, o.customer_email, o.address::jsonb,
                  o.currency, o.subtotal, o.total, o.item_count, o.promotion_code,
                  o.event_id, o.schema_version, o.occurred_at, o.correlation_id
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                       $7::numeric[], $8::numeric[], $9::int4[], $10::text[], $11::uuid[], $12::int4[],
                       $13::timestamptz[], $14::text[])
                AS o(order_id, customer_id, customer_name, customer_email, address, currency, subtotal,
                     total, item_count, promotion_code, event_id, schema_version, occurred_at, correlation_id)
           ON CONFLICT (order_id) DO NOTHING
           RETURNING order_id"#,
    )
    .bind(&ids)
    .bind(&customer_id)
    .bind(&name)
    .bind(&email)
    .bind(&address)
    .bind(&currency)
    .bind(&subtotal)
    .bind(&total)
    .bind(&count)
    .bind(&promo)
    .bind(&event_id)
    .bind(&version)
    .bind(&occurred)
    .bind(&correlation)
    .fetch_all(&mut *tx)
    .await
    .map_err(classify)?;

    sqlx::query(
        r#"INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price, line_total, inventory_status)
           SELECT i.order_id, i.line_no, i.sku, i.name, i.quantity, i.unit_price, i.line_total, i.status
           FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::int4[], $6::numeric[],
                       $7::numeric[], $8::text[])
                AS i(order_id, line_no, sku, name, quantity, unit_price, line_total, status)
           WHERE i.order_id = ANY($9::uuid[])
           ON CONFLICT (order_id, line_no) DO NOTHING"#,
    )
    .bind(&i_order)
    .bind(&i_line)
    .bind(&i_sku)
    .bind(&i_name)
    .bind(&i_qty)
    .bind(&i_price)
    .bind(&i_total)
    .bind(&i_status)
    .bind(&inserted)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(())
}

async fn insert_users(
    tx: &mut sqlx::PgConnection,
    events: &[&DomainEvent],
) -> Result<(), PersistError> {
    let users: Vec<&contract::UserEvent> = events
        .iter()
        .filter_map(|e| match e {
            DomainEvent::User(u) => Some(u),
            DomainEvent::Order(_) => None,
        })
        .collect();
    if users.is_empty() {
        return Ok(());
    }
    let mut address = Vec::with_capacity(users.len());
    let mut version = Vec::with_capacity(users.len());
    for u in &users {
        address.push(
            u.address
                .as_ref()
                .map(serde_json::to_string)
                .transpose()
                .map_err(permanent)?,
        );
        version.push(small(u.metadata.schema_version, "schema_version")?);
    }
    sqlx::query(
        r#"INSERT INTO users (user_id, name, email, address, event_id, schema_version, occurred_at)
           SELECT u.user_id, u.name, u.email, u.address::jsonb, u.event_id, u.schema_version, u.occurred_at
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::int4[], $7::timestamptz[])
                AS u(user_id, name, email, address, event_id, schema_version, occurred_at)
           ON CONFLICT (user_id) DO NOTHING"#,
    )
    .bind(users.iter().map(|u| u.user_id.as_str()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>())
    .bind(users.iter().map(|u| u.email.as_str()).collect::<Vec<_>>())
    .bind(&address)
    .bind(users.iter().map(|u| u.metadata.event_id).collect::<Vec<_>>())
    .bind(&version)
    .bind(users.iter().map(|u| u.metadata.occurred_at).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(())
}
