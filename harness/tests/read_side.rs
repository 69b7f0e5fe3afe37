//! The read side end to end, every part a real process: the producer and
//! the query service and the consumer against a Tansu broker and the local
//! PostgreSQL, and the operator tool. An order is followed through the
//! Location of its 202 from pending to persisted; a poison order and one
//! that failed transiently read as rejected, and the second turns persisted
//! after the fault is fixed and its dead letter replayed.

use std::process::{Command, Output};
use std::time::Duration;

use contract::topics;
use harness::broker::Broker;
use harness::database::{lock_order, TestDatabase};
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{publish, read_topic};
use harness::process::{binary, Service};
use harness::stack::{consumer_env, producer_env, READY};
use harness::wait::eventually;
use serde_json::{json, Value};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn query(db: &TestDatabase) -> Service {
    Service::start(
        "query",
        "QUERY_HTTP_ADDR",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("LOG_LEVEL", "info".to_owned()),
            ("QUERY_ALLOW_ANONYMOUS", "true".to_owned()),
        ],
    )
}

/// The read side answers customer data: without a token, and without
/// anonymous reads allowed in so many words, it does not start.
#[tokio::test]
async fn the_query_service_does_not_start_without_a_token_unless_told_reads_are_anonymous() {
    let db = TestDatabase::create().await;
    let mut refused = Service::start(
        "query",
        "QUERY_HTTP_ADDR",
        &[("DATABASE_URL", db.url.clone())],
    );
    let status = refused
        .wait_exit(Duration::from_secs(30))
        .expect("it stops at once");
    assert!(!status.success());
    let said = refused.logs();
    assert!(
        said.contains("API_TOKEN") && said.contains("QUERY_ALLOW_ANONYMOUS=true"),
        "{said}"
    );
    db.drop().await;
}

fn tool(db: &TestDatabase, bootstrap: &str, args: &[&str]) -> Output {
    Command::new(binary("pubsubkafka"))
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka")
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("an answer");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Polls `url` until its `status` field is `wanted`; returns the body.
async fn poll_until(url: &str, wanted: &str) -> Value {
    eventually(WAIT, &format!("{url} to answer {wanted}"), || async {
        let (code, body) = get(url).await;
        if code == 200 && body["status"] == wanted {
            Ok(body)
        } else {
            Err(format!("{code} {body}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_followed_through_its_location_from_pending_to_persisted() {
    let broker = Broker::tansu();
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    let mut producer = Service::start("producer", "PRODUCER_HTTP_ADDR", &producer_env(&broker));
    let mut reads = query(&db);
    producer.wait_ready("/readyz", READY).await;
    reads.wait_ready("/readyz", READY).await;

    // No consumer yet: the order is accepted and on its way.
    let body = harness::load::order_body(7);
    let accepted = reqwest::Client::new()
        .post(producer.url("/orders"))
        .json(&body)
        .send()
        .await
        .expect("answer");
    assert_eq!(accepted.status(), 202);
    let location = accepted.headers()["location"]
        .to_str()
        .expect("text")
        .to_owned();
    let answer: Value = accepted.json().await.expect("json");
    let order_id = answer["order_id"].as_str().expect("an id").to_owned();
    let resource = format!("/orders/{order_id}");
    assert!(
        location.starts_with(&format!("{resource}?content=v1:")),
        "{location}"
    );

    let (code, pending) = get(&reads.url(&location)).await;
    assert_eq!(
        (code, &pending["status"]),
        (200, &json!("pending")),
        "{pending}"
    );
    let (code, events) = get(&reads.url(&format!("{resource}/events"))).await;
    assert_eq!((code, &events["events"]), (200, &json!([])));
    let story = tool(&db, &broker.bootstrap, &["order", &order_id, "--json"]);
    assert_eq!(json_of(&story)["status"], "pending");

    let mut consumer = Service::start(
        "consumer",
        "CONSUMER_HTTP_ADDR",
        &consumer_env(&broker, &db.url),
    );
    consumer.wait_ready("/readyz", READY).await;
    let persisted = poll_until(&reads.url(&location), "persisted").await;
    println!("persisted: {persisted}");
    assert_eq!(persisted["order_id"], order_id.as_str());
    assert_eq!(persisted["event_id"], answer["event_id"]);
    assert_eq!(
        persisted["order"]["customer"]["email"], body["customer"]["email"],
        "the order as the consumer stored it"
    );
    assert_eq!(
        persisted["order"]["items"].as_array().map(Vec::len),
        body["items"].as_array().map(Vec::len)
    );

    let (code, events) = get(&reads.url(&format!("{resource}/events"))).await;
    assert_eq!(code, 200);
    assert_eq!(events["events"][0]["event_id"], answer["event_id"]);
    assert_eq!(events["events"][0]["source_topic"], topics::ORDERS);

    let story = tool(&db, &broker.bootstrap, &["order", &order_id]);
    assert!(story.status.success());
    let text = String::from_utf8_lossy(&story.stdout);
    println!("{text}");
    assert!(
        text.contains(&format!("order {order_id}: persisted")),
        "{text}"
    );
    assert!(
        text.contains("events (1):") && text.contains("read at orders/"),
        "{text}"
    );
    assert!(
        !text.contains(body["customer"]["email"].as_str().unwrap_or("@")),
        "no customer data: {text}"
    );

    // Pre-emption: someone posts first under a key the victim will use.
    // Both get 202 and the same order id; the victim's Location names its
    // own content, so it answers 409 id_taken, not the first one's order.
    let post_keyed = |email: &'static str| {
        let mut order = body.clone();
        order["customer"]["email"] = json!(email);
        reqwest::Client::new()
            .post(producer.url("/orders"))
            .header("idempotency-key", "guessable-key-1")
            .json(&order)
            .send()
    };
    let first = post_keyed("first@example.com").await.expect("answer");
    let second = post_keyed("second@example.com").await.expect("answer");
    let where_of =
        |r: &reqwest::Response| r.headers()["location"].to_str().expect("text").to_owned();
    let (first_at, second_at) = (where_of(&first), where_of(&second));
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (202, 202)
    );
    assert_eq!(
        first_at.split('?').next(),
        second_at.split('?').next(),
        "one id"
    );
    let stored = poll_until(&reads.url(&first_at), "persisted").await;
    assert_eq!(stored["order"]["customer"]["email"], "first@example.com");
    let (code, taken) = get(&reads.url(&second_at)).await;
    println!("the second request's Location: {code} {taken}");
    assert_eq!(
        (code, &taken["error"]),
        (409, &json!("id_taken")),
        "{taken}"
    );
    assert!(!taken.to_string().contains("first@example.com"));

    // Never accepted, or not an id at all.
    let (code, unknown) = get(&reads.url(&format!("/orders/{}", Uuid::new_v4()))).await;
    assert_eq!((code, &unknown["error"]), (404, &json!("not_found")));
    let (code, bad) = get(&reads.url("/orders/12345")).await;
    assert_eq!((code, &bad["error"]), (400, &json!("invalid_id")));
    let missing = tool(
        &db,
        &broker.bootstrap,
        &["order", &Uuid::new_v4().to_string()],
    );
    assert_eq!(
        missing.status.code(),
        Some(3),
        "not found has its own exit status"
    );
    let refused = tool(&db, &broker.bootstrap, &["order", "12345"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not an id"));

    consumer.sigterm(Duration::from_secs(30));
    producer.sigterm(Duration::from_secs(30));
    reads.sigterm(Duration::from_secs(30));
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_order_reads_rejected_and_turns_persisted_after_a_fix_and_a_replay() {
    let broker = Broker::tansu();
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.expect("migrate");
    let blocked = order_event(1);
    let lock = lock_order(&db.pool, blocked.order_id).await;
    let poison_event = order_event(2);
    let poison = Outgoing {
        value: b"{broken".to_vec(),
        ..order_message(&poison_event, contract::Format::Json)
    };
    publish(
        &broker.bootstrap,
        &[order_message(&blocked, contract::Format::Json), poison],
    );
    let mut env = consumer_env(&broker, &db.url);
    env.extend([
        ("MAX_RETRIES", "0".to_owned()),
        ("DB_LOCK_TIMEOUT_MS", "100".to_owned()),
    ]);
    let mut consumer = Service::start("consumer", "CONSUMER_HTTP_ADDR", &env);
    let mut reads = query(&db);
    consumer.wait_ready("/readyz", READY).await;
    reads.wait_ready("/readyz", READY).await;
    assert_eq!(
        read_topic(&broker.bootstrap, topics::ORDERS_DLQ, 2, WAIT).len(),
        2
    );

    let blocked_url = reads.url(&format!("/orders/{}", blocked.order_id));
    let rejected = poll_until(&blocked_url, "rejected").await;
    println!("rejected: {rejected}");
    assert_eq!(
        (&rejected["error_kind"], &rejected["error_class"]),
        (&json!("transient"), &json!("database_transient"))
    );
    assert_eq!(rejected["event_id"], blocked.metadata.event_id.to_string());
    assert_eq!(rejected["dead_letter"]["topic"], topics::ORDERS_DLQ);
    let poisoned = poll_until(
        &reads.url(&format!("/orders/{}", poison_event.order_id)),
        "rejected",
    )
    .await;
    assert_eq!(
        (&poisoned["error_kind"], &poisoned["error_class"]),
        (&json!("permanent"), &json!("decode"))
    );
    assert_eq!(
        poisoned["event_id"],
        Value::Null,
        "its value could not be read"
    );
    let story = json_of(&tool(
        &db,
        &broker.bootstrap,
        &["order", &blocked.order_id.to_string(), "--json"],
    ));
    assert_eq!(story["status"], "rejected");
    assert_eq!(story["dead_letters"][0]["dlq_topic"], topics::ORDERS_DLQ);
    assert!(story["dead_letters"][0]["dlq_offset"].is_i64(), "{story}");

    // The fix, then the replay of what failed transiently.
    lock.rollback().await.expect("unlock");
    let replay = tool(
        &db,
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--kind",
            "transient",
            "--group",
            "fix",
            "--json",
        ],
    );
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    assert_eq!(json_of(&replay)["replayed"], 1);
    let persisted = poll_until(&blocked_url, "persisted").await;
    assert_eq!(persisted["event_id"], blocked.metadata.event_id.to_string());
    let story = json_of(&tool(
        &db,
        &broker.bootstrap,
        &["order", &blocked.order_id.to_string(), "--json"],
    ));
    assert_eq!(story["status"], "persisted");
    assert_eq!(story["events"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        story["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "its history keeps the dead letter: {story}"
    );
    let (code, still) = get(&reads.url(&format!("/orders/{}", poison_event.order_id))).await;
    assert_eq!(
        (code, &still["status"]),
        (200, &json!("rejected")),
        "not replayed"
    );

    consumer.sigterm(Duration::from_secs(30));
    reads.sigterm(Duration::from_secs(30));
    db.drop().await;
}
