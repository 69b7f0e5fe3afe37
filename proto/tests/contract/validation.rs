//! Every validation rule, each with a case that breaks it and the field path
//! the `422` will name.

use chrono::Utc;
use contract::request::{parse_json, CreateOrderRequest, CreateUserRequest, Intake, RequestError};
use contract::{validation, EventMetadata, ValidationErrors};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

fn order_body() -> Value {
    contract::request::example_order()
}

fn order_errors(body: Value) -> ValidationErrors {
    let bytes = serde_json::to_vec(&body).unwrap();
    match parse_json::<CreateOrderRequest>(&bytes) {
        Ok(request) => request.validate().expect_err("the body breaks a rule"),
        Err(RequestError::Invalid(errors)) => errors,
        Err(other) => panic!("expected a validation error, got {other:?}"),
    }
}

/// Applies `edit` to the valid body and asserts exactly `path` is named.
fn assert_rejects(path: &str, edit: impl FnOnce(&mut Value)) {
    let mut body = order_body();
    edit(&mut body);
    let errors = order_errors(body);
    assert!(errors.has(path), "expected {path} among {errors}");
}

#[test]
fn the_design_example_is_valid() {
    let request: CreateOrderRequest =
        parse_json(&serde_json::to_vec(&order_body()).unwrap()).unwrap();
    let valid = request.validate().expect("valid");
    let event = valid.into_event(Uuid::new_v4(), metadata("order.created", 2));
    assert_eq!(event.items[0].unit_price, Decimal::new(1999, 2));
}

#[test]
fn malformed_json_is_not_a_validation_error() {
    for body in [
        &b"{"[..],
        b"not json",
        b"{\"customer\": }",
        b"",
        b"{\"currency\": \"EUR\"",
    ] {
        match parse_json::<CreateOrderRequest>(body) {
            Err(RequestError::Malformed(_)) => {}
            other => panic!(
                "{:?} should be malformed, got {other:?}",
                String::from_utf8_lossy(body)
            ),
        }
    }
}

#[test]
fn unknown_fields_are_rejected_at_their_path() {
    assert_rejects("discount", |b| b["discount"] = json!(5));
    assert_rejects("customer.vip", |b| b["customer"]["vip"] = json!(true));
    assert_rejects("items[0].colour", |b| {
        b["items"][0]["colour"] = json!("red")
    });
    assert_rejects("customer.address.state", |b| {
        b["customer"]["address"]["state"] = json!("x")
    });
}

#[test]
fn wrong_types_and_missing_fields_name_their_path() {
    assert_rejects("items[0].quantity", |b| {
        b["items"][0]["quantity"] = json!("two")
    });
    assert_rejects("customer", |b| {
        b["customer"].as_object_mut().unwrap().remove("email");
    });
    assert_rejects("$", |b| {
        b.as_object_mut().unwrap().remove("currency");
    });
    assert_rejects("items[0].inventory_status", |b| {
        b["items"][0]["inventory_status"] = json!("plenty")
    });
}

#[test]
fn prices_must_be_exact_decimal_strings() {
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!(19.99)
    });
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!("abc")
    });
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!("0")
    });
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!("-1.00")
    });
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!("1000000.01")
    });
    assert_rejects("items[0].unit_price", |b| {
        b["items"][0]["unit_price"] = json!("19.999")
    });
    assert_rejects("items[0].unit_price", |b| {
        b["currency"] = json!("JPY");
        b["items"][0]["unit_price"] = json!("1.5");
    });
    // Exact and strict: only `digits[.digits]`, never rounded, never finer
    // than the currency's minor unit, whatever the digits say.
    for text in [
        "1.00000000000000000000000000001",
        "19.9900",
        "1e2",
        "1E2",
        "1_000",
        "+19.99",
        " 19.99",
        "19.99 ",
        ".5",
        "5.",
        "0x10",
        "19,99",
        "١٩.٩٩",
        "99999999999999999999999999999999",
    ] {
        let mut body = order_body();
        body["items"][0]["unit_price"] = json!(text);
        let errors = order_errors(body);
        assert!(
            errors.has("items[0].unit_price"),
            "{text:?} must be refused, got {errors}"
        );
    }
}

#[test]
fn quantities_are_bounded_whole_numbers() {
    assert_rejects("items[0].quantity", |b| {
        b["items"][0]["quantity"] = json!(0)
    });
    assert_rejects("items[0].quantity", |b| {
        b["items"][0]["quantity"] = json!(-3)
    });
    assert_rejects("items[0].quantity", |b| {
        b["items"][0]["quantity"] = json!(10_001)
    });
    assert_rejects("items[0].quantity", |b| {
        b["items"][0]["quantity"] = json!(1.5)
    });
}

#[test]
fn items_are_between_one_and_a_hundred_with_distinct_skus() {
    assert_rejects("items", |b| b["items"] = json!([]));
    assert_rejects("items", |b| {
        let item = b["items"][0].clone();
        b["items"] = Value::Array(
            (0..101)
                .map(|n| {
                    let mut i = item.clone();
                    i["sku"] = json!(format!("SKU-{n}"));
                    i
                })
                .collect(),
        );
    });
    assert_rejects("items[1].sku", |b| {
        let item = b["items"][0].clone();
        b["items"].as_array_mut().unwrap().push(item);
    });
    assert_rejects("items[0].sku", |b| b["items"][0]["sku"] = json!("SKU 1"));
    assert_rejects("items[0].name", |b| b["items"][0]["name"] = json!("  "));
}

#[test]
fn currency_must_be_a_supported_iso_code() {
    assert_rejects("currency", |b| b["currency"] = json!("eur"));
    assert_rejects("currency", |b| b["currency"] = json!("XYZ"));
    assert_eq!(validation::currency_exponent("JPY"), Some(0));
    assert_eq!(validation::currency_exponent("KWD"), Some(3));
}

#[test]
fn email_rules() {
    for bad in [
        "ada",
        "@example.com",
        "ada@",
        "ada@example",
        "ada@exa mple.com",
        "ada@-x.com",
        "a b@example.com",
        "ada@@example.com",
    ] {
        assert_rejects("customer.email", |b| b["customer"]["email"] = json!(bad));
    }
    let long = format!("{}@example.com", "a".repeat(250));
    assert_rejects("customer.email", |b| b["customer"]["email"] = json!(long));
    for good in ["ada@example.com", "ada.lovelace+orders@mail.example.co.uk"] {
        let mut errors = ValidationErrors::default();
        validation::email(&mut errors, "e", good);
        assert!(errors.0.is_empty(), "{good}: {errors}");
    }
}

#[test]
fn customer_and_address_rules() {
    assert_rejects("customer.id", |b| b["customer"]["id"] = json!(""));
    assert_rejects("customer.id", |b| {
        b["customer"]["id"] = json!("x".repeat(65))
    });
    assert_rejects("customer.name", |b| {
        b["customer"]["name"] = json!("x".repeat(201))
    });
    assert_rejects("customer.name", |b| {
        b["customer"]["name"] = json!("Ada\u{0007}")
    });
    assert_rejects("customer.address.country", |b| {
        b["customer"]["address"]["country"] = json!("gb")
    });
    assert_rejects("customer.address.country", |b| {
        b["customer"]["address"]["country"] = json!("GBR")
    });
    assert_rejects("customer.address.city", |b| {
        b["customer"]["address"]["city"] = json!("")
    });
    assert_rejects("customer.address.postal_code", |b| {
        b["customer"]["address"]["postal_code"] = json!("x".repeat(17))
    });
}

#[test]
fn order_id_and_promotion_code_rules() {
    assert_rejects("order_id", |b| b["order_id"] = json!("not-a-uuid"));
    assert_rejects("promotion_code", |b| {
        b["promotion_code"] = json!("spring 10")
    });
}

#[test]
fn every_violation_is_listed_at_once() {
    let mut body = order_body();
    body["currency"] = json!("XXX");
    body["customer"]["email"] = json!("nope");
    body["items"][0]["quantity"] = json!(0);
    let errors = order_errors(body);
    assert_eq!(errors.0.len(), 3, "{errors}");
}

fn metadata(event_type: &str, version: u32) -> EventMetadata {
    EventMetadata {
        event_id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version: version,
        occurred_at: Utc::now(),
        producer: "test".into(),
        correlation_id: "c".into(),
        trace_id: None,
        span_id: None,
    }
}

/// The event of the example body with a second item (three at 0.10).
fn two_item_event() -> contract::OrderEvent {
    let mut body = order_body();
    body["items"]
        .as_array_mut()
        .unwrap()
        .push(json!({"sku": "SKU-2", "name": "Gadget", "quantity": 3, "unit_price": "0.10"}));
    let request: CreateOrderRequest = parse_json(&serde_json::to_vec(&body).unwrap()).unwrap();
    request
        .validate()
        .unwrap()
        .into_event(Uuid::new_v4(), metadata("order.created", 2))
}

#[test]
fn valid_orders_become_events_whose_totals_add_up() {
    let event = two_item_event();
    assert_eq!(event.totals.subtotal, Decimal::new(4028, 2));
    assert_eq!(event.totals.item_count, 5);
    assert_eq!(event.items[1].line_total, Decimal::new(30, 2));
    validation::order_event(&event).expect("a built event is valid");

    let mut tampered = event.clone();
    tampered.totals.subtotal = Decimal::new(1, 0);
    tampered.items[0].line_total = Decimal::new(1, 0);
    tampered.metadata.event_type = "order.shipped".into();
    tampered.metadata.schema_version = 3;
    let errors = validation::order_event(&tampered).expect_err("tampered");
    for path in [
        "totals.subtotal",
        "items[0].line_total",
        "metadata.event_type",
        "metadata.schema_version",
    ] {
        assert!(errors.has(path), "{path} missing from {errors}");
    }
}

#[test]
fn user_rules() {
    let ok: CreateUserRequest =
        parse_json(br#"{"name": "Ada", "email": "ada@example.com"}"#).unwrap();
    let valid = ok.validate().unwrap();
    let event = valid.into_event("u-1".into(), metadata("user.registered", 1));
    validation::user_event(&event).unwrap();

    let bad: CreateUserRequest = parse_json(
        br#"{"user_id": "u 1", "name": "", "email": "x", "address": {"line1": "a", "city": "b", "postal_code": "c", "country": "zz"}}"#,
    )
    .unwrap();
    let errors = bad.validate().unwrap_err();
    for path in ["user_id", "name", "email", "address.country"] {
        assert!(errors.has(path), "{path} missing from {errors}");
    }
    match parse_json::<CreateUserRequest>(br#"{"name": "Ada", "email": "a@b.co", "age": 3}"#) {
        Err(RequestError::Invalid(e)) => assert!(e.has("age"), "{e}"),
        other => panic!("unknown field must be rejected: {other:?}"),
    }
    let mut wrong = event;
    wrong.metadata.event_type = "order.created".into();
    assert!(validation::user_event(&wrong)
        .unwrap_err()
        .has("metadata.event_type"));
}

#[test]
fn the_consumer_rechecks_every_figure_and_id_of_an_event() {
    let event = two_item_event();
    validation::order_event(&event).expect("a built event is valid");

    type Tamper = Box<dyn Fn(&mut contract::OrderEvent)>;
    let cases: Vec<(&str, Tamper)> = vec![
        (
            "items[1].sku",
            Box::new(|e| e.items[1].sku = "SKU-1".into()),
        ),
        (
            "totals.total",
            Box::new(|e| e.totals.total = Decimal::new(1, 2)),
        ),
        (
            "items[0].line_total",
            Box::new(|e| {
                // Right value, finer than the currency allows.
                e.items[0].line_total = Decimal::new(399800, 4);
            }),
        ),
        (
            "totals.subtotal",
            Box::new(|e| e.totals.subtotal = Decimal::new(402800, 4)),
        ),
        (
            "metadata.correlation_id",
            Box::new(|e| e.metadata.correlation_id = "x".repeat(129)),
        ),
        (
            "metadata.correlation_id",
            Box::new(|e| e.metadata.correlation_id = "has space".into()),
        ),
        (
            "metadata.producer",
            Box::new(|e| e.metadata.producer = "p".repeat(65)),
        ),
        (
            "metadata.trace_id",
            Box::new(|e| e.metadata.trace_id = Some("XYZ".into())),
        ),
        (
            "metadata.span_id",
            Box::new(|e| e.metadata.span_id = Some("0".repeat(17))),
        ),
    ];
    for (path, tamper) in cases {
        let mut e = event.clone();
        tamper(&mut e);
        let errors = validation::order_event(&e).expect_err(path);
        assert!(errors.has(path), "{path} missing from {errors}");
    }
}

mod api_and_consumer_agree {
    //! Every body the API refuses is refused by the consumer as the event a
    //! careless producer would have published from it, and every body the
    //! API accepts becomes an event the consumer accepts: one set of rules.

    use super::*;
    use contract::{EventCodec, Format, OrderEvent, UserEvent};
    use proptest::prelude::*;

    /// Mostly the first (valid) value, sometimes one of the others.
    fn one_of(values: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        prop_oneof![
            6 => Just(values[0]),
            1 => proptest::sample::select(values),
        ]
    }

    /// The API and the consumer both accept `body`, or both refuse it.
    fn agree<A, C>(
        api: &Result<A, String>,
        consumer: &Result<C, String>,
        body: &Value,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            api.is_ok(),
            consumer.is_ok(),
            "API: {:?}\nconsumer: {:?}\nbody: {}",
            api.as_ref().err(),
            consumer.as_ref().err(),
            body
        );
        Ok(())
    }

    static ACCEPTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    prop_compose! {
        fn item()(
            sku in one_of(&["SKU-1", "SKU-2", "S 3", "", "s.4_x"]),
            name in one_of(&["Widget", "", "bell\u{7}"]),
            quantity in prop_oneof![6 => 1i64..4, 1 => prop_oneof![Just(-1i64), Just(0), Just(10_000), Just(10_001)]],
            unit_price in one_of(&["19.99", "1.5", "0", "1.234", "1e2", "0.001", "1000000.01", "7"]),
        ) -> Value {
            json!({"sku": sku, "name": name, "quantity": quantity, "unit_price": unit_price})
        }
    }

    prop_compose! {
        fn body()(
            id in one_of(&["c-42", "", "a b"]),
            name in one_of(&["Ada Lovelace", "", "x\u{1}"]),
            email in one_of(&["ada@example.com", "nope", "a@b", "@x.io"]),
            country in one_of(&["GB", "gb", "GBR"]),
            postal in one_of(&["SW1Y 4JH", "", "0123456789ABCDEFG"]),
            currency in one_of(&["EUR", "JPY", "XXX", "KWD"]),
            items in proptest::collection::vec(item(), 0..3),
            promotion in proptest::option::of(one_of(&["SPRING-10", "bad code", ""])),
        ) -> Value {
            let mut body = json!({
                "customer": {"id": id, "name": name, "email": email,
                             "address": {"line1": "1 Road", "city": "London",
                                         "postal_code": postal, "country": country}},
                "items": items,
                "currency": currency,
            });
            if let Some(code) = promotion {
                body["promotion_code"] = json!(code);
            }
            body
        }
    }

    /// The event a producer that checks nothing would publish for `body`.
    fn careless_event(body: &Value) -> Value {
        let mut subtotal = Decimal::ZERO;
        let mut count: i64 = 0;
        let items: Vec<Value> = body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let quantity = item["quantity"].as_i64().unwrap_or(0);
                let price: Decimal = item["unit_price"]
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or_default();
                let line = price * Decimal::from(quantity);
                subtotal += line;
                count += quantity;
                let mut item = item.clone();
                item["line_total"] = json!(line.to_string());
                item
            })
            .collect();
        json!({
            "metadata": {"event_id": Uuid::new_v4().to_string(), "event_type": "order.created",
                         "schema_version": 2, "occurred_at": "2026-11-23T10:00:00Z",
                         "producer": "careless", "correlation_id": "c-1"},
            "order_id": Uuid::new_v4().to_string(),
            "customer": body["customer"],
            "items": items,
            "totals": {"subtotal": subtotal.to_string(), "total": subtotal.to_string(), "item_count": count},
            "currency": body["currency"],
            "promotion_code": body.get("promotion_code").cloned().unwrap_or(Value::Null),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn the_api_and_the_consumer_accept_and_refuse_the_same_orders(body in body()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let api = parse_json::<CreateOrderRequest>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|r| r.validate().map_err(|e| e.to_string()));
            let event = serde_json::to_vec(&careless_event(&body)).unwrap();
            let consumer = OrderEvent::decode(&event, Format::Json, 2)
                .map_err(|e| e.to_string())
                .and_then(|e| validation::order_event(&e).map_err(|e| e.to_string()));
            agree(&api, &consumer, &body)?;
            if let Ok(valid) = api {
                ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // And the event the API itself builds is valid.
                let built = valid.into_event(Uuid::new_v4(), metadata("order.created", 2));
                prop_assert!(validation::order_event(&built).is_ok());
            }
        }
    }

    static USERS_ACCEPTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    prop_compose! {
        fn user_body()(
            user_id in proptest::option::of(one_of(&["u-42", "", "a b", "ü"])),
            name in one_of(&["Ada Lovelace", "", "x\u{1}"]),
            email in one_of(&["ada@example.com", "nope", "a@b", "@x.io"]),
            address in proptest::option::of((
                one_of(&["1 Road", ""]),
                one_of(&["GB", "gb", "GBR"]),
                one_of(&["SW1Y 4JH", "", "0123456789ABCDEFG"]),
            )),
        ) -> Value {
            let mut body = json!({"name": name, "email": email});
            if let Some(id) = user_id {
                body["user_id"] = json!(id);
            }
            if let Some((line1, country, postal)) = address {
                body["address"] = json!({"line1": line1, "city": "London",
                                         "postal_code": postal, "country": country});
            }
            body
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn the_api_and_the_consumer_accept_and_refuse_the_same_users(body in user_body()) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let api = parse_json::<CreateUserRequest>(&bytes)
                .map_err(|e| e.to_string())
                .and_then(|r| r.validate().map_err(|e| e.to_string()));
            // What a producer that checks nothing would publish.
            let event = json!({
                "metadata": {"event_id": Uuid::new_v4().to_string(), "event_type": "user.registered",
                             "schema_version": 1, "occurred_at": "2026-11-23T10:00:00Z",
                             "producer": "careless", "correlation_id": "c-1"},
                "user_id": body.get("user_id").cloned().unwrap_or(json!("u-generated")),
                "name": body["name"],
                "email": body["email"],
                "address": body.get("address").cloned().unwrap_or(Value::Null),
            });
            let consumer = UserEvent::decode(&serde_json::to_vec(&event).unwrap(), Format::Json, 1)
                .map_err(|e| e.to_string())
                .and_then(|e| validation::user_event(&e).map_err(|e| e.to_string()));
            agree(&api, &consumer, &body)?;
            if let Ok(valid) = api {
                USERS_ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let id = body.get("user_id").and_then(Value::as_str).unwrap_or("u-generated").to_owned();
                let built = valid.into_event(id, metadata("user.registered", 1));
                prop_assert!(validation::user_event(&built).is_ok());
            }
        }
    }

    #[test]
    fn the_generated_users_include_accepted_ones() {
        the_api_and_the_consumer_accept_and_refuse_the_same_users();
        let accepted = USERS_ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
        println!("{accepted} of the generated user bodies were accepted");
        assert!(accepted >= 20, "only {accepted} accepted bodies generated");
    }

    #[test]
    fn the_generated_orders_include_accepted_ones() {
        // Runs the property above on its own thread first if needed: the
        // comparison means little if every generated body is refused.
        the_api_and_the_consumer_accept_and_refuse_the_same_orders();
        let accepted = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
        println!("{accepted} of the generated bodies were accepted");
        assert!(accepted >= 20, "only {accepted} accepted bodies generated");
    }

    static CHANGES_ACCEPTED: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    /// A change request body of each kind, from values valid, empty, too
    /// long, with control characters, inexact or not money at all.
    fn change_body() -> impl Strategy<Value = (usize, Value)> {
        let text = || {
            one_of(&[
                "DHL",
                "",
                "a\u{7}b",
                "ü-42",
                "                                                                   x",
            ])
        };
        let long = "x".repeat(65);
        prop_oneof![
            (
                one_of(&["pay-1", "", "p\u{0}"]),
                one_of(&["39.98", "39.985", "0", "-1", "1e2", "abc", "", "99999999999999999999999999999999"]),
                one_of(&["EUR", "JPY", "eur", "XXX", ""]),
            )
                .prop_map(|(r, a, c)| (0, json!({"reference": r, "amount": a, "currency": c}))),
            (text(), text(), Just(long))
                .prop_map(|(c, t, long)| (1, json!({"carrier": c, "tracking_number": if t.is_empty() { long } else { t.to_owned() }}))),
            proptest::option::of(text()).prop_map(|r| (2, json!({"received_by": r}))),
            (
                one_of(&["customer_request", "other", "Other", "refund", ""]),
                proptest::option::of(text()),
            )
                .prop_map(|(r, n)| (3, json!({"reason": r, "note": n}))),
        ]
    }

    /// Parses and validates `bytes` as the API does for change `kind`; the
    /// event it makes when accepted.
    fn change_request(kind: usize, bytes: &[u8]) -> Result<contract::OrderChange, String> {
        use contract::request::{
            CancellationRequest, DeliveryRequest, PaymentRequest, ShipmentRequest,
        };
        fn take<
            R: Intake<Id = Uuid, Event = contract::OrderChange> + serde::de::DeserializeOwned,
        >(
            bytes: &[u8],
            event_type: &str,
        ) -> Result<contract::OrderChange, String> {
            let request = parse_json::<R>(bytes).map_err(|e| e.to_string())?;
            let valid = request.validate().map_err(|e| e.to_string())?;
            Ok(valid.into_event(Uuid::new_v4(), metadata(event_type, 1)))
        }
        use contract::lifecycle::{ORDER_CANCELLED, ORDER_DELIVERED, ORDER_PAID, ORDER_SHIPPED};
        match kind {
            0 => take::<PaymentRequest>(bytes, ORDER_PAID),
            1 => take::<ShipmentRequest>(bytes, ORDER_SHIPPED),
            2 => take::<DeliveryRequest>(bytes, ORDER_DELIVERED),
            _ => take::<CancellationRequest>(bytes, ORDER_CANCELLED),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever a change request's body holds (generated values, and
        /// the same bytes cut anywhere), the API answers without a panic,
        /// and every change it accepts is one the consumer reads back from
        /// its JSON and finds valid: the two never disagree on an accepted
        /// change.
        #[test]
        fn every_change_the_api_accepts_the_consumer_accepts((kind, body) in change_body(), cut in 0usize..200) {
            let bytes = serde_json::to_vec(&body).unwrap();
            let truncated = &bytes[..cut.min(bytes.len())];
            if truncated.len() < bytes.len() {
                prop_assert!(change_request(kind, truncated).is_err(), "a cut body is refused");
            }
            if let Ok(event) = change_request(kind, &bytes) {
                CHANGES_ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let wire = event.encode(Format::Json).unwrap();
                let read = contract::OrderChange::decode(&wire, Format::Json, 1)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(&read, &event);
                prop_assert!(
                    contract::lifecycle::order_change(&read).is_ok(),
                    "the consumer refuses what the API accepted: {:?}\nbody: {}",
                    contract::lifecycle::order_change(&read), body
                );
            }
        }
    }

    #[test]
    fn the_generated_changes_include_accepted_ones() {
        every_change_the_api_accepts_the_consumer_accepts();
        let accepted = CHANGES_ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(accepted >= 20, "only {accepted} accepted changes generated");
    }
}
