//! The console's overview as an operator opens it, on the run's broker with
//! a consumer and a producer behind it: the page's HTML from a console that
//! has measured nothing yet (the page never waits for a measurement), the
//! first `/api/overview` (which does wait for the first measurement: what
//! the page waited for before), then [`LOADS`] loads of the page, of the
//! API as the page's script polls it, and of `/healthz` of the same console
//! (the HTTP floor).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use harness::database::TestDatabase;
use harness::process::Service;
use harness::stack::READY;

use crate::broker::Broker;
use crate::report::Report;
use crate::services;
use crate::stats::percentile;

const SECTION: &str = "console";

/// Loads of the page and of `/healthz` after the first.
const LOADS: usize = 100;
/// Polls of the API, [`POLL`] apart (fewer in a smoke run).
const POLLS: usize = 20;

/// The sign-in token of the benchmark's console.
const TOKEN: &str = "bench-console-token-3f9d0c1e";

/// Orders posted first, so that the lag and rates have something to show.
const ORDERS: usize = 200;

/// How often the page's script asks `/api/overview`.
const POLL: Duration = Duration::from_secs(2);

/// The time `path` of `console` takes to answer in full (its body read),
/// and the body; an answer other than 200 is an error.
async fn timed(
    http: &reqwest::Client,
    console: &Service,
    path: &str,
) -> anyhow::Result<(f64, String)> {
    let started = Instant::now();
    let answer = http
        .get(console.url(path))
        .bearer_auth(TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = answer.status();
    let body = answer.text().await?;
    let took = started.elapsed().as_secs_f64();
    ensure!(status.is_success(), "GET {path}: {status}: {body}");
    Ok((took, body))
}

/// `count` sequential loads of `path`, `pause` apart; their sorted times.
async fn loads(
    http: &reqwest::Client,
    console: &Service,
    path: &str,
    count: usize,
    pause: Duration,
) -> anyhow::Result<Vec<f64>> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        times.push(timed(http, console, path).await?.0);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

/// Measures the overview's page and API.
pub async fn run(report: &mut Report, broker: &Broker, smoke: bool) -> anyhow::Result<()> {
    let db = TestDatabase::create().await;
    let producer = services::producer(broker.bootstrap()).await;
    let consumer = services::consumer(broker.bootstrap(), &db.url, "bench-console", &[]).await;
    let posted = harness::load::post_orders(&producer.url("/orders"), ORDERS, 8, READY).await;
    ensure!(
        posted.accepted.len() == ORDERS,
        "orders not accepted: {posted}"
    );
    let env = [("API_TOKEN", TOKEN.to_owned())];
    let console = harness::stack::console(
        broker.bootstrap(),
        &db.url,
        (&consumer, &producer),
        &[],
        &env,
    )
    .await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    let (first_page, html) = timed(&http, &console, "/").await?;
    ensure!(
        html.contains("<h1>Overview</h1>"),
        "the first page is not the overview: {html}"
    );
    let (first_api, body) = timed(&http, &console, "/api/overview").await?;
    let overview: serde_json::Value = serde_json::from_str(&body)?;
    ensure!(
        overview["lag"]["value"].is_array(),
        "the first measurement has no lag: {overview}"
    );

    let pages = loads(&http, &console, "/", LOADS, Duration::ZERO).await?;
    let floor = loads(&http, &console, "/healthz", LOADS, Duration::ZERO).await?;
    // As the script polls (every 2 s), so that each answer measures anew.
    let polls = loads(
        &http,
        &console,
        "/api/overview",
        if smoke { 3 } else { POLLS },
        POLL,
    )
    .await?;

    let ms = |v: f64| v * 1000.0;
    report.record(
        SECTION,
        "overview page, first load (nothing measured yet)",
        "ms",
        ms(first_page),
    );
    report.record(
        SECTION,
        "/api/overview, first (waits for the first measurement)",
        "ms",
        ms(first_api),
    );
    for (name, times) in [
        (format!("overview page ({LOADS} loads)"), &pages),
        ("/api/overview, polled every 2 s".to_owned(), &polls),
        (format!("/healthz ({LOADS} loads)"), &floor),
    ] {
        report.record(
            SECTION,
            &format!("{name} p50"),
            "ms",
            ms(percentile(times, 50.0)),
        );
        report.record(
            SECTION,
            &format!("{name} p99"),
            "ms",
            ms(percentile(times, 99.0)),
        );
    }
    report.record(
        "ratio",
        "console overview page p99 / its /healthz p99",
        "x",
        percentile(&pages, 99.0) / percentile(&floor, 99.0),
    );
    drop((console, consumer, producer));
    db.drop().await;
    Ok(())
}
