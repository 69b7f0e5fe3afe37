//! The bodies of `POST /orders` and `POST /users`, and of the changes of an
//! order (`POST /orders/{id}/payment`, `/shipment`, `/delivery`,
//! `/cancellation`), how they are parsed (unknown fields rejected, every
//! error with its path) and how a valid one becomes the full ECST event.

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::event::Event;
use crate::ids::AggregateId;
use crate::lifecycle::{
    self, Cancellation, CancellationReason, Change, Delivery, OrderChange, Payment, Shipment,
};
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

/// Body of `POST /orders/{id}/payment`: a payment received for the order
/// (`order.paid`). Its amount and currency must be the order's total and
/// currency, which the consumer checks against the stored order.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    /// The payment provider's reference.
    #[schema(example = "pay-123")]
    pub reference: String,
    /// Exact decimal string, such as "39.98"; never a JSON number.
    #[schema(example = "39.98")]
    pub amount: String,
    /// ISO 4217 code of the amount.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// Body of `POST /orders/{id}/shipment`: the order handed to a carrier
/// (`order.shipped`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentRequest {
    /// The carrier's name.
    #[schema(example = "DHL")]
    pub carrier: String,
    /// The carrier's tracking number.
    #[schema(example = "JD0146000000")]
    pub tracking_number: String,
}

/// Body of `POST /orders/{id}/delivery`: the order delivered
/// (`order.delivered`); `{}` when the carrier did not say who took it.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRequest {
    /// Who took the parcel, if the carrier said.
    #[serde(default)]
    pub received_by: Option<String>,
}

/// Body of `POST /orders/{id}/cancellation`: the order cancelled
/// (`order.cancelled`), from `created` or `paid` only.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancellationRequest {
    /// Why: one of a closed set.
    #[schema(schema_with = cancellation_reasons)]
    pub reason: String,
    /// More words, if any.
    #[serde(default)]
    pub note: Option<String>,
}

/// The schema of a cancellation's reason: the contract's closed set.
fn cancellation_reasons() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(
            CancellationReason::ALL.map(CancellationReason::as_str),
        ))
        .examples([CancellationReason::CustomerRequest.as_str()])
        .build()
}

/// What a cancellation's reason must be, as a refusal says it.
fn reason_rule() -> String {
    let names: Vec<&str> = CancellationReason::ALL
        .into_iter()
        .map(CancellationReason::as_str)
        .collect();
    format!("must be one of {}", names.join(", "))
}

/// The example payment of the API's documentation: the example order's
/// total and currency.
pub fn example_payment() -> serde_json::Value {
    serde_json::json!({"reference": "pay-123", "amount": "39.98", "currency": "EUR"})
}

/// The example shipment of the API's documentation.
pub fn example_shipment() -> serde_json::Value {
    serde_json::json!({"carrier": "DHL", "tracking_number": "JD0146000000"})
}

/// The example delivery of the API's documentation.
pub fn example_delivery() -> serde_json::Value {
    serde_json::json!({"received_by": "A. Lovelace"})
}

/// The example cancellation of the API's documentation.
pub fn example_cancellation() -> serde_json::Value {
    serde_json::json!({"reason": "customer_request", "note": "ordered twice"})
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
    /// The `event_type` of the event it becomes (a change's own, such as
    /// `order.paid`).
    pub fn event_type(&self) -> &'static str {
        self.draft.event_type()
    }

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

/// A change's valid request: the draft event of `change`, its order id
/// and metadata given once accepted, its `expected_version` by the
/// `If-Match` of its request.
fn change_draft<R: Intake<Event = OrderChange>>(change: Change) -> Valid<R> {
    Valid {
        client_id: None,
        draft: OrderChange {
            metadata: draft_metadata(),
            order_id: Uuid::nil(),
            expected_version: None,
            change,
        },
    }
}

/// Checks `change` as the consumer will ([`lifecycle::validate_change`]),
/// with the paths of its request body: the rules name fields under the
/// change (`payment.amount`), the body has them at its top (`amount`).
fn change_rules(change: &Change) -> ValidationErrors {
    let mut rules = ValidationErrors::default();
    lifecycle::validate_change(&mut rules, change);
    let prefix = format!("{}.", change.name());
    for error in &mut rules.0 {
        if let Some(path) = error.path.strip_prefix(&prefix) {
            error.path = path.to_owned();
        }
    }
    rules
}

/// What a change request says, as the contract's [`Change`]: a value that
/// cannot be read is reported in `wire` at its path, and a stand-in takes
/// its place for the rules.
trait ChangeBody {
    fn change(&self, wire: &mut ValidationErrors) -> Change;
}

/// A change request becomes an event of the order its path names: its
/// order id comes from there, never from the body.
macro_rules! change_intake {
    ($($request:ty),+) => {$(
        impl Intake for $request {
            type Id = Uuid;
            type Event = OrderChange;

            fn validate(&self) -> Result<Valid<Self>, ValidationErrors> {
                let mut wire = ValidationErrors::default();
                let change = self.change(&mut wire);
                let rules = change_rules(&change);
                merge(wire, rules).into_result(change_draft(change))
            }

            fn finish(draft: OrderChange, id: Uuid, metadata: EventMetadata) -> OrderChange {
                OrderChange {
                    metadata,
                    order_id: id,
                    ..draft
                }
            }
        }
    )+};
}

change_intake!(
    PaymentRequest,
    ShipmentRequest,
    DeliveryRequest,
    CancellationRequest
);

impl ChangeBody for PaymentRequest {
    fn change(&self, wire: &mut ValidationErrors) -> Change {
        Change::Payment(Payment {
            reference: self.reference.clone(),
            amount: crate::money::parse(&self.amount).unwrap_or_else(|e| {
                wire.add("amount", e.to_string());
                Decimal::ZERO
            }),
            currency: self.currency.clone(),
        })
    }
}

impl ChangeBody for ShipmentRequest {
    fn change(&self, _: &mut ValidationErrors) -> Change {
        Change::Shipment(Shipment {
            carrier: self.carrier.clone(),
            tracking_number: self.tracking_number.clone(),
        })
    }
}

impl ChangeBody for DeliveryRequest {
    fn change(&self, _: &mut ValidationErrors) -> Change {
        Change::Delivery(Delivery {
            received_by: self.received_by.clone(),
        })
    }
}

impl ChangeBody for CancellationRequest {
    fn change(&self, wire: &mut ValidationErrors) -> Change {
        Change::Cancellation(Cancellation {
            reason: CancellationReason::named(&self.reason).unwrap_or_else(|| {
                wire.add("reason", reason_rule());
                CancellationReason::Other
            }),
            note: self.note.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The paths of every rule `body` breaks as a request of `R`.
    fn refused<R: Intake>(body: Value) -> Vec<(String, String)> {
        let errors = match parse_json::<R>(body.to_string().as_bytes()) {
            Err(RequestError::Invalid(errors)) => errors,
            Err(RequestError::Malformed(e)) => panic!("{body}: malformed: {e}"),
            Ok(request) => match request.validate() {
                Ok(_) => return Vec::new(),
                Err(errors) => errors,
            },
        };
        errors.0.into_iter().map(|e| (e.path, e.reason)).collect()
    }

    fn paths<R: Intake>(body: Value) -> Vec<String> {
        refused::<R>(body).into_iter().map(|(p, _)| p).collect()
    }

    fn with(mut body: Value, field: &str, value: Value) -> Value {
        body[field] = value;
        body
    }

    /// A valid request as the consumer will read it once accepted.
    fn accepted<R: Intake<Id = Uuid, Event = OrderChange>>(body: Value) -> OrderChange {
        let request = parse_json::<R>(body.to_string().as_bytes()).expect("parsed");
        let valid = request.validate().expect("valid");
        let event_type = valid.event_type();
        let metadata = EventMetadata {
            event_id: Uuid::from_u128(2),
            event_type: event_type.to_owned(),
            schema_version: lifecycle::ORDER_CHANGE_SCHEMA_VERSION,
            occurred_at: chrono::Utc::now(),
            producer: "producer/test".into(),
            correlation_id: "c".into(),
            trace_id: None,
            span_id: None,
        };
        let event = valid.into_event(Uuid::from_u128(1), metadata);
        lifecycle::order_change(&event).expect("the consumer takes what the API took");
        event
    }

    #[test]
    fn the_documented_changes_are_valid_and_become_their_events() {
        let paid = accepted::<PaymentRequest>(example_payment());
        assert_eq!(paid.metadata.event_type, lifecycle::ORDER_PAID);
        assert_eq!(paid.order_id, Uuid::from_u128(1));
        assert_eq!(paid.expected_version, None);
        match &paid.change {
            Change::Payment(p) => assert_eq!(
                (p.amount.to_string().as_str(), p.currency.as_str()),
                ("39.98", "EUR")
            ),
            other => panic!("{other:?}"),
        }
        let shipped = accepted::<ShipmentRequest>(example_shipment());
        assert_eq!(shipped.change.event_type(), lifecycle::ORDER_SHIPPED);
        let delivered = accepted::<DeliveryRequest>(example_delivery());
        assert_eq!(delivered.change.event_type(), lifecycle::ORDER_DELIVERED);
        assert_eq!(
            accepted::<DeliveryRequest>(json!({})).change,
            Change::Delivery(Delivery { received_by: None }),
            "a delivery may name nobody"
        );
        let cancelled = accepted::<CancellationRequest>(example_cancellation());
        assert_eq!(
            cancelled.change,
            Change::Cancellation(Cancellation {
                reason: CancellationReason::CustomerRequest,
                note: Some("ordered twice".into()),
            })
        );
        for reason in CancellationReason::ALL {
            let body = json!({ "reason": reason.as_str() });
            assert!(paths::<CancellationRequest>(body).is_empty(), "{reason:?}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_refused_at_their_path() {
        let extra = with(example_payment(), "order_id", json!("x"));
        assert_eq!(paths::<PaymentRequest>(extra), ["order_id"]);
        assert_eq!(
            paths::<DeliveryRequest>(json!({"signed": true})),
            ["signed"]
        );
        assert_eq!(
            paths::<ShipmentRequest>(json!({"carrier": "DHL"})),
            ["$"],
            "a missing field"
        );
        let number = with(example_payment(), "amount", json!(39.98));
        assert_eq!(
            paths::<PaymentRequest>(number),
            ["amount"],
            "never a number"
        );
        let nested = json!({"payment": example_payment()});
        assert_eq!(
            paths::<PaymentRequest>(nested),
            ["payment"],
            "the body is the change's data, not the tagged change"
        );
    }

    #[test]
    fn payments_are_exact_in_their_currency_at_the_bodys_paths() {
        let pay = |amount: &str, currency: &str| {
            let body = json!({"reference": "pay-1", "amount": amount, "currency": currency});
            paths::<PaymentRequest>(body)
        };
        assert!(pay("39.98", "EUR").is_empty());
        assert!(pay("1500", "JPY").is_empty());
        assert!(pay("1.125", "KWD").is_empty());
        for (amount, currency) in [
            ("39.985", "EUR"),
            ("1.5", "JPY"),
            ("0", "EUR"),
            ("-1", "EUR"),
            ("1e3", "EUR"),
            ("1.00000000000000000000000000001", "EUR"),
            ("", "EUR"),
        ] {
            assert_eq!(pay(amount, currency), ["amount"], "{amount} {currency}");
        }
        assert_eq!(pay("10", "XXX"), ["currency"]);
        assert_eq!(pay("10.5", "eur"), ["currency"]);
    }

    #[test]
    fn an_unknown_reason_lists_the_allowed_ones() {
        let refusal = refused::<CancellationRequest>(json!({"reason": "changed_mind"}));
        assert_eq!(refusal.len(), 1, "{refusal:?}");
        let (path, reason) = &refusal[0];
        assert_eq!(path, "reason");
        for allowed in CancellationReason::ALL {
            assert!(reason.contains(allowed.as_str()), "{reason}");
        }
        assert!(!reason.contains("changed_mind"), "the value is not echoed");
        assert_eq!(
            paths::<CancellationRequest>(json!({"reason": "Customer_Request"})),
            ["reason"],
            "the names are exact"
        );
        assert_eq!(
            paths::<CancellationRequest>(json!({"reason": 3})),
            ["reason"]
        );
    }

    #[test]
    fn every_broken_rule_of_a_change_is_listed_at_once() {
        let payment = json!({"reference": " ", "amount": "x", "currency": "XXX"});
        assert_eq!(
            paths::<PaymentRequest>(payment),
            ["reference", "currency", "amount"]
        );
        let shipment = json!({"carrier": "", "tracking_number": "t".repeat(65)});
        assert_eq!(
            paths::<ShipmentRequest>(shipment),
            ["carrier", "tracking_number"]
        );
        let long = "n".repeat(lifecycle::MAX_NOTE + 1);
        assert_eq!(
            paths::<DeliveryRequest>(json!({ "received_by": "a\u{7}b" })),
            ["received_by"]
        );
        assert_eq!(
            paths::<CancellationRequest>(json!({"reason": "nope", "note": long})),
            ["reason", "note"]
        );
    }
}
