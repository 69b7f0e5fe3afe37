//! The README's five-minute tour, step by step, as a newcomer runs it:
//! `pubsubkafka dev` with no database configured (so it starts its own),
//! an order posted and followed, a payment dead-lettered while its order's
//! row is locked, listed, replayed after the lock is gone, and the order
//! paid; then Ctrl-C, which removes the private PostgreSQL. Then the same
//! with `dev --broker` on a three-node Apache Kafka that has none of the
//! pipeline's topics and creates none by itself.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use harness::process::binary;
use harness::wait::eventually;
use serde_json::{json, Value};
use sqlx::Connection;

/// The running `dev`: stopped with Ctrl-C when dropped (a failed test
/// leaves no pipeline or private server behind).
struct Dev(Option<Child>);

impl Dev {
    /// Ctrl-C, and its exit status if it exited within `timeout`.
    fn interrupt(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        harness::process::stop(self.0.take()?, libc::SIGINT, timeout)
    }

    /// Ctrl-C, which must stop it, successfully, within a minute.
    fn stop_on_ctrl_c(&mut self) {
        let stopped = self.interrupt(Duration::from_secs(60));
        assert!(
            stopped.is_some_and(|s| s.success()),
            "dev did not stop on Ctrl-C: {stopped:?}"
        );
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        self.interrupt(Duration::from_secs(30));
    }
}

/// What the banner of `dev` told.
struct Banner {
    bootstrap: String,
    database_url: String,
    data_dir: PathBuf,
    /// The console's address and the token that signs in.
    console: (String, String),
}

/// Starts `dev` as a newcomer would, on free ports, with `extra`
/// arguments: no `DATABASE_URL`, and the default server unusable (nothing
/// listens on `PGPORT`).
fn start_dev([api, ops, read, console]: &[String; 4], extra: &[&str]) -> (Dev, Receiver<String>) {
    let mut dev = Command::new(binary("pubsubkafka"))
        .args(["dev", "--producer-addr", api, "--consumer-addr", ops])
        .args(["--query-addr", read, "--console-addr", console])
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("PGPORT", harness::free_port().to_string())
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pubsubkafka dev");
    let stdout = dev.stdout.take().expect("dev's stdout");
    let (lines, banner) = channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line);
        }
    });
    (Dev(Some(dev)), banner)
}

/// Reads the banner up to its last line: the broker to export, the
/// database URL it gives `pubsubkafka order`, the private server's data.
fn read_banner(lines: &Receiver<String>) -> Banner {
    let (mut bootstrap, mut database_url, mut data_dir) = (None, None, None);
    let mut console = None;
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(120)) {
        if let Some(servers) = line.trim().strip_prefix("export KAFKA_BOOTSTRAP_SERVERS=") {
            bootstrap = Some(servers.to_owned());
        }
        if let Some((_, url)) = line.split_once("pubsubkafka order <order_id> --database-url ") {
            database_url = Some(url.trim().trim_matches('\'').to_owned());
        }
        if let Some((_, rest)) = line.split_once(", data in ") {
            data_dir = rest.split_once(')').map(|(dir, _)| PathBuf::from(dir));
        }
        if let Some((_, rest)) =
            line.split_once("The console (dead letters, replays, lag, orders): http://")
        {
            console = rest
                .split_once(", signed in with the token ")
                .map(|(addr, token)| (addr.to_owned(), token.trim().to_owned()));
        }
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    Banner {
        bootstrap: bootstrap.expect("an export KAFKA_BOOTSTRAP_SERVERS= line"),
        database_url: database_url.expect("a pubsubkafka order line with --database-url"),
        data_dir: data_dir.expect("the private server's data directory"),
        console: console.expect("the console's address and token"),
    }
}

/// `pubsubkafka ARGS --json` against the tour's broker: its JSON.
fn tool(bootstrap: &str, args: &[&str]) -> Value {
    let out: Output = Command::new(binary("pubsubkafka"))
        .args(args)
        .arg("--json")
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} gave no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `pubsubkafka order ID --database-url URL --json`.
fn story(banner: &Banner, order: &str) -> Value {
    let url = banner.database_url.as_str();
    tool(&banner.bootstrap, &["order", order, "--database-url", url])
}

async fn post(url: String, body: Value) -> Value {
    let answer = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status().as_u16(), 202);
    answer.json().await.expect("JSON")
}

/// Steps 1 to 5 of the tour on a running `dev`.
async fn tour(api: &str, banner: &Banner) {
    // 1. Post an order (the README's body).
    let order = json!({
        "customer": {"id": "c-42", "name": "Ada Lovelace", "email": "ada@example.com",
                     "address": {"line1": "12 St James Sq", "city": "London",
                                 "postal_code": "SW1Y 4JH", "country": "GB"}},
        "items": [{"sku": "SKU-1", "name": "Widget", "quantity": 2, "unit_price": "19.99"}],
        "currency": "EUR"
    });
    let accepted = post(format!("http://{api}/orders"), order).await;
    let id = accepted["order_id"]
        .as_str()
        .expect("an order id")
        .to_owned();

    // 2. Follow it.
    eventually(Duration::from_secs(60), "the order persisted", || {
        let s = story(banner, &id);
        async move { (s["status"] == "persisted" && s["version"] == 1).then_some(()) }
    })
    .await
    .expect("followed");

    // 3. Break one: the row locked while the payment arrives.
    let mut locker = sqlx::PgConnection::connect(&banner.database_url)
        .await
        .expect("connect to dev's database");
    let mut lock = locker.begin().await.expect("begin");
    sqlx::query("SELECT order_id FROM orders WHERE order_id = $1::uuid FOR UPDATE")
        .bind(&id)
        .execute(&mut *lock)
        .await
        .expect("lock the order's row");
    let payment = json!({"reference": "pay-1", "amount": "39.98", "currency": "EUR"});
    post(format!("http://{api}/orders/{id}/payment"), payment).await;

    // 4. See it in the dead-letter topic, after the retries.
    let listed = eventually(Duration::from_secs(90), "the payment dead-lettered", || {
        let l = tool(&banner.bootstrap, &["dlq", "list"]);
        async move { (l["total"] == 1).then_some(l) }
    })
    .await
    .expect("dead-lettered");
    assert_eq!(
        listed["by_class"]["database_transient (transient)"], 1,
        "{listed}"
    );
    lock.rollback().await.expect("release the lock");

    // 5. Replay it: a dry run, then for real; the order is paid.
    let dry = tool(&banner.bootstrap, &["dlq", "replay", "--dry-run"]);
    assert_eq!(
        (dry["replayed"].as_u64(), dry["dry_run"].as_bool()),
        (Some(1), Some(true))
    );
    let replayed = tool(&banner.bootstrap, &["dlq", "replay"]);
    assert_eq!(replayed["replayed"], 1, "{replayed}");
    let paid = eventually(Duration::from_secs(60), "the order paid", || {
        let s = story(banner, &id);
        async move { (s["order_status"] == "paid" && s["version"] == 2).then_some(s) }
    })
    .await
    .expect("paid after the replay");
    assert_eq!(
        paid["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "{paid}"
    );
}

/// The console `dev` started signs in with the banner's token and shows
/// the tour's replayed dead letter and paid order.
async fn console_shows_the_tour(banner: &Banner) {
    let (addr, token) = &banner.console;
    let http = reqwest::Client::new();
    let page = |path: &str, bearer: Option<&str>| {
        let mut request = http.get(format!("http://{addr}{path}"));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        async move {
            let answer = request.send().await.expect("the console answers");
            (
                answer.status().as_u16(),
                answer.text().await.unwrap_or_default(),
            )
        }
    };
    assert_eq!(
        page("/api/overview", Some("not-the-token-0000")).await.0,
        401
    );
    let (status, dead_letters) = page("/dead-letters", Some(token)).await;
    assert_eq!(status, 200, "{dead_letters}");
    assert!(
        dead_letters.contains("database_transient"),
        "{dead_letters}"
    );
}

/// Free local addresses of the producer, the consumer, the query service
/// and the console.
fn addresses() -> [String; 4] {
    [(); 4].map(|()| format!("127.0.0.1:{}", harness::free_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_from_a_bare_start() {
    let addrs = addresses();
    let (mut dev, lines) = start_dev(&addrs, &[]);
    let banner = read_banner(&lines);
    assert!(banner.data_dir.is_dir(), "{:?}", banner.data_dir);
    tour(&addrs[0], &banner).await;
    console_shows_the_tour(&banner).await;

    // Ctrl-C stops everything and removes the private server's data.
    dev.stop_on_ctrl_c();
    assert!(
        !banner.data_dir.exists(),
        "{:?} left behind",
        banner.data_dir
    );
}

/// `dev --broker` on a broker of one's own: the missing topics created
/// (with the partitions `dev` gives them, replicated three times,
/// `orders-state` compacted), then the tour as on the in-process broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_works_on_apache_kafka_with_dev_broker() {
    let cluster = harness::cluster::Cluster::start(3, false).await;
    cluster.topics.delete(cluster.admin_config()).await;
    let addrs = addresses();
    let (mut dev, lines) = start_dev(&addrs, &["--broker", &cluster.bootstrap]);
    let banner = read_banner(&lines);
    assert_eq!(banner.bootstrap, cluster.bootstrap);
    let layout = described(&cluster);
    for topic in contract::topics::ALL {
        let line = layout
            .lines()
            .find(|l| l.contains(&format!("Topic: {topic}\t")))
            .unwrap_or_else(|| panic!("{topic} created:\n{layout}"));
        for wanted in ["PartitionCount: 3", "ReplicationFactor: 3"] {
            assert!(line.contains(wanted), "{topic}: {wanted} in {line}");
        }
        let compacted = line.contains("cleanup.policy=compact");
        assert_eq!(compacted, contract::topics::compacted(topic), "{line}");
    }
    tour(&addrs[0], &banner).await;
    console_shows_the_tour(&banner).await;
    dev.stop_on_ctrl_c();
}

/// `kafka-topics --describe` of every topic.
fn described(cluster: &harness::cluster::Cluster) -> String {
    let out = cluster.kafka_tool("org.apache.kafka.tools.TopicCommand", &["--describe"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kafka-topics --describe: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
