//! A closed-loop HTTP client load for correctness tests: each logical order
//! carries its own `Idempotency-Key` and is retried, like a real client, on
//! 503, 429 and connection errors until it gets `202` or its deadline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use uuid::Uuid;

/// What a load run counted.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Logical orders sent.
    pub sent: usize,
    /// `order_id`s that got `202` (unique).
    pub accepted: Vec<Uuid>,
    /// Orders that never got `202` before their deadline.
    pub gave_up: usize,
    /// HTTP attempts in all (first tries and retries).
    pub attempts: usize,
    /// Answers by status code (0: no answer: connection refused or reset).
    pub statuses: BTreeMap<u16, usize>,
    /// The longest an order waited, from its first try, for its `202`.
    pub longest_wait: Duration,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "sent {}, accepted {}, gave up {}, attempts {}, answers {:?}",
            self.sent,
            self.accepted.len(),
            self.gave_up,
            self.attempts,
            self.statuses
        )
    }
}

/// The body of order number `n`: the documented example with a customer of
/// its own and a second, backordered item (44.98 EUR in all).
pub fn order_body(n: usize) -> serde_json::Value {
    let mut body = contract::request::example_order();
    body["customer"]["id"] = format!("c-{n}").into();
    if let Some(items) = body["items"].as_array_mut() {
        items.push(
            serde_json::json!({"sku": "SKU-2", "name": "Gadget", "quantity": 1,
                                      "unit_price": "5.00", "inventory_status": "backordered"}),
        );
    }
    body
}

enum Attempt {
    Accepted(Uuid),
    Retry(u16),
    Refused(u16),
}

async fn attempt(client: &reqwest::Client, url: &str, key: &str, n: usize) -> Attempt {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .json(&order_body(n))
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match response {
        Err(_) => Attempt::Retry(0),
        Ok(r) if r.status().as_u16() == 202 => {
            let status = r.status().as_u16();
            match r.json::<serde_json::Value>().await {
                Ok(body) => body["order_id"]
                    .as_str()
                    .and_then(|id| Uuid::parse_str(id).ok())
                    .map(Attempt::Accepted)
                    .unwrap_or(Attempt::Refused(status)),
                Err(_) => Attempt::Retry(0),
            }
        }
        Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => {
            Attempt::Retry(r.status().as_u16())
        }
        Ok(r) => Attempt::Refused(r.status().as_u16()),
    }
}

/// What became of one logical order: its `order_id` when accepted, the
/// status of each attempt, and how long it waited for its `202`.
struct Posted {
    id: Option<Uuid>,
    codes: Vec<u16>,
    waited: Duration,
}

/// How long a client waits before it sends a request again after a `429`,
/// a `503` or no answer: every retrying client of the harness.
pub const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// Posts order `n` until it is accepted, refused, or the run (started at
/// `run_started`) passed `deadline`.
async fn post_order(
    client: &reqwest::Client,
    url: &str,
    n: usize,
    run_started: Instant,
    deadline: Duration,
) -> Posted {
    let key = Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut codes = Vec::new();
    loop {
        match attempt(client, url, &key, n).await {
            Attempt::Accepted(id) => {
                codes.push(202);
                let waited = started.elapsed();
                return Posted {
                    id: Some(id),
                    codes,
                    waited,
                };
            }
            Attempt::Refused(code) => {
                codes.push(code);
                return Posted {
                    id: None,
                    codes,
                    waited: Duration::ZERO,
                };
            }
            Attempt::Retry(code) => {
                codes.push(code);
                if run_started.elapsed() > deadline {
                    return Posted {
                        id: None,
                        codes,
                        waited: Duration::ZERO,
                    };
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
}

/// Posts `count` orders to `url` with `concurrency` in flight, each retried
/// until accepted or until `deadline` after the run started.
pub async fn post_orders(
    url: &str,
    count: usize,
    concurrency: usize,
    deadline: Duration,
) -> LoadReport {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("http client");
    let url = Arc::new(url.to_owned());
    // One deadline for the whole run: with a per-order deadline, a service
    // that never recovers kept the run going for count / concurrency times
    // the deadline (hours).
    let run_started = Instant::now();
    let results: Vec<Posted> = stream::iter(0..count)
        .map(|n| {
            let client = client.clone();
            let url = url.clone();
            async move { post_order(&client, &url, n, run_started, deadline).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    tally(count, results)
}

/// The report of a run that sent `count` orders.
fn tally(count: usize, results: Vec<Posted>) -> LoadReport {
    let mut report = LoadReport {
        sent: count,
        ..LoadReport::default()
    };
    let mut seen = std::collections::HashSet::new();
    for posted in results {
        report.attempts += posted.codes.len();
        report.longest_wait = report.longest_wait.max(posted.waited);
        for code in posted.codes {
            *report.statuses.entry(code).or_default() += 1;
        }
        match posted.id {
            Some(id) if seen.insert(id) => report.accepted.push(id),
            Some(_) => {}
            None => report.gave_up += 1,
        }
    }
    report
}
