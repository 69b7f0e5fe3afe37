//! The operator tool against a Tansu broker process and the local
//! PostgreSQL: DLQ list / replay (filtered, loop-guarded, resumable) and
//! consumer lag read from the broker while the consumer is down.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use contract::{headers, topics};
use harness::broker::Tansu;
use harness::database::{wait_for_count, TestDatabase};
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{header, publish, publish_each, read_topic};
use harness::process::{binary, Service};
use harness::wait::eventually;
use rdkafka::message::Message;
use serde_json::Value;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);

fn tool(bootstrap: &str, args: &[&str]) -> Output {
    Command::new(binary("pubsubkafka"))
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka")
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The report of the first group of a `lag --json` run (the JSON is
/// `{"groups": [...], "outbox": ...}` whatever the options).
fn first_group(output: &Output) -> Value {
    let shown = json(output);
    assert!(
        shown["groups"].is_array() && shown.get("outbox").is_some(),
        "lag --json: {shown}"
    );
    shown["groups"][0].clone()
}

/// The `code` of the one JSON error object a failed `--json` command
/// printed on stdout.
fn error_code(output: &Output) -> String {
    let shown = json(output);
    assert!(!output.status.success(), "{shown}");
    assert!(shown["error"]["message"].is_string(), "{shown}");
    shown["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn consumer(
    bootstrap: &str,
    db: &TestDatabase,
    group: &str,
    extra: &[(&'static str, &str)],
) -> Service {
    let mut env = vec![
        ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.to_owned()),
        ("DATABASE_URL", db.url.clone()),
        ("KAFKA_CONSUMER_GROUP", group.to_owned()),
        ("KAFKA_SESSION_TIMEOUT_MS", "6000".to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    Service::start("consumer", "CONSUMER_HTTP_ADDR", &env)
}

/// Orders on the orders topic that carry a replay count.
fn replayed_copies(bootstrap: &str, expected: usize) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic(bootstrap, topics::ORDERS, expected, Duration::from_secs(3))
        .into_iter()
        .filter(|m| header(m, headers::DLQ_REPLAY_COUNT).is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_replay_republishes_exactly_the_chosen_messages_once_and_they_are_persisted() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    store::schema::migrate(&db.pool).await.unwrap();
    let blocked: Vec<_> = (0..3).map(order_event).collect();
    let mut locks = Vec::new();
    for e in &blocked {
        locks.push(harness::database::lock_order(&db.pool, e.order_id).await);
    }
    let mut messages: Vec<Outgoing> = blocked
        .iter()
        .map(|e| order_message(e, contract::Format::Json))
        .collect();
    for n in 10..12 {
        messages.push(Outgoing {
            value: b"{broken".to_vec(),
            ..order_message(&order_event(n), contract::Format::Json)
        });
        messages.push(order_message(
            &order_event(n + 10),
            contract::Format::Protobuf,
        ));
    }
    publish(&broker.bootstrap, &messages);

    let mut service = consumer(
        &broker.bootstrap,
        &db,
        "order-consumer",
        &[("MAX_RETRIES", "0"), ("DB_LOCK_TIMEOUT_MS", "100")],
    );
    service.wait_ready("/readyz", WAIT).await;
    assert_eq!(
        read_topic(&broker.bootstrap, topics::ORDERS_DLQ, 5, WAIT).len(),
        5,
        "3 transient + 2 permanent dead letters"
    );
    assert_eq!(
        wait_for_count(
            &db.pool,
            "SELECT count(*) FROM orders WHERE correlation_id <> 'lock'",
            2,
            WAIT
        )
        .await,
        2
    );
    for lock in locks {
        lock.rollback().await.unwrap();
    }

    let listing = json(&tool(&broker.bootstrap, &["dlq", "list", "--json"]));
    assert_eq!(listing["total"], 5);
    assert_eq!(
        listing["by_class"]["database_transient (transient)"], 3,
        "{listing}"
    );
    assert_eq!(listing["by_class"]["decode (permanent)"], 2, "{listing}");
    let transient = json(&tool(
        &broker.bootstrap,
        &["dlq", "list", "--kind", "transient", "--json"],
    ));
    assert_eq!(transient["selected"], 3);

    let first = &listing["dead_letters"][0];
    let inspect = tool(
        &broker.bootstrap,
        &[
            "dlq",
            "inspect",
            "--partition",
            &first["partition"].to_string(),
            "--offset",
            &first["offset"].to_string(),
        ],
    );
    let inspected = json(&inspect);
    assert_eq!(inspected["dead_letter"]["offset"], first["offset"]);
    assert!(inspected["payload"].is_object());

    let dry = json(&tool(
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--kind",
            "transient",
            "--dry-run",
            "--json",
        ],
    ));
    assert_eq!(
        (dry["replayed"].as_u64(), dry["dry_run"].as_bool()),
        (Some(3), Some(true))
    );
    assert!(
        replayed_copies(&broker.bootstrap, 7).is_empty(),
        "a dry run publishes nothing"
    );

    // The DLQ backlog is the replay group's lag on the dead-letter topic:
    // all 5 before the replay, none after (the 2 it passed over included).
    let backlog = first_group(&tool(
        &broker.bootstrap,
        &[
            "lag",
            "--group",
            "fix-1=orders-dlq",
            "--allow-new-group",
            "--json",
        ],
    ));
    assert_eq!(backlog["total"], 5, "{backlog}");

    let run = tool(
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--kind",
            "transient",
            "--group",
            "fix-1",
            "--json",
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let summary = json(&run);
    println!("replay: {summary}");
    // Piped, its progress is JSON lines on standard error, the last one
    // done and agreeing with the summary.
    let progress: Vec<Value> = String::from_utf8_lossy(&run.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("progress").cloned())
        .collect();
    let last = progress.last().expect("progress lines on stderr");
    assert_eq!(last["done"], true, "{progress:?}");
    assert_eq!(last["read"], summary["read"], "{progress:?}");
    assert_eq!(last["expected"], 5, "{progress:?}");
    assert_eq!(
        (summary["replayed"].as_u64(), summary["skipped"].as_u64()),
        (Some(3), Some(2))
    );

    let persisted = wait_for_count(&db.pool, "SELECT count(*) FROM orders", 5, WAIT).await;
    let copies = replayed_copies(&broker.bootstrap, 10);
    println!(
        "filtered replay: 5 dead letters, 3 chosen, {} republished, {persisted} orders persisted",
        copies.len()
    );
    assert_eq!(copies.len(), 3, "exactly the chosen dead letters, once");
    for copy in &copies {
        assert_eq!(
            header(copy, headers::DLQ_REPLAY_COUNT).as_deref(),
            Some("1")
        );
        assert!(
            header(copy, headers::DLQ_ERROR_CLASS).is_none(),
            "error headers are not carried back"
        );
        assert_eq!(
            header(copy, headers::CONTENT_TYPE).as_deref(),
            Some("application/json")
        );
    }
    assert_eq!(persisted, 5, "the consumer persisted the replayed orders");

    let again = json(&tool(
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--kind",
            "transient",
            "--group",
            "fix-1",
            "--json",
        ],
    ));
    assert_eq!(again["read"], 0, "the group remembers where it stopped");
    let backlog = first_group(&tool(
        &broker.bootstrap,
        &["lag", "--group", "fix-1=orders-dlq", "--json"],
    ));
    assert_eq!(backlog["total"], 0, "{backlog}");
    service.sigterm(Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_guard_parks_a_message_that_keeps_failing() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    let poison = Outgoing {
        value: b"never valid".to_vec(),
        ..order_message(&order_event(1), contract::Format::Json)
    };
    publish(&broker.bootstrap, &[poison]);
    let mut service = consumer(&broker.bootstrap, &db, "order-consumer", &[]);
    service.wait_ready("/readyz", WAIT).await;
    assert_eq!(
        read_topic(&broker.bootstrap, topics::ORDERS_DLQ, 1, WAIT).len(),
        1
    );

    let first = json(&tool(
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--max-replays",
            "1",
            "--group",
            "loop",
            "--json",
        ],
    ));
    assert_eq!(first["replayed"], 1);
    let letters = read_topic(&broker.bootstrap, topics::ORDERS_DLQ, 2, WAIT);
    assert_eq!(letters.len(), 2, "the replayed copy failed again");
    assert_eq!(
        header(&letters[1], headers::DLQ_REPLAY_COUNT).as_deref(),
        Some("1"),
        "the replay count travels with it"
    );
    // The second dead letter keeps where and why the message failed first.
    for (first, original) in contract::headers::DLQ_FIRST_FAILURE {
        assert_eq!(
            header(&letters[1], first),
            header(&letters[0], original),
            "{first} of the second dead letter is {original} of the first"
        );
    }
    assert_eq!(
        header(&letters[1], contract::headers::DLQ_FIRST_ERROR_CLASS).as_deref(),
        Some("decode")
    );
    let listed = json(&tool(
        &broker.bootstrap,
        &["dlq", "list", "--group", "loop", "--json"],
    ));
    println!("listed for the replay group: {listed}");
    assert_eq!(
        listed["pending"], 1,
        "the new dead letter awaits the group: {listed}"
    );
    assert_eq!(listed["failed_again"], 1, "{listed}");
    assert_eq!(listed["by_first_class"]["decode"], 2, "{listed}");
    assert_eq!(listed["dead_letters"][0]["pending"], false, "{listed}");
    assert_eq!(listed["dead_letters"][1]["pending"], true, "{listed}");
    assert_eq!(
        listed["dead_letters"][0]["fingerprint"], listed["dead_letters"][1]["fingerprint"],
        "one cause, one fingerprint"
    );

    let second = json(&tool(
        &broker.bootstrap,
        &[
            "dlq",
            "replay",
            "--max-replays",
            "1",
            "--group",
            "loop",
            "--json",
        ],
    ));
    println!("loop guard: first run {first}, second run {second}");
    assert_eq!(
        (second["parked"].as_u64(), second["replayed"].as_u64()),
        (Some(1), Some(0))
    );
    // Both runs have ended, so whatever they published is acknowledged;
    // reading for a second copy waits as long as it is worth waiting.
    assert_eq!(
        replayed_copies(&broker.bootstrap, 2).len(),
        1,
        "republished once, then parked"
    );
    assert_eq!(
        read_topic(
            &broker.bootstrap,
            topics::ORDERS_DLQ,
            2,
            Duration::from_secs(2)
        )
        .len(),
        2,
        "no loop"
    );
    service.sigterm(Duration::from_secs(30));
}

fn dead_letter(n: usize) -> Outgoing {
    let mut m = order_message(&order_event(n), contract::Format::Json);
    m.topic = "orders-dlq".into();
    m.headers.extend([
        ("dlq-original-topic".to_owned(), "orders".to_owned()),
        ("dlq-error-kind".to_owned(), "transient".to_owned()),
        (
            "dlq-error-class".to_owned(),
            "database_transient".to_owned(),
        ),
        ("dlq-retry-count".to_owned(), "3".to_owned()),
    ]);
    m
}

/// Starts a replay in the background; returns it and, once it replays, its
/// first progress line.
fn replay_in_background(
    bootstrap: &str,
    args: &[&str],
) -> (std::process::Child, std::sync::mpsc::Receiver<String>) {
    use std::io::BufRead;
    let mut child = Command::new(binary("pubsubkafka"))
        .args(["dlq", "replay"])
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pubsubkafka dlq replay");
    let stderr = child.stderr.take().expect("its stderr");
    let (lines, progress) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.contains("\"progress\"") {
                let _ = lines.send(line);
            }
        }
    });
    (child, progress)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_without_duplicates() {
    let broker = Tansu::start();
    let letters: Vec<Outgoing> = (0..40).map(dead_letter).collect();
    publish_each(&broker.bootstrap, &letters);

    let (slow, progress) = replay_in_background(
        &broker.bootstrap,
        &["--rate", "10", "--group", "resume", "--json"],
    );
    // Interrupted once its progress says some dead letters were replayed.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let line = progress
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("the replay reports progress");
        let reported: Value = serde_json::from_str(&line).unwrap_or_default();
        if reported["progress"]["replayed"]
            .as_u64()
            .is_some_and(|n| n > 0)
        {
            break;
        }
    }
    harness::process::signal(&slow, libc::SIGINT);
    let interrupted = slow.wait_with_output().unwrap();
    let first = json(&interrupted);
    assert!(
        !interrupted.status.success(),
        "an interrupted replay says so in its exit status"
    );
    let done = first["replayed"].as_u64().unwrap();
    assert!(done > 0 && done < 40, "interrupted part-way: {first}");

    let rest = json(&tool(
        &broker.bootstrap,
        &[
            "dlq", "replay", "--rate", "1000", "--group", "resume", "--json",
        ],
    ));
    let copies = replayed_copies(&broker.bootstrap, 40);
    let keys: std::collections::HashSet<Vec<u8>> = copies
        .iter()
        .filter_map(|m| rdkafka::message::Message::key(m).map(<[u8]>::to_vec))
        .collect();
    println!(
        "interrupted replay: first run {done}, second run {}, {} copies, {} distinct",
        rest["replayed"],
        copies.len(),
        keys.len()
    );
    assert_eq!(done + rest["replayed"].as_u64().unwrap(), 40);
    assert_eq!(copies.len(), 40, "every dead letter republished once");
    assert_eq!(keys.len(), 40, "no duplicates");
}

/// One replay at a time per DLQ and group: a second run with the same
/// group refuses with a clear message while the first goes on to replay
/// every dead letter once; another group is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_replay_with_the_same_group_refuses() {
    let broker = Tansu::start();
    let letters: Vec<Outgoing> = (0..40).map(dead_letter).collect();
    publish_each(&broker.bootstrap, &letters);

    let (first, progress) = replay_in_background(
        &broker.bootstrap,
        &["--rate", "10", "--group", "campaign", "--json"],
    );
    progress
        .recv_timeout(WAIT)
        .expect("the first replay reports progress");
    // Tried three times while the first runs: each refuses, and the
    // running one is not disturbed (it used to lose its partitions to the
    // newcomer's join and could abort on a refused commit).
    for _ in 0..3 {
        let second = tool(
            &broker.bootstrap,
            &["dlq", "replay", "--group", "campaign", "--json"],
        );
        let said = String::from_utf8_lossy(&second.stderr);
        println!("second replay, same group: {said}");
        assert_eq!(second.status.code(), Some(1), "{said}");
        assert_eq!(error_code(&second), "busy", "no summary: it did nothing");
        assert!(
            said.contains("another replay of orders-dlq runs with --group campaign"),
            "{said}"
        );
    }
    let dry = tool(
        &broker.bootstrap,
        &["dlq", "replay", "--group", "other", "--dry-run", "--json"],
    );
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );

    let done = first.wait_with_output().expect("the first replay ends");
    let summary = json(&done);
    println!("first replay: {summary}");
    assert!(done.status.success(), "{summary}");
    assert_eq!(summary["replayed"], 40, "{summary}");
    let copies = replayed_copies(&broker.bootstrap, 40);
    assert_eq!(copies.len(), 40, "each dead letter republished once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_read_from_the_broker_while_the_consumer_is_down() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    let group = format!("lag-{}", Uuid::new_v4().simple());
    let orders: Vec<_> = (0..30)
        .map(|n| order_message(&order_event(n), contract::Format::Json))
        .collect();
    publish_each(&broker.bootstrap, &orders);

    // A group the broker does not know is refused: a typo must not read as
    // "lag 0" or as a whole topic behind...
    let unknown = tool(&broker.bootstrap, &["lag", "--group", &group, "--json"]);
    let said = String::from_utf8_lossy(&unknown.stderr);
    println!("lag of an unknown group: {said}");
    assert_eq!(unknown.status.code(), Some(1), "{said}");
    assert_eq!(error_code(&unknown), "unknown_group");
    assert!(said.contains("is not known to the broker"), "{said}");
    // ... unless its consumers have not started yet.
    let down = first_group(&tool(
        &broker.bootstrap,
        &[
            "lag",
            "--group",
            &group,
            "--allow-new-group",
            "--window",
            "2",
            "--interval",
            "1",
            "--json",
        ],
    ));
    println!("lag with no consumer: {down}");
    assert_eq!(down["total"], 30, "{down}");
    // Nobody consumes: STOP where the broker reports the group's members,
    // STALL where it does not (Tansu).
    let expected = if down["members"] == 0 {
        "STOP"
    } else {
        "STALL"
    };
    assert_eq!(down["status"], expected, "nobody consumes: {down}");
    assert!(down["measurements"].as_u64() >= Some(2), "{down}");

    // Logs, however many, go to standard error: standard output stays the
    // result, for `| jq` and for scripts.
    let chatty = Command::new(binary("pubsubkafka"))
        .args(["lag", "--group", &group, "--allow-new-group", "--json"])
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap)
        .env("LOG_LEVEL", "debug")
        .env("KAFKA_DEBUG", "metadata")
        .output()
        .expect("run pubsubkafka");
    let logged = String::from_utf8_lossy(&chatty.stderr);
    assert!(
        logged.contains("librdkafka"),
        "debug lines are logged: {logged}"
    );
    assert_eq!(
        first_group(&chatty)["total"],
        30,
        "standard output is only the JSON"
    );
    let above = tool(
        &broker.bootstrap,
        &[
            "lag",
            "--group",
            &group,
            "--allow-new-group",
            "--threshold",
            "10",
        ],
    );
    assert_eq!(above.status.code(), Some(2), "above the threshold");
    let table = String::from_utf8_lossy(&above.stdout);
    println!("{table}");
    assert!(table.contains("total lag 30"), "{table}");
    assert!(table.contains("status UNKNOWN (one measurement"), "{table}");

    let port = harness::free_port();
    let mut exporter = Service::start_command(
        "pubsubkafka",
        &[
            "lag",
            "--group",
            &group,
            "--serve",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1",
        ],
        &[("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone())],
        &format!("127.0.0.1:{port}"),
    );
    exporter.wait_ready("/readyz", WAIT).await;
    let metrics = reqwest::get(exporter.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kafka_consumer_lag{"))
        .collect();
    assert!(lines.iter().any(|l| l.contains(&group)), "{metrics}");
    let summed: i64 = lines
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok())
        .sum();
    assert_eq!(summed, 30);

    let mut service = consumer(&broker.bootstrap, &db, &group, &[]);
    service.wait_ready("/readyz", WAIT).await;
    assert_eq!(
        wait_for_count(&db.pool, "SELECT count(*) FROM orders", 30, WAIT).await,
        30
    );
    assert!(service
        .sigterm(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
    let caught_up = first_group(&tool(
        &broker.bootstrap,
        &["lag", "--group", &group, "--json"],
    ));
    println!(
        "lag after the consumer caught up and stopped: {}",
        caught_up["total"]
    );
    assert_eq!(caught_up["total"], 0, "{caught_up}");
    assert!(tool(
        &broker.bootstrap,
        &["lag", "--group", &group, "--threshold", "10"]
    )
    .status
    .success());
    exporter.sigterm(Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_dead_letters_are_listed_and_inspected_without_harm() {
    let broker = Tansu::start();
    let mut bomb =
        dead_letter(0).with_header(headers::CONTENT_TYPE, contract::Format::Avro.content_type());
    bomb.value = harness::events::avro_item_count_bomb();
    // Written before error texts were scrubbed: it quotes a customer's name.
    let leaky = dead_letter(1).with_header(
        headers::DLQ_ERROR_MESSAGE,
        r#"invalid type: string "Ada Lovelace", expected u32"#,
    );
    let mut letters = vec![bomb, leaky];
    letters.extend((2..40).map(dead_letter));
    publish_each(&broker.bootstrap, &letters);

    let listed = tool(
        &broker.bootstrap,
        &["dlq", "list", "--json", "--limit", "3"],
    );
    assert!(listed.status.success(), "{listed:?}");
    let listing = json(&listed);
    assert_eq!(listing["total"], 40, "{listing}");
    assert_eq!(listing["dead_letters"].as_array().map(Vec::len), Some(3));
    let text = tool(&broker.bootstrap, &["dlq", "list", "--limit", "100"]);
    for output in [&listed, &text] {
        let shown = String::from_utf8_lossy(&output.stdout);
        assert!(
            !shown.contains("Ada Lovelace"),
            "customer data shown:\n{shown}"
        );
    }

    let bomb_at = read_topic(
        &broker.bootstrap,
        topics::ORDERS_DLQ,
        40,
        Duration::from_secs(5),
    )
    .into_iter()
    .find(|m| m.payload() == Some(letters[0].value.as_slice()))
    .expect("the bomb in the DLQ");
    let inspected = tool(
        &broker.bootstrap,
        &[
            "dlq",
            "inspect",
            "--partition",
            &bomb_at.partition().to_string(),
            "--offset",
            &bomb_at.offset().to_string(),
        ],
    );
    println!(
        "inspect of the item-count bomb: {}",
        String::from_utf8_lossy(&inspected.stdout)
    );
    assert!(inspected.status.success(), "{inspected:?}");
    let shown = json(&inspected);
    assert!(
        shown["payload"]["undecodable"]
            .as_str()
            .is_some_and(|r| r.contains("items")),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_reads_a_dead_letter_as_the_consumer_read_it() {
    let broker = Tansu::start();
    // A user event without event-type: its original topic says what it is.
    let user = harness::events::user_event(7);
    let mut letter = harness::events::user_message(&user, contract::Format::Avro)
        .without_header(headers::EVENT_TYPE)
        .with_header(headers::DLQ_ORIGINAL_TOPIC, topics::USERS);
    letter.topic = "users-dlq".into();
    publish_each(&broker.bootstrap, std::slice::from_ref(&letter));
    let at = read_topic(
        &broker.bootstrap,
        topics::USERS_DLQ,
        1,
        Duration::from_secs(5),
    )
    .into_iter()
    .next()
    .expect("the dead letter");
    let inspected = tool(
        &broker.bootstrap,
        &[
            "dlq",
            "inspect",
            "--topic",
            topics::USERS_DLQ,
            "--partition",
            &at.partition().to_string(),
            "--offset",
            &at.offset().to_string(),
        ],
    );
    assert!(inspected.status.success(), "{inspected:?}");
    let shown = json(&inspected);
    assert_eq!(
        shown["payload"]["decoded"]["user_id"], user.user_id,
        "decoded as a user: {shown}"
    );
}

/// After a memory broker's restart, a client's metadata request may create a
/// topic before the harness does; creating it again must not fail (Tansu
/// reports "already exists" on stdout, not stderr).
#[test]
fn creating_the_topics_again_is_harmless() {
    let broker = Tansu::start();
    broker.create_topics();
    broker.create_topics();
}

/// `--bootstrap-server` wins over KAFKA_BOOTSTRAP_SERVERS; a topic that is
/// not on the cluster is an error that names it and the broker, not a lag
/// of 0, and with `--json` stdout is the error object for scripts.
#[test]
fn the_bootstrap_flag_wins_and_a_missing_topic_is_an_error() {
    let broker = Tansu::start();
    let run = |args: &[&str]| {
        Command::new(binary("pubsubkafka"))
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
            .env("LOG_LEVEL", "warn")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .output()
            .expect("run pubsubkafka")
    };
    let servers = broker.bootstrap.as_str();

    let lag = run(&[
        "lag",
        "--bootstrap-server",
        servers,
        "--group",
        "g",
        "--allow-new-group",
        "--json",
    ]);
    assert!(
        lag.status.success(),
        "lag with --bootstrap-server: {}",
        String::from_utf8_lossy(&lag.stderr)
    );
    assert_eq!(first_group(&lag)["total"], 0);
    let list = run(&["dlq", "list", "--bootstrap-server", servers, "--json"]);
    assert!(
        list.status.success(),
        "dlq list with --bootstrap-server: {}",
        String::from_utf8_lossy(&list.stderr)
    );
    json(&list);

    let missing = run(&[
        "lag",
        "--bootstrap-server",
        servers,
        "--group",
        "g",
        "--topics",
        "orders,no-such-topic",
        "--json",
    ]);
    let said = String::from_utf8_lossy(&missing.stderr);
    println!("lag on a missing topic: {said}");
    assert_eq!(missing.status.code(), Some(1), "{said}");
    assert_eq!(
        error_code(&missing),
        "unknown_topic",
        "one error object on stdout for a script to parse"
    );
    assert!(said.contains("\"no-such-topic\" does not exist"), "{said}");
    assert!(said.contains(servers), "the error names the broker: {said}");

    // A reader that stops reading (`| head`) is not a crash.
    let mut closed = Command::new(binary("pubsubkafka"))
        .args([
            "lag",
            "--bootstrap-server",
            servers,
            "--group",
            "g",
            "--allow-new-group",
            "--json",
        ])
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pubsubkafka");
    drop(closed.stdout.take());
    let ended = closed.wait_with_output().expect("wait for pubsubkafka");
    let said = String::from_utf8_lossy(&ended.stderr);
    assert!(
        ended.status.success() && !said.contains("panicked"),
        "stdout closed early: {:?} {said}",
        ended.status
    );
}

/// `dev` prints the broker address as an export line, and the operator tool
/// reads the running pipeline with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_an_export_line_the_tool_can_use() {
    use std::io::BufRead;

    let db = TestDatabase::create().await;
    let mut dev = Command::new(binary("pubsubkafka"))
        .args([
            "dev",
            "--producer-addr",
            &format!("127.0.0.1:{}", harness::free_port()),
            "--consumer-addr",
            &format!("127.0.0.1:{}", harness::free_port()),
            "--query-addr",
            &format!("127.0.0.1:{}", harness::free_port()),
            "--console-addr",
            &format!("127.0.0.1:{}", harness::free_port()),
        ])
        .env("DATABASE_URL", &db.url)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pubsubkafka dev");
    let stdout = dev.stdout.take().expect("dev's stdout");
    let (lines, export) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(servers) = line.trim().strip_prefix("export KAFKA_BOOTSTRAP_SERVERS=") {
                let _ = lines.send(servers.to_owned());
            }
        }
    });
    let servers = export.recv_timeout(Duration::from_secs(60));
    let lag = servers.as_ref().ok().map(|servers| {
        Command::new(binary("pubsubkafka"))
            .args([
                "lag",
                "--group",
                "order-consumer",
                "--allow-new-group",
                "--json",
            ])
            .env("KAFKA_BOOTSTRAP_SERVERS", servers)
            .env("LOG_LEVEL", "warn")
            .output()
            .expect("run pubsubkafka lag")
    });
    let _ = dev.kill();
    let _ = dev.wait();
    let servers = servers.expect("dev printed an export KAFKA_BOOTSTRAP_SERVERS= line within 60 s");
    let lag = lag.expect("lag ran");
    assert!(
        lag.status.success(),
        "lag on {servers}: {}",
        String::from_utf8_lossy(&lag.stderr)
    );
    let partitions = first_group(&lag)["partitions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(partitions, 6, "orders and users, 3 partitions each");
}

/// The `kafka_consumer_status` series of `group` that is 1, if any.
fn exported_status(metrics: &str, group: &str) -> Option<String> {
    metrics
        .lines()
        .filter(|l| l.starts_with("kafka_consumer_status{"))
        .filter(|l| l.contains(&format!("group=\"{group}\"")) && l.ends_with(" 1"))
        .find_map(|l| {
            let rest = l.split("status=\"").nth(1)?;
            Some(rest.split('"').next()?.to_owned())
        })
}

async fn metrics_of(exporter: &Service) -> String {
    reqwest::get(exporter.url("/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// Commits `offset` for `group` on partition 0 of `topic` from outside the
/// group, as a consumer that keeps its own pace would.
fn commit(bootstrap: &str, group: &str, topic: &str, offset: i64) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let committer: BaseConsumer = harness::kafka::client(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("committer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, rdkafka::Offset::Offset(offset))
        .expect("partition");
    committer
        .commit(&tpl, CommitMode::Sync)
        .expect("commit offset");
}

/// Waits until the exporter's verdict on `group` is `expected`, printing
/// the verdicts seen on the way; `act` runs before each look.
async fn wait_for_verdict(
    exporter: &Service,
    group: &str,
    expected: &str,
    mut act: impl FnMut(),
) -> String {
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        act();
        let metrics = metrics_of(exporter).await;
        let status = exported_status(&metrics, group);
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status.as_deref() == Some(expected) {
            println!("verdicts on the way to {expected}: {seen:?}");
            return metrics;
        }
        assert!(
            started.elapsed() < WAIT,
            "no {expected} verdict in {WAIT:?}; seen {seen:?}\n{metrics}"
        );
        // The pace of `act` (the scenario's traffic between two looks), not
        // a wait for an effect: the loop ends on the verdict or at WAIT.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The exporter's verdicts follow what a group does on a real broker:
/// nobody consuming is STALL (STOP where the broker reports an empty group),
/// advancing slower than the producer is WARN, an offset committed
/// backwards is REWIND, caught up is OK with no time left to drain. When the
/// broker goes away the group's series are withdrawn, not served stale, and
/// the exporter says it is not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_judges_each_partition_and_withdraws_what_it_cannot_measure() {
    let mut broker = Tansu::start();
    let bootstrap = broker.bootstrap.clone();
    let topic = format!("verdicts-{}", Uuid::new_v4().simple());
    let group = format!("verdicts-{}", Uuid::new_v4().simple());
    broker.create_topic(&topic, 1);
    let message = |n: usize| {
        let mut m = order_message(&order_event(n), contract::Format::Json);
        m.topic = topic.clone();
        m.partition = Some(0);
        m
    };
    let mut sent = 10;
    publish_each(&bootstrap, &(0..sent).map(message).collect::<Vec<_>>());

    let port = harness::free_port();
    let mut exporter = Service::start_command(
        "pubsubkafka",
        &[
            "lag",
            "--group",
            &format!("{group}={topic}"),
            "--serve",
            &format!("127.0.0.1:{port}"),
            "--interval",
            "1",
            "--window",
            "4",
        ],
        &[("KAFKA_BOOTSTRAP_SERVERS", bootstrap.clone())],
        &format!("127.0.0.1:{port}"),
    );
    exporter.wait_ready("/readyz", WAIT).await;

    // Nobody consumes. Tansu reports no group members, so this is STALL
    // (STOP needs a broker that says the group is empty).
    let idle = wait_for_verdict(&exporter, &group, "STALL", || {}).await;
    assert!(
        !idle.contains(&format!(
            "kafka_consumer_group_members{{group=\"{group}\"}}"
        )),
        "members are exported only when the broker reports them"
    );

    // One message consumed for every three produced.
    let mut committed = 0;
    wait_for_verdict(&exporter, &group, "WARN", || {
        publish_each(
            &bootstrap,
            &(sent..sent + 3).map(message).collect::<Vec<_>>(),
        );
        sent += 3;
        committed += 1;
        commit(&bootstrap, &group, &topic, committed);
    })
    .await;

    commit(&bootstrap, &group, &topic, 0);
    wait_for_verdict(&exporter, &group, "REWIND", || {}).await;

    commit(&bootstrap, &group, &topic, i64::try_from(sent).unwrap());
    let caught_up = wait_for_verdict(&exporter, &group, "OK", || {}).await;
    assert!(
        caught_up
            .lines()
            .any(|l| l.starts_with("kafka_consumer_lag_eta_seconds{")
                && l.contains(&group)
                && l.ends_with(" 0")),
        "no time left to drain once caught up:\n{caught_up}"
    );

    assert!(caught_up.contains(&format!(
        "kafka_consumer_group_status{{group=\"{group}\",status=\"OK\"}} 1"
    )));
    assert!(caught_up.contains(&format!("kafka_lag_exporter_up{{group=\"{group}\"}} 1")));

    broker.stop();
    let metrics = eventually(
        WAIT,
        "the exporter to report a failed measurement",
        || async {
            let metrics = metrics_of(&exporter).await;
            if metrics.contains(&format!("kafka_lag_exporter_up{{group=\"{group}\"}} 0")) {
                Ok(metrics)
            } else {
                Err(format!(
                    "still claims to measure a stopped broker:\n{metrics}"
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stale: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("kafka_consumer_") && l.contains(&group))
        .collect();
    assert!(
        stale.is_empty(),
        "series served after a failed measurement: {stale:?}"
    );
    let ready = reqwest::get(exporter.url("/readyz"))
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status(), 503, "not ready while measurements fail");
    exporter.sigterm(Duration::from_secs(10));
}

/// Dead letters written straight into `orders-dlq` by whoever may write it
/// (the consumer's credentials may) name where they want to go: `users`, a
/// topic of someone else, a topic that does not exist, or nowhere, the
/// header repeated with the forged value first. A replay publishes only to
/// `orders`, the topic `orders-dlq` belongs to: the forged ones are parked
/// and reported, never published, and the good dead letters after them in
/// the same partition are replayed and persisted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_publishes_only_to_the_topic_its_dlq_belongs_to_whatever_a_header_says() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    let mut service = consumer(&broker.bootstrap, &db, "order-consumer", &[]);
    service.wait_ready("/readyz", WAIT).await;
    let aiming = |n: usize, topics: &[&str]| {
        let mut m = dead_letter(n);
        m.partition = Some(0);
        m.headers.retain(|(k, _)| k != headers::DLQ_ORIGINAL_TOPIC);
        for (i, topic) in topics.iter().enumerate() {
            m.headers
                .insert(i, ("dlq-original-topic".to_owned(), (*topic).to_owned()));
        }
        m
    };
    let mut hostile_key = aiming(0, &["users"]);
    hostile_key.key = b"\x1b]0;owned\x07\x1b[2J\x1b[HDLQ empty\xc2\x9b31m\xe2\x80\xae".to_vec();
    let letters = vec![
        hostile_key,
        aiming(1, &["payments"]),
        aiming(2, &["auto-created-by-a-replay"]),
        aiming(3, &[]),
        aiming(4, &[topics::USERS, topics::ORDERS]),
        aiming(5, &["orders"]),
        aiming(6, &["orders"]),
    ];
    publish_each(&broker.bootstrap, &letters);

    // A key holding escape sequences is shown, not obeyed.
    let listed = tool(&broker.bootstrap, &["dlq", "list"]);
    let shown = String::from_utf8(listed.stdout).expect("UTF-8");
    assert!(listed.status.success(), "{shown}");
    assert!(
        !shown
            .chars()
            .any(|c| c.is_control() && c != '\n' || c == '\u{202e}'),
        "{shown:?}"
    );
    assert!(shown.contains(r"\u001b]0;owned\u0007\u001b[2J"), "{shown}");

    let out = tool(&broker.bootstrap, &["dlq", "replay", "--json"]);
    let summary = json(&out);
    println!("replay of forged dead letters: {summary}");
    assert!(out.status.success(), "{summary}");
    assert_eq!(summary["destination"], topics::ORDERS);
    assert_eq!(
        (summary["replayed"].as_u64(), summary["parked"].as_u64()),
        (Some(2), Some(5)),
        "{summary}"
    );
    let reasons: Vec<&str> = summary["parked_letters"]
        .as_array()
        .expect("parked letters")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        reasons[0].contains(r#"dlq-original-topic "users" is not orders"#),
        "{reasons:?}"
    );
    assert!(
        reasons[3].contains("no dlq-original-topic header"),
        "{reasons:?}"
    );
    assert!(
        reasons[4].contains(r#""users""#),
        "the first of a repeated header counts: {reasons:?}"
    );

    let copies = replayed_copies(&broker.bootstrap, 2);
    assert_eq!(
        copies.len(),
        2,
        "only the two good dead letters reached orders"
    );
    let persisted = wait_for_count(&db.pool, "SELECT count(*) FROM orders", 2, WAIT).await;
    assert_eq!(persisted, 2);
    let elsewhere = read_topic(&broker.bootstrap, topics::USERS, 1, Duration::from_secs(3));
    assert!(elsewhere.is_empty(), "nothing was published to users");
    let admin: rdkafka::consumer::BaseConsumer = harness::kafka::client(&broker.bootstrap)
        .create()
        .expect("metadata client");
    let listed: Vec<String> = rdkafka::consumer::Consumer::fetch_metadata(&admin, None, WAIT)
        .expect("metadata")
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .collect();
    assert!(
        !listed
            .iter()
            .any(|t| t == "auto-created-by-a-replay" || t == "payments"),
        "no topic was created or written by a header: {listed:?}"
    );

    // A DLQ that is not the DLQ of a configured topic is refused at once.
    let refused = tool(
        &broker.bootstrap,
        &["dlq", "replay", "--topic", "payments-dlq"],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        said.contains("not the dead-letter topic of a configured topic"),
        "{said}"
    );
    service.sigterm(Duration::from_secs(30));
    db.drop().await;
}

/// Runs `name` with `args`. A service that went on to start despite them
/// fails at once: its listen address is not one.
fn run_binary(name: &str, args: &[&str]) -> Output {
    Command::new(binary(name))
        .args(args)
        .env("PRODUCER_HTTP_ADDR", "not-an-address")
        .env("CONSUMER_HTTP_ADDR", "not-an-address")
        .env("QUERY_HTTP_ADDR", "not-an-address")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

#[test]
fn every_binary_reports_the_release_version() {
    for name in ["producer", "consumer", "query", "pubsubkafka"] {
        let expected = format!("{name} {}", env!("CARGO_PKG_VERSION"));
        for flag in ["--version", "-V"] {
            let out = run_binary(name, &[flag]);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                (out.status.code(), stdout.trim()),
                (Some(0), expected.as_str()),
                "{name} {flag}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn a_service_refuses_arguments_it_does_not_take_before_starting() {
    for name in ["producer", "consumer", "query"] {
        let help = run_binary(name, &["--help"]);
        assert_eq!(help.status.code(), Some(0), "{name} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("environment"),
            "{name} --help says where its configuration comes from"
        );
        for args in [&["--port", "8080"][..], &["--version", "extra"], &["serve"]] {
            let out = run_binary(name, args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{name} {args:?}: {stderr}");
            assert!(
                stderr.contains(&format!("unexpected argument \"{}\"", args[0])),
                "{name} {args:?} names the argument it refuses: {stderr}"
            );
            assert!(out.stdout.is_empty(), "{name} {args:?} printed on stdout");
        }
    }
}
