//! The ECST model: one Rust type per event, serialised three ways (see
//! [`crate::codec`]). Each event carries everything a consumer needs, with no
//! call back to the producer.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Schema version written by this build for order events. Version 2 added
/// [`OrderEvent::promotion_code`].
pub const ORDER_SCHEMA_VERSION: u32 = 2;
/// Schema version written by this build for user events.
pub const USER_SCHEMA_VERSION: u32 = 1;

/// Most items one order may hold: the readers of every encoding stop past
/// it, and validation refuses more.
pub const MAX_ITEMS: usize = 100;

/// `event_type` of an order created through `POST /orders`.
pub const ORDER_CREATED: &str = "order.created";
/// `event_type` of a user registered through `POST /users`.
pub const USER_REGISTERED: &str = "user.registered";

/// What every event says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventMetadata {
    /// Unique per event; the consumer's event store is keyed by it.
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    /// For example [`ORDER_CREATED`].
    pub event_type: String,
    /// The schema version the writer used.
    pub schema_version: u32,
    /// When the producer accepted the request.
    pub occurred_at: DateTime<Utc>,
    /// Name and version of the writing service.
    pub producer: String,
    /// Ties together every log line and span of one business request.
    pub correlation_id: String,
    /// W3C trace id (32 lowercase hex digits) of the request that caused the event.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// W3C span id (16 lowercase hex digits) of the publishing span.
    #[serde(default)]
    pub span_id: Option<String>,
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    /// First address line.
    pub line1: String,
    /// Optional second address line.
    #[serde(default)]
    pub line2: Option<String>,
    /// City or town.
    pub city: String,
    /// Postal code as written in the country.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
}

/// The customer, in full, as of the time of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The caller's customer id.
    pub id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Shipping address.
    pub address: Address,
}

/// Stock situation of an item when the order was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum InventoryStatus {
    /// Nobody checked; the default, and what an older reader maps a newer status to.
    #[default]
    Unknown,
    /// Available.
    InStock,
    /// Available, but few left.
    LowStock,
    /// Not available now; ships later.
    Backordered,
}

impl InventoryStatus {
    /// The wire name, as in JSON and Avro.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::InStock => "in_stock",
            Self::LowStock => "low_stock",
            Self::Backordered => "backordered",
        }
    }
}

/// One line of an order, in full.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Product name as shown to the customer.
    pub name: String,
    /// Units ordered, at least 1.
    pub quantity: u32,
    /// Exact price of one unit in the order's currency.
    #[serde(with = "crate::money::text")]
    pub unit_price: Decimal,
    /// `quantity * unit_price`.
    #[serde(with = "crate::money::text")]
    pub line_total: Decimal,
    /// Stock situation when the order was taken.
    #[serde(default)]
    pub inventory_status: InventoryStatus,
}

/// Order totals, computed by the producer from the items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of the line totals.
    #[serde(with = "crate::money::text")]
    pub subtotal: Decimal,
    /// What the customer pays.
    #[serde(with = "crate::money::text")]
    pub total: Decimal,
    /// Sum of the quantities.
    pub item_count: u32,
}

/// An order event: the full state of the order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderEvent {
    /// About the event itself.
    pub metadata: EventMetadata,
    /// The Kafka key and the database primary key.
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    /// The customer, in full.
    pub customer: Customer,
    /// The items, in full (never more than [`MAX_ITEMS`]
    /// are read).
    #[serde(deserialize_with = "bounded_items")]
    pub items: Vec<OrderItem>,
    /// Totals.
    pub totals: Totals,
    /// ISO 4217 currency code of every amount in the event.
    pub currency: String,
    /// Added in schema version 2: a promotion code the customer applied.
    #[serde(default)]
    pub promotion_code: Option<String>,
}

/// A user event: the full state of the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEvent {
    /// About the event itself.
    pub metadata: EventMetadata,
    /// The Kafka key and the database primary key.
    pub user_id: String,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Postal address, if the user gave one.
    #[serde(default)]
    pub address: Option<Address>,
}

/// Reads at most [`MAX_ITEMS`] items: the reader stops at
/// the first one past the limit instead of building them all.
pub(crate) fn bounded_items<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<OrderItem>, D::Error> {
    bounded(d, MAX_ITEMS)
}

/// Reads a sequence of at most `limit` elements: the reader stops at the
/// first one past the limit instead of building them all, whatever size
/// the input announces.
pub(crate) fn bounded<'de, D, T>(d: D, limit: usize) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T> {
        limit: usize,
        element: std::marker::PhantomData<T>,
    }
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Bounded<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "a sequence within limit {}", self.limit)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.limit));
            while let Some(element) = seq.next_element()? {
                if out.len() == self.limit {
                    return Err(serde::de::Error::invalid_length(self.limit + 1, &self));
                }
                out.push(element);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded {
        limit,
        element: std::marker::PhantomData,
    })
}

/// UUIDs as their canonical text in every encoding: `uuid`'s own serde impl
/// writes raw bytes to non-human-readable formats such as Avro's.
pub(crate) mod uuid_text {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(id)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text).map_err(|_| D::Error::custom("must be a UUID"))
    }
}
