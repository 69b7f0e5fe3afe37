//! The operator tool against a Tansu broker process and the local
//! PostgreSQL: DLQ list / replay (filtered, loop-guarded, resumable) and
//! consumer lag read from the broker while the consumer is down.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use harness::broker::Tansu;
use harness::database::{wait_for_count, TestDatabase};
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{header, publish, publish_each, read_topic};
use harness::process::{binary, Service};
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
    read_topic(bootstrap, "orders", expected, Duration::from_secs(3))
        .into_iter()
        .filter(|m| header(m, "dlq-replay-count").is_some())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_replay_republishes_exactly_the_chosen_messages_once_and_they_are_persisted() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    consumer::db::migrate(&db.pool).await.unwrap();
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
        read_topic(&broker.bootstrap, "orders-dlq", 5, WAIT).len(),
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
        assert_eq!(header(copy, "dlq-replay-count").as_deref(), Some("1"));
        assert!(
            header(copy, "dlq-error-class").is_none(),
            "error headers are not carried back"
        );
        assert_eq!(
            header(copy, "content-type").as_deref(),
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
        read_topic(&broker.bootstrap, "orders-dlq", 1, WAIT).len(),
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
    let letters = read_topic(&broker.bootstrap, "orders-dlq", 2, WAIT);
    assert_eq!(letters.len(), 2, "the replayed copy failed again");
    assert_eq!(
        header(&letters[1], "dlq-replay-count").as_deref(),
        Some("1"),
        "the replay count travels with it"
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replayed_copies(&broker.bootstrap, 2).len(),
        1,
        "republished once, then parked"
    );
    assert_eq!(
        read_topic(&broker.bootstrap, "orders-dlq", 2, Duration::from_secs(2)).len(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_resumes_without_duplicates() {
    let broker = Tansu::start();
    let letters: Vec<Outgoing> = (0..40).map(dead_letter).collect();
    publish_each(&broker.bootstrap, &letters);

    let slow = Command::new(binary("pubsubkafka"))
        .args([
            "dlq", "replay", "--rate", "10", "--group", "resume", "--json",
        ])
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap)
        .env("LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_read_from_the_broker_while_the_consumer_is_down() {
    let broker = Tansu::start();
    let db = TestDatabase::create().await;
    let group = format!("lag-{}", Uuid::new_v4().simple());
    let orders: Vec<_> = (0..30)
        .map(|n| order_message(&order_event(n), contract::Format::Json))
        .collect();
    publish_each(&broker.bootstrap, &orders);

    let down = json(&tool(
        &broker.bootstrap,
        &["lag", "--group", &group, "--json"],
    ));
    println!("lag with no consumer: {}", down["total"]);
    assert_eq!(down["total"], 30, "{down}");

    // Logs, however many, go to standard error: standard output stays the
    // result, for `| jq` and for scripts.
    let chatty = Command::new(binary("pubsubkafka"))
        .args(["lag", "--group", &group, "--json"])
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
        json(&chatty)["total"],
        30,
        "standard output is only the JSON"
    );
    let above = tool(
        &broker.bootstrap,
        &["lag", "--group", &group, "--threshold", "10"],
    );
    assert_eq!(above.status.code(), Some(2), "above the threshold");
    assert!(String::from_utf8_lossy(&above.stdout).contains("total lag 30"));

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
    let caught_up = json(&tool(
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
        dead_letter(0).with_header("content-type", contract::Format::Avro.content_type());
    bomb.value = harness::events::avro_item_count_bomb();
    // Written before error texts were scrubbed: it quotes a customer's name.
    let leaky = dead_letter(1).with_header(
        "dlq-error-message",
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

    let bomb_at = read_topic(&broker.bootstrap, "orders-dlq", 40, Duration::from_secs(5))
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
        .without_header("event-type")
        .with_header("dlq-original-topic", "users");
    letter.topic = "users-dlq".into();
    publish_each(&broker.bootstrap, std::slice::from_ref(&letter));
    let at = read_topic(&broker.bootstrap, "users-dlq", 1, Duration::from_secs(5))
        .into_iter()
        .next()
        .expect("the dead letter");
    let inspected = tool(
        &broker.bootstrap,
        &[
            "dlq",
            "inspect",
            "--topic",
            "users-dlq",
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

/// `--bootstrap-server` wins over KAFKA_BOOTSTRAP_SERVERS, before or after
/// the subcommand; a topic that is not on the cluster is an error that names
/// it and the broker, not a lag of 0, and leaves stdout empty for scripts.
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
        "--bootstrap-server",
        servers,
        "lag",
        "--group",
        "g",
        "--json",
    ]);
    assert!(
        lag.status.success(),
        "lag with --bootstrap-server: {}",
        String::from_utf8_lossy(&lag.stderr)
    );
    assert_eq!(json(&lag)["total"], 0);
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
    assert!(
        missing.stdout.is_empty(),
        "nothing on stdout for a script to parse"
    );
    assert!(said.contains("\"no-such-topic\" does not exist"), "{said}");
    assert!(said.contains(servers), "the error names the broker: {said}");
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
            .args(["lag", "--group", "order-consumer", "--json"])
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
    let partitions = json(&lag)["partitions"].as_array().map_or(0, Vec::len);
    assert_eq!(partitions, 6, "orders and users, 3 partitions each");
}
