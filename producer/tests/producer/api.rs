//! The producer's HTTP API against a real Kafka-protocol broker (librdkafka's
//! mock cluster), driven by a real HTTP client.

use std::time::{Duration, Instant};

use crate::support::{header, key, order_body, TestApp};
use contract::{headers, topics, EventCodec, Format, OrderEvent, UserEvent};
use harness::wait::eventually;
use rdkafka::message::Message;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

/// How long a test waits for an effect before it fails; a passing run goes
/// on as soon as the effect shows.
const WAIT: Duration = Duration::from_secs(30);

/// Posts orders until one is accepted (202), failing after `deadline`.
async fn accepted_again(app: &TestApp, deadline: Duration, what: &str) {
    eventually(deadline, what, || async {
        match app.post_order().await {
            202 => Ok(()),
            status => Err(format!("answered {status}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn accepted_orders_are_published_keyed_with_headers_in_every_format() {
    for format in Format::ALL {
        let mut app = TestApp::spawn(&[("MESSAGE_FORMAT", format.name())]).await;
        let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
        let response = app
            .post("/orders")
            .header("x-correlation-id", "corr-123")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .header("tracestate", "vendor=opaque-7")
            .json(&order_body())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{format}");
        assert_eq!(response.headers()["x-correlation-id"], "corr-123");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "accepted");
        let order_id = body["order_id"].as_str().unwrap().to_owned();
        // Where to poll, naming the content this request carried (the
        // read side answers 409 there if the id holds other content).
        let fingerprint_param = location
            .strip_prefix(&format!("/orders/{order_id}?content="))
            .unwrap_or_else(|| panic!("where to poll: {location}"))
            .to_owned();
        let assigned = contract::ids::assigned_at(&order_id.parse().unwrap())
            .expect("a server-assigned order id carries its acceptance time");
        assert!((chrono::Utc::now() - assigned).num_seconds().abs() < 60);

        let messages = app.read_topic(topics::ORDERS, 1);
        assert_eq!(messages.len(), 1, "{format}: exactly one message");
        let m = &messages[0];
        assert_eq!(key(m), order_id);
        assert_eq!(
            header(m, headers::CONTENT_TYPE).as_deref(),
            Some(format.content_type())
        );
        assert_eq!(header(m, headers::SCHEMA_VERSION).as_deref(), Some("2"));
        assert_eq!(
            header(m, headers::EVENT_TYPE).as_deref(),
            Some("order.created")
        );
        assert_eq!(
            header(m, headers::CORRELATION_ID).as_deref(),
            Some("corr-123")
        );
        assert_eq!(
            header(m, headers::CONTENT_FINGERPRINT).as_deref(),
            Some(fingerprint_param.as_str()),
            "the Location names the content that was published"
        );
        let traceparent = header(m, headers::TRACEPARENT).expect("traceparent header");
        assert!(
            traceparent.contains(trace_id),
            "trace continues: {traceparent}"
        );
        assert_eq!(
            header(m, headers::TRACESTATE).as_deref(),
            Some("vendor=opaque-7"),
            "{format}: the caller's tracestate travels with the trace"
        );

        let event = OrderEvent::decode(m.payload().unwrap(), format, 2).expect("decodes");
        assert_eq!(
            header(m, headers::CONTENT_FINGERPRINT),
            Some(contract::fingerprint::order(&event).to_string()),
            "{format}: the fingerprint of the content travels with it"
        );
        assert_eq!(event.order_id.to_string(), order_id);
        assert_eq!(
            event.metadata.event_id.to_string(),
            body["event_id"].as_str().unwrap()
        );
        assert_eq!(event.metadata.correlation_id, "corr-123");
        assert_eq!(event.metadata.trace_id.as_deref(), Some(trace_id));
        assert_eq!(event.totals.subtotal.to_string(), "39.98");
        assert_eq!(event.totals.item_count, 2);
        assert_eq!(event.customer.address.city, "London");
        contract::validation::order_event(&event).expect("the published event is valid");
        app.shutdown().await;
    }
}

#[tokio::test]
async fn accepted_users_are_published_to_the_users_topic() {
    let mut app = TestApp::spawn(&[("MESSAGE_FORMAT", "avro")]).await;
    let response = app
        .post("/users")
        .json(&json!({"user_id": "u-42", "name": "Ada", "email": "ada@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with("/users/u-42?content=v1:"),
        "{location}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user_id"], "u-42");
    let messages = app.read_topic(topics::USERS, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(key(&messages[0]), "u-42");
    let event = UserEvent::decode(messages[0].payload().unwrap(), Format::Avro, 1).unwrap();
    assert_eq!(event.email, "ada@example.com");
    assert!(app.topic_is_empty(topics::ORDERS));
    assert!(
        !app.topic_is_empty(topics::USERS),
        "the emptiness check sees a topic that holds one message"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn with_a_deployment_secret_a_keys_order_id_cannot_be_computed_without_it() {
    let secret = "a-deployment-secret-of-32-chars!";
    let mut app = TestApp::spawn(&[("IDEMPOTENCY_KEY_SECRET", secret)]).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let body: Value = app
            .post("/orders")
            .header("idempotency-key", "guessable-1")
            .json(&order_body())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(body["order_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[0], ids[1], "a retry gets the same order");
    let public =
        contract::ids::KeyDerivation::public().id_of(contract::Domain::Orders, "guessable-1");
    assert_ne!(
        ids[0],
        public.to_string(),
        "not the id anyone can compute from the key"
    );
    let keyed = contract::ids::KeyDerivation::keyed(secret.as_bytes())
        .id_of(contract::Domain::Orders, "guessable-1");
    assert_eq!(ids[0], keyed.to_string(), "the deployment's derivation");
    app.shutdown().await;
}

#[tokio::test]
async fn retries_with_one_idempotency_key_map_to_one_order_id() {
    let mut app = TestApp::spawn(&[]).await;
    let mut ids = Vec::new();
    for key in ["key-1", "key-1", "key-2"] {
        let body: Value = app
            .post("/orders")
            .header("idempotency-key", key)
            .json(&order_body())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push((body["order_id"].clone(), body["event_id"].clone()));
    }
    assert_eq!(ids[0], ids[1], "same key, same order and event");
    assert_ne!(ids[0].0, ids[2].0, "another key, another order");
    let public = contract::ids::KeyDerivation::public().id_of(contract::Domain::Orders, "key-1");
    assert_eq!(
        ids[0].0,
        json!(public.to_string()),
        "without a secret: the public derivation"
    );

    let client_id = "0b9c4bde-9a43-4d1a-8f7e-3f1ae2c6a3d1";
    let mut body = order_body();
    body["order_id"] = json!(client_id);
    let answer: Value = app
        .post("/orders")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["order_id"], client_id, "a client order_id is kept");

    // Every publish carries the same key for the same order: one partition.
    let messages = app.read_topic(topics::ORDERS, 4);
    let same: Vec<_> = messages
        .iter()
        .filter(|m| Some(key(m)) == ids[0].0.as_str().map(str::to_owned))
        .map(|m| m.partition())
        .collect();
    assert_eq!(same.len(), 2);
    assert_eq!(same[0], same[1]);
    app.shutdown().await;
}

async fn status_and_body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_bad_input_gets_its_status_and_writes_nothing() {
    let mut app = TestApp::spawn(&[("MAX_BODY_BYTES", "2048")]).await;

    let (status, body) = status_and_body(
        app.post("/orders")
            .body("{\"customer\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "malformed_json");

    let mut invalid = order_body();
    invalid["currency"] = json!("XXX");
    invalid["items"][0]["quantity"] = json!(0);
    invalid["items"][0]["unit_price"] = json!("-1");
    let (status, body) =
        status_and_body(app.post("/orders").json(&invalid).send().await.unwrap()).await;
    assert_eq!(status, 422);
    let paths: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["currency", "items[0].quantity", "items[0].unit_price"],
        "{body}"
    );

    // Money is exact: a price the decimal type would round is refused.
    let mut rounded = order_body();
    rounded["items"][0]["unit_price"] = json!("1.00000000000000000000000000001");
    let (status, body) =
        status_and_body(app.post("/orders").json(&rounded).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["fields"][0]["path"], "items[0].unit_price", "{body}");

    let mut unknown = order_body();
    unknown["coupon"] = json!("X");
    let (status, body) =
        status_and_body(app.post("/orders").json(&unknown).send().await.unwrap()).await;
    assert_eq!(status, 422);
    assert_eq!(body["fields"][0]["path"], "coupon");

    let mut large = order_body();
    large["customer"]["name"] = json!("x".repeat(4096));
    let (status, body) =
        status_and_body(app.post("/orders").json(&large).send().await.unwrap()).await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");

    let response = app
        .http
        .post(app.url("/orders"))
        .header("content-type", "text/plain")
        .body(order_body().to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = status_and_body(response).await;
    assert_eq!(status, 415);
    assert_eq!(body["error"], "unsupported_media_type");

    let (status, _) = status_and_body(
        app.post("/orders")
            .header("idempotency-key", "")
            .json(&order_body())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422, "an empty idempotency key is refused");

    let (status, body) = status_and_body(
        app.post("/users")
            .json(&json!({"name": "Ada"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("email"),
        "{body}"
    );

    assert!(
        app.topic_is_empty(topics::ORDERS),
        "nothing was written to orders"
    );
    assert!(
        app.topic_is_empty(topics::USERS),
        "nothing was written to users"
    );
    app.shutdown().await;
}

/// Every answer carries `X-Correlation-ID`, a refusal's as well as a
/// `202`'s: the caller's when it sent a sensible one, else the one the
/// producer made, which is also the one its event carries.
#[tokio::test]
async fn every_answer_carries_the_correlation_id() {
    let token = "s3cret-token-0123456789";
    let mut app = TestApp::spawn(&[("API_TOKEN", token)]).await;
    let correlation = |response: &reqwest::Response| {
        response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut invalid = order_body();
    invalid["currency"] = json!("XXX");
    let refusals = [
        ("no token", app.post("/orders").json(&order_body()), 401),
        (
            "invalid",
            app.post("/orders").bearer_auth(token).json(&invalid),
            422,
        ),
        (
            "malformed",
            app.post("/orders").bearer_auth(token).body("{"),
            400,
        ),
        (
            "not JSON",
            app.http
                .post(app.url("/users"))
                .bearer_auth(token)
                .header("content-type", "text/plain")
                .body("x"),
            415,
        ),
        (
            "a key on a batch",
            app.post("/orders/batch")
                .bearer_auth(token)
                .header("idempotency-key", "k-1")
                .json(&json!({"orders": [{"order": order_body()}]})),
            422,
        ),
        ("no such path", app.http.get(app.url("/nowhere")), 404),
        ("a read", app.http.get(app.url("/orders/abc")), 404),
    ];
    for (what, request, status) in refusals {
        let id = format!("corr-{status}-{}", what.replace(' ', "-"));
        let response = request
            .header("x-correlation-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{what}");
        assert_eq!(
            correlation(&response).as_deref(),
            Some(id.as_str()),
            "{what}"
        );
    }

    // Without one (or with one past 128 characters), the producer's own.
    for sent in [None, Some("x".repeat(129))] {
        let mut request = app.post("/orders").bearer_auth(token).json(&invalid);
        if let Some(sent) = &sent {
            request = request.header("x-correlation-id", sent);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 422);
        let made = correlation(&response).expect("a correlation id on a 422");
        assert!(made.parse::<uuid::Uuid>().is_ok(), "{made}");
    }
    let accepted = app
        .post("/orders")
        .bearer_auth(token)
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let made = correlation(&accepted).expect("a correlation id on a 202");
    let messages = app.read_topic(topics::ORDERS, 1);
    assert_eq!(messages.len(), 1);
    assert_eq!(
        header(&messages[0], headers::CORRELATION_ID).as_deref(),
        Some(made.as_str()),
        "the answer names the correlation id its event carries"
    );
    app.shutdown().await;
}

/// A client that resolves a `202`'s relative `Location` against the
/// producer gets a JSON `404` that says the read side answers it, with the
/// path; so does any path no route has.
#[tokio::test]
async fn reads_on_the_producer_say_where_they_are_answered() {
    let mut app = TestApp::spawn(&[]).await;
    let response = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let users = "/users/u-7".to_owned();
    for path in [location, users] {
        let response = app.http.get(app.url(&path)).send().await.unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "application/json",
            "{path}"
        );
        let (status, body) = status_and_body(response).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(body["error"], "read_side", "{path}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("GET {path} ")) && message.contains("query service"),
            "{message}"
        );
    }
    let (status, body) =
        status_and_body(app.http.get(app.url("/nowhere")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("not_found")),
        "{body}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn over_the_rate_limit_requests_get_429_with_retry_after() {
    let mut app = TestApp::spawn(&[("RATE_LIMIT_RPS", "1")]).await;
    // Sent together, so they meet the limiter within the same second however
    // long each waits for the broker afterwards.
    let answers =
        futures::future::join_all((0..5).map(|_| app.post("/orders").json(&order_body()).send()))
            .await;
    let mut admitted = 0;
    let mut limited = 0;
    for answer in answers {
        let answer = answer.unwrap();
        match answer.status().as_u16() {
            202 => admitted += 1,
            429 => {
                limited += 1;
                let h = answer.headers();
                assert!(h.contains_key("retry-after"));
                assert_eq!(
                    h.get("connection").map(|v| v.as_bytes()),
                    Some(&b"close"[..]),
                    "refused before its body was read: the connection closes, and says so"
                );
                assert_eq!(h["ratelimit-limit"], "1");
                assert_eq!(h["ratelimit-remaining"], "0");
                assert!(h.contains_key("ratelimit-reset"));
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(admitted >= 1, "the first request is admitted");
    assert!(
        limited >= 1,
        "requests over 1/s get 429 ({admitted} admitted)"
    );
    assert_eq!(
        app.read_topic(topics::ORDERS, admitted).len(),
        admitted,
        "only the admitted order was written"
    );
    app.shutdown().await;
}

/// Behind a proxy that adds its own `X-Forwarded-For` line after the
/// client's (HAProxy's `option forwardfor`), a client writing a new first
/// line on every request is still one client: 3 admitted of 6 against a
/// burst of 3 (all 6 were, when the first line counted).
#[tokio::test]
async fn a_forged_forwarded_for_line_does_not_make_a_new_client() {
    let mut app = TestApp::spawn(&[
        ("RATE_LIMIT_RPS", "1"),
        ("RATE_LIMIT_BURST", "3"),
        ("RATE_LIMIT_CLIENT_HEADER", "X-Forwarded-For"),
    ])
    .await;
    let answers = futures::future::join_all((0..6).map(|n| {
        app.post("/orders")
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("x-forwarded-for", "203.0.113.7:51234")
            .json(&order_body())
            .send()
    }))
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().expect("answer").status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        3,
        "one client, a burst of 3: {statuses:?}"
    );
    app.shutdown().await;
}

/// The limit is per client: one client over its rate gets 429 while
/// another, from another address, is still admitted; without a setting
/// there is no limit at all.
#[tokio::test]
async fn the_rate_limit_is_per_client_and_off_unless_set() {
    let mut app = TestApp::spawn(&[("RATE_LIMIT_RPS", "1"), ("RATE_LIMIT_BURST", "2")]).await;
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .expect("client")
    };
    let (busy, other) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
    let post =
        |client: &reqwest::Client| client.post(app.url("/orders")).json(&order_body()).send();
    let busy_answers = futures::future::join_all((0..4).map(|_| post(&busy))).await;
    let statuses: Vec<u16> = busy_answers
        .iter()
        .map(|a| a.as_ref().expect("answer").status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        2,
        "a burst of 2, then 429: {statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    let admitted = post(&other).await.expect("answer");
    assert_eq!(admitted.status(), 202, "another client has its own bucket");
    assert_eq!(admitted.headers()["ratelimit-limit"], "2");
    assert_eq!(admitted.headers()["ratelimit-remaining"], "1");
    app.shutdown().await;

    let mut app = TestApp::spawn(&[]).await;
    let answers =
        futures::future::join_all((0..50).map(|_| app.post("/orders").json(&order_body()).send()))
            .await;
    for answer in answers {
        let answer = answer.expect("answer");
        assert_eq!(answer.status(), 202);
        assert!(!answer.headers().contains_key("ratelimit-limit"));
    }
    app.shutdown().await;
}

#[tokio::test]
async fn write_endpoints_need_the_bearer_token_when_one_is_configured() {
    let token = "s3cret-token-0123456789";
    let mut app = TestApp::spawn(&[("API_TOKEN", token)]).await;
    let denied = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    let wrong = app
        .post("/orders")
        .bearer_auth("wrong-token-0123456789")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = app
        .post("/orders")
        .bearer_auth(token)
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "probes stay open"
    );
    assert_eq!(app.read_topic(topics::ORDERS, 1).len(), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_stopped_broker_gives_503_within_the_bound_and_recovery_needs_no_restart() {
    let mut app = TestApp::spawn(&[]).await;
    assert_eq!(app.post_order().await, 202);

    app.cluster.broker_down(1).unwrap();
    let started = Instant::now();
    let response = app
        .post("/orders")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "broker_unavailable");
    // PRODUCE_TIMEOUT_MS is 2000 in these tests; the bound is that plus slack.
    assert!(took < Duration::from_secs(4), "answered after {took:?}");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503, "not ready while the broker is down");

    app.cluster.broker_up(1).unwrap();
    accepted_again(
        &app,
        Duration::from_secs(5),
        "the producer to recover once the broker is back",
    )
    .await;
    app.shutdown().await;
}

/// Brokers that answer metadata but take no write (two of three replicas
/// down: NOT_ENOUGH_REPLICAS on every produce) make every request a 503,
/// and readiness must say so: a metadata request alone would call the
/// service ready. The first acknowledged write makes it ready again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_that_answer_metadata_but_take_no_write_make_the_service_not_ready() {
    let mut app = TestApp::spawn(&[]).await;
    assert_eq!(app.post_order().await, 202);
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 100_000],
    );
    assert_eq!(app.post_order().await, 503, "no write is acknowledged");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    let status = ready.status();
    let body = ready.text().await.unwrap();
    assert_eq!(status, 503, "not ready while writes fail: {body}");
    assert!(body.contains("the last write"), "says why: {body}");

    app.cluster.clear_request_errors(RDKafkaApiKey::Produce);
    accepted_again(
        &app,
        Duration::from_secs(20),
        "writes acknowledged again once the brokers take them",
    )
    .await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(
        ready.status(),
        200,
        "ready again after an acknowledged write"
    );
    app.shutdown().await;
}

/// A broker that refuses every write of the producer (as Tansu does, with
/// UNKNOWN_SERVER_ERROR, for an idempotent producer whose state it lost in a
/// restart) must not leave the service answering 503 until someone restarts
/// it: after two write timeouts without an acknowledgement the producer is
/// replaced, as when writes time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_whose_writes_the_broker_keeps_refusing_is_replaced() {
    let mut app = TestApp::spawn(&[("PRODUCE_TIMEOUT_MS", "500")]).await;
    // The first write also waits for metadata and a producer id: on a busy
    // machine it can take longer than the 500 ms bound (and even replace the
    // producer), so wait for one acknowledged order before the refusals start
    // and count replacements from there.
    accepted_again(
        &app,
        Duration::from_secs(30),
        "an order accepted by a healthy mock cluster",
    )
    .await;
    let stuck_before = stuck_replacements(&app.metrics().await);
    app.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN; 100_000],
    );
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    let replaced = eventually(
        Duration::from_secs(10),
        "the producer replaced after two timeouts (1 s) of refused writes",
        || async {
            let status = app.post_order().await;
            *statuses.borrow_mut().entry(status).or_insert(0) += 1;
            let replacements = stuck_replacements(&app.metrics().await);
            if replacements > stuck_before {
                Ok(())
            } else {
                Err(format!("{replacements} replacements, answers {statuses:?}"))
            }
        },
    )
    .await;
    let statuses = statuses.into_inner();
    println!("answers while every write is refused: {statuses:?}");
    assert!(statuses.keys().all(|&s| s == 503), "{statuses:?}");
    replaced.unwrap_or_else(|e| panic!("{e}"));
    app.shutdown().await;
}

/// The value of `kafka_producer_replaced_total{reason="stuck"}` in a metrics
/// page, 0 while the series does not exist yet.
fn stuck_replacements(metrics: &str) -> u64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("kafka_producer_replaced_total{reason=\"stuck\"} "))
        .map(|value| value.trim().parse().expect("a counter value"))
        .unwrap_or(0)
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi_are_served() {
    let mut app = TestApp::spawn(&[]).await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.http
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(app.post_order().await, 202);
    let metrics = app.metrics().await;
    for expected in [
        r#"kafka_producer_messages_total{outcome="acked",topic="orders"} 1"#,
        "kafka_producer_produce_duration_seconds_bucket",
        "kafka_producer_queue_depth",
        r#"http_requests_total{method="POST",route="/orders",status="202"} 1"#,
        "http_request_duration_seconds_bucket",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in\n{metrics}"
        );
    }
    let doc: Value = app
        .http
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/orders"]["post"]["responses"]["202"].is_object(),
        "{doc}"
    );
    assert!(doc["paths"]["/users"]["post"].is_object());
    assert!(doc["paths"]["/orders/batch"]["post"]["responses"]["207"].is_object());
    assert!(doc["paths"]["/users/batch"]["post"].is_object());
    assert!(doc["components"]["schemas"]["OrderBatch"].is_object());
    assert!(doc["components"]["schemas"]["CreateOrderRequest"].is_object());
    for change in ["payment", "shipment", "delivery", "cancellation"] {
        let post = &doc["paths"][format!("/orders/{{id}}/{change}")]["post"];
        assert!(post["responses"]["202"].is_object(), "{change}: {doc}");
        assert!(post["responses"]["400"].is_object(), "{change}: {doc}");
    }
    assert!(doc["components"]["schemas"]["AcceptedChange"].is_object());
    app.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_flushes() {
    let mut app = TestApp::spawn(&[]).await;
    // A slow broker keeps the requests in flight while the stop arrives.
    app.cluster
        .broker_round_trip_time(1, Duration::from_millis(400))
        .unwrap();
    let requests: Vec<_> = (0..20)
        .map(|_| app.post("/orders").json(&order_body()).send())
        .collect();
    let in_flight = tokio::spawn(futures::future::join_all(requests));
    // Each of the 20 holds a connection of its own (and the scrape one
    // more): all accepted, the stop finds them in flight.
    eventually(WAIT, "the 20 requests' connections accepted", || async {
        let open = harness::metrics::sample(&app.metrics().await, "http_connections_open");
        match open {
            Some(open) if open >= 21.0 => Ok(()),
            other => Err(format!("{other:?} connections open")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let started = Instant::now();
    app.shutdown().await;
    let answers = in_flight.await.unwrap();
    let accepted = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 202))
        .count();
    assert_eq!(accepted, 20, "requests in flight at the stop were finished");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "within the shutdown bound"
    );
    assert_eq!(
        app.read_topic(topics::ORDERS, 20).len(),
        20,
        "every 202 is on the topic"
    );
    assert!(
        reqwest::Client::new()
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
}

/// The series of a Prometheus text exposition: every sample line without
/// its value.
fn series(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn made_up_methods_and_paths_add_no_metric_series() {
    let mut app = TestApp::spawn(&[]).await;
    let send = |method: String, path: String| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method token");
        app.http.request(method, app.url(&path)).send()
    };
    // One of each kind first, so the series the flood maps to exist.
    for n in 0..3 {
        send(format!("PROBE{n}"), format!("/probe-{n}"))
            .await
            .unwrap();
        send("GET".into(), format!("/nowhere-{n}")).await.unwrap();
        send("DELETE".into(), "/orders".into()).await.unwrap();
    }
    let _ = app.metrics().await;
    let before = app.metrics().await;
    for n in 0..500 {
        send(
            format!("X{n:04}-{}", n * 7919),
            format!("/x/{n}/{}", n * 31),
        )
        .await
        .unwrap();
    }
    let after = app.metrics().await;
    let added: Vec<_> = series(&after)
        .difference(&series(&before))
        .cloned()
        .collect();
    println!(
        "500 made-up requests: /metrics {} -> {} bytes, {} new series",
        before.len(),
        after.len(),
        added.len()
    );
    assert!(
        added.is_empty(),
        "new series: {:?}",
        &added[..added.len().min(5)]
    );
    assert!(
        after.len() <= before.len() + 256,
        "{} -> {}",
        before.len(),
        after.len()
    );
    app.shutdown().await;
}

/// A raw connection to the service, for clients no HTTP library would be.
async fn raw(app: &TestApp) -> tokio::net::TcpStream {
    tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect")
}

/// Whether the server closed `stream` (EOF or reset) within `wait`,
/// reading and discarding whatever it sent first.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_neither_starve_real_requests_nor_hold_connections_past_the_timeouts() {
    use tokio::io::AsyncWriteExt;
    let mut app = TestApp::spawn(&[
        ("HTTP_HEADER_TIMEOUT_MS", "1000"),
        ("HTTP_BODY_TIMEOUT_MS", "1000"),
        ("HTTP_IDLE_TIMEOUT_MS", "2000"),
    ])
    .await;
    // Hundreds of clients that start a request head and never finish it,
    // and a hundred that connect and say nothing.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut stream = raw(&app).await;
        stream
            .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    for _ in 0..100 {
        slow.push(raw(&app).await);
    }
    // A client that sends its head, then trickles its body.
    let mut trickle = raw(&app).await;
    trickle
        .write_all(b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"customer\":")
        .await
        .unwrap();

    // Real requests are served all the while.
    let started = Instant::now();
    let answers =
        futures::future::join_all((0..20).map(|_| app.post("/orders").json(&order_body()).send()))
            .await;
    let served = answers
        .iter()
        .filter(|r| r.as_ref().is_ok_and(|r| r.status() == 202))
        .count();
    println!(
        "20 real requests beside 400 slow clients: {served} accepted in {:?}",
        started.elapsed()
    );
    assert_eq!(served, 20);

    // The trickling body gets 408, then the connection ends.
    let mut answer = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let _ =
            tokio::time::timeout(Duration::from_secs(5), trickle.read_to_end(&mut answer)).await;
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    // A keep-alive connection serves its next request, and is closed once
    // idle past its limit.
    let mut idle = raw(&app).await;
    for _ in 0..2 {
        idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(br#"{"status":"ok"}"#) {
            use tokio::io::AsyncReadExt;
            let mut chunk = [0u8; 256];
            let n = idle.read(&mut chunk).await.unwrap();
            assert!(n > 0, "kept alive: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"));
    }
    assert!(
        closed_within(&mut idle, Duration::from_secs(6)).await,
        "closed once idle"
    );

    // And none of the slow ones is still open past the header timeout.
    let mut still_open = 0;
    for stream in &mut slow {
        if !closed_within(stream, Duration::from_millis(3000)).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "slow connections held open past the timeout");
    let metrics = app.metrics().await;
    let timed_out =
        harness::metrics::sample(&metrics, "http_connections_timed_out_total{phase=\"head\"}")
            .unwrap_or(0.0)
            + harness::metrics::sample(
                &metrics,
                "http_connections_timed_out_total{phase=\"idle\"}",
            )
            .unwrap_or(0.0);
    assert!(
        timed_out >= 400.0,
        "timed-out connections counted: {timed_out}"
    );
    app.shutdown().await;
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_are_closed_at_once() {
    // Metrics on a listener of their own, so they can be read while the API
    // holds every connection it takes.
    let mut app = TestApp::spawn(&[
        ("HTTP_MAX_CONNECTIONS", "4"),
        ("HTTP_MAX_CONNECTIONS_PER_CLIENT", "4"),
        ("METRICS_ADDR", "127.0.0.1:0"),
    ])
    .await;
    let ops = app.metrics_addr.expect("a metrics address");
    let client = reqwest::Client::new();
    let sample = |name: &'static str| {
        let client = client.clone();
        async move {
            let text = client
                .get(format!("http://{ops}/metrics"))
                .send()
                .await
                .expect("metrics answer")
                .text()
                .await
                .expect("text");
            harness::metrics::sample(&text, name).unwrap_or(0.0)
        }
    };
    // Waits until `open` API connections are accepted (the scrape's own,
    // on the metrics listener, counts too).
    let until_open = |wanted: f64| async move {
        eventually(
            Duration::from_secs(10),
            &format!("{wanted} API connections open and the scrape"),
            || async {
                let open = sample("http_connections_open").await;
                if open == wanted + 1.0 {
                    Ok(())
                } else {
                    Err(format!("{open} open"))
                }
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(raw(&app).await);
    }
    until_open(4.0).await;
    let mut extra = raw(&app).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "the fifth connection is closed"
    );
    drop(held);
    until_open(0.0).await;
    let status = reqwest::Client::new()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "served again once connections are free");
    assert_eq!(sample("http_connections_refused_total").await, 1.0);
    app.shutdown().await;
}

/// One client holding idle sockets takes at most half the connections
/// (`HTTP_MAX_CONNECTIONS_PER_CLIENT`'s default): another host, such as
/// the kubelet probing or Prometheus scraping, is still served. (One
/// client could take them all, the consumer's health port included.)
#[tokio::test]
async fn one_client_cannot_take_every_connection_from_the_probes() {
    let mut app = TestApp::spawn(&[("HTTP_MAX_CONNECTIONS", "4")]).await;
    // As many idle sockets as the service takes, from one host.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(raw(&app).await);
    }
    let other_host = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let refused = eventually(
        Duration::from_secs(10),
        "the host's sockets past its share refused",
        || async {
            let metrics = other_host
                .get(app.url("/metrics"))
                .send()
                .await
                .expect("another host is served")
                .text()
                .await
                .expect("text");
            let refused = harness::metrics::sample(&metrics, "http_connections_refused_total");
            if refused.is_some_and(|n| n >= 2.0) {
                Ok(refused)
            } else {
                Err(format!("{refused:?} refused"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!("one host's sockets past its share refused: {refused:?}");
    let status = other_host
        .get(app.url("/healthz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the probe's host is served");
    drop(held);
    app.shutdown().await;
}

#[tokio::test]
async fn metrics_and_probes_move_to_their_own_address_when_asked() {
    let mut app = TestApp::spawn(&[("METRICS_ADDR", "127.0.0.1:0")]).await;
    let ops = app.metrics_addr.expect("a metrics address");
    let client = reqwest::Client::new();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let beside_api = client.get(app.url(path)).send().await.unwrap().status();
        assert_eq!(beside_api, 404, "{path} is not served beside the API");
        let own = client
            .get(format!("http://{ops}{path}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(own, 200, "{path} on METRICS_ADDR");
    }
    assert_eq!(app.post_order().await, 202);
    let metrics = client
        .get(format!("http://{ops}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        harness::metrics::sample(
            &metrics,
            "http_requests_total{method=\"POST\",route=\"/orders\",status=\"202\"}"
        ),
        Some(1.0)
    );
    app.shutdown().await;
}

/// A batch of orders: each item published once under the ids its key
/// derives (a retried batch gets the same ids), `200` with each item's ids
/// and place on the broker.
#[tokio::test]
async fn a_batch_of_orders_is_published_item_by_item_with_its_ids() {
    let mut app = TestApp::spawn(&[]).await;
    let items: Vec<serde_json::Value> = (0..5)
        .map(|n| serde_json::json!({"idempotency_key": format!("batch-key-{n}"), "order": order_body()}))
        .collect();
    let body = serde_json::json!({ "orders": items });
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let answer = app
        .post("/orders/batch")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["status"], "accepted");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["failed"].as_u64()),
        (Some(5), Some(0))
    );
    let results = answer["results"].as_array().expect("results");
    for (n, r) in results.iter().enumerate() {
        assert_eq!(r["index"], n);
        assert_eq!(r["status"], "accepted");
        assert!(r["partition"].is_number() && r["offset"].is_number(), "{r}");
    }
    let messages = app.read_topic(topics::ORDERS, 5);
    assert_eq!(messages.len(), 5);
    let mut keys: Vec<String> = messages.iter().map(key).collect();
    let mut ids: Vec<String> = results
        .iter()
        .map(|r| r["order_id"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    ids.sort();
    assert_eq!(keys, ids, "each item is on the topic under its order id");
    for m in &messages {
        let traceparent = header(m, headers::TRACEPARENT).expect("traceparent header");
        assert!(
            traceparent.contains(trace_id),
            "trace continues: {traceparent}"
        );
        let event: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
        assert_eq!(event["metadata"]["trace_id"], trace_id);
    }

    let again: serde_json::Value = app
        .post("/orders/batch")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for (a, b) in results.iter().zip(again["results"].as_array().unwrap()) {
        assert_eq!(
            a["order_id"], b["order_id"],
            "a retry maps to the same order"
        );
        assert_eq!(a["event_id"], b["event_id"]);
    }
    let users = serde_json::json!({"users": [{"user": contract::request::example_user()}]});
    let answer: serde_json::Value = app
        .post("/users/batch")
        .json(&users)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["results"][0]["user_id"], "u-42", "{answer}");
    assert_eq!(app.read_topic(topics::USERS, 1).len(), 1);
    app.shutdown().await;
}

/// One invalid item refuses the whole batch, naming the item in each path,
/// and publishes nothing; so do too many items, a repeated key and too
/// large a body.
#[tokio::test]
async fn a_batch_with_one_bad_item_publishes_nothing_and_names_the_item() {
    let mut app =
        TestApp::spawn(&[("MAX_BATCH_ITEMS", "3"), ("MAX_BATCH_BODY_BYTES", "4096")]).await;
    let mut bad = order_body();
    bad["items"][0]["quantity"] = serde_json::json!(0);
    let send = |body: serde_json::Value| app.post("/orders/batch").json(&body).send();
    let answer = send(serde_json::json!({"orders": [{"order": order_body()}, {"order": bad}]}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 422);
    let body: serde_json::Value = answer.json().await.unwrap();
    let paths: Vec<&str> = body["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["orders[1].order.items[0].quantity"], "{body}");

    let four = serde_json::json!({"orders": vec![serde_json::json!({"order": order_body()}); 4]});
    assert_eq!(
        send(four).await.unwrap().status(),
        422,
        "more than MAX_BATCH_ITEMS"
    );
    let twice = serde_json::json!({"orders": [
        {"idempotency_key": "k", "order": order_body()},
        {"idempotency_key": "k", "order": order_body()}]});
    assert_eq!(send(twice).await.unwrap().status(), 422, "one key twice");
    // A key for the whole batch would have been ignored, and a retried
    // batch stored twice: refused, naming the per-item keys.
    let keyed = app
        .post("/orders/batch")
        .header("idempotency-key", "batch-1")
        .json(&serde_json::json!({"orders": [{"order": order_body()}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 422);
    let body: serde_json::Value = keyed.json().await.unwrap();
    assert_eq!(
        body["fields"][0]["path"], "header:Idempotency-Key",
        "{body}"
    );
    assert!(
        body["fields"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("items[].idempotency_key")),
        "{body}"
    );
    let mut large = order_body();
    large["customer"]["name"] = serde_json::json!("x".repeat(5000));
    let answer = send(serde_json::json!({"orders": [{"order": large}]}))
        .await
        .unwrap();
    assert_eq!(answer.status(), 413, "over MAX_BATCH_BODY_BYTES");
    assert!(app.topic_is_empty(topics::ORDERS), "nothing was published");
    app.shutdown().await;
}

/// With the broker gone, no item of a batch is stored: `503` with
/// `Retry-After`, as for a single order.
#[tokio::test]
async fn a_batch_no_item_of_which_is_stored_answers_503() {
    let mut app = TestApp::spawn(&[("PRODUCE_TIMEOUT_MS", "500")]).await;
    app.cluster.broker_down(1).unwrap();
    let body = serde_json::json!({"orders": [{"order": order_body()}, {"order": order_body()}]});
    let answer = app.post("/orders/batch").json(&body).send().await.unwrap();
    assert_eq!(answer.status(), 503);
    assert!(answer.headers().contains_key("retry-after"));
    app.cluster.broker_up(1).unwrap();
    app.shutdown().await;
}
