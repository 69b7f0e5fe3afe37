//! The console's dead-letter and replay pages against a Tansu broker, over
//! HTTP, the console being the `pubsubkafka` binary (its log read for the
//! audit lines): grouped counts, the payload revealed only by a POST with
//! the CSRF token and logged, a dry run's count, a replay that republishes
//! and whose progress ends done, a held lock (409) and a read-only console
//! (403).

use std::time::Duration;

use harness::broker::Tansu;
use harness::events::{order_event, order_message, Outgoing};
use harness::kafka::{client, header, publish_each, read_topic};
use harness::process::Service;
use harness::wait::eventually;
use reqwest::header::{COOKIE, LOCATION};
use reqwest::redirect::Policy;
use reqwest::{RequestBuilder, StatusCode};
use serde_json::Value;

use crate::signing_in;

const TOKEN: &str = "console-dlq-test-token-5c1e";
/// A bound on a broken run, not the expected time.
const WAIT: Duration = Duration::from_secs(60);
/// The cause three of the dead letters share, and its fingerprint.
const QUANTITY: &str = "validation: item # quantity # is not between # and #";
/// The cause of the other two.
const REFUSED: &str = "database_transient: connection refused by #";
/// What the payloads hold about their customer.
const EMAIL: &str = "ada@example.com";

/// Dead letter `n` of class `class` (`validation` or not), as the consumer
/// writes them, failed `n` minutes past ten.
fn dead_letter(n: usize, validation: bool) -> Outgoing {
    let mut m = order_message(&order_event(n), contract::Format::Json);
    m.topic = "orders-dlq".into();
    let (kind, class, message) = if validation {
        let text = format!("item {n}: quantity {} is not between 1 and 1000", n * 1000);
        ("permanent", "validation", text)
    } else {
        let text = format!("connection refused by 10.0.0.{n}:5432");
        ("transient", "database_transient", text)
    };
    let failed_at = format!("2026-12-01T10:{n:02}:00Z");
    m.headers.extend(
        [
            ("dlq-original-topic", "orders"),
            ("dlq-error-kind", kind),
            ("dlq-error-class", class),
            ("dlq-error-message", &message),
            ("dlq-retry-count", "0"),
            ("dlq-failed-at", &failed_at),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    m
}

/// Three dead letters of [`QUANTITY`], two of [`REFUSED`].
fn seed(broker: &Tansu) -> Vec<Outgoing> {
    let letters: Vec<Outgoing> = (1..=5).map(|n| dead_letter(n, n % 2 == 1)).collect();
    publish_each(&broker.bootstrap, &letters);
    letters
}

/// A `pubsubkafka console` on a free port with `extra` arguments.
struct Console {
    service: Service,
    http: reqwest::Client,
}

impl Console {
    async fn start(broker: &Tansu, extra: &[&str]) -> Self {
        let addr = format!("127.0.0.1:{}", harness::free_port());
        let mut args = vec!["console", "--listen", &addr];
        args.extend_from_slice(extra);
        let env = [
            ("API_TOKEN", TOKEN.to_owned()),
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap.clone()),
            ("LOG_FORMAT", "json".to_owned()),
            ("LOG_LEVEL", "info".to_owned()),
        ];
        let mut service = Service::start_command("pubsubkafka", &args, &env, &addr);
        service.wait_ready("/healthz", WAIT).await;
        let http = reqwest::Client::builder()
            .redirect(Policy::none())
            .timeout(WAIT)
            .build()
            .expect("a client");
        Self { service, http }
    }

    /// GET `path` as a script (bearer).
    async fn get(&self, path: &str) -> (StatusCode, String) {
        send(self.http.get(self.service.url(path)).bearer_auth(TOKEN)).await
    }

    /// POST `form` to `path` as a script (bearer).
    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.service.url(path))
            .bearer_auth(TOKEN)
            .form(form)
            .send()
            .await
            .expect("an answer")
    }

    /// Signs in as a browser: the session cookie (`name=value`) and the
    /// session's CSRF token.
    async fn sign_in(&self) -> (String, String) {
        let base = self.service.url("");
        signing_in::sign_in(&self.http, &base, TOKEN, "/dead-letters").await
    }
}

async fn send(request: RequestBuilder) -> (StatusCode, String) {
    let answer = request.send().await.expect("an answer");
    (answer.status(), answer.text().await.unwrap_or_default())
}

/// The `<tr data-fingerprint="…">` row of `fingerprint` in `html`.
fn group_row<'a>(html: &'a str, fingerprint: &str) -> &'a str {
    let start = format!("<tr data-fingerprint=\"{fingerprint}\">");
    let (_, after) = html
        .split_once(&start)
        .unwrap_or_else(|| panic!("no row for {fingerprint}: {html}"));
    after.split("</tr>").next().unwrap_or_default()
}

/// The target of the first link `text` in `html`, unescaped.
fn link(html: &str, text: &str) -> String {
    let end = html
        .find(&format!("\">{text}</a>"))
        .unwrap_or_else(|| panic!("no link {text}: {html}"));
    let start = html[..end].rfind("href=\"").expect("an href") + "href=\"".len();
    html[start..end].replace("&amp;", "&")
}

/// The detail page's path of the first dead letter listed in `html`.
fn first_letter(html: &str) -> String {
    let (_, after) = html
        .split_once("href=\"/dead-letters/orders-dlq/")
        .unwrap_or_else(|| panic!("no dead letter listed: {html}"));
    format!(
        "/dead-letters/orders-dlq/{}",
        after.split('"').next().unwrap_or_default()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_grouped_and_a_payload_shows_only_by_a_logged_post() {
    let broker = Tansu::start();
    broker.create_topics();
    seed(&broker);
    let console = Console::start(&broker, &["--allow-replay"]).await;
    let (page, replay) = grouped(&console).await;
    reveal_is_guarded_and_logged(&console, &first_letter(&page)).await;
    read_only_refuses(&broker, &replay).await;
}

/// The grouped page, with counts and replay links carrying the whole
/// fingerprint; the page and the first group's replay link.
async fn grouped(console: &Console) -> (String, String) {
    let (status, page) = console.get("/dead-letters?topic=orders-dlq").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("<table id=\"groups\">"), "{page}");
    for (fingerprint, count) in [(QUANTITY, 3), (REFUSED, 2)] {
        let row = group_row(&page, fingerprint);
        assert!(row.contains(&format!("data-count>{count}</td>")), "{row}");
        assert!(row.contains("Replay this group"), "{row}");
    }
    assert!(
        page.find(QUANTITY) < page.find(REFUSED),
        "the most frequent cause first"
    );
    assert!(!page.contains(EMAIL), "no customer data in the listing");
    // The group's replay link carries its fingerprint whole.
    let replay = link(group_row(&page, QUANTITY), "Replay this group");
    let (status, form) = console.get(&replay).await;
    assert_eq!(status, StatusCode::OK, "{replay}: {form}");
    assert!(
        form.contains(&format!("value=\"{QUANTITY}\"")),
        "{replay}: {form}"
    );
    (page, replay)
}

/// The detail page hides the payload; a reveal needs the CSRF token and is
/// logged, with the session and the letter, never the payload.
async fn reveal_is_guarded_and_logged(console: &Console, detail: &str) {
    let position: Vec<&str> = detail.rsplitn(3, '/').collect();
    let (offset, partition) = (position[0].to_owned(), position[1].to_owned());
    let (session, csrf) = console.sign_in().await;
    let as_browser = |path: &str| {
        console
            .http
            .get(console.service.url(path))
            .header(COOKIE, &session)
    };
    let (status, shown) = send(as_browser(detail)).await;
    assert_eq!(status, StatusCode::OK, "{detail}: {shown}");
    for text in ["Failure history", "dlq-error-class", "Reveal customer data"] {
        assert!(shown.contains(text), "{text}: {shown}");
    }
    assert!(!shown.contains(EMAIL), "the payload is hidden: {shown}");

    let reveal = console.service.url(&format!("{detail}/reveal"));
    let post = || console.http.post(&reveal).header(COOKIE, &session);
    let (status, refused) = send(post().form(&[("csrf", "forged")])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(refused.contains("CSRF token missing or wrong"), "{refused}");
    assert!(!refused.contains(EMAIL));
    assert!(
        !console.service.logs().contains("payload revealed"),
        "a refused reveal is no reveal"
    );

    let (status, revealed) = send(post().form(&[("csrf", csrf.as_str())])).await;
    assert_eq!(status, StatusCode::OK, "{revealed}");
    assert!(revealed.contains(EMAIL), "{revealed}");
    let session_id = session
        .trim_start_matches("pubsubkafka_console=")
        .to_owned();
    let audit = eventually(WAIT, "the reveal's audit line", || {
        let logs = console.service.logs();
        let line = logs
            .lines()
            .find(|l| l.contains("console::audit") && l.contains("payload revealed"))
            .map(str::to_owned);
        async move { line.ok_or(logs) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let audit: Value = serde_json::from_str(&audit).unwrap_or_else(|e| panic!("{e}: {audit}"));
    let text = audit.to_string();
    assert!(text.contains("orders-dlq"), "the topic in {text}");
    // The session by its label, the one its sign-in logged; never by its
    // id, a credential whoever reads the logs could sign in with.
    let label = audit["fields"]["session"].as_str().unwrap_or_default();
    let signed_in = console
        .service
        .logs()
        .lines()
        .any(|l| l.contains("signed in") && l.contains(&format!("\"session\":\"{label}\"")));
    assert!(
        !label.is_empty() && signed_in,
        "no sign-in logged as {label:?}: {text}"
    );
    assert!(
        !console.service.logs().contains(&session_id),
        "a session id (a credential) is in the log"
    );
    assert_eq!(
        audit["fields"]["partition"].to_string(),
        partition,
        "{text}"
    );
    assert_eq!(audit["fields"]["offset"].to_string(), offset, "{text}");
    assert!(
        !console.service.logs().contains(EMAIL),
        "the log never holds the payload"
    );
}

/// A console without --allow-replay shows no replay link and refuses
/// replays.
async fn read_only_refuses(broker: &Tansu, replay: &str) {
    let read_only = Console::start(broker, &[]).await;
    let (_, page) = read_only.get("/dead-letters?topic=orders-dlq").await;
    assert!(
        page.contains(QUANTITY) && !page.contains("Replay this group"),
        "{page}"
    );
    // Only the pipeline's dead-letter topics are read: not its topics.
    for path in ["/dead-letters?topic=orders", "/dead-letters/orders/0/0"] {
        let (status, refused) = read_only.get(path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {refused}");
        assert!(refused.contains("is not a dead-letter topic"), "{refused}");
    }
    let (status, refused) = read_only.get(replay).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(refused.contains("Replay is not allowed"), "{refused}");
    let dry = read_only
        .post(
            "/replay/dry-run",
            &[("topic", "orders-dlq"), ("fingerprint", QUANTITY)],
        )
        .await;
    assert_eq!(dry.status(), StatusCode::FORBIDDEN);
}

/// Starts a replay of `form`: the path of its page.
async fn start_replay(console: &Console, form: &[(&str, &str)]) -> String {
    let started = console.post("/replay", form).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    started
        .headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .expect("where the replay's page is")
        .to_owned()
}

/// The progress JSON of the replay whose page is `location`, once done.
async fn progress_when_done(console: &Console, location: &str) -> Value {
    let id = location.strip_prefix("/replay/").expect("/replay/{id}");
    let api = format!("/api/replay/{id}");
    eventually(WAIT, "the replay's progress says done", || async {
        let (status, body) = console.get(&api).await;
        let progress: Value = serde_json::from_str(&body).unwrap_or_default();
        if status == StatusCode::OK && progress["done"] == true {
            Ok(progress)
        } else {
            Err(format!("{status}: {body}"))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The keys of the replayed copies on `orders`, sorted.
fn replayed_keys(bootstrap: &str, expected: usize) -> Vec<Vec<u8>> {
    let copies = read_topic(bootstrap, "orders", expected, Duration::from_secs(3));
    let mut keys: Vec<Vec<u8>> = copies
        .iter()
        .filter(|m| header(m, "dlq-replay-count").as_deref() == Some("1"))
        .filter_map(|m| rdkafka::message::Message::key(m).map(<[u8]>::to_vec))
        .collect();
    keys.sort();
    keys
}

/// Holds the replay lock of `group` on orders-dlq, serving it between
/// polls as a running replay does, until the answer is dropped.
async fn hold_lock(bootstrap: String, group: &'static str) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (held, holding) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut config = client(&bootstrap);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false");
        let lock = ops::dlq::ReplayLock::acquire(&config, "orders-dlq", group).expect("the lock");
        let _ = held.send(());
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(Duration::from_millis(100))
        {
            lock.keep_alive();
        }
    });
    holding.await.expect("the lock is held");
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_from_the_console_counts_republishes_and_reports_done() {
    let broker = Tansu::start();
    broker.create_topics();
    let letters = seed(&broker);
    let group = "console-replay";
    let console = Console::start(&broker, &["--allow-replay", "--replay-group", group]).await;
    let form = [("topic", "orders-dlq"), ("fingerprint", QUANTITY)];

    let dry = console.post("/replay/dry-run", &form).await;
    assert_eq!(dry.status(), StatusCode::OK);
    let page = dry.text().await.unwrap_or_default();
    assert!(page.contains("Would replay 3"), "{page}");
    assert!(page.contains("Replay 3 dead letters"), "{page}");

    let location = start_replay(&console, &form).await;
    let last = progress_when_done(&console, &location).await;
    assert_eq!(last["live"]["state"], "Done", "{last}");
    assert_eq!(last["progress"]["replayed"], 3, "{last}");
    assert_eq!(last["progress"]["expected"], 5, "{last}");
    assert_eq!(last["progress"]["skipped"], 2, "{last}");
    let (status, page) = console.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Replayed <span data-live=\"replayed\">3</span>"),
        "{page}"
    );
    assert!(page.contains(">Done</p>"), "{page}");

    let mut chosen: Vec<Vec<u8>> = letters
        .iter()
        .filter(|l| {
            l.headers
                .iter()
                .any(|(k, v)| k == "dlq-error-class" && v == "validation")
        })
        .map(|l| l.key.clone())
        .collect();
    chosen.sort();
    let keys = replayed_keys(&broker.bootstrap, 3);
    assert_eq!(keys, chosen, "exactly the group's dead letters, once each");

    // Another replay holds the group's lock: refused, 409.
    let holder = hold_lock(broker.bootstrap.clone(), group).await;
    for path in ["/replay/dry-run", "/replay"] {
        let answer = console.post(path, &form).await;
        assert_eq!(answer.status(), StatusCode::CONFLICT, "{path}");
        let page = answer.text().await.unwrap_or_default();
        assert!(page.contains("Another replay is running"), "{path}: {page}");
    }
    drop(holder);
}

/// A console stopped (SIGTERM) during a slow replay stops the replay after
/// the dead letter in hand and exits, as Ctrl-C stops `dlq replay`; what
/// is left waits for the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_console_stopped_mid_replay_stops_the_replay_and_exits() {
    let broker = Tansu::start();
    broker.create_topics();
    seed(&broker);
    // One dead letter every 4 s: the five take about 16 s.
    let args = [
        "--allow-replay",
        "--replay-group",
        "stopped",
        "--replay-rate",
        "0.25",
    ];
    let mut console = Console::start(&broker, &args).await;
    let location = start_replay(&console, &[("topic", "orders-dlq")]).await;
    let id = location.strip_prefix("/replay/").expect("/replay/{id}");
    let api = format!("/api/replay/{id}");
    eventually(WAIT, "the replay republished one", || async {
        let (_, body) = console.get(&api).await;
        let progress: Value = serde_json::from_str(&body).unwrap_or_default();
        (progress["progress"]["replayed"].as_u64() >= Some(1)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let exited = console.service.sigterm(Duration::from_secs(8));
    assert!(
        exited.is_some_and(|s| s.success()),
        "the console did not stop within 8 s of SIGTERM: {exited:?}"
    );
    // The next run takes up what is left: each dead letter republished
    // once in all, none twice (a copy published but not committed by the
    // stopped console would be published again).
    let next = std::process::Command::new(harness::process::binary("pubsubkafka"))
        .args([
            "dlq", "replay", "--group", "stopped", "--rate", "1000", "--json",
        ])
        .env("KAFKA_BOOTSTRAP_SERVERS", &broker.bootstrap)
        .env("LOG_LEVEL", "warn")
        .output()
        .expect("run pubsubkafka");
    let summary: Value = serde_json::from_slice(&next.stdout).unwrap_or_default();
    let left = summary["replayed"].as_u64().unwrap_or(u64::MAX);
    assert!(left < 5, "the stopped console replayed none: {summary}");
    let mut keys = replayed_keys(&broker.bootstrap, 5);
    keys.dedup();
    assert_eq!(keys.len(), 5, "{summary}");
    let copies = read_topic(&broker.bootstrap, "orders", 5, WAIT);
    assert_eq!(
        copies.len(),
        5,
        "a dead letter was republished twice: {summary}"
    );
}
