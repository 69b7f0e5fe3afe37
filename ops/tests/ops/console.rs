//! The console's security and overview over HTTP, against the real server
//! on a free port (built in process; the refusal to start runs the
//! binary): sign-in, cookie flags, CSRF and Origin, bearer scripts,
//! redirects and 401s, the headers on every kind of answer, and the
//! overview reading a consumer's and a producer's /metrics (a fixture
//! serving fixed texts) or reporting a failed scrape as an error.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use harness::process::binary;
use harness::wait::eventually;
use ops::console::{Console, ConsoleArgs};
use reqwest::header::{AUTHORIZATION, CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN};
use reqwest::redirect::Policy;
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::signing_in::{self, csrf_of, set_cookie};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "console-core-test-token-93a1";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const REFUSED: &str = "CSRF token missing or wrong";

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ConsoleArgs,
}

/// A console on a free port, Kafka at a closed port (its sections fail),
/// with `extra` arguments; stopped when dropped.
struct Running {
    base: String,
    http: reqwest::Client,
    stop: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    harness::free_port()
}

async fn start(extra: &[&str]) -> Running {
    let kafka = format!("127.0.0.1:{}", closed_port());
    let mut argv = vec!["console", "--bootstrap-server", &kafka];
    argv.extend_from_slice(extra);
    let args = Cli::try_parse_from(argv).expect("console arguments").args;
    let console = Console::new(&args, TOKEN.to_owned()).expect("a console");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = CancellationToken::new();
    tokio::spawn(ops::console::serve(listener, console, stop.clone()));
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client");
    Running { base, http, stop }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Response {
        let mut request = self.http.get(self.url(path));
        if let Some(c) = cookie {
            request = request.header(COOKIE, c);
        }
        request.send().await.expect("an answer")
    }

    /// Signs in: the session cookie (`name=value`) and the page's CSRF
    /// token.
    async fn sign_in(&self) -> (String, String) {
        signing_in::sign_in(&self.http, &self.base, TOKEN, "/orders").await
    }

    /// The login form's pre-session cookie (`name=value`) and token.
    async fn login_form(&self) -> (String, String) {
        signing_in::login_form(&self.http, &self.base).await
    }

    /// POST /login with `token`, `csrf` and the pre-session cookie `pre`.
    async fn post_login(&self, pre: Option<&str>, csrf: &str, token: &str) -> Response {
        signing_in::post_login(&self.http, &self.base, pre, csrf, token).await
    }
}

#[tokio::test]
async fn signs_in_with_the_right_token_only_and_the_cookie_is_locked_down() {
    let console = start(&[]).await;
    let (pre, csrf) = console.login_form().await;
    let wrong = console
        .post_login(Some(&pre), &csrf, "not-the-token-at-all")
        .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(set_cookie(&wrong, "pubsubkafka_console=").is_none());
    assert!(wrong.text().await.expect("a page").contains("Wrong token"));

    let without_pre_session = console.post_login(None, &csrf, TOKEN).await;
    assert_eq!(without_pre_session.status(), StatusCode::FORBIDDEN);
    assert!(without_pre_session
        .text()
        .await
        .expect("a page")
        .contains(REFUSED));

    let right = console.post_login(Some(&pre), &csrf, TOKEN).await;
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(right.headers()[LOCATION], "/");
    let cookie = set_cookie(&right, "pubsubkafka_console=").expect("a session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|f| f == flag), "{flag} in {cookie}");
    }
    let session = cookie.split(';').next().unwrap_or_default();
    let page = console.get("/", Some(session)).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.expect("a page");
    assert!(html.contains("<h1>Overview</h1>"), "{html}");
    for link in [
        "href=\"/\"",
        "href=\"/dead-letters\"",
        "href=\"/orders\"",
        "Sign out",
    ] {
        assert!(html.contains(link), "{link}");
    }
}

/// A browser loads the login page again (another tab, or its own request
/// for `/favicon.ico`, which once went to the login): the form it already
/// shows still signs in. The favicon is not a page to sign in for.
#[tokio::test]
async fn a_second_load_of_the_login_page_does_not_void_the_first_form() {
    let console = start(&[]).await;
    let (pre, first) = console.login_form().await;
    let again = console.get("/login", Some(&pre)).await;
    let second = csrf_of(&again.text().await.expect("a page")).expect("a token");
    assert_eq!(second, first, "the pre-session token was replaced");
    let icon = console.get("/favicon.ico", Some(&pre)).await;
    assert_eq!(icon.status(), StatusCode::NO_CONTENT);
    let answer = console.post_login(Some(&pre), &first, TOKEN).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn without_authentication_pages_go_to_the_login_and_the_api_refuses() {
    let console = start(&[]).await;
    for path in ["/", "/orders?id=x", "/dead-letters", "/no-such-page"] {
        let answer = console.get(path, None).await;
        assert_eq!(answer.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(answer.headers()[LOCATION], "/login", "{path}");
    }
    let forged = console.get("/", Some("pubsubkafka_console=forged")).await;
    assert_eq!(forged.status(), StatusCode::SEE_OTHER);
    let api = console.get("/api/overview", None).await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: Value = api.json().await.expect("JSON");
    assert!(body["error"].is_string(), "{body}");
    let wrong_bearer = console
        .http
        .get(console.url("/api/overview"))
        .header(AUTHORIZATION, "Bearer not-the-token-at-all")
        .send()
        .await
        .expect("an answer");
    assert_eq!(wrong_bearer.status(), StatusCode::UNAUTHORIZED);
    for path in [
        "/healthz",
        "/assets/console.css",
        "/assets/console.js",
        "/login",
    ] {
        assert_eq!(
            console.get(path, None).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
}

#[tokio::test]
async fn state_changes_need_the_sessions_csrf_token_and_our_origin() {
    let console = start(&[]).await;
    let (session, csrf) = console.sign_in().await;
    let post = |form: Vec<(&'static str, String)>, origin: Option<String>| {
        let mut request = console
            .http
            .post(console.url("/logout"))
            .header(COOKIE, &session)
            .form(&form);
        if let Some(o) = origin {
            request = request.header(ORIGIN, o);
        }
        request.send()
    };
    for (what, form, origin) in [
        ("no token", vec![], None),
        ("a wrong token", vec![("csrf", "0".repeat(64))], None),
        (
            "another origin",
            vec![("csrf", csrf.clone())],
            Some("http://evil.example".to_owned()),
        ),
    ] {
        let answer = post(form, origin).await.expect("an answer");
        assert_eq!(answer.status(), StatusCode::FORBIDDEN, "{what}");
        assert!(
            answer.text().await.expect("a page").contains(REFUSED),
            "{what}"
        );
    }
    let header_wrong = console
        .http
        .post(console.url("/logout"))
        .header(COOKIE, &session)
        .header("X-CSRF-Token", "nope")
        .send()
        .await
        .expect("an answer");
    assert_eq!(header_wrong.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        console.get("/", Some(&session)).await.status(),
        StatusCode::OK,
        "still signed in"
    );

    let answer = post(vec![("csrf", csrf)], Some(console.base.clone()))
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(answer.headers()[LOCATION], "/login");
    assert_eq!(
        console.get("/", Some(&session)).await.status(),
        StatusCode::SEE_OTHER,
        "signed out"
    );
}

#[tokio::test]
async fn a_bearer_script_needs_no_csrf_token() {
    let console = start(&[]).await;
    let logout = console
        .http
        .post(console.url("/logout"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(logout.status(), StatusCode::SEE_OTHER);
    let orders = console
        .http
        .get(console.url("/orders"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(orders.status(), StatusCode::OK);
    let html = orders.text().await.expect("a page");
    assert!(html.contains("<label for=\"order-id\">Order id</label>") && html.contains("Look up"));
}

#[tokio::test]
async fn every_kind_of_answer_carries_the_security_headers() {
    let console = start(&[]).await;
    let (session, _) = console.sign_in().await;
    let answers = [
        ("page", console.get("/orders", Some(&session)).await),
        ("redirect", console.get("/", None).await),
        ("401", console.get("/api/overview", None).await),
        ("404", console.get("/nope", Some(&session)).await),
        ("login", console.get("/login", None).await),
        ("asset", console.get("/assets/console.js", None).await),
        ("health", console.get("/healthz", None).await),
        (
            "403",
            console
                .http
                .post(console.url("/logout"))
                .header(COOKIE, &session)
                .send()
                .await
                .expect("an answer"),
        ),
    ];
    for (what, answer) in &answers {
        let h = answer.headers();
        assert_eq!(
            h.get(CONTENT_SECURITY_POLICY).map(|v| v.as_bytes()),
            Some(CSP.as_bytes()),
            "{what}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(h["referrer-policy"], "same-origin", "{what}");
        if *what != "asset" {
            assert_eq!(h["cache-control"], "no-store", "{what}");
        }
    }
    assert_eq!(answers[3].1.status(), StatusCode::NOT_FOUND);
}

#[test]
fn refuses_to_start_without_an_api_token() {
    for token in [None, Some("short")] {
        let mut command = Command::new(binary("pubsubkafka"));
        command
            .args(["console", "--listen", "127.0.0.1:0"])
            .env_remove("API_TOKEN")
            .stdin(Stdio::null());
        if let Some(t) = token {
            command.env("API_TOKEN", t);
        }
        let out = command.output().expect("pubsubkafka runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{token:?}: {stderr}");
        assert!(stderr.contains("API_TOKEN"), "{token:?}: {stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

/// A service's /metrics serving `text`, with `{n}` replaced by a counter
/// that grows by 10 per scrape.
async fn metrics_fixture(text: &'static str) -> String {
    let scrapes = Arc::new(AtomicU64::new(0));
    harness::metrics::serve(move || {
        let n = scrapes.fetch_add(1, Ordering::SeqCst) * 10;
        text.replace("{n}", &n.to_string())
    })
    .await
}

const CONSUMER: &str = "# HELP kafka_consumer_circuit_open 1 while open\n\
    kafka_consumer_circuit_open 1\n\
    kafka_consumer_messages_total{topic=\"orders\",outcome=\"persisted\"} {n}\n\
    kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"1\"} 1\n\
    kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"2\"} 0\n\
    kafka_consumer_lag{group=\"order-consumer\",topic=\"orders\",partition=\"0\"} 3\n";
const PRODUCER: &str = "kafka_producer_messages_total{topic=\"orders\",outcome=\"acked\"} {n}\n";

#[tokio::test]
async fn the_overview_reads_the_consumers_metrics_and_rates_from_two_scrapes() {
    let (consumer, producer) = (
        metrics_fixture(CONSUMER).await,
        metrics_fixture(PRODUCER).await,
    );
    let console = start(&[
        "--consumer-metrics",
        &consumer,
        "--producer-metrics",
        &producer,
    ])
    .await;
    let (session, _) = console.sign_in().await;
    let page = || async {
        console
            .get("/", Some(&session))
            .await
            .text()
            .await
            .expect("a page")
    };
    // The page does not wait for the first measurement (here up to the
    // Kafka deadline, the broker being down): it says so, and the script
    // brings the rows.
    let first = page().await;
    for expected in [
        "Measured <span data-live=\"measured_at\">not yet</span>",
        "<dd data-live=\"intake.persisted\">measuring…</dd>",
        "data-poll=\"/api/overview\"",
    ] {
        assert!(first.contains(expected), "{expected} in {first}");
    }
    assert!(!first.contains("data-partition="), "no rows yet: {first}");
    let measured: Value = console
        .get("/api/overview", Some(&session))
        .await
        .json()
        .await
        .expect("the API waits for a measurement");
    assert!(measured["measured_at"].is_string(), "{measured}");
    let html = page().await;
    for expected in [
        "<tr data-topic=\"orders\" data-partition=\"1\">",
        "<tr data-topic=\"orders\" data-partition=\"0\">",
        "<section id=\"partitions\" aria-labelledby=",
        "data-poll=\"/api/overview\"",
    ] {
        assert!(html.contains(expected), "{expected} in {html}");
    }
    let overview = eventually(
        Duration::from_secs(30),
        "a rate from two scrapes",
        || async {
            let json: Value = console
                .get("/api/overview", Some(&session))
                .await
                .json()
                .await
                .map_err(|e| e.to_string())?;
            if json["persisted_per_second"]["value"].is_number()
                && json["accepted_per_second"]["value"].is_number()
            {
                Ok(json)
            } else {
                Err(json.to_string())
            }
        },
    )
    .await
    .expect("rates");
    for rate in ["persisted_per_second", "accepted_per_second"] {
        assert!(
            overview[rate]["value"].as_f64().is_some_and(|r| r > 0.0),
            "{overview}"
        );
    }
    let rows = overview["partitions"]["value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let row = |p: i64| {
        rows.iter()
            .find(|r| r["partition"] == p)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(rows.len(), 3, "{overview}");
    assert_eq!(
        (row(1)["circuit"].as_str(), row(1)["flood_guard"].as_str()),
        (Some("open"), Some("held"))
    );
    assert_eq!(row(2)["flood_guard"], "flowing");
    assert_eq!(overview["live"]["partitions.orders.1.flood"], "held");
    assert!(overview["partitions"]["error"].is_null(), "{overview}");
    assert!(
        overview["lag"]["error"].is_string(),
        "Kafka is down: {overview}"
    );
}

#[tokio::test]
async fn the_overview_reports_a_failed_scrape_as_an_error_never_zero() {
    let closed = format!("http://127.0.0.1:{}/metrics", closed_port());
    let console = start(&["--consumer-metrics", &closed]).await;
    let answer = console
        .http
        .get(console.url("/api/overview"))
        .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
        .send()
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::OK);
    let overview: Value = answer.json().await.expect("JSON");
    for section in ["persisted_per_second", "partitions", "accepted_per_second"] {
        assert!(
            overview[section]["error"].is_string(),
            "{section}: {overview}"
        );
    }
    assert!(
        overview["persisted_per_second"]["value"].is_null(),
        "{overview}"
    );
    assert!(
        overview["partitions"]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&closed)),
        "{overview}"
    );
    assert!(
        overview["live"]["intake.persisted"] != "0.0/s",
        "{overview}"
    );
}

/// The overview against a real broker: the DLQ's depth and the oldest
/// dead letter's age from the topic, the consumer group's lag with a
/// verdict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_measures_the_dlq_and_the_lag_on_a_real_broker() {
    let broker = harness::broker::Tansu::start();
    broker.create_topics();
    let letters: Vec<harness::events::Outgoing> = (0..3)
        .map(|n| harness::events::Outgoing {
            topic: "orders-dlq".to_owned(),
            partition: Some(n % 2),
            key: format!("k{n}").into_bytes(),
            value: b"{}".to_vec(),
            headers: vec![],
        })
        .collect();
    harness::kafka::publish_each(&broker.bootstrap, &letters);
    let args = Cli::try_parse_from(["console", "--bootstrap-server", &broker.bootstrap])
        .expect("console arguments")
        .args;
    let console = Console::new(&args, TOKEN.to_owned()).expect("a console");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = CancellationToken::new();
    tokio::spawn(ops::console::serve(listener, console, stop.clone()));
    let http = reqwest::Client::new();
    let overview = eventually(Duration::from_secs(60), "the DLQ measured", || async {
        let json: Value = http
            .get(format!("{base}/api/overview"))
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let dlq = json["dlq"]["value"].as_array().cloned().unwrap_or_default();
        let orders = dlq.iter().find(|r| r["topic"] == "orders-dlq").cloned();
        match orders {
            Some(row) if row["depth"].is_number() => Ok(json),
            _ => Err(json.to_string()),
        }
    })
    .await
    .expect("an overview");
    stop.cancel();
    let dlq = overview["dlq"]["value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let row = |topic: &str| {
        dlq.iter()
            .find(|r| r["topic"] == topic)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(row("orders-dlq")["depth"], 3, "{overview}");
    assert!(
        row("orders-dlq")["oldest_age_seconds"]
            .as_f64()
            .is_some_and(|s| (0.0..600.0).contains(&s)),
        "{overview}"
    );
    assert_eq!(row("users-dlq")["depth"], 0, "{overview}");
    assert_eq!(
        overview["live"]["dlq.users-dlq.oldest"], "empty",
        "{overview}"
    );
    let lag = overview["lag"]["value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(lag.len(), 1, "{overview}");
    assert_eq!(lag[0]["group"], "order-consumer");
    assert!(
        lag[0]["status"].is_string() && lag[0]["lag"] == 0,
        "{overview}"
    );
}

/// The order page answers an id that is not one, and a console without a
/// database, with the reason on the page.
#[tokio::test]
async fn the_order_page_says_why_it_cannot_tell() {
    let closed = format!("postgres://reader@127.0.0.1:{}/pubsubkafka", closed_port());
    let without = start(&[]).await;
    let with = start(&["--database-url", &closed]).await;
    let (no_db, _) = without.sign_in().await;
    let (db, _) = with.sign_in().await;
    let id = "1a4d22fe-6ec1-4e1f-96a9-b70fb168bb6e";
    let answer = without.get(&format!("/orders?id={id}"), Some(&no_db)).await;
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer
        .text()
        .await
        .expect("a page")
        .contains("--database-url"));
    let answer = with.get("/orders?id=%3Cscript%3E", Some(&db)).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let html = answer.text().await.expect("a page");
    assert!(html.contains("is not an id"), "{html}");
    assert!(!html.contains("<script>"), "escaped: {html}");
    assert!(
        html.contains("value=\"&#60;script&#62;\"") || html.contains("&lt;script&gt;"),
        "{html}"
    );
}
