//! The bulk writes: one column vector per column, filled event by event,
//! then written with one `INSERT … SELECT FROM UNNEST(…)` per table. Each
//! insert returns what it inserted, so the caller can prove nothing was
//! skipped.

use chrono::{DateTime, Utc};
use contract::{OrderEvent, UserEvent};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::persist::{classify, PersistError, Persistable};

/// A `u32` of the contract as a PostgreSQL `integer`.
fn integer(n: u32, what: &'static str) -> Result<i32, PersistError> {
    i32::try_from(n).map_err(|_| PersistError::permanent(format!("{what} {n} is too large")))
}

fn json(value: &impl serde::Serialize) -> Result<String, PersistError> {
    serde_json::to_string(value).map_err(PersistError::permanent)
}

const INSERT_EVENTS: &str = r#"
    INSERT INTO event_store (event_id, event_type, aggregate_id, schema_version, content_type,
                             payload, source_topic, source_partition, source_offset,
                             occurred_at, correlation_id, trace_id, content_fingerprint)
    SELECT e.event_id, e.event_type, e.aggregate_id, e.schema_version, e.content_type,
           e.payload::jsonb, e.topic, e.partition, e.off, e.occurred_at, e.correlation_id,
           e.trace_id, e.fingerprint
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::text[], $6::text[],
                $7::text[], $8::int4[], $9::int8[], $10::timestamptz[], $11::text[], $12::text[],
                $13::text[])
         AS e(event_id, event_type, aggregate_id, schema_version, content_type, payload,
              topic, partition, off, occurred_at, correlation_id, trace_id, fingerprint)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id"#;

/// Rows of `event_store`.
#[derive(Default)]
pub struct EventRows {
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    aggregate_id: Vec<String>,
    schema_version: Vec<i32>,
    content_type: Vec<&'static str>,
    payload: Vec<String>,
    topic: Vec<String>,
    partition: Vec<i32>,
    offset: Vec<i64>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<String>,
    trace_id: Vec<Option<String>>,
    fingerprint: Vec<String>,
}

impl EventRows {
    /// Adds the row of `p`.
    pub fn push(&mut self, p: &Persistable<'_>) -> Result<(), PersistError> {
        let event = &p.decoded.event;
        let meta = event.metadata();
        self.payload
            .push(event.to_json().map_err(PersistError::permanent)?);
        self.event_id.push(meta.event_id);
        self.event_type.push(meta.event_type.clone());
        self.aggregate_id.push(event.aggregate_id());
        self.schema_version
            .push(integer(meta.schema_version, "schema_version")?);
        self.content_type.push(p.decoded.format.content_type());
        self.topic.push(p.topic.to_owned());
        self.partition.push(p.partition);
        self.offset.push(p.offset);
        self.occurred_at.push(meta.occurred_at);
        self.correlation_id.push(meta.correlation_id.clone());
        self.trace_id.push(meta.trace_id.clone());
        self.fingerprint
            .push(p.decoded.fingerprint.as_str().to_owned());
        Ok(())
    }

    /// Inserts the rows; returns how many were new.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<usize, PersistError> {
        if self.event_id.is_empty() {
            return Ok(0);
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(INSERT_EVENTS)
            .bind(&self.event_id)
            .bind(&self.event_type)
            .bind(&self.aggregate_id)
            .bind(&self.schema_version)
            .bind(&self.content_type)
            .bind(&self.payload)
            .bind(&self.topic)
            .bind(&self.partition)
            .bind(&self.offset)
            .bind(&self.occurred_at)
            .bind(&self.correlation_id)
            .bind(&self.trace_id)
            .bind(&self.fingerprint)
            .fetch_all(tx)
            .await
            .map_err(classify)?;
        Ok(inserted.len())
    }
}

const INSERT_ORDERS: &str = r#"
    INSERT INTO orders (order_id, customer_id, customer_name, customer_email, shipping_address,
                        currency, subtotal, total, item_count, promotion_code,
                        event_id, schema_version, occurred_at, correlation_id, content_fingerprint)
    SELECT o.order_id, o.customer_id, o.customer_name, o.customer_email, o.address::jsonb,
           o.currency, o.subtotal, o.total, o.item_count, o.promotion_code,
           o.event_id, o.schema_version, o.occurred_at, o.correlation_id, o.fingerprint
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::numeric[], $8::numeric[], $9::int4[], $10::text[], $11::uuid[], $12::int4[],
                $13::timestamptz[], $14::text[], $15::text[])
         AS o(order_id, customer_id, customer_name, customer_email, address, currency, subtotal,
              total, item_count, promotion_code, event_id, schema_version, occurred_at,
              correlation_id, fingerprint)
    ON CONFLICT (order_id) DO NOTHING
    RETURNING order_id"#;

/// Rows of `orders`.
#[derive(Default)]
pub struct OrderRows<'a> {
    order_id: Vec<Uuid>,
    customer_id: Vec<&'a str>,
    name: Vec<&'a str>,
    email: Vec<&'a str>,
    address: Vec<String>,
    currency: Vec<&'a str>,
    subtotal: Vec<Decimal>,
    total: Vec<Decimal>,
    item_count: Vec<i32>,
    promotion_code: Vec<Option<&'a str>>,
    event_id: Vec<Uuid>,
    schema_version: Vec<i32>,
    occurred_at: Vec<DateTime<Utc>>,
    correlation_id: Vec<&'a str>,
    fingerprint: Vec<&'a str>,
}

impl<'a> OrderRows<'a> {
    /// Adds the row of `o`.
    pub fn push(&mut self, o: &'a OrderEvent, fingerprint: &'a str) -> Result<(), PersistError> {
        self.order_id.push(o.order_id);
        self.customer_id.push(&o.customer.id);
        self.name.push(&o.customer.name);
        self.email.push(&o.customer.email);
        self.address.push(json(&o.customer.address)?);
        self.currency.push(&o.currency);
        self.subtotal.push(o.totals.subtotal);
        self.total.push(o.totals.total);
        self.item_count
            .push(integer(o.totals.item_count, "item_count")?);
        self.promotion_code.push(o.promotion_code.as_deref());
        self.event_id.push(o.metadata.event_id);
        self.schema_version
            .push(integer(o.metadata.schema_version, "schema_version")?);
        self.occurred_at.push(o.metadata.occurred_at);
        self.correlation_id.push(&o.metadata.correlation_id);
        self.fingerprint.push(fingerprint);
        Ok(())
    }

    /// Inserts the rows; returns how many were new.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<usize, PersistError> {
        if self.order_id.is_empty() {
            return Ok(0);
        }
        let inserted: Vec<Uuid> = sqlx::query_scalar(INSERT_ORDERS)
            .bind(&self.order_id)
            .bind(&self.customer_id)
            .bind(&self.name)
            .bind(&self.email)
            .bind(&self.address)
            .bind(&self.currency)
            .bind(&self.subtotal)
            .bind(&self.total)
            .bind(&self.item_count)
            .bind(&self.promotion_code)
            .bind(&self.event_id)
            .bind(&self.schema_version)
            .bind(&self.occurred_at)
            .bind(&self.correlation_id)
            .bind(&self.fingerprint)
            .fetch_all(tx)
            .await
            .map_err(classify)?;
        Ok(inserted.len())
    }
}

const INSERT_ITEMS: &str = r#"
    INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price, line_total,
                             inventory_status)
    SELECT i.order_id, i.line_no, i.sku, i.name, i.quantity, i.unit_price, i.line_total, i.status
    FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::int4[], $6::numeric[],
                $7::numeric[], $8::text[])
         AS i(order_id, line_no, sku, name, quantity, unit_price, line_total, status)"#;

/// Rows of `order_items`.
#[derive(Default)]
pub struct ItemRows<'a> {
    order_id: Vec<Uuid>,
    line_no: Vec<i32>,
    sku: Vec<&'a str>,
    name: Vec<&'a str>,
    quantity: Vec<i32>,
    unit_price: Vec<Decimal>,
    line_total: Vec<Decimal>,
    status: Vec<&'static str>,
}

impl<'a> ItemRows<'a> {
    /// Adds the rows of the items of `o`.
    pub fn push(&mut self, o: &'a OrderEvent) -> Result<(), PersistError> {
        for (line, item) in o.items.iter().enumerate() {
            self.order_id.push(o.order_id);
            self.line_no
                .push(i32::try_from(line).map_err(PersistError::permanent)?);
            self.sku.push(&item.sku);
            self.name.push(&item.name);
            self.quantity.push(integer(item.quantity, "quantity")?);
            self.unit_price.push(item.unit_price);
            self.line_total.push(item.line_total);
            self.status.push(item.inventory_status.as_str());
        }
        Ok(())
    }

    /// Inserts the rows.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), PersistError> {
        if self.order_id.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_ITEMS)
            .bind(&self.order_id)
            .bind(&self.line_no)
            .bind(&self.sku)
            .bind(&self.name)
            .bind(&self.quantity)
            .bind(&self.unit_price)
            .bind(&self.line_total)
            .bind(&self.status)
            .execute(tx)
            .await
            .map_err(classify)?;
        Ok(())
    }
}

const INSERT_USERS: &str = r#"
    INSERT INTO users (user_id, name, email, address, event_id, schema_version, occurred_at,
                       content_fingerprint)
    SELECT u.user_id, u.name, u.email, u.address::jsonb, u.event_id, u.schema_version,
           u.occurred_at, u.fingerprint
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::int4[],
                $7::timestamptz[], $8::text[])
         AS u(user_id, name, email, address, event_id, schema_version, occurred_at, fingerprint)
    ON CONFLICT (user_id) DO NOTHING
    RETURNING user_id"#;

/// Rows of `users`.
#[derive(Default)]
pub struct UserRows<'a> {
    user_id: Vec<&'a str>,
    name: Vec<&'a str>,
    email: Vec<&'a str>,
    address: Vec<Option<String>>,
    event_id: Vec<Uuid>,
    schema_version: Vec<i32>,
    occurred_at: Vec<DateTime<Utc>>,
    fingerprint: Vec<&'a str>,
}

impl<'a> UserRows<'a> {
    /// Adds the row of `u`.
    pub fn push(&mut self, u: &'a UserEvent, fingerprint: &'a str) -> Result<(), PersistError> {
        self.user_id.push(&u.user_id);
        self.name.push(&u.name);
        self.email.push(&u.email);
        self.address.push(u.address.as_ref().map(json).transpose()?);
        self.event_id.push(u.metadata.event_id);
        self.schema_version
            .push(integer(u.metadata.schema_version, "schema_version")?);
        self.occurred_at.push(u.metadata.occurred_at);
        self.fingerprint.push(fingerprint);
        Ok(())
    }

    /// Inserts the rows; returns how many were new.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<usize, PersistError> {
        if self.user_id.is_empty() {
            return Ok(0);
        }
        let inserted: Vec<String> = sqlx::query_scalar(INSERT_USERS)
            .bind(&self.user_id)
            .bind(&self.name)
            .bind(&self.email)
            .bind(&self.address)
            .bind(&self.event_id)
            .bind(&self.schema_version)
            .bind(&self.occurred_at)
            .bind(&self.fingerprint)
            .fetch_all(tx)
            .await
            .map_err(classify)?;
        Ok(inserted.len())
    }
}
