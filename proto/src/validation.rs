//! The rules every order and user must follow, at the HTTP edge and again in
//! the consumer. Each violation names the field path at fault, so that a `422`
//! lists them all at once.

use std::fmt::{self, Display};

use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::model::{Address, EventMetadata, OrderEvent, UserEvent, ORDER_CREATED, USER_REGISTERED};

/// Most items one order may hold (defined with the model, whose reader
/// enforces it too).
pub use crate::model::MAX_ITEMS;
/// Most units of one item.
pub const MAX_QUANTITY: i64 = 10_000;
/// Highest unit price, in any currency.
pub const MAX_UNIT_PRICE: Decimal = Decimal::from_parts(1_000_000, 0, 0, false, 0);
/// Longest free-text field, in characters.
pub const MAX_TEXT: usize = 200;
/// Longest identifier, in characters.
pub const MAX_ID: usize = 64;

/// One rule broken by one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, such as `items[0].unit_price`.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

/// Every rule a value broke (never empty).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    /// Records that `path` broke a rule. The path may be any `Display`
    /// (such as `format_args!`), so a valid field costs no string.
    pub fn add(&mut self, path: impl Display, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.to_string(),
            reason: reason.into(),
        });
    }

    /// `Ok(value)` when no rule was broken.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Whether `path` broke any rule (for tests and callers that branch on it).
    pub fn has(&self, path: &str) -> bool {
        self.0.iter().any(|e| e.path == path)
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, e) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationErrors {}

/// ISO 4217 codes this pipeline accepts, with their number of minor-unit digits.
const CURRENCIES: &[(&str, u32)] = &[
    ("AUD", 2),
    ("BGN", 2),
    ("BRL", 2),
    ("CAD", 2),
    ("CHF", 2),
    ("CNY", 2),
    ("CZK", 2),
    ("DKK", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("HKD", 2),
    ("HUF", 2),
    ("INR", 2),
    ("ISK", 0),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("MXN", 2),
    ("NOK", 2),
    ("NZD", 2),
    ("PLN", 2),
    ("RON", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("TRY", 2),
    ("USD", 2),
    ("ZAR", 2),
];

/// Minor-unit digits of a supported currency, `None` if it is not supported.
pub fn currency_exponent(code: &str) -> Option<u32> {
    CURRENCIES
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, digits)| *digits)
}

/// Checks a required free-text field.
pub fn text(errors: &mut ValidationErrors, path: impl Display, value: &str, max: usize) {
    if value.trim().is_empty() {
        errors.add(path, "must not be empty");
    } else if value.chars().count() > max {
        errors.add(path, format!("must be at most {max} characters"));
    } else if value.chars().any(char::is_control) {
        errors.add(path, "must not contain control characters");
    }
}

/// Checks an identifier: 1 to 64 of `A-Z a-z 0-9 . _ -`.
pub fn identifier(errors: &mut ValidationErrors, path: impl Display, value: &str) {
    if value.is_empty() {
        errors.add(path, "must not be empty");
    } else if value.len() > MAX_ID {
        errors.add(path, format!("must be at most {MAX_ID} characters"));
    } else if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        errors.add(path, "may contain only letters, digits, '.', '_' and '-'");
    }
}

/// Checks an e-mail address: one `@`, a non-empty local part of at most 64
/// characters, a dotted domain of letters, digits and hyphens, 254 in all.
pub fn email(errors: &mut ValidationErrors, path: impl Display, value: &str) {
    let reason = if value.len() > 254 {
        Some("must be at most 254 characters")
    } else {
        match value.split_once('@') {
            None => Some("must contain '@'"),
            Some((local, domain)) => {
                let local_ok = !local.is_empty()
                    && local.len() <= 64
                    && local.bytes().all(|b| b.is_ascii_graphic() && b != b'@');
                let labels: Vec<&str> = domain.split('.').collect();
                let domain_ok = labels.len() >= 2
                    && labels.iter().all(|l| {
                        !l.is_empty()
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    });
                if !local_ok {
                    Some("has an invalid part before '@'")
                } else if !domain_ok {
                    Some("has an invalid domain after '@'")
                } else {
                    None
                }
            }
        }
    };
    if let Some(reason) = reason {
        errors.add(path, reason);
    }
}

/// Checks an ISO 3166-1 alpha-2 country code (two upper-case letters).
pub fn country(errors: &mut ValidationErrors, path: impl Display, value: &str) {
    if value.len() != 2 || !value.bytes().all(|b| b.is_ascii_uppercase()) {
        errors.add(
            path,
            "must be an ISO 3166-1 alpha-2 code of two upper-case letters",
        );
    }
}

/// Checks a currency code; returns its minor-unit digits when it is supported.
pub fn currency(errors: &mut ValidationErrors, path: impl Display, value: &str) -> Option<u32> {
    let exponent = currency_exponent(value);
    if exponent.is_none() {
        errors.add(path, "must be a supported ISO 4217 code such as EUR or USD");
    }
    exponent
}

/// Checks a quantity: a whole number from 1 to [`MAX_QUANTITY`].
pub fn quantity(errors: &mut ValidationErrors, path: impl Display, value: i64) -> Option<u32> {
    if !(1..=MAX_QUANTITY).contains(&value) {
        errors.add(path, format!("must be from 1 to {MAX_QUANTITY}"));
        return None;
    }
    u32::try_from(value).ok()
}

/// Checks a unit price: positive, at most [`MAX_UNIT_PRICE`], and no finer
/// than the currency's minor unit (when the currency is known).
pub fn unit_price(
    errors: &mut ValidationErrors,
    path: impl Display,
    value: Decimal,
    exponent: Option<u32>,
) {
    if value <= Decimal::ZERO {
        errors.add(path, "must be greater than 0");
    } else if value > MAX_UNIT_PRICE {
        errors.add(path, format!("must be at most {MAX_UNIT_PRICE}"));
    } else {
        scale(errors, path, value, exponent);
    }
}

/// Checks that an amount is written with no more decimal places than the
/// currency's minor unit has (when the currency is known): `"19.990"` is
/// refused in EUR, as `"1.5"` is in JPY.
pub fn scale(
    errors: &mut ValidationErrors,
    path: impl Display,
    value: Decimal,
    exponent: Option<u32>,
) {
    if let Some(digits) = exponent {
        if value.scale() > digits {
            errors.add(
                path,
                format!("must have at most {digits} decimal places in this currency"),
            );
        }
    }
}

/// Checks an address.
pub fn address(errors: &mut ValidationErrors, path: impl Display, a: &Address) {
    text(errors, format_args!("{path}.line1"), &a.line1, MAX_TEXT);
    if let Some(line2) = &a.line2 {
        text(errors, format_args!("{path}.line2"), line2, MAX_TEXT);
    }
    text(errors, format_args!("{path}.city"), &a.city, MAX_TEXT);
    text(
        errors,
        format_args!("{path}.postal_code"),
        &a.postal_code,
        16,
    );
    country(errors, format_args!("{path}.country"), &a.country);
}

/// Checks a promotion code: 1 to 32 of `A-Z 0-9 -`.
pub fn promotion_code(errors: &mut ValidationErrors, path: impl Display, value: &str) {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
    {
        errors.add(
            path,
            "must be 1 to 32 of upper-case letters, digits and '-'",
        );
    }
}

/// Longest correlation id, in bytes.
pub const MAX_CORRELATION_ID: usize = 128;

/// Checks what an event says about itself: its type, a schema version this
/// build knows, and ids of a sane size and shape.
pub(crate) fn metadata(
    errors: &mut ValidationErrors,
    m: &EventMetadata,
    event_type: &str,
    latest: u32,
) {
    if m.event_type != event_type {
        errors.add("metadata.event_type", format!("must be {event_type}"));
    }
    if !(1..=latest).contains(&m.schema_version) {
        errors.add(
            "metadata.schema_version",
            format!("must be from 1 to {latest}"),
        );
    }
    if m.correlation_id.is_empty()
        || m.correlation_id.len() > MAX_CORRELATION_ID
        || !m.correlation_id.bytes().all(|b| b.is_ascii_graphic())
    {
        errors.add(
            "metadata.correlation_id",
            format!("must be 1 to {MAX_CORRELATION_ID} visible ASCII characters"),
        );
    }
    text(errors, "metadata.producer", &m.producer, MAX_ID);
    let hex = |value: &Option<String>, digits: usize| {
        value.as_ref().is_none_or(|v| {
            v.len() == digits && v.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
    };
    if !hex(&m.trace_id, 32) {
        errors.add("metadata.trace_id", "must be 32 lowercase hex digits");
    }
    if !hex(&m.span_id, 16) {
        errors.add("metadata.span_id", "must be 16 lowercase hex digits");
    }
}

/// The business rules of an order's content: the customer, the items, the
/// currency and the promotion code. The API runs exactly these on the event
/// a request would become (see [`crate::request`]), and the consumer runs
/// them again on every event it reads, so the two cannot disagree.
pub fn order_content(errors: &mut ValidationErrors, e: &OrderEvent) {
    identifier(errors, "customer.id", &e.customer.id);
    text(errors, "customer.name", &e.customer.name, MAX_TEXT);
    email(errors, "customer.email", &e.customer.email);
    address(errors, "customer.address", &e.customer.address);
    let exponent = currency(errors, "currency", &e.currency);
    if e.items.is_empty() || e.items.len() > MAX_ITEMS {
        errors.add("items", format!("must hold 1 to {MAX_ITEMS} items"));
    }
    for (n, item) in e.items.iter().enumerate() {
        // Paths are written only for a field at fault.
        identifier(errors, format_args!("items[{n}].sku"), &item.sku);
        if e.items[..n].iter().any(|earlier| earlier.sku == item.sku) {
            errors.add(format_args!("items[{n}].sku"), "appears twice in the order");
        }
        text(
            errors,
            format_args!("items[{n}].name"),
            &item.name,
            MAX_TEXT,
        );
        quantity(
            errors,
            format_args!("items[{n}].quantity"),
            i64::from(item.quantity),
        );
        unit_price(
            errors,
            format_args!("items[{n}].unit_price"),
            item.unit_price,
            exponent,
        );
    }
    if let Some(code) = &e.promotion_code {
        promotion_code(errors, "promotion_code", code);
    }
}

/// The figures the producer computes from the items: line totals, subtotal,
/// total and item count must add up, each no finer than the currency.
fn order_figures(errors: &mut ValidationErrors, e: &OrderEvent) {
    let exponent = currency_exponent(&e.currency);
    let mut subtotal = Decimal::ZERO;
    let mut count: u64 = 0;
    for (n, item) in e.items.iter().enumerate() {
        match item.unit_price.checked_mul(Decimal::from(item.quantity)) {
            Some(expected) if expected == item.line_total => {}
            _ => errors.add(
                format_args!("items[{n}].line_total"),
                "must equal quantity * unit_price",
            ),
        }
        scale(
            errors,
            format_args!("items[{n}].line_total"),
            item.line_total,
            exponent,
        );
        subtotal = subtotal
            .checked_add(item.line_total)
            .unwrap_or(Decimal::MAX);
        count += u64::from(item.quantity);
    }
    if e.totals.subtotal != subtotal {
        errors.add("totals.subtotal", "must equal the sum of the line totals");
    }
    scale(errors, "totals.subtotal", e.totals.subtotal, exponent);
    if u64::from(e.totals.item_count) != count {
        errors.add("totals.item_count", "must equal the sum of the quantities");
    }
    // No discount exists in this contract: what the customer pays is the
    // sum of the lines.
    if e.totals.total != e.totals.subtotal {
        errors.add("totals.total", "must equal the subtotal");
    }
    scale(errors, "totals.total", e.totals.total, exponent);
}

/// Checks an order event as the consumer receives it: its metadata, the
/// business rules of its content, and that its figures add up.
pub fn order_event(e: &OrderEvent) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    metadata(
        &mut errors,
        &e.metadata,
        ORDER_CREATED,
        crate::model::ORDER_SCHEMA_VERSION,
    );
    order_content(&mut errors, e);
    order_figures(&mut errors, e);
    errors.into_result(())
}

/// The business rules of a user's content (its id is checked apart: the
/// API checks it only when the client chose it).
pub fn user_content(errors: &mut ValidationErrors, e: &UserEvent) {
    text(errors, "name", &e.name, MAX_TEXT);
    email(errors, "email", &e.email);
    if let Some(a) = &e.address {
        address(errors, "address", a);
    }
}

/// Checks a user event as the consumer receives it.
pub fn user_event(e: &UserEvent) -> Result<(), ValidationErrors> {
    let mut errors = ValidationErrors::default();
    metadata(
        &mut errors,
        &e.metadata,
        USER_REGISTERED,
        crate::model::USER_SCHEMA_VERSION,
    );
    identifier(&mut errors, "user_id", &e.user_id);
    user_content(&mut errors, e);
    errors.into_result(())
}
