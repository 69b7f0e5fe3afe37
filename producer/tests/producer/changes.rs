//! The changes of an order (`POST /orders/{id}/payment`, `/shipment`,
//! `/delivery`, `/cancellation`) against the mock cluster, driven by a real
//! HTTP client: each published on the order's key with its own event type,
//! refused as creation is, idempotent, and conditional on `If-Match`.

use std::time::Duration;

use crate::support::{header, key, order_body, TestApp};
use contract::ids::{self, KeyDerivation};
use contract::lifecycle::{Change, ORDER_CANCELLED, ORDER_DELIVERED, ORDER_PAID, ORDER_SHIPPED};
use contract::request::{
    example_cancellation, example_delivery, example_payment, example_shipment,
};
use contract::{headers, topics, Domain, DomainEvent, Envelope, Format, OrderChange};
use harness::database::{outbox_drained, TestDatabase};
use proptest::prelude::*;
use rdkafka::message::{Message, OwnedMessage};
use serde_json::{json, Value};
use uuid::Uuid;

/// Each change: its resource under `/orders/{id}/`, its event type, and
/// the example body of the API's documentation.
fn changes() -> [(&'static str, &'static str, Value); 4] {
    [
        ("payment", ORDER_PAID, example_payment()),
        ("shipment", ORDER_SHIPPED, example_shipment()),
        ("delivery", ORDER_DELIVERED, example_delivery()),
        ("cancellation", ORDER_CANCELLED, example_cancellation()),
    ]
}

/// A change request of the order `order` (any text, to send bad ids too).
fn change(app: &TestApp, order: &str, name: &str) -> reqwest::RequestBuilder {
    app.post(&format!("/orders/{order}/{name}"))
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The field paths of a `422`.
fn paths(body: &Value) -> Vec<String> {
    body["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .filter_map(|f| f["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The change `message` carries, read as the consumer reads it: its
/// envelope from the headers, then its value.
fn read_change(message: &OwnedMessage) -> OrderChange {
    let envelope = Envelope::read(
        |name| platform::kafka::header(message, name),
        Some(Domain::Orders),
    )
    .expect("an envelope");
    match envelope.decode(message.payload().expect("a value")) {
        Ok(DomainEvent::Change(change)) => change,
        other => panic!("not a change: {other:?}"),
    }
}

/// Posts the example order; its id.
async fn an_order(app: &TestApp) -> Uuid {
    let answer = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 202);
    let body: Value = answer.json().await.expect("json");
    body["order_id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("an order id")
}

/// Each change is published on the order's key (its creation's partition,
/// after it), with its own event type, the envelope and encoding of the
/// deployment's format, the version of its `If-Match`, and the ids its
/// answer gave; answered `202` with where to read the order. The producer
/// keeps no state: a cancellation after a delivery is published too (the
/// consumer refuses it).
#[tokio::test]
async fn every_change_is_published_on_its_orders_key_with_its_event_type_in_every_format() {
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    for format in Format::ALL {
        let mut app = TestApp::spawn(&[("MESSAGE_FORMAT", format.name())]).await;
        let order = an_order(&app).await;
        let mut answers = Vec::new();
        for (version, (name, _, body)) in (1u32..).zip(changes()) {
            let response = change(&app, &order.to_string(), name)
                .header("x-correlation-id", format!("corr-{name}"))
                .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
                .header("if-match", format!("\"{version}\""))
                .json(&body)
                .send()
                .await
                .expect("answer");
            assert_eq!(response.status(), 202, "{format} {name}");
            let h = response.headers();
            assert_eq!(h["location"], format!("/orders/{order}").as_str());
            assert_eq!(h["x-correlation-id"], format!("corr-{name}").as_str());
            let answer: Value = response.json().await.expect("json");
            assert_eq!(answer["status"], "accepted");
            assert_eq!(answer["order_id"], order.to_string());
            answers.push(answer["event_id"].as_str().expect("an event id").to_owned());
        }

        let messages = app.read_topic(topics::ORDERS, 5);
        assert_eq!(messages.len(), 5, "{format}: the order and its 4 changes");
        assert!(
            messages.iter().all(|m| key(m) == order.to_string()),
            "{format}: every message on the order's key"
        );
        assert!(
            messages
                .iter()
                .all(|m| m.partition() == messages[0].partition()),
            "{format}: one partition"
        );
        let types: Vec<Option<String>> = messages
            .iter()
            .map(|m| header(m, headers::EVENT_TYPE))
            .collect();
        let expected: Vec<Option<String>> = ["order.created"]
            .into_iter()
            .chain(changes().map(|(_, t, _)| t))
            .map(|t| Some(t.to_owned()))
            .collect();
        assert_eq!(
            types, expected,
            "{format}: in request order, after the creation"
        );

        for (((version, (name, event_type, _)), m), event_id) in
            (1u32..).zip(changes()).zip(&messages[1..]).zip(&answers)
        {
            assert_eq!(
                header(m, headers::CONTENT_TYPE).as_deref(),
                Some(format.content_type())
            );
            assert_eq!(header(m, headers::SCHEMA_VERSION).as_deref(), Some("1"));
            assert_eq!(
                header(m, headers::CORRELATION_ID),
                Some(format!("corr-{name}"))
            );
            let traceparent = header(m, headers::TRACEPARENT).expect("traceparent");
            assert!(traceparent.contains(trace_id), "{traceparent}");
            let event = read_change(m);
            assert_eq!(event.change.name(), name);
            assert_eq!(event.metadata.event_type, event_type);
            assert_eq!(event.metadata.event_id.to_string(), *event_id);
            assert_eq!(event.order_id, order);
            assert_eq!(event.expected_version, Some(version), "If-Match");
            assert_eq!(event.metadata.correlation_id, format!("corr-{name}"));
            assert_eq!(event.metadata.trace_id.as_deref(), Some(trace_id));
            assert_eq!(
                header(m, headers::CONTENT_FINGERPRINT),
                Some(contract::fingerprint::change(&event).to_string())
            );
            contract::lifecycle::order_change(&event).expect("the consumer takes it");
        }
        let paid = read_change(&messages[1]);
        match &paid.change {
            Change::Payment(p) => {
                assert_eq!(
                    (
                        p.reference.as_str(),
                        p.amount.to_string(),
                        p.currency.as_str()
                    ),
                    ("pay-123", "39.98".to_owned(), "EUR")
                );
            }
            other => panic!("{other:?}"),
        }

        let metrics = app.metrics().await;
        for (name, _, _) in changes() {
            let series = format!(
                "http_requests_total{{method=\"POST\",route=\"/orders/{{id}}/{name}\",status=\"202\"}}"
            );
            assert_eq!(
                harness::metrics::sample(&metrics, &series),
                Some(1.0),
                "{series}"
            );
        }
        assert_eq!(
            harness::metrics::sample(
                &metrics,
                "kafka_producer_messages_total{outcome=\"acked\",topic=\"orders\"}"
            ),
            Some(5.0)
        );
        app.shutdown().await;
    }
}

/// Every body is refused as a creation is: malformed JSON `400`, unknown
/// fields and broken rules `422` listing each field (money exact per
/// currency, the closed set of reasons listed), `413`, `415`; and nothing
/// is published.
#[tokio::test]
async fn each_change_refuses_bad_input_at_its_paths_and_publishes_nothing() {
    let mut app = TestApp::spawn(&[("MAX_BODY_BYTES", "2048")]).await;
    let order = Uuid::now_v7().to_string();
    let refused = |name: &'static str, body: Value| {
        let request = change(&app, &order, name).json(&body);
        async move { status_and_body(request.send().await.expect("answer")).await }
    };

    for (name, _, example) in changes() {
        let (status, body) = status_and_body(
            change(&app, &order, name)
                .body("{")
                .send()
                .await
                .expect("answer"),
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("malformed_json")),
            "{name}"
        );
        let (status, body) = status_and_body(
            app.http
                .post(app.url(&format!("/orders/{order}/{name}")))
                .header("content-type", "text/plain")
                .body("{}")
                .send()
                .await
                .expect("answer"),
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (415, &json!("unsupported_media_type")),
            "{name}"
        );
        // The order is the path's: a body cannot name one.
        let mut unknown = example;
        unknown["order_id"] = json!(order);
        let (status, body) = refused(name, unknown).await;
        assert_eq!(
            (status, paths(&body)),
            (422, vec!["order_id".to_owned()]),
            "{name}: {body}"
        );
    }

    let mut payment = example_payment();
    payment["amount"] = json!("39.985");
    let (status, body) = refused("payment", payment).await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["amount".to_owned()]),
        "{body}"
    );
    let (status, body) = refused(
        "payment",
        json!({"reference": "pay-1", "amount": "1500.5", "currency": "JPY"}),
    )
    .await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["amount".to_owned()]),
        "{body}"
    );
    assert!(body["fields"][0]["reason"]
        .as_str()
        .is_some_and(|r| r.contains("0 decimal places")));
    let (status, body) = refused(
        "payment",
        json!({"reference": "", "amount": 39.98, "currency": "XXX"}),
    )
    .await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["amount".to_owned()]),
        "a JSON number is no amount: {body}"
    );
    let (status, body) = refused(
        "payment",
        json!({"reference": "", "amount": "-1", "currency": "XXX"}),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(
        paths(&body),
        ["reference", "currency", "amount"],
        "all at once: {body}"
    );

    let (status, body) = refused("shipment", json!({"carrier": "DHL"})).await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("tracking_number")),
        "{body}"
    );
    let (status, body) = refused(
        "shipment",
        json!({"carrier": " ", "tracking_number": "t".repeat(65)}),
    )
    .await;
    assert_eq!(
        (status, paths(&body)),
        (
            422,
            vec!["carrier".to_owned(), "tracking_number".to_owned()]
        )
    );

    let (status, body) = refused("delivery", json!({"signature": "x"})).await;
    assert_eq!((status, paths(&body)), (422, vec!["signature".to_owned()]));
    let (status, body) = refused("delivery", json!({"received_by": ""})).await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["received_by".to_owned()])
    );

    let (status, body) = refused("cancellation", json!({"reason": "changed_mind"})).await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["reason".to_owned()]),
        "{body}"
    );
    let reason = body["fields"][0]["reason"].as_str().unwrap_or_default();
    for allowed in contract::lifecycle::CancellationReason::ALL {
        assert!(
            reason.contains(allowed.as_str()),
            "lists {allowed:?}: {reason}"
        );
    }
    let (status, body) = refused("cancellation", json!({"note": "why"})).await;
    assert_eq!(status, 422, "the reason is required: {body}");
    let (status, body) = refused(
        "cancellation",
        json!({"reason": "other", "note": "n".repeat(2100)}),
    )
    .await;
    assert_eq!((status, &body["error"]), (413, &json!("payload_too_large")));

    let (status, body) = status_and_body(
        change(&app, &order, "delivery")
            .header("idempotency-key", "")
            .json(&json!({}))
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(
        (status, paths(&body)),
        (422, vec!["header:Idempotency-Key".to_owned()])
    );

    assert!(app.topic_is_empty(topics::ORDERS), "nothing was published");
    app.shutdown().await;
}

/// A path that names no order is a `400` (`invalid_id`, as the read side
/// answers it), before the body is looked at; an order id in another
/// spelling of a UUID is the order, keyed as the consumer stores it.
#[tokio::test]
async fn a_path_that_names_no_order_is_a_400_and_any_uuid_spelling_is_the_order() {
    let mut app = TestApp::spawn(&[]).await;
    let order = Uuid::now_v7();
    for bad in [
        "not-a-uuid",
        "42",
        "0193a5a0-7c1e-7d2a-9b1e-3f4c5d6e7f8",
        "0193a5a0-7c1e-7d2a-9b1e-3f4c5d6e7f80a",
        "%FF%FE",
        "a%2Fb",
    ] {
        for (name, _, body) in changes() {
            let (status, answer) = status_and_body(
                change(&app, bad, name)
                    .json(&body)
                    .send()
                    .await
                    .expect("answer"),
            )
            .await;
            assert_eq!(status, 400, "{bad} {name}: {answer}");
            assert_eq!(answer["error"], "invalid_id");
            assert!(
                answer["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("UUID")),
                "{answer}"
            );
        }
        let (status, answer) = status_and_body(
            change(&app, bad, "payment")
                .body("{")
                .send()
                .await
                .expect("answer"),
        )
        .await;
        assert_eq!(
            (status, &answer["error"]),
            (400, &json!("invalid_id")),
            "the path first"
        );
    }
    let upper = order.to_string().to_uppercase();
    let answer = change(&app, &upper, "delivery")
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 202);
    assert_eq!(
        answer.headers()["location"],
        format!("/orders/{order}").as_str()
    );
    let messages = app.read_topic(topics::ORDERS, 1);
    assert_eq!(messages.len(), 1, "only the good id was published");
    assert_eq!(
        key(&messages[0]),
        order.to_string(),
        "the stored form of the id"
    );
    app.shutdown().await;
}

/// The event id of a change is derived from the order, the change and the
/// `Idempotency-Key`, as creation ids are (a keyed deployment with its
/// secret): a retry gets the same one, with a key or without.
#[tokio::test]
async fn a_retried_change_gets_the_same_event_id_with_or_without_a_key() {
    let mut app = TestApp::spawn(&[]).await;
    let order = Uuid::now_v7();
    let send = |name: &'static str, key: Option<&'static str>| {
        let mut request = change(&app, &order.to_string(), name);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let body = changes()
            .into_iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, body)| body)
            .unwrap_or_default();
        async move {
            let answer = request.json(&body).send().await.expect("answer");
            assert_eq!(answer.status(), 202);
            let answer: Value = answer.json().await.expect("json");
            answer["event_id"]
                .as_str()
                .and_then(|id| id.parse::<Uuid>().ok())
                .expect("an event id")
        }
    };
    let public = KeyDerivation::public();
    let keyed = send("payment", Some("pay-1")).await;
    assert_eq!(
        keyed,
        send("payment", Some("pay-1")).await,
        "a retry, the same id"
    );
    assert_eq!(
        keyed,
        ids::change_event(&public, order, ORDER_PAID, Some("pay-1")),
        "the contract's derivation"
    );
    assert_ne!(keyed, send("payment", Some("pay-2")).await, "another key");
    assert_ne!(
        keyed,
        send("shipment", Some("pay-1")).await,
        "another change"
    );
    let unkeyed = send("payment", None).await;
    assert_eq!(
        unkeyed,
        send("payment", None).await,
        "no key: still the same id"
    );
    assert_eq!(unkeyed, ids::change_event(&public, order, ORDER_PAID, None));
    assert_ne!(unkeyed, keyed);

    let messages = app.read_topic(topics::ORDERS, 6);
    let published: Vec<Uuid> = messages
        .iter()
        .map(|m| read_change(m).metadata.event_id)
        .collect();
    assert_eq!(
        published.iter().filter(|id| **id == keyed).count(),
        2,
        "both copies are published under one event id: the consumer keeps one"
    );
    app.shutdown().await;

    let secret = "a-deployment-secret-of-32-chars!";
    let mut app = TestApp::spawn(&[("IDEMPOTENCY_KEY_SECRET", secret)]).await;
    let answer: Value = change(&app, &order.to_string(), "payment")
        .header("idempotency-key", "pay-1")
        .json(&example_payment())
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    let with_secret = ids::change_event(
        &KeyDerivation::keyed(secret.as_bytes()),
        order,
        ORDER_PAID,
        Some("pay-1"),
    );
    assert_eq!(
        answer["event_id"],
        with_secret.to_string(),
        "the deployment's derivation"
    );
    assert_ne!(with_secret, keyed, "not the public one");
    app.shutdown().await;
}

/// `If-Match` with one strong tag holding a version makes the change
/// conditional on it; `*` or none, unconditional; any other form is a
/// `400` that says what is wrong, and publishes nothing.
#[tokio::test]
async fn if_match_names_one_version_or_is_refused_with_a_400() {
    let mut app = TestApp::spawn(&[]).await;
    let order = Uuid::now_v7().to_string();
    let conditions = [(Some("\"3\""), Some(3)), (Some("*"), None), (None, None)];
    for (sent, (value, expected)) in (1..).zip(conditions) {
        let mut request = change(&app, &order, "shipment");
        if let Some(value) = value {
            request = request.header("if-match", value);
        }
        let answer = request
            .json(&example_shipment())
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), 202, "{value:?}");
        // One key, one partition: the latest is the last.
        let messages = app.read_topic(topics::ORDERS, sent);
        assert_eq!(messages.len(), sent);
        let last = messages.last().expect("published");
        assert_eq!(read_change(last).expected_version, expected, "{value:?}");
    }
    let before = conditions.len();
    for (value, says) in [
        ("W/\"3\"", "weak"),
        ("\"3\", \"4\"", "several"),
        ("3", "entity tag"),
        ("\"three\"", "no version"),
        ("\"0\"", "no version"),
        ("\"99999999999\"", "no version"),
        ("", "entity tag"),
    ] {
        let (status, body) = status_and_body(
            change(&app, &order, "shipment")
                .header("if-match", value)
                .json(&example_shipment())
                .send()
                .await
                .expect("answer"),
        )
        .await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_if_match")),
            "{value:?}: {body}"
        );
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says) && message.contains("If-Match"),
            "{value:?}: {message}"
        );
    }
    let (status, _) = status_and_body(
        change(&app, &order, "shipment")
            .header("if-match", "\"3\"")
            .header("if-match", "\"4\"")
            .json(&example_shipment())
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 400, "two header lines are a list of two");
    assert_eq!(
        app.read_topic(topics::ORDERS, before).len(),
        before,
        "nothing more published"
    );
    app.shutdown().await;
}

/// What the server takes of an `If-Match` value as the client sent it: the
/// version, `None` for no condition, or a refusal (`Err`).
fn takes(value: &[u8]) -> Result<Option<u32>, ()> {
    let text = std::str::from_utf8(value).map_err(|_| ())?;
    if !text.is_ascii() {
        return Err(());
    }
    if text.trim_matches([' ', '\t']) == "*" {
        return Ok(None);
    }
    text.trim_matches([' ', '\t', ','])
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .filter(|v| !v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u32>().ok())
        .map(Some)
        .ok_or(())
}

/// Generated `If-Match` values, from near-tags to any bytes a header can
/// carry, sent over HTTP: never a `5xx`, never a dropped connection; `202`
/// exactly for `*` and one strong tag holding a version, `400` otherwise.
#[test]
fn any_if_match_value_gets_a_202_or_a_400_and_never_a_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut app = runtime.block_on(TestApp::spawn(&[]));
    let url = app.url(&format!("/orders/{}/delivery", Uuid::now_v7()));
    let values = prop_oneof![
        "[ \t]{0,2}(W/)?\"?[0-9]{0,11}\"?([ \t]{0,2},[ \t]{0,2}(W/)?\"[0-9a-z,]{0,3}\")?[ \t,]{0,2}"
            .prop_map(String::into_bytes),
        "[ \t]{0,2}\\*[ \t,*]{0,2}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let (accepted, refused) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    let result = runner.run(&values, |value| {
        // Bytes no header value can hold are the client library's to refuse.
        let Ok(header) = reqwest::header::HeaderValue::from_bytes(&value) else {
            return Ok(());
        };
        let status = runtime
            .block_on(
                app.http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("if-match", header)
                    .body("{}")
                    .send(),
            )
            .map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?
            .status()
            .as_u16();
        let shown = String::from_utf8_lossy(&value).into_owned();
        prop_assert!(status < 500, "{} for {:?}", status, shown);
        let expected = if takes(&value).is_ok() { 202 } else { 400 };
        prop_assert_eq!(status, expected, "{:?}", shown);
        let counter = if status == 202 { &accepted } else { &refused };
        counter.set(counter.get() + 1);
        Ok(())
    });
    runtime.block_on(app.shutdown());
    if let Err(e) = result {
        panic!("{e}");
    }
    let (accepted, refused) = (accepted.get(), refused.get());
    println!("generated If-Match values: {accepted} accepted, {refused} refused");
    assert!(
        accepted > 0 && refused > 0,
        "{accepted} accepted, {refused} refused"
    );
}

/// The change routes are admitted as creation is: the bearer token, the
/// client's rate limit (`429` with `Retry-After`), and a `503` with
/// `Retry-After` while the broker is away.
#[tokio::test]
async fn change_routes_need_the_token_keep_the_rate_limit_and_answer_503_without_a_broker() {
    let token = "s3cret-token-0123456789";
    let mut app = TestApp::spawn(&[("API_TOKEN", token), ("RATE_LIMIT_RPS", "1")]).await;
    let order = Uuid::now_v7().to_string();
    let (status, body) = status_and_body(
        change(&app, &order, "payment")
            .json(&example_payment())
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    let (status, _) = status_and_body(
        change(&app, "not-a-uuid", "payment")
            .json(&example_payment())
            .send()
            .await
            .expect("answer"),
    )
    .await;
    assert_eq!(status, 401, "the token before anything else");

    let answers = futures::future::join_all((0..4).map(|_| {
        change(&app, &order, "payment")
            .bearer_auth(token)
            .json(&example_payment())
            .send()
    }))
    .await;
    let mut statuses = Vec::new();
    for answer in answers {
        let answer = answer.expect("answer");
        if answer.status() == 429 {
            assert!(answer.headers().contains_key("retry-after"));
        }
        statuses.push(answer.status().as_u16());
    }
    assert!(
        statuses.contains(&202) && statuses.contains(&429),
        "{statuses:?}"
    );
    let admitted = statuses.iter().filter(|s| **s == 202).count();

    app.cluster.broker_down(1).expect("broker down");
    let answer = harness::wait::eventually(
        Duration::from_secs(10),
        "a change admitted by the rate limit while the broker is down",
        || async {
            let answer = change(&app, &order, "cancellation")
                .bearer_auth(token)
                .json(&example_cancellation())
                .send()
                .await
                .expect("answer");
            match answer.status().as_u16() {
                429 => Err("rate limited".to_owned()),
                _ => Ok(answer),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    let (_, body) = status_and_body(answer).await;
    assert_eq!(body["error"], "broker_unavailable");
    app.cluster.broker_up(1).expect("broker up");
    assert_eq!(
        app.read_topic(topics::ORDERS, admitted).len(),
        admitted,
        "only the admitted changes were published"
    );
    app.shutdown().await;
}

/// In outbox mode a change waits in the outbox like a creation, `202` with
/// the broker down, and is published once it returns, with its envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_outbox_mode_a_change_is_accepted_without_a_broker_and_published_once_it_returns() {
    let db = TestDatabase::create().await;
    let mut app = TestApp::spawn(&[
        ("PRODUCER_MODE", "outbox"),
        ("OUTBOX_DATABASE_URL", db.url.as_str()),
        ("OUTBOX_RELAY_POLL_MS", "20"),
    ])
    .await;
    app.cluster.broker_down(1).expect("broker down");
    let order = Uuid::now_v7();
    let answer = change(&app, &order.to_string(), "payment")
        .header("if-match", "\"1\"")
        .json(&example_payment())
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 202, "accepted while the broker is down");
    let body: Value = answer.json().await.expect("json");
    app.cluster.broker_up(1).expect("broker up");
    outbox_drained(&db.pool, Duration::from_secs(30)).await;
    let messages = app.read_topic(topics::ORDERS, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(key(&messages[0]), order.to_string());
    assert_eq!(
        header(&messages[0], headers::EVENT_TYPE).as_deref(),
        Some(ORDER_PAID)
    );
    let event = read_change(&messages[0]);
    assert_eq!(
        event.metadata.event_id.to_string(),
        body["event_id"].as_str().unwrap_or_default()
    );
    assert_eq!(event.expected_version, Some(1));
    app.shutdown().await;
}
