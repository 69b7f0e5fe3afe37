//! The operator's console (`pubsubkafka console`) in a real headless
//! browser, over a pipeline in trouble: the `orders` table is locked, so the
//! consumer's writes time out (transient `database_transient` failures),
//! its first dead letters go to the DLQ and the flood guard then holds the
//! partitions. The operator signs in, sees the held partition on the
//! overview, finds the dead letters' group, and once the lock is gone
//! replays the group from the browser; every accepted order ends up stored.
//! A read-only console, logged in as the lag exporter, measures the same.
//! The console's authentication and CSRF rules are checked with a plain
//! HTTP client. Every part is a real process: a three-node Apache Kafka
//! with SASL_SSL and the ACLs of `acls.json` (each service, and the
//! console, logs in as the chart's principal of its own), PostgreSQL, the
//! producer, the consumer, the console, Chromium.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use contract::headers;
use harness::broker::Broker;
use harness::browser::{Browser, Done, Page, Step};
use harness::cluster::{Role, REPLAY_GROUP};
use harness::database::TestDatabase;
use harness::kafka::{header, read_topic_with, PARTITIONS};
use harness::load::post_orders;
use harness::process::{log_dir, Service};
use harness::stack::{consumer_env, producer_env, READY};
use harness::wait::eventually;
use rdkafka::message::{Message, OwnedMessage};
use reqwest::header::{AUTHORIZATION, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use reqwest::StatusCode;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "console-test-token-1f6c0b8e";
const ORDERS: usize = 20;
/// `DLQ_FLOOD_MAX_IN_ROW`: a partition is held at its fourth dead letter in a row.
const MAX_IN_ROW: usize = 3;
/// The Content-Security-Policy of every answer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The cookie of a signed-in browser.
const SESSION_COOKIE: &str = "pubsubkafka_console";

/// The consumer of a pipeline in trouble: writes that wait 200 ms for a
/// lock fail, are retried once 100 ms later, then dead-lettered; the fourth
/// dead letter in a row holds the partition, tried again every 2 s.
fn quick_to_give_up(broker: &Broker, db: &TestDatabase) -> Vec<(&'static str, String)> {
    let mut env = consumer_env(broker, &db.url);
    env.retain(|(k, _)| *k != "RETRY_BACKOFF_MS");
    env.extend([
        ("DB_LOCK_TIMEOUT_MS", "200".to_owned()),
        ("MAX_RETRIES", "1".to_owned()),
        ("RETRY_BACKOFF_MS", "100".to_owned()),
        ("DLQ_FLOOD_MAX_IN_ROW", MAX_IN_ROW.to_string()),
        ("DLQ_FLOOD_RETRY_SECS", "2".to_owned()),
    ]);
    env
}

async fn text_of(url: &str) -> Result<String, String> {
    let response = reqwest::get(url).await.map_err(|e| e.to_string())?;
    response.text().await.map_err(|e| e.to_string())
}

/// The partitions of `orders` the consumer's /metrics says are held.
fn held_partitions(metrics: &str) -> Vec<i32> {
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix("kafka_consumer_dlq_flood_held{"))
        .filter_map(|l| l.split_once("} "))
        .filter(|(labels, value)| labels.contains("topic=\"orders\"") && value.trim() == "1")
        .filter_map(|(labels, _)| {
            let rest = labels.split("partition=\"").nth(1)?;
            rest.split('"').next()?.parse().ok()
        })
        .collect()
}

/// How many of `messages` came from each partition (`partition_of`).
fn per_partition(
    messages: &[OwnedMessage],
    partition_of: impl Fn(&OwnedMessage) -> i32,
) -> Vec<usize> {
    let mut counts = vec![0; usize::try_from(PARTITIONS).unwrap_or(0)];
    for m in messages {
        if let Some(n) = usize::try_from(partition_of(m))
            .ok()
            .and_then(|p| counts.get_mut(p))
        {
            *n += 1;
        }
    }
    counts
}

/// `count` messages of `topic` (fewer if they do not come within `wait`).
async fn read(broker: &Broker, topic: &str, count: usize, wait: Duration) -> Vec<OwnedMessage> {
    let (config, topic) = (broker.client(), topic.to_owned());
    tokio::task::spawn_blocking(move || read_topic_with(config, &topic, count, wait))
        .await
        .expect("reading a topic")
}

/// Waits until the lock has done all it will: each partition of `orders`
/// dead-lettered its first [`MAX_IN_ROW`] messages since the `stored` ones
/// (or all, when it had no more) and is held when more wait. Returns the
/// dead letters and a held partition.
async fn wait_until_held(
    broker: &Broker,
    consumer: &Service,
    stored: &[usize],
    accepted: usize,
) -> (usize, i32) {
    let all = accepted + stored.iter().sum::<usize>();
    let orders = read(broker, &broker.topics.orders, all, WAIT).await;
    assert_eq!(orders.len(), all, "every accepted order in its topic");
    let sent: Vec<usize> = per_partition(&orders, |m| m.partition())
        .iter()
        .zip(stored)
        .map(|(n, before)| n - before)
        .collect();
    let dead: Vec<usize> = sent.iter().map(|n| (*n).min(MAX_IN_ROW)).collect();
    let expected: usize = dead.iter().sum();
    let must_hold: Vec<i32> = (0..PARTITIONS)
        .filter(|p| sent[*p as usize] > MAX_IN_ROW)
        .collect();
    eventually(WAIT, "every partition held or dead-lettered", || async {
        let held = held_partitions(&text_of(&consumer.url("/metrics")).await?);
        let letters = read(
            broker,
            &broker.topics.orders_dlq,
            expected,
            Duration::from_secs(2),
        )
        .await;
        let from = per_partition(&letters, |m| {
            let from = header(m, headers::DLQ_ORIGINAL_PARTITION);
            from.and_then(|p| p.parse().ok()).unwrap_or(-1)
        });
        match must_hold.first() {
            Some(&p) if from == dead && must_hold.iter().all(|p| held.contains(p)) => {
                Ok((expected, p))
            }
            _ => Err(format!(
                "sent {sent:?}, dead letters {from:?} of {dead:?}, held {held:?} of {must_hold:?}"
            )),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// `pubsubkafka console`, replays allowed, over the services' /metrics,
/// showing the lag of both groups as the chart's console does, logged in
/// as the chart's principal of a console that may replay.
async fn start_console(
    broker: &Broker,
    db: &TestDatabase,
    consumer: &Service,
    producer: &Service,
) -> Service {
    let replay_group = format!(
        "{REPLAY_GROUP}={},{}",
        broker.topics.orders_dlq, broker.topics.users_dlq
    );
    let extra = [
        "--allow-replay",
        "--group",
        &replay_group,
        "--replay-group",
        REPLAY_GROUP,
    ];
    let mut env = vec![
        ("API_TOKEN", TOKEN.to_owned()),
        ("LOG_LEVEL", "info".to_owned()),
    ];
    if let Some(security) = broker.security() {
        env.extend(security.env(Role::Console));
    }
    harness::stack::console(
        &broker.bootstrap,
        &db.url,
        (consumer, producer),
        &extra,
        &env,
    )
    .await
}

/// A read-only console, logged in as the lag exporter (the chart's choice
/// without allowReplay), measures what the replaying one does: the
/// consumer's group stalled, the DLQ's depth, the dead letters' group.
async fn read_only_console(
    broker: &Broker,
    db: &TestDatabase,
    (consumer, producer): (&Service, &Service),
    dead: usize,
) {
    let mut env = vec![("API_TOKEN", TOKEN.to_owned())];
    if let Some(security) = broker.security() {
        env.extend(security.env(Role::LagExporter));
    }
    let console =
        harness::stack::console(&broker.bootstrap, &db.url, (consumer, producer), &[], &env).await;
    let group = consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("the consumer's group");
    let http = client();
    let get = |path: &str| {
        let request = http.get(console.url(path)).bearer_auth(TOKEN);
        async move {
            let answer = request.send().await.map_err(|e| e.to_string())?;
            answer.text().await.map_err(|e| e.to_string())
        }
    };
    eventually(WAIT, "the read-only console measures", || async {
        let text = get("/api/overview").await?;
        let o: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let rows = |section: &str| o[section]["value"].as_array().cloned().unwrap_or_default();
        let stalled = rows("lag")
            .iter()
            .any(|g| g["group"] == group && g["status"] == "STALL");
        let depth = rows("dlq")
            .iter()
            .any(|d| d["topic"] == broker.topics.orders_dlq.as_str() && d["depth"] == dead);
        if stalled && depth {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n--- console ---\n{}", console.log_tail(30)));
    let page = get(&format!("/dead-letters?topic={}", broker.topics.orders_dlq))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(page.contains("database_transient"), "{page}");
}

/// Where the overview's picture goes: the README's when
/// `UPDATE_SCREENSHOTS=1`, else beside the test's logs.
fn screenshot_path() -> PathBuf {
    if std::env::var("UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        harness::workspace_root().join("docs/console.png")
    } else {
        log_dir().join("console.png")
    }
}

/// The `name=value` of each cookie an answer sets.
fn cookies_set(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(|v| v.trim().to_owned())
        .collect()
}

/// The `value` of the hidden `csrf` input of a page.
fn csrf_field(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\"")?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let tag = &html[start..end];
    let value = tag.split("value=\"").nth(1)?;
    value.split('"').next().map(str::to_owned)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("http client")
}

/// Signs in as a browser would, with a plain HTTP client; the session's
/// cookie (`name=value`).
async fn sign_in(console: &Service) -> String {
    let http = client();
    let page = http
        .get(console.url("/login"))
        .send()
        .await
        .expect("login page");
    assert_eq!(page.status(), StatusCode::OK);
    let pre_session = cookies_set(&page).join("; ");
    let html = page.text().await.expect("the login page");
    let csrf = csrf_field(&html).unwrap_or_else(|| panic!("no csrf field:\n{html}"));

    let wrong = http
        .post(console.url("/login"))
        .header(COOKIE, &pre_session)
        .form(&[("token", "not-the-token-at-all"), ("csrf", &csrf)])
        .send()
        .await
        .expect("answer");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .text()
        .await
        .unwrap_or_default()
        .contains("Wrong token"));

    let signed_in = http
        .post(console.url("/login"))
        .header(COOKIE, &pre_session)
        .form(&[("token", TOKEN), ("csrf", &csrf)])
        .send()
        .await
        .expect("answer");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(signed_in.headers()[LOCATION], "/");
    let set: Vec<&str> = signed_in
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| v.starts_with(&format!("{SESSION_COOKIE}=")))
        .collect();
    let attributes = set.first().unwrap_or_else(|| panic!("no session cookie"));
    for wanted in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(wanted), "{attributes}");
    }
    cookies_set(&signed_in)
        .into_iter()
        .find(|c| c.starts_with(&format!("{SESSION_COOKIE}=")))
        .expect("the session cookie")
}

/// The console's doors, checked with a plain HTTP client: nothing without
/// a session or the bearer token, and no state change without the CSRF
/// token, however signed in.
async fn check_the_doors(console: &Service) {
    let http = client();
    let page = http.get(console.url("/")).send().await.expect("answer");
    assert_eq!(
        page.status(),
        StatusCode::SEE_OTHER,
        "a page without a session"
    );
    assert_eq!(page.headers()[LOCATION], "/login");
    let api = http
        .get(console.url("/api/overview"))
        .send()
        .await
        .expect("answer");
    assert_eq!(
        api.status(),
        StatusCode::UNAUTHORIZED,
        "the API without a session"
    );

    for path in ["/", "/api/overview"] {
        let bearer = http
            .get(console.url(path))
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(
            bearer.status(),
            StatusCode::OK,
            "{path} with the bearer token"
        );
        assert_eq!(bearer.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(bearer.headers()["content-security-policy"], CSP, "{path}");
        assert_eq!(bearer.headers()["x-content-type-options"], "nosniff");
        let referrer = bearer.headers()["referrer-policy"].to_str().unwrap_or("");
        assert!(
            ["no-referrer", "same-origin"].contains(&referrer),
            "{referrer}"
        );
    }
    let json = http
        .get(console.url("/api/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("answer");
    let overview: serde_json::Value = json.json().await.expect("JSON");
    assert!(overview.is_object(), "{overview}");

    let session = sign_in(console).await;
    let forged = http
        .post(console.url("/replay"))
        .header(COOKIE, &session)
        .form(&[("topic", "orders-dlq"), ("class", "database_transient")])
        .send()
        .await
        .expect("answer");
    assert_eq!(
        forged.status(),
        StatusCode::FORBIDDEN,
        "a POST without its CSRF token"
    );
    let said = forged.text().await.unwrap_or_default();
    assert!(said.contains("CSRF token missing or wrong"), "{said}");

    // The right token from another site's page: refused all the same.
    let home = http
        .get(console.url("/"))
        .header(COOKIE, &session)
        .send()
        .await;
    let html = home.expect("answer").text().await.expect("the overview");
    let csrf = csrf_field(&html).unwrap_or_else(|| panic!("no csrf field:\n{html}"));
    let foreign = http
        .post(console.url("/replay/dry-run"))
        .header(COOKIE, &session)
        .header(ORIGIN, "http://evil.example")
        .form(&[("topic", "orders-dlq"), ("csrf", &csrf)])
        .send()
        .await
        .expect("answer");
    assert_eq!(
        foreign.status(),
        StatusCode::FORBIDDEN,
        "a POST from another origin"
    );
}

/// Errors the pages logged (a script error, something the CSP refused),
/// but for the favicon a browser asks for by itself.
fn console_errors(done: &[Done]) -> Vec<&String> {
    done.iter()
        .flat_map(|d| &d.console)
        .filter(|m| !m.contains("/favicon.ico"))
        .collect()
}

/// The cells of a table row's text (the browser separates them by tabs).
fn cells(row: &Done) -> Vec<String> {
    row.text
        .as_deref()
        .unwrap_or_default()
        .split('\t')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// Waits until every order of `ids` is in `orders`.
async fn wait_until_stored(db: &TestDatabase, ids: &[Uuid]) {
    eventually(WAIT, "every accepted order stored", || async {
        let stored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE order_id = ANY($1)")
                .bind(ids)
                .fetch_one(&db.pool)
                .await
                .map_err(|e| e.to_string())?;
        if stored == ids.len() as i64 {
            Ok(())
        } else {
            Err(format!("{stored} of {} stored", ids.len()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs `steps` in the browser; a failure panics with the console's log.
async fn browse(page: &mut Page, console: &Service, steps: Vec<Step>) -> Vec<Done> {
    page.run(steps)
        .await
        .unwrap_or_else(|e| panic!("{e}\n--- console ---\n{}", console.log_tail(30)))
}

/// The group of the lock's dead letters on the Dead letters page.
const GROUP: &str = "#groups tr[data-fingerprint]:has-text(\"database_transient\")";

/// Signed in, the overview shows the held partition, the consumer's group
/// stalled (measured: on a secured cluster, only if the console may
/// describe that group and read its topics), the DLQ's depth and both rates
/// (then its picture is taken).
async fn overview(
    page: &mut Page,
    console: &Service,
    group: &str,
    held: i32,
    dead: usize,
) -> Vec<Done> {
    let partition = format!("#partitions tr[data-topic=\"orders\"][data-partition=\"{held}\"]");
    let stalled = format!("#lag tr[data-group=\"{group}\"]");
    let patience = Duration::from_secs(30);
    let done = browse(
        page,
        console,
        vec![
            Step::login().timeout(patience),
            Step::wait_for("h1", Some("Overview"), patience),
            Step::wait_for(&partition, Some("held"), patience),
            Step::wait_for(&stalled, Some("STALL"), patience),
            Step::wait_for("#dlq tr", Some("orders-dlq"), patience),
            Step::wait_for("#intake", Some("/s"), patience),
            Step::screenshot(&screenshot_path()),
        ],
    )
    .await;
    let depth = cells(&done[4]);
    assert!(
        depth.contains(&dead.to_string()),
        "orders-dlq holds {dead}: {depth:?}"
    );
    done
}

/// The Dead letters page shows the lock's group with its count.
async fn dead_letters(page: &mut Page, console: &Service, dead: usize) -> Vec<Done> {
    let done = browse(
        page,
        console,
        vec![
            Step::click("link", "Dead letters"),
            Step::wait_for("h1", Some("Dead letters"), Duration::from_secs(10)),
            Step::wait_for(GROUP, None, Duration::from_secs(20)),
        ],
    )
    .await;
    let group = cells(&done[2]);
    assert!(
        group.contains(&dead.to_string()),
        "the group counts the {dead} dead letters: {group:?}"
    );
    done
}

/// The group replayed from its own link: a dry run, then the replay to
/// its end.
async fn replay(page: &mut Page, console: &Service, dead: usize) -> Vec<Done> {
    browse(
        page,
        console,
        vec![
            Step::click_within(GROUP, "link", "Replay this group"),
            Step::wait_for("h1", Some("Replay"), Duration::from_secs(10)),
            Step::click("button", "Dry run"),
            Step::expect_text(&format!("Would replay {dead}")),
            Step::click("button", &format!("Replay {dead} dead letters")),
            Step::wait_for("body", Some("Done"), Duration::from_secs(30)),
            Step::expect_text(&format!("Replayed {dead}")),
        ],
    )
    .await
}

/// The Orders page finds `order` (one the lock sent to the DLQ and the
/// replay brought back) stored.
async fn order_page(page: &mut Page, console: &Service, order: &str) -> Vec<Done> {
    browse(
        page,
        console,
        vec![
            Step::click("link", "Orders"),
            Step::fill("Order id", order),
            Step::click("button", "Look up"),
            Step::wait_for("[data-status]", Some("persisted"), Duration::from_secs(10)),
        ],
    )
    .await
}

/// One order stored while all is well (the consumer has a persisted
/// count to show), then the orders table locked (writers give up after
/// 200 ms), [`ORDERS`] orders posted, and the consumer settled into
/// holding; the lock, the accepted orders, the dead letters and a held
/// partition.
async fn in_trouble(
    broker: &Broker,
    db: &TestDatabase,
    consumer: &Service,
    producer: &Service,
) -> (Transaction<'static, Postgres>, Vec<Uuid>, usize, i32) {
    let first = post_orders(&producer.url("/orders"), 1, 1, WAIT).await;
    assert_eq!(first.accepted.len(), 1, "{first}");
    wait_until_stored(db, &first.accepted).await;
    let stored = read(broker, &broker.topics.orders, 1, WAIT).await;
    let stored = per_partition(&stored, |m| m.partition());
    let mut lock = db.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE orders IN SHARE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock orders");
    let report = post_orders(&producer.url("/orders"), ORDERS, 4, WAIT).await;
    assert_eq!(report.accepted.len(), ORDERS, "{report}");
    let (dead, held) = wait_until_held(broker, consumer, &stored, ORDERS).await;
    let accepted = [first.accepted, report.accepted].concat();
    (lock, accepted, dead, held)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_held_partition_and_replays_its_dead_letters_in_the_browser() {
    let started = Instant::now();
    let browser = Browser::find().unwrap_or_else(|e| panic!("{e}"));
    let broker = Broker::cluster(3, true).await;
    let db = TestDatabase::create().await;
    let mut consumer = Service::start(
        "consumer",
        "CONSUMER_HTTP_ADDR",
        &quick_to_give_up(&broker, &db),
    );
    let mut producer = Service::start("producer", "PRODUCER_HTTP_ADDR", &producer_env(&broker));
    consumer.wait_ready("/readyz", READY).await;
    producer.wait_ready("/readyz", READY).await;
    let (lock, accepted, dead, held) = in_trouble(&broker, &db, &consumer, &producer).await;
    println!(
        "{dead} dead letters, partition {held} held, after {:?}",
        started.elapsed()
    );

    read_only_console(&broker, &db, (&consumer, &producer), dead).await;
    let console = start_console(&broker, &db, &consumer, &producer).await;
    check_the_doors(&console).await;
    let mut page = browser
        .open(&console.url(""), TOKEN)
        .await
        .expect("browser");
    let group = consumer
        .env_value("KAFKA_CONSUMER_GROUP")
        .expect("the consumer's group");
    let mut done = overview(&mut page, &console, group, held, dead).await;
    done.extend(dead_letters(&mut page, &console, dead).await);
    // The fault is fixed: the held partitions go on by themselves, and the
    // dead letters wait for a replay.
    lock.rollback().await.expect("release the lock");
    done.extend(replay(&mut page, &console, dead).await);
    wait_until_stored(&db, &accepted).await;
    let last = accepted.last().expect("orders were posted").to_string();
    done.extend(order_page(&mut page, &console, &last).await);
    page.close().await.expect("the browser closes");
    let errors = console_errors(&done);
    assert!(errors.is_empty(), "the pages logged errors: {errors:#?}");

    for (n, step) in done.iter().enumerate() {
        println!("browser step {n}: {:?} {}", step.took, step.url);
    }
    println!("the scenario took {:?}", started.elapsed());
    drop((console, consumer, producer));
    db.drop().await;
}

/// A row measured after the overview was made (here a partition the
/// consumer reports only later; on a slow broker, every group whose first
/// measurement had not ended) shows up while the operator watches, without
/// a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_measured_after_the_page_was_made_show_up_without_a_reload() {
    let browser = Browser::find().unwrap_or_else(|e| panic!("{e}"));
    let text = std::sync::Arc::new(std::sync::Mutex::new(
        "kafka_consumer_circuit_open 0\n".to_owned(),
    ));
    let metrics = {
        let text = text.clone();
        harness::metrics::serve(move || {
            text.lock()
                .map(|t| t.clone())
                .unwrap_or_else(|e| e.into_inner().clone())
        })
        .await
    };
    let (listen, kafka) = (
        format!("127.0.0.1:{}", harness::free_port()),
        format!("127.0.0.1:{}", harness::free_port()),
    );
    let args = [
        "console",
        "--listen",
        &listen,
        "--consumer-metrics",
        &metrics,
        "--bootstrap-server",
        &kafka,
    ];
    let env = [("API_TOKEN", TOKEN.to_owned())];
    let mut console = Service::start_command("pubsubkafka", &args, &env, &listen);
    console.wait_ready("/healthz", READY).await;
    let mut page = browser
        .open(&console.url(""), TOKEN)
        .await
        .expect("browser");
    let held = "#partitions tr[data-topic=\"orders\"][data-partition=\"7\"]";
    let mut done = browse(
        &mut page,
        &console,
        vec![
            Step::login(),
            Step::wait_for("h1", Some("Overview"), Duration::from_secs(10)),
            Step::wait_for("#partitions", Some("Flood guard"), Duration::from_secs(10)),
        ],
    )
    .await;
    let before = done[2].text.clone().unwrap_or_default();
    assert!(!before.contains('7'), "no partition 7 yet: {before}");
    if let Ok(mut t) = text.lock() {
        t.push_str("kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"7\"} 1\n");
    }
    done.extend(
        browse(
            &mut page,
            &console,
            vec![
                Step::wait_for(held, Some("held"), Duration::from_secs(20)),
                Step::wait_for(
                    "[data-poll-status]",
                    Some("Updated"),
                    Duration::from_secs(10),
                ),
            ],
        )
        .await,
    );
    let said = done[4].text.clone().unwrap_or_default();
    assert!(!said.contains("reload"), "{said}");
    page.close().await.expect("the browser closes");
    let errors = console_errors(&done);
    assert!(errors.is_empty(), "the page logged errors: {errors:#?}");
}
