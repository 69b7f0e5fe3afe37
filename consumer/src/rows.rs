//! The bulk writes: each table's rows encoded in `COPY`'s text format as
//! the batch is read ([`crate::copy`]), then sent with one `COPY … FROM
//! STDIN` per table, the cheapest way to hand PostgreSQL many rows. Only
//! events [`crate::identity::decide`] found new are written; one stored
//! already (before the batch, or meanwhile by another writer: a member
//! during a rebalance) fails the whole `COPY` with a unique violation, and
//! the batch is decided again or retried (see [`crate::persist`]). Each
//! `COPY` answers how many rows it took, and anything but all of them fails
//! the batch.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use contract::{OrderEvent, UserEvent};
use sqlx::PgConnection;

use crate::copy::CopyRows;
use crate::persistable::{written, PersistError, PersistErrorKind, Persistable};

/// A `u32` of the contract as a PostgreSQL `integer`.
fn integer(n: u32, what: &'static str) -> Result<i32, PersistError> {
    i32::try_from(n).map_err(|_| PersistError::permanent(format!("{what} {n} is too large")))
}

/// A time as PostgreSQL reads it, to the microsecond it keeps (cut, not
/// rounded, as a bound parameter would be), formatted as it is written.
fn timestamp(at: &DateTime<Utc>) -> impl Display + '_ {
    at.format("%Y-%m-%dT%H:%M:%S%.6fZ")
}

/// The server took fewer or more rows than were sent: never expected of a
/// `COPY`, so the batch is not taken as written.
#[derive(Debug, thiserror::Error)]
#[error("{statement}: the server took {taken} of {sent} rows")]
struct RowsNotTaken {
    statement: &'static str,
    taken: u64,
    sent: usize,
}

/// Sends `rows` with `statement` and checks the server took every one.
async fn copy_in(
    tx: &mut PgConnection,
    statement: &'static str,
    rows: &CopyRows,
) -> Result<(), PersistError> {
    if rows.rows() == 0 {
        return Ok(());
    }
    let mut copy = tx.copy_in_raw(statement).await.map_err(written)?;
    copy.send(rows.data()).await.map_err(written)?;
    let taken = copy.finish().await.map_err(written)?;
    if usize::try_from(taken).ok() != Some(rows.rows()) {
        return Err(PersistError::new(
            PersistErrorKind::Transient,
            RowsNotTaken {
                statement,
                taken,
                sent: rows.rows(),
            },
        ));
    }
    Ok(())
}

const COPY_EVENTS: &str = "COPY event_store (event_id, event_type, aggregate_id, schema_version, \
     content_type, payload, source_topic, source_partition, source_offset, occurred_at, \
     correlation_id, trace_id, content_fingerprint, aggregate_version) FROM STDIN";

/// Rows of `event_store`.
#[derive(Default)]
pub struct EventRows(CopyRows);

impl EventRows {
    /// Adds the row of `p`, which makes `version` of its order (`None`:
    /// not an order event).
    pub fn push(
        &mut self,
        p: &Persistable<'_>,
        aggregate_version: Option<u32>,
    ) -> Result<(), PersistError> {
        let event = &p.decoded.event;
        let meta = event.metadata();
        let version = integer(meta.schema_version, "schema_version")?;
        let aggregate_version = aggregate_version
            .map(|v| integer(v, "aggregate_version"))
            .transpose()?;
        self.0.row(|r| {
            r.field(meta.event_id)
                .field(&meta.event_type)
                .field(event.aggregate_id())
                .field(version)
                .field(p.decoded.format.content_type())
                .json(event)
                .map_err(PersistError::permanent)?
                .field(p.topic)
                .field(p.partition)
                .field(p.offset)
                .field(timestamp(&meta.occurred_at))
                .field(&meta.correlation_id)
                .optional(meta.trace_id.as_deref())
                .field(p.decoded.fingerprint.as_str())
                .optional(aggregate_version);
            Ok(())
        })
    }

    /// Writes the rows, every one or none.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), PersistError> {
        copy_in(tx, COPY_EVENTS, &self.0).await
    }
}

const COPY_ORDERS: &str = "COPY orders (order_id, customer_id, customer_name, customer_email, \
     shipping_address, currency, subtotal, total, item_count, promotion_code, event_id, \
     schema_version, occurred_at, correlation_id, content_fingerprint) FROM STDIN";

/// Rows of `orders`.
#[derive(Default)]
pub struct OrderRows(CopyRows);

impl OrderRows {
    /// Adds the row of `o`.
    pub fn push(&mut self, o: &OrderEvent, fingerprint: &str) -> Result<(), PersistError> {
        let item_count = integer(o.totals.item_count, "item_count")?;
        let version = integer(o.metadata.schema_version, "schema_version")?;
        self.0.row(|r| {
            r.field(o.order_id)
                .field(&o.customer.id)
                .field(&o.customer.name)
                .field(&o.customer.email)
                .json(&o.customer.address)
                .map_err(PersistError::permanent)?
                .field(&o.currency)
                .field(o.totals.subtotal)
                .field(o.totals.total)
                .field(item_count)
                .optional(o.promotion_code.as_deref())
                .field(o.metadata.event_id)
                .field(version)
                .field(timestamp(&o.metadata.occurred_at))
                .field(&o.metadata.correlation_id)
                .field(fingerprint);
            Ok(())
        })
    }

    /// Writes the rows, every one or none.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), PersistError> {
        copy_in(tx, COPY_ORDERS, &self.0).await
    }
}

const COPY_ITEMS: &str = "COPY order_items (order_id, line_no, sku, name, quantity, unit_price, \
     line_total, inventory_status) FROM STDIN";

/// Rows of `order_items`.
#[derive(Default)]
pub struct ItemRows(CopyRows);

impl ItemRows {
    /// Adds the rows of the items of `o`.
    pub fn push(&mut self, o: &OrderEvent) -> Result<(), PersistError> {
        for (line, item) in o.items.iter().enumerate() {
            let line = i32::try_from(line).map_err(PersistError::permanent)?;
            let quantity = integer(item.quantity, "quantity")?;
            self.0.row(|r| {
                r.field(o.order_id)
                    .field(line)
                    .field(&item.sku)
                    .field(&item.name)
                    .field(quantity)
                    .field(item.unit_price)
                    .field(item.line_total)
                    .field(item.inventory_status.as_str());
                Ok::<_, PersistError>(())
            })?;
        }
        Ok(())
    }

    /// Writes the rows, every one or none.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), PersistError> {
        copy_in(tx, COPY_ITEMS, &self.0).await
    }
}

const COPY_USERS: &str = "COPY users (user_id, name, email, address, event_id, schema_version, \
     occurred_at, content_fingerprint) FROM STDIN";

/// Rows of `users`.
#[derive(Default)]
pub struct UserRows(CopyRows);

impl UserRows {
    /// Adds the row of `u`.
    pub fn push(&mut self, u: &UserEvent, fingerprint: &str) -> Result<(), PersistError> {
        let version = integer(u.metadata.schema_version, "schema_version")?;
        self.0.row(|r| {
            r.field(&u.user_id).field(&u.name).field(&u.email);
            match &u.address {
                Some(address) => r.json(address).map_err(PersistError::permanent)?,
                None => r.optional(None::<&str>),
            }
            .field(u.metadata.event_id)
            .field(version)
            .field(timestamp(&u.metadata.occurred_at))
            .field(fingerprint);
            Ok(())
        })
    }

    /// Writes the rows, every one or none.
    pub async fn insert(&self, tx: &mut PgConnection) -> Result<(), PersistError> {
        copy_in(tx, COPY_USERS, &self.0).await
    }
}
