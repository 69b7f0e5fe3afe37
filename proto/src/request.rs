//! The bodies of `POST /orders` and `POST /users`, how they are parsed
//! (unknown fields rejected, every error with its path) and how a valid one
//! becomes the full ECST event.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::model::{
    Address, Customer, EventMetadata, InventoryStatus, OrderEvent, OrderItem, Totals, UserEvent,
};
use crate::validation::{self, ValidationErrors, MAX_ITEMS, MAX_TEXT};

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

/// A valid order request, its values parsed.
#[derive(Debug, Clone)]
pub struct ValidOrder {
    /// The client's order id, if it gave one.
    pub order_id: Option<Uuid>,
    /// The customer.
    pub customer: Customer,
    /// Items with exact prices.
    pub items: Vec<ValidItem>,
    /// ISO 4217 code.
    pub currency: String,
    /// Promotion code.
    pub promotion_code: Option<String>,
}

/// A valid item.
#[derive(Debug, Clone)]
pub struct ValidItem {
    /// Stock keeping unit.
    pub sku: String,
    /// Product name.
    pub name: String,
    /// Units.
    pub quantity: u32,
    /// Exact unit price.
    pub unit_price: Decimal,
    /// Stock situation.
    pub inventory_status: InventoryStatus,
}

fn address_of(a: &AddressInput) -> Address {
    Address {
        line1: a.line1.clone(),
        line2: a.line2.clone(),
        city: a.city.clone(),
        postal_code: a.postal_code.clone(),
        country: a.country.clone(),
    }
}

impl CreateOrderRequest {
    /// Applies every rule; returns all violations at once.
    pub fn validate(&self) -> Result<ValidOrder, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let order_id = self.order_id.as_deref().and_then(|id| {
            Uuid::parse_str(id)
                .map_err(|_| errors.add("order_id", "must be a UUID"))
                .ok()
        });
        let c = &self.customer;
        validation::identifier(&mut errors, "customer.id", &c.id);
        validation::text(&mut errors, "customer.name", &c.name, MAX_TEXT);
        validation::email(&mut errors, "customer.email", &c.email);
        let customer = Customer {
            id: c.id.clone(),
            name: c.name.clone(),
            email: c.email.clone(),
            address: address_of(&c.address),
        };
        validation::address(&mut errors, "customer.address", &customer.address);
        let exponent = validation::currency(&mut errors, "currency", &self.currency);
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            errors.add("items", format!("must hold 1 to {MAX_ITEMS} items"));
        }
        let mut items = Vec::with_capacity(self.items.len());
        for (n, item) in self.items.iter().enumerate() {
            let path = format!("items[{n}]");
            validation::identifier(&mut errors, &format!("{path}.sku"), &item.sku);
            if self.items[..n]
                .iter()
                .any(|earlier| earlier.sku == item.sku)
            {
                errors.add(format!("{path}.sku"), "appears twice in the order");
            }
            validation::text(&mut errors, &format!("{path}.name"), &item.name, MAX_TEXT);
            let quantity =
                validation::quantity(&mut errors, &format!("{path}.quantity"), item.quantity);
            let price_path = format!("{path}.unit_price");
            let unit_price = match crate::money::parse(&item.unit_price) {
                Ok(price) => {
                    validation::unit_price(&mut errors, &price_path, price, exponent);
                    Some(price)
                }
                Err(e) => {
                    errors.add(price_path, e.to_string());
                    None
                }
            };
            if let (Some(quantity), Some(unit_price)) = (quantity, unit_price) {
                items.push(ValidItem {
                    sku: item.sku.clone(),
                    name: item.name.clone(),
                    quantity,
                    unit_price,
                    inventory_status: item.inventory_status.unwrap_or_default(),
                });
            }
        }
        if let Some(code) = &self.promotion_code {
            validation::promotion_code(&mut errors, "promotion_code", code);
        }
        errors.into_result(ValidOrder {
            order_id,
            customer,
            items,
            currency: self.currency.clone(),
            promotion_code: self.promotion_code.clone(),
        })
    }
}

impl ValidOrder {
    /// The full ECST event: line totals, totals and item count computed here,
    /// once, so every consumer reads the same figures.
    pub fn into_event(self, order_id: Uuid, metadata: EventMetadata) -> OrderEvent {
        let items: Vec<OrderItem> = self
            .items
            .into_iter()
            .map(|i| OrderItem {
                line_total: i.unit_price * Decimal::from(i.quantity),
                sku: i.sku,
                name: i.name,
                quantity: i.quantity,
                unit_price: i.unit_price,
                inventory_status: i.inventory_status,
            })
            .collect();
        let subtotal = items.iter().map(|i| i.line_total).sum();
        let item_count = items.iter().map(|i| i.quantity).sum();
        OrderEvent {
            metadata,
            order_id,
            customer: self.customer,
            items,
            totals: Totals {
                subtotal,
                total: subtotal,
                item_count,
            },
            currency: self.currency,
            promotion_code: self.promotion_code,
        }
    }
}

/// A valid user request.
#[derive(Debug, Clone)]
pub struct ValidUser {
    /// The client's user id, if it gave one.
    pub user_id: Option<String>,
    /// Full name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Postal address.
    pub address: Option<Address>,
}

impl CreateUserRequest {
    /// Applies every rule; returns all violations at once.
    pub fn validate(&self) -> Result<ValidUser, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if let Some(id) = &self.user_id {
            validation::identifier(&mut errors, "user_id", id);
        }
        validation::text(&mut errors, "name", &self.name, MAX_TEXT);
        validation::email(&mut errors, "email", &self.email);
        let address = self.address.as_ref().map(address_of);
        if let Some(a) = &address {
            validation::address(&mut errors, "address", a);
        }
        errors.into_result(ValidUser {
            user_id: self.user_id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            address,
        })
    }
}

impl ValidUser {
    /// The full ECST event.
    pub fn into_event(self, user_id: String, metadata: EventMetadata) -> UserEvent {
        UserEvent {
            metadata,
            user_id,
            name: self.name,
            email: self.email,
            address: self.address,
        }
    }
}
