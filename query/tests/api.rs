//! The read side in process against the real PostgreSQL, its tables
//! written by the consumer's own code: every status (persisted, rejected,
//! pending, unknown), an order's life (status, version, history, and what
//! became of each change, refused ones included), ids good and bad (listed
//! and generated), the ETag, the token, and what happens when the database
//! is missing, slow or not migrated.

use std::time::Duration;

use consumer::decode::{Decoded, DomainEvent};
use consumer::persist::{Outcome, Persistable, Store};
use consumer::rejections::Subject;
use contract::dead_letter::{ErrorKind, FailureClass};
use contract::lifecycle::{Cancellation, CancellationReason, Payment, Shipment};
use contract::{
    fingerprint, topics, Change, Domain, EventMetadata, Format, OrderChange, OrderEvent,
};
use harness::database::TestDatabase;
use harness::wait::eventually;
use platform::Env;
use proptest::prelude::*;
use query::{Application, QueryConfig};
use reqwest::StatusCode;
use serde_json::Value;
use store::rejections::NewRejection;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct App {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
    served: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl App {
    async fn start(database_url: &str, extra: &[(&str, &str)]) -> Self {
        let mut pairs = vec![
            ("QUERY_HTTP_ADDR".to_owned(), "127.0.0.1:0".to_owned()),
            ("DATABASE_URL".to_owned(), database_url.to_owned()),
            ("LOG_LEVEL".to_owned(), "warn".to_owned()),
            ("QUERY_ALLOW_ANONYMOUS".to_owned(), "true".to_owned()),
        ];
        pairs.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = QueryConfig::from_env(&Env::from_pairs(pairs)).expect("config");
        let app = Application::build(config, prometheus::Registry::new())
            .await
            .expect("build");
        let base = format!("http://{}", app.local_addr().expect("bound"));
        let stop = CancellationToken::new();
        let served = tokio::spawn(app.run(stop.clone()));
        Self {
            base,
            http: reqwest::Client::new(),
            stop,
            served,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("an answer")
    }

    async fn json(&self, path: &str) -> (StatusCode, Value) {
        let response = self.get(path).await;
        let status = response.status();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn stop(self) {
        self.stop.cancel();
        self.served.await.expect("joined").expect("served");
    }
}

async fn migrated() -> TestDatabase {
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    db
}

fn decoded(event: OrderEvent) -> Decoded {
    let fingerprint = fingerprint::order(&event);
    Decoded {
        event: DomainEvent::Order(event),
        format: Format::Json,
        fingerprint,
    }
}

async fn store(db: &TestDatabase, event: OrderEvent, offset: i64) {
    persist(db, decoded(event), offset).await;
}

/// What the consumer's own code does with `decoded`, read at `offset` of
/// partition 1.
async fn persist(db: &TestDatabase, decoded: Decoded, offset: i64) -> Outcome {
    let store = Store::new(db.pool.clone(), Duration::from_secs(5));
    let outcomes = store
        .persist(&[Persistable {
            decoded: &decoded,
            topic: topics::ORDERS,
            partition: 1,
            offset,
            replayed: false,
        }])
        .await
        .expect("persisted");
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    outcomes[0]
}

/// A change of `order`, as the producer publishes one.
fn change_of(order: &OrderEvent, change: Change, expected_version: Option<u32>) -> OrderChange {
    OrderChange {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            event_type: change.event_type().to_owned(),
            schema_version: contract::lifecycle::ORDER_CHANGE_SCHEMA_VERSION,
            occurred_at: chrono::Utc::now(),
            producer: "test".into(),
            correlation_id: format!("corr-{}", change.name()),
            trace_id: None,
            span_id: None,
        },
        order_id: order.order_id,
        expected_version,
        change,
    }
}

/// The consumer's own code applying `change` (or refusing it: then it is
/// recorded as refused, as the consumer records a dead letter).
async fn apply(db: &TestDatabase, change: &OrderChange, offset: i64) -> Outcome {
    let outcome = persist(
        db,
        Decoded {
            event: DomainEvent::Change(change.clone()),
            format: Format::Json,
            fingerprint: fingerprint::change(change),
        },
        offset,
    )
    .await;
    if let Outcome::Refused(refusal) = outcome {
        let class = match refusal {
            consumer::lifecycle::Refusal::UnknownOrder => FailureClass::UnknownOrder,
            consumer::lifecycle::Refusal::VersionMismatch { .. }
            | consumer::lifecycle::Refusal::Stale { .. } => FailureClass::VersionConflict,
            _ => FailureClass::InvalidTransition,
        };
        reject(
            db,
            Subject {
                domain: Domain::Orders,
                aggregate_id: change.order_id.to_string(),
                event_id: Some(change.metadata.event_id),
                event_type: Some(change.change.event_type()),
            },
            class,
            offset,
        )
        .await;
    }
    outcome
}

async fn reject(db: &TestDatabase, subject: Subject, class: FailureClass, offset: i64) {
    let mut conn = db.pool.acquire().await.expect("connection");
    let row = NewRejection {
        group: "order-consumer",
        topic: topics::ORDERS,
        partition: 1,
        offset,
        domain: subject.domain,
        aggregate_id: &subject.aggregate_id,
        event_id: subject.event_id,
        event_type: subject.event_type,
        kind: ErrorKind::Permanent,
        class,
        dlq_topic: topics::ORDERS_DLQ,
        dlq_at: Some((1, 40 + offset)),
    };
    store::rejections::record(&mut conn, &row)
        .await
        .expect("recorded");
}

#[tokio::test]
async fn an_order_reads_rejected_then_persisted_with_its_events_and_etag() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    let event = harness::events::order_event(3);
    let id = event.order_id;
    let event_id = event.metadata.event_id;

    let (status, body) = app.json(&format!("/orders/{id}")).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(
        body["reason"], "no_acceptance_time",
        "a client's own id: {body}"
    );

    reject(
        &db,
        Subject {
            domain: Domain::Orders,
            aggregate_id: id.to_string(),
            event_id: Some(event_id),
            event_type: Some(contract::model::ORDER_CREATED),
        },
        FailureClass::Validation,
        7,
    )
    .await;
    let (status, body) = app.json(&format!("/orders/{id}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "rejected");
    assert_eq!(body["error_class"], "validation");
    assert_eq!(body["error_kind"], "permanent");
    assert_eq!(body["event_id"], event_id.to_string());
    assert_eq!(body["dead_letter"]["topic"], topics::ORDERS_DLQ);
    assert_eq!(body["dead_letter"]["offset"], 47);
    assert!(body.get("order").is_none(), "no customer data: {body}");
    assert!(
        !body.to_string().contains("the reason"),
        "the failure's message stays in the DLQ: {body}"
    );
    let (status, events) = app.json(&format!("/orders/{id}/events")).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    assert_eq!(events["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(events["events"][0]["outcome"], "refused");
    assert_eq!(events["events"][0]["error_class"], "validation");
    assert_eq!(events["events"][0]["event_type"], "order.created");

    // A replay stores it: the answer turns to persisted.
    let email = event.customer.email.clone();
    store(&db, event, 12).await;
    let response = app.get(&format!("/orders/{id}")).await;
    assert_eq!(response.status(), 200);
    let etag = response.headers()["etag"]
        .to_str()
        .expect("text")
        .to_owned();
    assert_eq!(etag, "\"1\"", "a strong tag of its version");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "persisted");
    assert_eq!(body["order_id"], id.to_string());
    assert_eq!(body["order"]["customer"]["email"], email);
    assert_eq!(body["order"]["items"][0]["sku"], "SKU-1", "{body}");
    assert!(
        body["order"]["totals"]["total"].is_string(),
        "money is never a float: {body}"
    );

    let revalidated = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .header("if-none-match", format!("W/\"x\", {etag}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(revalidated.status(), 304);
    let other = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .header("if-none-match", "\"something-else\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(other.status(), 200);

    let (status, events) = app.json(&format!("/orders/{id}/events")).await;
    assert_eq!(status, 200);
    let listed = events["events"].as_array().expect("a list");
    assert_eq!(
        listed.len(),
        2,
        "the dead letter, then the replay: {events}"
    );
    assert_eq!(
        (&listed[0]["outcome"], &listed[1]["outcome"]),
        (&Value::from("refused"), &Value::from("applied"))
    );
    let listed = &listed[1..];
    assert_eq!(listed[0]["event_id"], event_id.to_string());
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(
        (
            &listed[0]["source_topic"],
            &listed[0]["source_partition"],
            &listed[0]["source_offset"]
        ),
        (
            &Value::from(topics::ORDERS),
            &Value::from(1),
            &Value::from(12)
        )
    );
    app.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_server_assigned_id_is_pending_within_the_window_and_unknown_after() {
    let db = migrated().await;
    let app = App::start(&db.url, &[("PENDING_WINDOW_SECS", "60")]).await;
    let fresh = contract::ids::derive::<Uuid>(
        &contract::ids::KeyDerivation::public(),
        Domain::Orders,
        None,
        None,
    )
    .aggregate;
    let response = app.get(&format!("/orders/{fresh}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["status"], "pending", "{body}");
    assert!(body["accepted_at"].is_string());

    let at = |seconds_ago: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970");
        let then = now.as_secs() as i64 - seconds_ago as i64;
        Uuid::new_v7(uuid::Timestamp::from_unix(uuid::NoContext, then as u64, 0))
    };
    let (status, body) = app.json(&format!("/orders/{}", at(120))).await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::NOT_FOUND, &Value::from("past_pending_window"))
    );
    let future = Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        4_000_000_000,
        0,
    ));
    let (status, body) = app.json(&format!("/orders/{future}")).await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::NOT_FOUND, &Value::from("not_assigned_yet"))
    );
    let (status, _) = app.json(&format!("/orders/{}/events", at(120))).await;
    assert_eq!(status, 404);

    let user = contract::ids::derive::<String>(
        &contract::ids::KeyDerivation::public(),
        Domain::Users,
        None,
        None,
    )
    .aggregate;
    let (status, body) = app.json(&format!("/users/{user}")).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &Value::from("pending"))
    );
    let (status, body) = app.json("/users/u-42").await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::NOT_FOUND, &Value::from("no_acceptance_time"))
    );

    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains(r#"query_lookups_total{resource="order",status="pending"} 1"#),
        "{metrics}"
    );
    app.stop().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_get_400_and_name_the_rule() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    for path in [
        "/orders/not-a-uuid",
        "/orders/%FF%FE",
        "/orders/0193a5a0-7c1e-7d2a-9b1e-3f4c5d6e7f8",
        "/users/a%2Fb",
        "/users/%C3%A9",
    ] {
        let (status, body) = app.json(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid_id", "{path}");
    }
    let (status, _) = app.json(&format!("/users/{}", "u".repeat(65))).await;
    assert_eq!(status, 400);
    let (status, body) = app.json("/orders/not-a-uuid/events").await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &Value::from("invalid_id"))
    );

    // Generated segments: never a server error, always one of the answers
    // the API documents, and a 400 exactly when the id breaks its rule.
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 64,
        failure_persistence: None,
        ..Default::default()
    });
    // Random bytes, or a UUID's text cut anywhere; either resource; any
    // visible If-None-Match.
    let uuid_text = (any::<u128>(), 1usize..40).prop_map(|(n, cut)| {
        let text = Uuid::from_u128(n).to_string();
        text.as_bytes()[..cut.min(text.len())].to_vec()
    });
    let segments = (
        prop_oneof![proptest::collection::vec(any::<u8>(), 1..80), uuid_text],
        any::<bool>(),
        proptest::collection::vec(0x20u8..0x7f, 0..100),
    );
    runner
        .run(&segments, |(bytes, orders, held)| {
            let encoded: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            let text = String::from_utf8(bytes.clone()).ok();
            let (domain, resource) = if orders {
                (Domain::Orders, "orders")
            } else {
                (Domain::Users, "users")
            };
            let held = String::from_utf8(held).unwrap_or_default();
            let (status, body) = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let response = app
                        .http
                        .get(format!("{}/{resource}/{encoded}", app.base))
                        .header("if-none-match", held.as_str())
                        .send()
                        .await
                        .expect("an answer");
                    let status = response.status();
                    (status, response.json::<Value>().await.expect("a JSON body"))
                })
            });
            let valid = text
                .as_deref()
                .is_some_and(|t| contract::ids::parse(domain, t).is_ok());
            prop_assert!(
                matches!(status.as_u16(), 200 | 400 | 404),
                "{status} {body}"
            );
            prop_assert_eq!(status == 400, !valid, "{:?}: {}", text, body);
            Ok(())
        })
        .expect("every generated id");
    app.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_token_guards_reads_but_not_the_probes() {
    let db = migrated().await;
    let token = "read-token-0123456789";
    let app = App::start(&db.url, &[("API_TOKEN", token)]).await;
    let path = format!("/orders/{}", Uuid::new_v4());
    let refused = app.get(&path).await;
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth("read-token-0123456780")
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), 401);
    let right = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("answer");
    assert_eq!(right.status(), 404);
    assert_eq!(app.get("/readyz").await.status(), 200);
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn a_database_not_migrated_down_or_stuck_answers_503_and_readiness_says_why() {
    // Not migrated: not ready, naming the schema.
    let bare = TestDatabase::create().await;
    let app = App::start(&bare.url, &[]).await;
    let (status, body) = app.json("/readyz").await;
    assert_eq!(status, 503);
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("migrations")),
        "{body}"
    );
    let response = app.get(&format!("/orders/{}", Uuid::new_v4())).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    app.stop().await;
    bare.drop().await;

    // Nobody listening: 503 at once, not a hang.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let app = App::start(
        &format!("postgres://postgres@127.0.0.1:{port}/nothing"),
        &[("QUERY_STATEMENT_TIMEOUT_MS", "500")],
    )
    .await;
    let (status, body) = app.json(&format!("/orders/{}", Uuid::new_v4())).await;
    assert_eq!(
        (status, &body["error"]),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            &Value::from("database_unavailable")
        )
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    app.stop().await;

    // A lookup that never gets its answer (the table locked): bounded by
    // the statement timeout; and with one lookup allowed at a time, a
    // second one is refused at once rather than queued.
    let db = migrated().await;
    let mut lock = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let app = App::start(
        &db.url,
        &[
            ("QUERY_STATEMENT_TIMEOUT_MS", "1500"),
            ("QUERY_MAX_IN_FLIGHT", "1"),
        ],
    )
    .await;
    let id = Uuid::new_v4();
    let path = format!("/orders/{id}");
    let slow = app.get(&path);
    let second = async {
        // Once the first lookup waits on the lock, it holds the one slot.
        eventually(
            Duration::from_secs(10),
            "the first lookup waiting on the locked table",
            || async {
                sqlx::query_scalar::<_, i64>(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&db.pool)
                .await
                .map_err(|e| e.to_string())
                .and_then(|n| {
                    if n > 0 {
                        Ok(())
                    } else {
                        Err("no lock wait".to_owned())
                    }
                })
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        app.json(&format!("/orders/{id}")).await
    };
    let (slow, (status, body)) = tokio::join!(slow, second);
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::SERVICE_UNAVAILABLE, &Value::from("overloaded"))
    );
    assert_eq!(slow.status(), 503);
    let body: Value = slow.json().await.expect("json");
    assert_eq!(body["error"], "database_unavailable", "{body}");
    lock.rollback().await.expect("unlock");
    let (status, _) = app.json(&format!("/orders/{id}")).await;
    assert_eq!(status, 404, "answers again once the lock is gone");
    app.stop().await;
    db.drop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_read() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    let (status, doc) = app.json("/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/orders/{order_id}",
        "/orders/{order_id}/events",
        "/users/{user_id}",
        "/users/{user_id}/events",
    ] {
        assert!(
            doc["paths"][path]["get"]["responses"]["404"].is_object(),
            "{path}"
        );
    }
    let order = &doc["paths"]["/orders/{order_id}"]["get"]["responses"];
    assert!(order["200"]["headers"]["ETag"].is_object(), "{order}");
    assert!(order["304"]["headers"]["ETag"].is_object(), "{order}");
    assert_eq!(
        doc["paths"]["/orders/{order_id}/events"]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["$ref"],
        "#/components/schemas/OrderEventList"
    );
    let outcomes: Vec<_> = doc["components"]["schemas"]["OrderEvent"]["oneOf"]
        .as_array()
        .expect("one of the outcomes")
        .iter()
        .map(|v| v["allOf"][1]["properties"]["outcome"]["enum"][0].clone())
        .collect();
    assert_eq!(outcomes, [Value::from("applied"), Value::from("refused")]);
    for schema in ["Applied", "Rejection"] {
        assert!(
            doc["components"]["schemas"][schema]["properties"]["source_offset"].is_object(),
            "{schema}"
        );
    }
    app.stop().await;
    db.drop().await;
}

/// An id is whoever's first stored it. The `Location` of a later request
/// under the same id (the same `Idempotency-Key`, or a client-chosen id)
/// with other content names that content: it answers `409 id_taken`,
/// never the first request's order as if it were its own; the first
/// request's `Location` answers its order.
#[tokio::test]
async fn a_location_naming_other_content_than_the_stored_answers_409_without_it() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    let first = harness::events::order_event(5);
    let id = first.order_id;
    let mine = fingerprint::order(&first);
    let mut second = first.clone();
    second.customer.email = "victim@example.com".into();
    let theirs = fingerprint::order(&second);
    assert_ne!(mine, theirs);
    let email = first.customer.email.clone();
    store(&db, first, 3).await;

    let location = |fp: &contract::fingerprint::Fingerprint| {
        contract::ids::with_content(
            &contract::ids::location(Domain::Orders, &id.to_string()),
            fp,
        )
    };
    let (status, body) = app.json(&location(&mine)).await;
    assert_eq!(
        (status, &body["status"]),
        (StatusCode::OK, &serde_json::json!("persisted")),
        "{body}"
    );
    assert_eq!(body["order"]["customer"]["email"], email);

    let (status, body) = app.json(&location(&theirs)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "id_taken");
    assert!(
        !body.to_string().contains(&email) && body.get("order").is_none(),
        "not the other request's content: {body}"
    );
    let escaped = location(&theirs).replace(':', "%3A");
    assert_eq!(app.get(&escaped).await.status(), StatusCode::CONFLICT);
    for bad in [
        "?content=v1:nothex",
        "?content=",
        "?content=v1:ab&content=v1:ab",
    ] {
        let (status, body) = app.json(&format!("/orders/{id}{bad}")).await;
        assert_eq!(
            (status, &body["error"]),
            (
                StatusCode::BAD_REQUEST,
                &serde_json::json!("invalid_content")
            ),
            "{bad}: {body}"
        );
    }
    // Without the parameter (an id read by itself): the stored order.
    assert_eq!(app.json(&format!("/orders/{id}")).await.0, StatusCode::OK);
    app.stop().await;
    db.drop().await;
}

/// An order taken through payment and shipment by the consumer's own code,
/// then a cancellation it refuses: the order answers its status, version
/// (a strong ETag, which answers 304 while current), each change's data
/// and its history; its events list each change with its outcome, the
/// refused one with its class and never its content. An order never
/// stored whose change was refused lists that change; one with nothing
/// answers 404.
#[tokio::test]
async fn an_order_answers_its_status_version_history_and_each_changes_outcome() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    let order = harness::events::order_event(2);
    let id = order.order_id;
    let email = order.customer.email.clone();
    let mine = fingerprint::order(&order);
    store(&db, order.clone(), 20).await;

    let payment = change_of(
        &order,
        Change::Payment(Payment {
            reference: "pay-123".into(),
            amount: order.totals.total,
            currency: order.currency.clone(),
        }),
        Some(1),
    );
    assert_eq!(apply(&db, &payment, 21).await, Outcome::Stored);
    let shipment = change_of(
        &order,
        Change::Shipment(Shipment {
            carrier: "DHL".into(),
            tracking_number: "JD0146000000".into(),
        }),
        None,
    );
    assert_eq!(apply(&db, &shipment, 22).await, Outcome::Stored);
    let note = "a note only the customer wrote";
    let cancellation = change_of(
        &order,
        Change::Cancellation(Cancellation {
            reason: CancellationReason::CustomerRequest,
            note: Some(note.into()),
        }),
        None,
    );
    assert!(
        matches!(apply(&db, &cancellation, 23).await, Outcome::Refused(_)),
        "a shipped order cannot be cancelled"
    );

    let response = app.get(&format!("/orders/{id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let body: Value = response.json().await.expect("json");
    assert_eq!(
        body["status"], "persisted",
        "the read side's status: {body}"
    );
    let stored = &body["order"];
    assert_eq!(
        (&stored["status"], &stored["version"]),
        (&Value::from("shipped"), &Value::from(3)),
        "{body}"
    );
    assert!(stored["changed_at"].is_string(), "{body}");
    assert_eq!(stored["payment"]["reference"], "pay-123");
    assert_eq!(
        stored["payment"]["amount"],
        order.totals.total.to_string(),
        "money as text"
    );
    assert_eq!(stored["shipment"]["tracking_number"], "JD0146000000");
    assert_eq!(stored["cancellation"], Value::Null, "refused: not applied");
    let history: Vec<_> = stored["history"]
        .as_array()
        .expect("a history")
        .iter()
        .map(|h| {
            (
                h["version"].as_u64(),
                h["status"].as_str().map(str::to_owned),
                h["event_id"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let step = |v: u64, status: &str, event: Uuid| {
        (Some(v), Some(status.to_owned()), Some(event.to_string()))
    };
    assert_eq!(
        history,
        [
            step(1, "created", order.metadata.event_id),
            step(2, "paid", payment.metadata.event_id),
            step(3, "shipped", shipment.metadata.event_id),
        ]
    );

    // Polling: 304 while the version is current, also with the Location's
    // own content; another content is still 409; an older version is 200.
    let location = contract::ids::with_content(
        &contract::ids::location(Domain::Orders, &id.to_string()),
        &mine,
    );
    for path in [format!("/orders/{id}"), location.clone()] {
        let current = app
            .http
            .get(format!("{}{path}", app.base))
            .header("if-none-match", "\"3\"")
            .send()
            .await
            .expect("answer");
        assert_eq!(current.status(), 304, "{path}");
        assert_eq!(current.headers()["etag"], "\"3\"");
    }
    let mut other = order.clone();
    other.customer.email = "someone-else@example.com".into();
    let theirs = contract::ids::with_content(
        &contract::ids::location(Domain::Orders, &id.to_string()),
        &fingerprint::order(&other),
    );
    let taken = app
        .http
        .get(format!("{}{theirs}", app.base))
        .header("if-none-match", "\"3\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let older = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .header("if-none-match", "\"2\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(older.status(), 200);
    assert_eq!(older.headers()["etag"], "\"3\"");

    let (status, events) = app.json(&format!("/orders/{id}/events")).await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["truncated"], false);
    let seen: Vec<_> = events["events"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().map(str::to_owned),
                e["event_type"].as_str().map(str::to_owned),
                e["version"].as_u64(),
                e["error_class"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let s = |text: &str| Some(text.to_owned());
    assert_eq!(
        seen,
        [
            (s("applied"), s("order.created"), Some(1), None),
            (s("applied"), s("order.paid"), Some(2), None),
            (s("applied"), s("order.shipped"), Some(3), None),
            (
                s("refused"),
                s("order.cancelled"),
                None,
                s("invalid_transition")
            ),
        ]
    );
    let refused = &events["events"][3];
    assert_eq!(
        refused["event_id"],
        cancellation.metadata.event_id.to_string()
    );
    assert_eq!(refused["error_kind"], "permanent");
    assert_eq!(refused["source_offset"], 23);
    assert_eq!(refused["dlq_topic"], topics::ORDERS_DLQ);
    let text = events.to_string();
    assert!(
        !text.contains(note) && !text.contains(&email) && !text.contains("payload"),
        "outcomes, not content: {events}"
    );

    // A change for an order never stored: refused, and listed.
    let stranger = harness::events::order_event(4);
    let lost = change_of(
        &stranger,
        Change::Shipment(Shipment {
            carrier: "DHL".into(),
            tracking_number: "JD0146000001".into(),
        }),
        None,
    );
    assert!(matches!(
        apply(&db, &lost, 30).await,
        Outcome::Refused(consumer::lifecycle::Refusal::UnknownOrder)
    ));
    let path = format!("/orders/{}", stranger.order_id);
    let (status, events) = app.json(&format!("{path}/events")).await;
    assert_eq!(status, 200, "{events}");
    assert_eq!(events["events"][0]["outcome"], "refused");
    assert_eq!(events["events"][0]["error_class"], "unknown_order");
    let (status, body) = app.json(&path).await;
    assert_eq!(
        (status, &body["status"], &body["error_class"]),
        (
            StatusCode::OK,
            &Value::from("rejected"),
            &Value::from("unknown_order")
        ),
        "{body}"
    );
    let (status, body) = app
        .json(&format!("/orders/{}/events", Uuid::new_v4()))
        .await;
    assert_eq!(
        (status, &body["reason"]),
        (StatusCode::NOT_FOUND, &Value::from("no_acceptance_time")),
        "nothing stored or refused: {body}"
    );
    app.stop().await;
    db.drop().await;
}

/// However many changes of one order are refused, its events answer at
/// most the documented number of them: the newest, oldest first, marked
/// truncated, after every applied one.
#[tokio::test]
async fn an_orders_events_are_bounded_keeping_the_newest_refused() {
    let db = migrated().await;
    let app = App::start(&db.url, &[]).await;
    let order = harness::events::order_event(1);
    let id = order.order_id;
    store(&db, order, 0).await;
    let over = query::routes::MAX_EVENTS + 1;
    // As the consumer records them, one per message read, in offset order.
    sqlx::query(
        "INSERT INTO rejections (consumer_group, source_topic, source_partition, source_offset,
                                 domain, aggregate_id, event_id, event_type, error_kind,
                                 error_class, dlq_topic, dlq_partition, dlq_offset, rejected_at)
         SELECT 'order-consumer', 'orders', 1, n, 'orders', $1, gen_random_uuid(), 'order.paid',
                'permanent', 'invalid_transition', 'orders-dlq', 1, n,
                now() + n * interval '1 millisecond'
         FROM generate_series(1, $2::bigint) AS n",
    )
    .bind(id.to_string())
    .bind(over)
    .execute(&db.pool)
    .await
    .expect("refusals");
    let (status, events) = app.json(&format!("/orders/{id}/events")).await;
    assert_eq!(status, 200);
    assert_eq!(events["truncated"], true);
    let listed = events["events"].as_array().expect("a list");
    assert_eq!(
        listed.len() as i64,
        query::routes::MAX_EVENTS + 1,
        "the creation and the limit"
    );
    assert_eq!(listed[0]["outcome"], "applied");
    assert_eq!(
        (
            &listed[1]["source_offset"],
            &listed[listed.len() - 1]["source_offset"]
        ),
        (&Value::from(2), &Value::from(over)),
        "the oldest refused one left out"
    );
    app.stop().await;
    db.drop().await;
}

/// A client polling with the ETag it holds gets its 304 from the order's
/// version alone: with the rest of the order's tables locked (a full read
/// would wait out the statement timeout), the poll still answers at once.
#[tokio::test]
async fn a_poll_with_the_current_etag_reads_the_version_alone() {
    let db = migrated().await;
    let app = App::start(&db.url, &[("QUERY_STATEMENT_TIMEOUT_MS", "1500")]).await;
    let order = harness::events::order_event(1);
    let id = order.order_id;
    store(&db, order, 0).await;
    let mut lock = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE order_items, event_store IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let poll = app
        .http
        .get(format!("{}/orders/{id}", app.base))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .expect("answer");
    assert_eq!(poll.status(), 304);
    let (status, body) = app.json(&format!("/orders/{id}")).await;
    assert_eq!(
        (status, &body["error"]),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            &Value::from("database_unavailable")
        ),
        "a full read waits for the lock: {body}"
    );
    lock.rollback().await.expect("unlock");
    app.stop().await;
    db.drop().await;
}
