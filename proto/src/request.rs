//! The bodies of `POST /orders` and `POST /users`, how they are parsed
//! (unknown fields rejected, every error with its path) and how a valid one
//! becomes the full ECST event.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::ids::AggregateId;
use crate::model::{
    Address, Customer, EventMetadata, InventoryStatus, OrderEvent, OrderItem, Totals, UserEvent,
};
use crate::validation::{self, ValidationErrors};

/// A postal address as the API takes it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    /// First address line.
    #[schema(example = "12 St James's Sq")]
    pub line1: String,
    /// Second address line.
    #[serde(default)]
    pub line2: Option<String>,
    /// City or town.
    #[schema(example = "London")]
    pub city: String,
    /// Postal code.
    #[schema(example = "SW1Y 4JH")]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code.
    #[schema(example = "GB")]
    pub country: String,
}

/// The customer placing the order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    /// The caller's customer id.
    #[schema(example = "c-42")]
    pub id: String,
    /// Full name.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// E-mail address.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Shipping address.
    pub address: AddressInput,
}

/// One line of the order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    /// Stock keeping unit.
    #[schema(example = "SKU-1")]
    pub sku: String,
    /// Product name.
    #[schema(example = "Widget")]
    pub name: String,
    /// Units, 1 to 10000.
    #[schema(example = 2)]
    pub quantity: i64,
    /// Exact decimal string, such as "19.99"; never a JSON number.
    #[schema(example = "19.99")]
    pub unit_price: String,
    /// Stock situation the caller knows of; `unknown` when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "in_stock")]
    pub inventory_status: Option<InventoryStatus>,
}

/// Body of `POST /orders`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrderRequest {
    /// Client-chosen order id (a UUID); makes retries map to the same order.
    #[serde(default)]
    pub order_id: Option<String>,
    /// The customer.
    pub customer: CustomerInput,
    /// 1 to 100 items.
    pub items: Vec<ItemInput>,
    /// ISO 4217 code.
    #[schema(example = "EUR")]
    pub currency: String,
    /// Promotion code the customer applied.
    #[serde(default)]
    pub promotion_code: Option<String>,
}

/// Body of `POST /users`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// Client-chosen user id; generated when absent.
    #[serde(default)]
    #[schema(example = "u-42")]
    pub user_id: Option<String>,
    /// Full name.
    #[schema(example = "Ada Lovelace")]
    pub name: String,
    /// E-mail address.
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// Postal address.
    #[serde(default)]
    pub address: Option<AddressInput>,
}

/// The example order of the API's documentation: the body every example,
/// fixture and test starts from.
pub fn example_order() -> serde_json::Value {
    serde_json::json!({
        "customer": {"id": "c-42", "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"line1": "12 St James's Sq", "city": "London",
                                 "postal_code": "SW1Y 4JH", "country": "GB"}},
        "items": [{"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price": "19.99"}],
        "currency": "EUR"
    })
}

/// The example user of the API's documentation.
pub fn example_user() -> serde_json::Value {
    serde_json::json!({
        "user_id": "u-42", "name": "Ada Lovelace", "email": "ada@example.com",
        "address": {"line1": "12 St James's Sq", "city": "London",
                    "postal_code": "SW1Y 4JH", "country": "GB"}
    })
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Not well-formed JSON (HTTP 400).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// Well-formed, but of the wrong shape or against a rule (HTTP 422).
    #[error("invalid request: {0}")]
    Invalid(ValidationErrors),
}

/// Parses a JSON body: syntax errors are [`RequestError::Malformed`]; a wrong
/// type, a missing or an unknown field is [`RequestError::Invalid`] at its path.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    // Tracking the path copies every key; only a refused body needs it, so
    // parse plainly first and parse again, tracked, to explain a failure.
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) => parse_json_tracked(body),
    }
}

/// [`parse_json`] with the path of the failure tracked.
fn parse_json_tracked<T: DeserializeOwned>(body: &[u8]) -> Result<T, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match parsed {
        Ok(value) => value,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let mut errors = ValidationErrors::default();
                    errors.add(json_path(&path), data_reason(&inner));
                    RequestError::Invalid(errors)
                }
                _ => RequestError::Malformed(inner.to_string()),
            });
        }
    };
    de.end()
        .map_err(|e| RequestError::Malformed(e.to_string()))?;
    Ok(value)
}

/// serde's path of the document itself is `.`; callers read `$` better.
fn json_path(path: &str) -> String {
    if path == "." {
        "$".to_owned()
    } else {
        path.to_owned()
    }
}

/// serde_json appends " at line L column C"; the path already says where.
fn data_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A request body that becomes an event: `POST /orders`, `POST /users`.
pub trait Intake: DeserializeOwned {
    /// The type of the id of its order or user.
    type Id: AggregateId;
    /// The event it becomes.
    type Event: Event;

    /// Applies every rule (the same business rules the consumer applies to
    /// the event, see [`validation`]); returns all violations at once.
    fn validate(&self) -> Result<Valid<Self>, ValidationErrors>;

    /// The event `draft` with its id and metadata.
    fn finish(draft: Self::Event, id: Self::Id, metadata: EventMetadata) -> Self::Event;
}

/// A valid request: the id its client chose, if any, and the event it
/// becomes once it has its ids and metadata.
pub struct Valid<R: Intake> {
    /// The order or user id the client chose.
    pub client_id: Option<R::Id>,
    draft: R::Event,
}

impl<R: Intake> std::fmt::Debug for Valid<R>
where
    R::Id: std::fmt::Debug,
    R::Event: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Valid")
            .field("client_id", &self.client_id)
            .field("draft", &self.draft)
            .finish()
    }
}

impl<R: Intake> Valid<R> {
    /// The full ECST event, under `id`, with `metadata`.
    pub fn into_event(self, id: R::Id, metadata: EventMetadata) -> R::Event {
        R::finish(self.draft, id, metadata)
    }
}

impl From<&AddressInput> for Address {
    fn from(a: &AddressInput) -> Self {
        Address {
            line1: a.line1.clone(),
            line2: a.line2.clone(),
            city: a.city.clone(),
            postal_code: a.postal_code.clone(),
            country: a.country.clone(),
        }
    }
}

/// Metadata of an event not yet accepted (rules never look at it).
fn draft_metadata() -> EventMetadata {
    EventMetadata {
        event_id: Uuid::nil(),
        event_type: String::new(),
        schema_version: 0,
        occurred_at: chrono::DateTime::UNIX_EPOCH,
        producer: String::new(),
        correlation_id: String::new(),
        trace_id: None,
        span_id: None,
    }
}

/// Puts the errors of reading values (`wire`) among those of the rules
/// (`rules`): a value that could not be read answers for its path, in its
/// place, instead of the rules' complaints about the stand-in used for it.
fn merge(wire: ValidationErrors, rules: ValidationErrors) -> ValidationErrors {
    let unread: std::collections::HashSet<String> = wire.0.iter().map(|e| e.path.clone()).collect();
    let mut pending = wire.0;
    let mut placed = Vec::new();
    for error in rules.0 {
        if !unread.contains(&error.path) {
            placed.push(error);
        } else if let Some(at) = pending.iter().position(|w| w.path == error.path) {
            placed.push(pending.remove(at));
        }
    }
    pending.extend(placed);
    ValidationErrors(pending)
}

impl Intake for CreateOrderRequest {
    type Id = Uuid;
    type Event = OrderEvent;

    fn validate(&self) -> Result<Valid<Self>, ValidationErrors> {
        let mut wire = ValidationErrors::default();
        let client_id = self.order_id.as_deref().and_then(|id| {
            Uuid::parse_str(id)
                .map_err(|_| wire.add("order_id", "must be a UUID"))
                .ok()
        });
        let items: Vec<OrderItem> = self
            .items
            .iter()
            .enumerate()
            .map(|(n, item)| {
                let unit_price = crate::money::parse(&item.unit_price).unwrap_or_else(|e| {
                    wire.add(format!("items[{n}].unit_price"), e.to_string());
                    Decimal::ZERO
                });
                // Out of range is the quantity rule's to report, at its path.
                let quantity = u32::try_from(item.quantity.max(0)).unwrap_or(u32::MAX);
                OrderItem {
                    sku: item.sku.clone(),
                    name: item.name.clone(),
                    quantity,
                    unit_price,
                    line_total: unit_price
                        .checked_mul(Decimal::from(quantity))
                        .unwrap_or(Decimal::ZERO),
                    inventory_status: item.inventory_status.unwrap_or_default(),
                }
            })
            .collect();
        let subtotal = items
            .iter()
            .try_fold(Decimal::ZERO, |sum, i| sum.checked_add(i.line_total))
            .unwrap_or(Decimal::ZERO);
        let draft = OrderEvent {
            metadata: draft_metadata(),
            order_id: Uuid::nil(),
            customer: Customer {
                id: self.customer.id.clone(),
                name: self.customer.name.clone(),
                email: self.customer.email.clone(),
                address: (&self.customer.address).into(),
            },
            totals: Totals {
                subtotal,
                total: subtotal,
                item_count: items
                    .iter()
                    .try_fold(0u32, |sum, i| sum.checked_add(i.quantity))
                    .unwrap_or(u32::MAX),
            },
            items,
            currency: self.currency.clone(),
            promotion_code: self.promotion_code.clone(),
        };
        let mut rules = ValidationErrors::default();
        validation::order_content(&mut rules, &draft);
        merge(wire, rules).into_result(Valid { client_id, draft })
    }

    fn finish(draft: OrderEvent, id: Uuid, metadata: EventMetadata) -> OrderEvent {
        OrderEvent {
            metadata,
            order_id: id,
            ..draft
        }
    }
}

impl Intake for CreateUserRequest {
    type Id = String;
    type Event = UserEvent;

    fn validate(&self) -> Result<Valid<Self>, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(id) = &self.user_id {
            validation::identifier(&mut errors, "user_id", id);
        }
        let draft = UserEvent {
            metadata: draft_metadata(),
            user_id: String::new(),
            name: self.name.clone(),
            email: self.email.clone(),
            address: self.address.as_ref().map(Address::from),
        };
        validation::user_content(&mut errors, &draft);
        errors.into_result(Valid {
            client_id: self.user_id.clone(),
            draft,
        })
    }

    fn finish(draft: UserEvent, id: String, metadata: EventMetadata) -> UserEvent {
        UserEvent {
            metadata,
            user_id: id,
            ..draft
        }
    }
}
