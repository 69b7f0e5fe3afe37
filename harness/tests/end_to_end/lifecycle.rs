//! An order's life after its creation (payment, shipment, delivery,
//! cancellation), end to end on a three-node Apache Kafka cluster secured
//! as production runs it, every part a real process: the producer, the
//! consumer (its state machine, its `orders-state` outbox and relay), the
//! query service and the operator tool.
//!
//! One cluster serves the three scenarios, run one after another in one
//! test, each on a pipeline of its own (topics, ACLs, groups, database and
//! services: `harness::lifecycle::Pipeline`), so none sees another's
//! messages. A failing scenario does not stop the next; the test fails
//! naming each one that failed.
//!
//! - `lives`: a thousand orders, each taken through a random legal path by
//!   concurrent clients while the consumer is killed -9 twice, end with
//!   every order's stored status, version and history what was accepted,
//!   and `orders-state` holding each version once and in order (repeats
//!   of the relay's at-least-once publishing counted and dropped).
//! - `illegal`: generated illegal changes, each refused with its class.
//! - `replay`: a stale change replayed from the DLQ after two newer ones is
//!   refused; a change that arrived before its order's creation is applied
//!   by the replay.
//!
//! The sequences come from a seeded generator, its seed printed:
//! `LIFECYCLE_SEED=<seed>` runs the same ones again, and
//! `LIFECYCLE_SCENARIOS=illegal,replay` runs only those named.

use std::collections::{BTreeMap, HashMap};
use std::future::ready;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use contract::lifecycle::{Change, OrderChange, OrderStatus};
use contract::Format;
use futures::{FutureExt, StreamExt};
use harness::broker::Broker;
use harness::cluster::NODES;
use harness::database::wait_for_count;
use harness::events::{order_event, order_message};
use harness::kafka::publish_with;
use harness::lifecycle::{
    allowed, change_message, change_to, if_match, judge_state_topic, order_change,
    post_until_accepted, rejections, request_body, stored_orders, DeadLetter, Lived, Pipeline,
    StoredOrder, TopicVerdict,
};
use harness::load::order_body;
use harness::stack::{DRAIN, READY};
use harness::wait::eventually;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use OrderStatus::{Cancelled, Created, Delivered, Paid, Shipped};

/// Bound on one client's wait for one `202` (retries included).
const POST_DEADLINE: Duration = Duration::from_secs(60);

/// Bound on the pipeline catching up with what was accepted: a bound on a
/// broken run, not the expected time.
const CONVERGE: Duration = Duration::from_secs(180);

/// The scenarios, in the order they run: the short ones first.
const SCENARIOS: [&str; 3] = ["illegal", "replay", "lives"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_lifecycles_on_a_three_node_cluster() {
    let seed = std::env::var("LIFECYCLE_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    println!("lifecycle seed {seed} (LIFECYCLE_SEED={seed} repeats these sequences)");
    let chosen = chosen_scenarios();
    let started = Instant::now();
    let broker = Broker::cluster(NODES, true).await;
    println!(
        "cluster of {NODES} Apache Kafka {} nodes serving, secured, in {:?}",
        broker
            .cluster
            .as_ref()
            .map(|c| c.version())
            .unwrap_or_default(),
        started.elapsed()
    );
    let mut failed = Vec::new();
    for name in &chosen {
        if !run_scenario(name, &broker, seed).await {
            failed.push(*name);
        }
    }
    println!(
        "lifecycle scenarios {chosen:?} in {:?}, cluster start included",
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "scenarios failed: {failed:?} (seed {seed})"
    );
}

/// The scenarios `LIFECYCLE_SCENARIOS` names (all when it names none), in
/// the order they run; it must name at least one of them if it is set.
fn chosen_scenarios() -> Vec<&'static str> {
    let chosen = std::env::var("LIFECYCLE_SCENARIOS").unwrap_or_default();
    let chosen: Vec<&str> = SCENARIOS
        .into_iter()
        .filter(|s| chosen.trim().is_empty() || chosen.split(',').any(|c| c.trim() == *s))
        .collect();
    assert!(
        !chosen.is_empty(),
        "LIFECYCLE_SCENARIOS names none of {SCENARIOS:?}"
    );
    chosen
}

/// Runs scenario `name` with its seed from the run's `seed`, catching its
/// panic so that the next one still runs; whether it passed, printed with
/// the time it took.
async fn run_scenario(name: &str, broker: &Broker, seed: u64) -> bool {
    // Each scenario's seed by its place in SCENARIOS, so that a run of
    // some of them repeats what they did in a run of all.
    let place = SCENARIOS.iter().position(|s| *s == name).unwrap_or(0);
    let seed = seed.wrapping_add(place as u64);
    let at = Instant::now();
    let outcome = match name {
        "illegal" => {
            AssertUnwindSafe(illegal_changes(broker, seed))
                .catch_unwind()
                .await
        }
        "replay" => {
            AssertUnwindSafe(stale_and_early_replays(broker, seed))
                .catch_unwind()
                .await
        }
        // "lives"
        _ => {
            AssertUnwindSafe(a_thousand_lives(broker, seed))
                .catch_unwind()
                .await
        }
    };
    let took = at.elapsed();
    match outcome {
        Ok(()) => println!("scenario {name}: passed in {took:?}"),
        Err(_) => println!("scenario {name}: FAILED after {took:?} (its panic is above)"),
    }
    outcome.is_ok()
}

/// The encoding the producer and the consumer's order states of the
/// scenario with `seed` are written in: the scenarios' seeds follow each
/// other, so a run's three scenarios use the three encodings.
fn format_of(seed: u64) -> Format {
    Format::ALL[(seed % Format::ALL.len() as u64) as usize]
}

/// The total of `harness::load::order_body` orders and their currency.
fn order_total() -> (Decimal, String) {
    let order = order_event(0);
    (order.totals.total, order.currency)
}

/// A random legal path from `created`: at each status, stop or take one of
/// the changes the machine allows, with equal odds.
fn legal_path(rng: &mut StdRng) -> Vec<OrderStatus> {
    let mut path = Vec::new();
    let mut at = Created;
    loop {
        let next: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|to| allowed(at, *to))
            .collect();
        let pick = rng.random_range(0..=next.len());
        let Some(to) = next.get(pick) else {
            return path;
        };
        at = *to;
        path.push(at);
    }
}

/// Creates order `n` (under `key`, or with `order_id` in its body when
/// given) and waits for its `202`; what was accepted, and the retries it
/// took.
async fn create(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    n: usize,
    order_id: Option<Uuid>,
) -> Result<(Lived, u32), String> {
    let mut body = order_body(n);
    if let Some(id) = order_id {
        body["order_id"] = id.to_string().into();
    }
    let created = post_until_accepted(
        client,
        &format!("{base}/orders"),
        &body,
        &[("idempotency-key", key.to_owned())],
        POST_DEADLINE,
    )
    .await?;
    Ok((
        Lived::new(created.order_id, created.event_id),
        created.attempts - 1,
    ))
}

/// Posts `change` for `order_id` (under `key`, with `If-Match` of
/// `expected` when given) and waits for its `202`.
async fn post_change(
    client: &reqwest::Client,
    base: &str,
    order_id: Uuid,
    change: &Change,
    key: &str,
    expected: Option<u32>,
) -> Result<harness::lifecycle::Accepted, String> {
    let mut headers = vec![("idempotency-key", key.to_owned())];
    headers.extend(expected.map(if_match));
    let url = format!("{base}/orders/{order_id}/{}", change.name());
    let accepted =
        post_until_accepted(client, &url, &request_body(change), &headers, POST_DEADLINE).await?;
    if accepted.order_id != order_id {
        return Err(format!(
            "{url} answered for order {}, not {order_id}",
            accepted.order_id
        ));
    }
    Ok(accepted)
}

/// What the query service says of `lived`'s order, if not what was
/// accepted: `GET /orders/{id}` with its status, version, history and
/// `ETag`.
async fn read_side_differs(pipeline: &Pipeline, lived: &Lived) -> Option<String> {
    let id = lived.order_id;
    let (code, etag, body) = match pipeline.get(&format!("/orders/{id}")).await {
        Ok(answer) => answer,
        Err(e) => return Some(e),
    };
    let order = &body["order"];
    let history: Vec<(u64, String, String, String)> = order["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["version"].as_u64().unwrap_or(0),
                e["status"].as_str().unwrap_or_default().to_owned(),
                e["event_type"].as_str().unwrap_or_default().to_owned(),
                e["event_id"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let accepted: Vec<(u64, String, String, String)> = lived
        .history()
        .into_iter()
        .map(|s| {
            (
                u64::from(s.version),
                lived.status_at(s.version).as_str().to_owned(),
                s.event_type,
                s.event_id.to_string(),
            )
        })
        .collect();
    let version = lived.version();
    let right = code == 200
        && order["status"] == lived.status().as_str()
        && order["version"] == version
        && etag.as_deref() == Some(format!("\"{version}\"").as_str())
        && history == accepted;
    (!right).then(|| {
        format!(
            "GET /orders/{id}: {code} ETag {etag:?} {body}; accepted {} v{version} {accepted:?}",
            lived.status()
        )
    })
}

/// Asks the query service about each order, 16 at a time; what differs
/// from what was accepted.
async fn read_side_mismatches(pipeline: &Pipeline, lived: &[Lived]) -> Vec<String> {
    futures::stream::iter(lived)
        .map(|l| read_side_differs(pipeline, l))
        .buffer_unordered(16)
        .filter_map(|d| async move { d })
        .collect()
        .await
}

/// Waits until the state topic holds every accepted version of every
/// order of `lived`, or shows something wrong for good; the verdict.
async fn state_topic(pipeline: &Pipeline, lived: &[Lived]) -> TopicVerdict {
    eventually(
        CONVERGE,
        "orders-state to hold every accepted version of each order",
        || async {
            let messages = pipeline.states().await?;
            let verdict = judge_state_topic(&messages, lived);
            if verdict.wrong.is_empty() && !verdict.incomplete.is_empty() {
                Err(format!(
                    "{} orders incomplete of {} ({} messages), e.g. {}",
                    verdict.incomplete.len(),
                    lived.len(),
                    verdict.messages,
                    verdict.incomplete[0]
                ))
            } else {
                Ok(verdict)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_state_topic(scenario: &str, verdict: &TopicVerdict) {
    println!(
        "{scenario}: orders-state holds {} messages, {} of them repeats of a version already \
         published (dropped by version), {} wrong",
        verdict.messages,
        verdict.repeats,
        verdict.wrong.len()
    );
    assert!(
        verdict.complete(),
        "orders-state: {} wrong, {} incomplete, e.g.:\n{}",
        verdict.wrong.len(),
        verdict.incomplete.len(),
        verdict
            .wrong
            .iter()
            .chain(&verdict.incomplete)
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Waits until the database holds each order of `lived` at its accepted
/// version (or past it, which the comparison after it then reports).
async fn stored_at_versions(pipeline: &Pipeline, lived: &[Lived]) -> BTreeMap<Uuid, StoredOrder> {
    let ids: Vec<Uuid> = lived.iter().map(|l| l.order_id).collect();
    eventually(
        CONVERGE,
        "every order at its accepted version in the database",
        || async {
            let stored = stored_orders(&pipeline.db.pool, &ids)
                .await
                .map_err(|e| e.to_string())?;
            let behind = lived
                .iter()
                .filter(|l| {
                    stored
                        .get(&l.order_id)
                        .is_none_or(|s| s.version < i64::from(l.version()))
                })
                .count();
            if behind == 0 {
                Ok(stored)
            } else {
                Err(format!("{behind} of {} orders behind", lived.len()))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_stored(scenario: &str, lived: &[Lived], stored: &BTreeMap<Uuid, StoredOrder>) {
    let wrong: Vec<String> = lived
        .iter()
        .filter_map(|l| l.differs_from(stored.get(&l.order_id)))
        .collect();
    println!(
        "{scenario}: {} of {} orders stored with the status, version and history accepted",
        lived.len() - wrong.len(),
        lived.len()
    );
    assert!(
        wrong.is_empty(),
        "{} orders differ from what was accepted, e.g.:\n{}",
        wrong.len(),
        wrong[..wrong.len().min(5)].join("\n")
    );
}

// ---------------------------------------------------------------------------
// A thousand lives, the consumer killed -9 twice.

/// Orders of the scenario.
const ORDERS: usize = 1000;
/// Events stored, in all.
const STORED_EVENTS: &str = "SELECT count(*) FROM event_store";
/// Clients posting at once (each order's changes one after another).
const CLIENTS: usize = 16;

/// What one client does with one order.
#[derive(Debug, Clone)]
struct Plan {
    n: usize,
    /// The statuses it takes the order to, in order.
    path: Vec<OrderStatus>,
    /// For each change, whether it is sent with `If-Match`.
    conditional: Vec<bool>,
}

/// Creates the order of `plan` and posts each of its changes after the
/// previous one's `202`; what was accepted, and the retries it took.
async fn live(
    client: &reqwest::Client,
    base: &str,
    run: &str,
    plan: &Plan,
    (total, currency): (&str, &str),
    accepted_so_far: &AtomicUsize,
) -> Result<(Lived, u32), String> {
    let key = format!("{run}-{}", plan.n);
    let (mut lived, mut retries) = create(client, base, &key, plan.n, None).await?;
    accepted_so_far.fetch_add(1, Ordering::Relaxed);
    for (i, (target, conditional)) in plan.path.iter().zip(&plan.conditional).enumerate() {
        let change =
            change_to(*target, total, currency, plan.n).ok_or("no change reaches created")?;
        let expected = conditional.then_some(lived.version());
        let accepted = post_change(
            client,
            base,
            lived.order_id,
            &change,
            &format!("{key}-{i}"),
            expected,
        )
        .await?;
        retries += accepted.attempts - 1;
        lived.changes.push((*target, accepted.event_id));
        accepted_so_far.fetch_add(1, Ordering::Relaxed);
    }
    Ok((lived, retries))
}

async fn a_thousand_lives(broker: &Broker, seed: u64) {
    let (plans, events) = plan_lives(seed);
    let format = format_of(seed);
    let mut pipeline = Pipeline::start(broker, "lives", format).await;
    println!("lives: events and order states in {format}");
    let started = Instant::now();
    let accepted = Arc::new(AtomicUsize::new(0));
    let load = post_lives(&pipeline, plans, started, accepted.clone());
    kill_the_consumer_twice(&mut pipeline, &load, &accepted, events, started).await;
    let (lived, posted) = lives_accepted(load, events).await;
    assert_lives_stored(&pipeline, &lived, events, started, posted).await;
    assert_lives_read_side(&pipeline, &lived).await;

    let at = Instant::now();
    let verdict = state_topic(&pipeline, &lived).await;
    println!(
        "lives: orders-state complete {:?} after the database was",
        at.elapsed()
    );
    assert_state_topic("lives", &verdict);

    let dead = pipeline.dead_letters().await.expect("the DLQ");
    println!("lives: {} dead letters", dead.len());
    assert!(
        dead.is_empty(),
        "no legal change is dead-lettered: {:?}",
        &dead[..dead.len().min(5)]
    );
}

/// The plan of each order from `seed` (a random legal path, each change
/// with `If-Match` or not at even odds), printed in sum; and the events
/// they store, in all.
fn plan_lives(seed: u64) -> (Vec<Plan>, i64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let plans: Vec<Plan> = (0..ORDERS)
        .map(|n| {
            let path = legal_path(&mut rng);
            let conditional = path.iter().map(|_| rng.random_bool(0.5)).collect();
            Plan {
                n,
                path,
                conditional,
            }
        })
        .collect();
    let events: i64 = plans.iter().map(|p| 1 + p.path.len() as i64).sum();
    let conditional = plans
        .iter()
        .flat_map(|p| &p.conditional)
        .filter(|c| **c)
        .count();
    let mut ends: BTreeMap<&str, usize> = BTreeMap::new();
    for plan in &plans {
        *ends
            .entry(plan.path.last().unwrap_or(&Created).as_str())
            .or_default() += 1;
    }
    println!(
        "lives: {ORDERS} orders, {} changes ({conditional} with If-Match), {events} events \
         to store; final statuses {ends:?}",
        events - ORDERS as i64
    );
    (plans, events)
}

/// The clients at work: each order's outcome (what was accepted, and the
/// retries it took), and how long after the start they were done.
type Load = tokio::task::JoinHandle<(Vec<Result<(Lived, u32), String>>, Duration)>;

/// Starts [`CLIENTS`] clients living `plans` through the pipeline's
/// producer, counting in `accepted` each request accepted.
fn post_lives(
    pipeline: &Pipeline,
    plans: Vec<Plan>,
    started: Instant,
    accepted: Arc<AtomicUsize>,
) -> Load {
    let base = pipeline.producer.url("");
    let run = Uuid::new_v4().simple().to_string();
    let (total, currency) = order_total();
    let total = total.to_string();
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(CLIENTS)
            .build()
            .expect("an HTTP client");
        let outcomes = futures::stream::iter(plans)
            .map(|plan| {
                let (client, base, run) = (client.clone(), base.clone(), run.clone());
                let (total, currency, counter) =
                    (total.clone(), currency.clone(), accepted.clone());
                async move { live(&client, &base, &run, &plan, (&total, &currency), &counter).await }
            })
            .buffer_unordered(CLIENTS)
            .collect::<Vec<_>>()
            .await;
        (outcomes, started.elapsed())
    })
}

/// Kills the consumer -9 and restarts it, twice: kill k once the clients
/// have had k quarters of their requests accepted and the consumer
/// (restarted) is persisting again: mid-run, with the consumer's outbox and
/// relay at work (and, unless the consumer's restart outlasts the load,
/// while the clients post).
async fn kill_the_consumer_twice(
    pipeline: &mut Pipeline,
    load: &Load,
    accepted: &AtomicUsize,
    events: i64,
    started: Instant,
) {
    let pool = pipeline.db.pool.clone();
    let mut since = 0;
    for kill in 1..=2 {
        let requests = events as usize * kill / 4;
        eventually(DRAIN, &format!("{requests} requests accepted"), || {
            ready(
                (accepted.load(Ordering::Relaxed) >= requests || load.is_finished()).then_some(()),
            )
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let stored = wait_for_count(&pool, STORED_EVENTS, since + 50, DRAIN).await;
        assert!(
            stored >= since + 50,
            "the consumer persists before kill {kill}: {stored} events stored"
        );
        assert!(
            stored < events,
            "kill {kill} comes mid-run, not after all {events} events were stored"
        );
        pipeline.consumer.kill9();
        println!(
            "lives: kill -9 #{kill} of the consumer {:?} in, with {stored} of {events} events \
             stored and {} of {events} requests accepted (the clients {})",
            started.elapsed(),
            accepted.load(Ordering::Relaxed),
            if load.is_finished() {
                "done"
            } else {
                "still posting"
            }
        );
        pipeline.consumer.restart();
        pipeline.consumer.wait_ready("/readyz", READY).await;
        since = sqlx::query_scalar(STORED_EVENTS)
            .fetch_one(&pool)
            .await
            .expect("a count");
    }
}

/// What was accepted for each order once the clients are done, and when
/// they were: every request was accepted in the end.
async fn lives_accepted(load: Load, events: i64) -> (Vec<Lived>, Duration) {
    let (outcomes, posted) = load.await.expect("the clients ran");
    let mut lived = Vec::new();
    let mut errors = Vec::new();
    let mut retries = 0;
    for outcome in outcomes {
        match outcome {
            Ok((l, r)) => {
                retries += r;
                lived.push(l);
            }
            Err(e) => errors.push(e),
        }
    }
    println!(
        "lives: {} orders lived ({events} requests accepted) in {posted:?}, {retries} retried \
         requests, {} clients gave up",
        lived.len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "every request was accepted in the end: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert_eq!(lived.len(), ORDERS);
    (lived, posted)
}

/// Waits until the database holds all `events`, then asserts each order
/// stored as accepted and each event stored once.
async fn assert_lives_stored(
    pipeline: &Pipeline,
    lived: &[Lived],
    events: i64,
    started: Instant,
    posted: Duration,
) {
    // A cheap count to wait on (the full comparison is no query to repeat
    // every few milliseconds while a thousand orders catch up), then the
    // comparison, which says what is missing if the count never came.
    let count = wait_for_count(&pipeline.db.pool, STORED_EVENTS, events, CONVERGE).await;
    println!(
        "lives: {count} of {events} events stored {:?} after the last 202",
        started.elapsed().saturating_sub(posted)
    );
    let ids: Vec<Uuid> = lived.iter().map(|l| l.order_id).collect();
    let stored = stored_orders(&pipeline.db.pool, &ids)
        .await
        .expect("the stored orders");
    assert_stored("lives", lived, &stored);
    assert_eq!(count, events, "each accepted event stored once");
}

/// Asserts the query service tells each order as accepted.
async fn assert_lives_read_side(pipeline: &Pipeline, lived: &[Lived]) {
    let at = Instant::now();
    let mismatches = read_side_mismatches(pipeline, lived).await;
    println!(
        "lives: GET /orders/{{id}} of {} orders in {:?}: {} differ",
        lived.len(),
        at.elapsed(),
        mismatches.len()
    );
    assert!(
        mismatches.is_empty(),
        "the read side differs from what was accepted, e.g.:\n{}",
        mismatches[..mismatches.len().min(3)].join("\n")
    );
}

// ---------------------------------------------------------------------------
// Illegal changes.

/// The kinds of illegal change the scenario generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Illegal {
    /// Any change from delivered or cancelled.
    FromFinal,
    /// A change the machine does not allow from a live status: a skipped
    /// step (shipped from created), a step back, a step again.
    OutOfOrder,
    /// A payment whose amount or currency is not the order's.
    WrongPayment,
    /// A change for an order id never created.
    UnknownOrder,
    /// A change the machine allows, with `If-Match` of another version.
    WrongVersion,
}

impl Illegal {
    const ALL: [Illegal; 5] = [
        Illegal::FromFinal,
        Illegal::OutOfOrder,
        Illegal::WrongPayment,
        Illegal::UnknownOrder,
        Illegal::WrongVersion,
    ];

    /// The class it must be refused with.
    fn class(self) -> &'static str {
        match self {
            Illegal::UnknownOrder => "unknown_order",
            Illegal::WrongVersion => "version_conflict",
            _ => "invalid_transition",
        }
    }
}

/// One generated illegal change, after a legal prefix.
#[derive(Debug, Clone)]
struct Case {
    n: usize,
    kind: Illegal,
    /// The legal changes first (none for an unknown order).
    prefix: Vec<OrderStatus>,
    /// The illegal change.
    change: Change,
    /// Its `If-Match`.
    expected: Option<u32>,
}

fn pick<T: Clone>(rng: &mut StdRng, from: &[T]) -> T {
    from[rng.random_range(0..from.len())].clone()
}

/// The illegal case number `n` of `kind`, for an order of `total` in
/// `currency`.
fn illegal_case(rng: &mut StdRng, n: usize, kind: Illegal, total: Decimal, currency: &str) -> Case {
    let money = total.to_string();
    let change = |target: OrderStatus| change_to(target, &money, currency, n).expect("a change");
    let (prefix, change, expected) = match kind {
        Illegal::FromFinal => {
            let (prefix, target, expected) = from_final(rng);
            (prefix, change(target), expected)
        }
        Illegal::OutOfOrder => {
            let (prefix, target) = out_of_order(rng);
            (prefix, change(target), None)
        }
        Illegal::WrongPayment => (Vec::new(), wrong_payment(rng, n, total, currency), None),
        Illegal::UnknownOrder => {
            let target = pick(rng, &[Paid, Shipped, Delivered, Cancelled]);
            (Vec::new(), change(target), None)
        }
        Illegal::WrongVersion => {
            let (prefix, target, expected) = wrong_version(rng);
            (prefix, change(target), Some(expected))
        }
    };
    Case {
        n,
        kind,
        prefix,
        change,
        expected,
    }
}

/// A legal path to delivered or cancelled, then any change, with the right
/// `If-Match` or none: the machine refuses it either way.
fn from_final(rng: &mut StdRng) -> (Vec<OrderStatus>, OrderStatus, Option<u32>) {
    let prefix = loop {
        let path = legal_path(rng);
        if path.last().is_some_and(|s| s.is_final()) {
            break path;
        }
    };
    let target = pick(rng, &[Paid, Shipped, Delivered, Cancelled]);
    let expected = rng.random_bool(0.5).then_some(1 + prefix.len() as u32);
    (prefix, target, expected)
}

/// A legal prefix, then a change the machine does not allow from where it
/// ends: a skipped step, a step again, a step back.
fn out_of_order(rng: &mut StdRng) -> (Vec<OrderStatus>, OrderStatus) {
    pick(
        rng,
        &[
            (vec![], Shipped),
            (vec![], Delivered),
            (vec![Paid], Delivered),
            (vec![Paid], Paid),
            (vec![Paid, Shipped], Paid),
            (vec![Paid, Shipped], Cancelled),
        ],
    )
}

/// A payment of a just created order (`total` in `currency`) with another
/// amount or currency.
fn wrong_payment(rng: &mut StdRng, n: usize, total: Decimal, currency: &str) -> Change {
    let cent = Decimal::new(1, 2);
    let (amount, currency) = pick(
        rng,
        &[
            (total + cent, currency.to_owned()),
            (total - cent, currency.to_owned()),
            (total * Decimal::TWO, currency.to_owned()),
            (
                total,
                if currency == "USD" { "GBP" } else { "USD" }.to_owned(),
            ),
            (total.round(), "JPY".to_owned()),
        ],
    );
    change_to(Paid, &amount.to_string(), &currency, n).expect("a payment")
}

/// A legal prefix, then a change the machine allows from where it ends,
/// with the `If-Match` of a version the order is not at.
fn wrong_version(rng: &mut StdRng) -> (Vec<OrderStatus>, OrderStatus, u32) {
    let prefix = pick(rng, &[vec![], vec![Paid], vec![Paid, Shipped]]);
    let at = prefix.last().copied().unwrap_or(Created);
    let next: Vec<OrderStatus> = OrderStatus::ALL
        .into_iter()
        .filter(|to| allowed(at, *to))
        .collect();
    let version = 1 + prefix.len() as u32;
    let mut wrong = vec![version + 1, version + 2];
    if version > 1 {
        wrong.push(version - 1);
    }
    let expected = pick(rng, &wrong);
    (prefix, pick(rng, &next), expected)
}

/// What became of a case on the producer's side.
#[derive(Debug)]
struct Posted {
    case: Case,
    order_id: Uuid,
    /// What was accepted before the illegal change (`None`: never created).
    lived: Option<Lived>,
    /// The illegal change's event id.
    refused: Uuid,
}

async fn post_case(
    client: &reqwest::Client,
    base: &str,
    run: &str,
    case: Case,
    total: &str,
    currency: &str,
) -> Result<Posted, String> {
    let key = format!("{run}-{}", case.n);
    let mut lived = None;
    let mut order_id = Uuid::new_v4();
    if case.kind != Illegal::UnknownOrder {
        let (mut order, _) = create(client, base, &key, case.n, None).await?;
        for (i, target) in case.prefix.iter().enumerate() {
            let change = change_to(*target, total, currency, case.n).ok_or("a change")?;
            let accepted = post_change(
                client,
                base,
                order.order_id,
                &change,
                &format!("{key}-{i}"),
                Some(order.version()),
            )
            .await?;
            order.changes.push((*target, accepted.event_id));
        }
        order_id = order.order_id;
        lived = Some(order);
    }
    let refused = post_change(
        client,
        base,
        order_id,
        &case.change,
        &format!("{key}-illegal"),
        case.expected,
    )
    .await?
    .event_id;
    Ok(Posted {
        case,
        order_id,
        lived,
        refused,
    })
}

/// Cases of the scenario (each kind in turn).
const ILLEGAL_CASES: usize = 40;

async fn illegal_changes(broker: &Broker, seed: u64) {
    let (total, currency) = order_total();
    let cases = illegal_cases(seed, total, &currency);
    let format = format_of(seed);
    let pipeline = Pipeline::start(broker, "illegal", format).await;
    println!("illegal: events and order states in {format}");
    let started = Instant::now();
    let posted = post_cases(&pipeline, cases, &total.to_string(), &currency, started).await;
    let refused: HashMap<Uuid, &Posted> = posted.iter().map(|p| (p.refused, p)).collect();
    let dead = all_dead_lettered(&pipeline, &refused, started).await;
    assert_dead_letters(&dead, &posted, &refused);
    assert_rejections(&pipeline, &posted).await;
    let lived = assert_prefixes_stored(&pipeline, &posted).await;
    assert_refusals_shown(&pipeline, &posted).await;

    // Their state messages: the prefixes' versions only.
    let verdict = state_topic(&pipeline, &lived).await;
    assert_state_topic("illegal", &verdict);
}

/// The scenario's cases from `seed`, each kind in turn, for orders of
/// `total` in `currency`.
fn illegal_cases(seed: u64, total: Decimal, currency: &str) -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..ILLEGAL_CASES)
        .map(|n| {
            let kind = Illegal::ALL[n % Illegal::ALL.len()];
            illegal_case(&mut rng, n, kind, total, currency)
        })
        .collect()
}

/// Posts each case, 8 at a time: its order and legal prefix, then its
/// illegal change; the producer accepts every request.
async fn post_cases(
    pipeline: &Pipeline,
    cases: Vec<Case>,
    total: &str,
    currency: &str,
    started: Instant,
) -> Vec<Posted> {
    let client = reqwest::Client::new();
    let base = pipeline.producer.url("");
    let run = Uuid::new_v4().simple().to_string();
    let posted: Vec<Result<Posted, String>> = futures::stream::iter(cases)
        .map(|case| post_case(&client, &base, &run, case, total, currency))
        .buffer_unordered(8)
        .collect()
        .await;
    let posted: Vec<Posted> = posted
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("every request is accepted by the producer: {e}"));
    println!(
        "illegal: {} illegal changes accepted by the producer after their legal prefixes in {:?}",
        posted.len(),
        started.elapsed()
    );
    posted
}

/// Waits until each `refused` change is in the DLQ; its dead letters. Each
/// gets there after its order's prefix (one partition per order): once
/// there, the order's outcome is decided.
async fn all_dead_lettered(
    pipeline: &Pipeline,
    refused: &HashMap<Uuid, &Posted>,
    started: Instant,
) -> Vec<DeadLetter> {
    let dead = eventually(CONVERGE, "a dead letter of each illegal change", || async {
        let dead = pipeline.dead_letters().await?;
        let found = dead
            .iter()
            .filter(|d| d.event_id.is_some_and(|id| refused.contains_key(&id)))
            .count();
        if found >= refused.len() {
            Ok(dead)
        } else {
            Err(format!("{found} of {}", refused.len()))
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "illegal: all dead-lettered {:?} after the first request",
        started.elapsed()
    );
    dead
}

/// One dead letter per illegal change, none of a legal one, each with its
/// class, kind `permanent`, the order's key and the change's event type.
fn assert_dead_letters(dead: &[DeadLetter], posted: &[Posted], refused: &HashMap<Uuid, &Posted>) {
    assert_eq!(
        dead.len(),
        posted.len(),
        "one dead letter per illegal change, none of a legal one: {dead:?}"
    );
    let mut classes: BTreeMap<(Illegal, &str), usize> = BTreeMap::new();
    for letter in dead {
        let id = letter.event_id.expect("the dead letters decode");
        let p = refused[&id];
        let what = format!(
            "{:?} {:?} after {:?}: {letter:?}",
            p.case.kind, p.case.change, p.case.prefix
        );
        assert_eq!(letter.class.as_deref(), Some(p.case.kind.class()), "{what}");
        assert_eq!(letter.kind.as_deref(), Some("permanent"), "{what}");
        assert_eq!(letter.key, Some(p.order_id.to_string()), "{what}");
        assert_eq!(
            letter.event_type.as_deref(),
            Some(p.case.change.event_type()),
            "{what}"
        );
        *classes
            .entry((p.case.kind, p.case.kind.class()))
            .or_default() += 1;
    }
    println!("illegal: dead letters by kind and class: {classes:?}");
}

/// A rejection row of each, with the class and the event type.
async fn assert_rejections(pipeline: &Pipeline, posted: &[Posted]) {
    let rows = rejections(&pipeline.db.pool).await.expect("rejections");
    for p in posted {
        let row = rows
            .iter()
            .find(|r| r.event_id == Some(p.refused))
            .unwrap_or_else(|| panic!("no rejection of {p:?}"));
        assert_eq!(row.class, p.case.kind.class(), "{p:?}");
        assert_eq!(row.aggregate_id, p.order_id.to_string(), "{p:?}");
        assert_eq!(
            row.event_type.as_deref(),
            Some(p.case.change.event_type()),
            "{p:?}"
        );
    }
    assert_eq!(rows.len(), posted.len(), "a rejection per illegal change");
}

/// Each order as its legal prefix left it, in the database and on the
/// read side; an unknown order is still unknown. What the prefixes lived.
async fn assert_prefixes_stored(pipeline: &Pipeline, posted: &[Posted]) -> Vec<Lived> {
    let lived: Vec<Lived> = posted.iter().filter_map(|p| p.lived.clone()).collect();
    let ids: Vec<Uuid> = posted.iter().map(|p| p.order_id).collect();
    let stored = stored_orders(&pipeline.db.pool, &ids)
        .await
        .expect("stored orders");
    assert_stored("illegal", &lived, &stored);
    let unknown = posted.iter().filter(|p| p.lived.is_none()).count();
    assert_eq!(
        stored.len(),
        lived.len(),
        "none of the {unknown} unknown orders is stored"
    );
    let mismatches = read_side_mismatches(pipeline, &lived).await;
    assert!(
        mismatches.is_empty(),
        "the read side differs from the legal prefixes, e.g.:\n{}",
        mismatches[..mismatches.len().min(3)].join("\n")
    );
    lived
}

/// `GET /orders/{id}/events`: the refused change, with its class, never
/// its content.
async fn assert_refusals_shown(pipeline: &Pipeline, posted: &[Posted]) {
    let mut shown = 0;
    for p in posted {
        let path = format!("/orders/{}/events", p.order_id);
        let (code, _, body) = pipeline.get(&path).await.expect("an answer");
        let refusal = body["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["outcome"] == "refused" && e["event_id"] == p.refused.to_string());
        match refusal {
            Some(e) => {
                assert_eq!(e["error_class"], p.case.kind.class(), "{path}: {body}");
                assert!(
                    e.get("change").is_none() && e.get("payload").is_none(),
                    "a refused change's content is not shown: {e}"
                );
                shown += 1;
            }
            None => panic!("{path} answered {code} without the refused change: {body}"),
        }
    }
    println!("illegal: each refusal shown on GET /orders/{{id}}/events ({shown})");
}

// ---------------------------------------------------------------------------
// Replays from the DLQ: a stale change, and one that came early.

/// Runs `pubsubkafka dlq replay` on the pipeline's DLQ; its JSON summary.
async fn replay(pipeline: &Pipeline) -> Value {
    let output = pipeline
        .operator(&[
            "dlq",
            "replay",
            "--topic",
            &pipeline.topics.orders_dlq,
            "--group",
            &pipeline.replay_group,
            "--json",
        ])
        .await;
    assert!(
        output.status.success(),
        "dlq replay: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "dlq replay printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Waits for a dead letter of event `event_id` with `class`, replayed
/// `replays` times before (`None`: a first failure).
async fn dead_letter(
    pipeline: &Pipeline,
    event_id: Uuid,
    class: &str,
    replays: Option<u32>,
) -> DeadLetter {
    eventually(
        CONVERGE,
        &format!("a dead letter of {event_id}, class {class}, replays {replays:?}"),
        || async {
            let dead = pipeline.dead_letters().await?;
            dead.iter()
                .find(|d| {
                    d.event_id == Some(event_id)
                        && d.class.as_deref() == Some(class)
                        && d.replays == replays
                })
                .cloned()
                .ok_or_else(|| format!("{dead:?}"))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until order `lived` is stored as accepted.
async fn stored_as(pipeline: &Pipeline, lived: &Lived) {
    let stored = stored_at_versions(pipeline, std::slice::from_ref(lived)).await;
    if let Some(why) = lived.differs_from(stored.get(&lived.order_id)) {
        panic!("{why}");
    }
}

async fn stale_and_early_replays(broker: &Broker, seed: u64) {
    let format = format_of(seed);
    let pipeline = Pipeline::start(broker, "replay", format).await;
    // The changes published raw: in the two other encodings.
    let (x_format, y_format) = (
        format_of(seed.wrapping_add(1)),
        format_of(seed.wrapping_add(2)),
    );
    println!(
        "replay: events and order states in {format}; X's change in {x_format}, Y's in \
         {y_format}"
    );
    let started = Instant::now();
    let (stale, lived_x) = a_cancellation_older_than_its_order(&pipeline, x_format).await;
    let (early, mut lived_y) = a_payment_ahead_of_its_order(&pipeline, y_format).await;

    // The operator replays the DLQ: both dead letters, in offset order.
    let summary = replay(&pipeline).await;
    println!("replay: dlq replay {summary}");
    assert_eq!(summary["replayed"], 2, "{summary}");
    stale_refused_early_applied(&pipeline, &stale, &early, &lived_x, &mut lived_y).await;
    println!(
        "replay: X still paid at v2, Y paid at v2, {:?} after the start",
        started.elapsed()
    );

    assert_replay_rejections(&pipeline, &stale, &early).await;
    let x = lived_x.order_id;
    assert_x_events_told(&pipeline, x).await;
    assert_operator_tells_x(&pipeline, x).await;
    for (order, status) in [(&lived_x, Paid), (&lived_y, Paid)] {
        assert_eq!(order.status(), status);
        if let Some(why) = read_side_differs(&pipeline, order).await {
            panic!("{why}");
        }
    }

    let verdict = state_topic(&pipeline, &[lived_x, lived_y]).await;
    assert_state_topic("replay", &verdict);
}

/// X: a cancellation accepted before X existed, published raw in `format`
/// and dead-lettered `unknown_order`; then X is created and paid: two
/// versions newer than the cancellation. The cancellation, and X.
async fn a_cancellation_older_than_its_order(
    pipeline: &Pipeline,
    format: Format,
) -> (OrderChange, Lived) {
    let (total, currency) = order_total();
    let x = Uuid::new_v4();
    let stale = order_change(
        x,
        change_to(Cancelled, "0", &currency, 1).expect("a cancellation"),
        None,
        Utc::now(),
    );
    publish_with(
        pipeline.client(),
        &[change_message(&stale, &pipeline.topics.orders, format)],
    );
    let first = dead_letter(pipeline, stale.metadata.event_id, "unknown_order", None).await;
    println!(
        "replay: X's cancellation (accepted before X existed) dead-lettered {} at {}[{}]",
        first.class.as_deref().unwrap_or("?"),
        first.partition,
        first.offset
    );
    let (client, base) = (reqwest::Client::new(), pipeline.producer.url(""));
    let (mut lived_x, _) = create(&client, &base, &format!("x-{x}"), 1, Some(x))
        .await
        .expect("X created");
    assert_eq!(lived_x.order_id, x);
    let payment = change_to(Paid, &total.to_string(), &currency, 1).expect("a payment");
    let paid = post_change(&client, &base, x, &payment, &format!("x-{x}-pay"), Some(1))
        .await
        .expect("X paid");
    lived_x.changes.push((Paid, paid.event_id));
    stored_as(pipeline, &lived_x).await;
    let created_at: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT occurred_at FROM event_store WHERE event_id = $1")
            .bind(lived_x.created)
            .fetch_one(&pipeline.db.pool)
            .await
            .expect("X's creation stored");
    assert!(
        stale.metadata.occurred_at < created_at,
        "the cancellation was accepted before X's creation"
    );
    assert!(
        allowed(Paid, Cancelled),
        "by the machine alone, the cancellation would apply to paid X"
    );
    println!("replay: X created and paid (v2)");
    (stale, lived_x)
}

/// Y: a payment that reaches the topic before Y's creation, though
/// accepted after it, both published raw in `format`: the payment is
/// dead-lettered `unknown_order`, Y is created. The payment, and Y.
async fn a_payment_ahead_of_its_order(pipeline: &Pipeline, format: Format) -> (OrderChange, Lived) {
    let (total, currency) = order_total();
    let topic = &pipeline.topics.orders;
    let y = Uuid::new_v4();
    let paid_at = Utc::now();
    let mut creation = order_event(2);
    creation.order_id = y;
    creation.metadata.occurred_at = paid_at - chrono::Duration::seconds(1);
    let early = order_change(
        y,
        change_to(Paid, &total.to_string(), &currency, 2).expect("a payment"),
        None,
        paid_at,
    );
    let mut created = order_message(&creation, format);
    created.topic = topic.clone();
    publish_with(
        pipeline.client(),
        &[change_message(&early, topic, format), created],
    );
    let lived_y = Lived::new(y, creation.metadata.event_id);
    dead_letter(pipeline, early.metadata.event_id, "unknown_order", None).await;
    stored_as(pipeline, &lived_y).await;
    println!(
        "replay: Y's payment, ahead of its creation, dead-lettered unknown_order; Y created (v1)"
    );
    (early, lived_y)
}

/// After the replay: X's `stale` cancellation is refused, never applied
/// over paid; Y's `early` payment is applied.
async fn stale_refused_early_applied(
    pipeline: &Pipeline,
    stale: &OrderChange,
    early: &OrderChange,
    lived_x: &Lived,
    lived_y: &mut Lived,
) {
    let again = dead_letter(
        pipeline,
        stale.metadata.event_id,
        "version_conflict",
        Some(1),
    )
    .await;
    println!(
        "replay: the replayed cancellation of X dead-lettered {} (replay {:?})",
        again.class.as_deref().unwrap_or("?"),
        again.replays
    );
    lived_y.changes.push((Paid, early.metadata.event_id));
    stored_as(pipeline, lived_y).await;
    // X was decided before its dead letter was written: still paid, v2.
    stored_as(pipeline, lived_x).await;
}

/// The rejection rows: the stale cancellation's two (before and after
/// the replay), the early payment's one (before).
async fn assert_replay_rejections(pipeline: &Pipeline, stale: &OrderChange, early: &OrderChange) {
    let rows = rejections(&pipeline.db.pool).await.expect("rejections");
    let of = |id: Uuid| -> Vec<&str> {
        rows.iter()
            .filter(|r| r.event_id == Some(id))
            .map(|r| r.class.as_str())
            .collect()
    };
    assert_eq!(
        of(stale.metadata.event_id),
        ["unknown_order", "version_conflict"]
    );
    assert_eq!(of(early.metadata.event_id), ["unknown_order"]);
}

/// `GET /orders/{x}/events`: X's creation and payment applied, the
/// cancellation refused as stale.
async fn assert_x_events_told(pipeline: &Pipeline, x: Uuid) {
    let (_, _, events) = pipeline
        .get(&format!("/orders/{x}/events"))
        .await
        .expect("X's events");
    let outcomes: Vec<(String, String)> = events["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap_or_default().to_owned(),
                e["error_class"]
                    .as_str()
                    .or(e["event_type"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    println!("replay: GET /orders/X/events: {outcomes:?}");
    for expected in [
        ("applied", "order.created"),
        ("applied", "order.paid"),
        ("refused", "version_conflict"),
    ] {
        assert!(
            outcomes
                .iter()
                .any(|(o, c)| (o.as_str(), c.as_str()) == expected),
            "{expected:?} in {events}"
        );
    }
}

/// The operator's view of X (`pubsubkafka order`) says the same: paid at
/// v2, events of versions 1 and 2, the cancellation refused twice.
async fn assert_operator_tells_x(pipeline: &Pipeline, x: Uuid) {
    let told = pipeline
        .operator(&["order", &x.to_string(), "--json"])
        .await;
    assert!(
        told.status.success(),
        "pubsubkafka order: {}",
        String::from_utf8_lossy(&told.stderr)
    );
    let story: Value = serde_json::from_slice(&told.stdout).expect("pubsubkafka order --json");
    let refusals: Vec<Value> = story["dead_letters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["error_class"].clone())
        .collect();
    let versions: Vec<Value> = story["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["version"].clone())
        .collect();
    println!(
        "replay: pubsubkafka order X: {} v{}, events of versions {}, refused {}",
        story["order_status"],
        story["version"],
        Value::from(versions.clone()),
        Value::from(refusals.clone())
    );
    assert_eq!(
        (&story["order_status"], &story["version"]),
        (&Value::from("paid"), &Value::from(2)),
        "{story}"
    );
    assert_eq!(versions, [1, 2], "{story}");
    assert_eq!(refusals, ["unknown_order", "version_conflict"], "{story}");
}

#[test]
fn legal_paths_are_legal_and_reach_every_final_status() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut ends = BTreeMap::new();
    for _ in 0..500 {
        let path = legal_path(&mut rng);
        let mut at = Created;
        for to in &path {
            assert!(allowed(at, *to), "{at} -> {to} in {path:?}");
            at = *to;
        }
        *ends.entry(at.as_str()).or_insert(0) += 1;
    }
    for status in OrderStatus::ALL {
        assert!(ends.contains_key(status.as_str()), "{ends:?}");
    }
}

#[test]
fn each_generated_illegal_change_is_illegal_and_the_same_for_a_seed() {
    let (total, currency) = order_total();
    let generate = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..100)
            .map(|n| illegal_case(&mut rng, n, Illegal::ALL[n % 5], total, &currency))
            .collect::<Vec<_>>()
    };
    let cases = generate(11);
    for case in &cases {
        let at = case.prefix.last().copied().unwrap_or(Created);
        let version = 1 + case.prefix.len() as u32;
        let refused_by_machine = !allowed(at, case.change.target());
        let wrong_money = match &case.change {
            Change::Payment(p) => p.amount != total || p.currency != currency,
            _ => false,
        };
        let wrong_version = case.expected.is_some_and(|v| v != version);
        match case.kind {
            Illegal::UnknownOrder => assert!(case.prefix.is_empty()),
            Illegal::WrongVersion => {
                assert!(wrong_version && !refused_by_machine, "{case:?}")
            }
            Illegal::WrongPayment => assert!(wrong_money && !refused_by_machine, "{case:?}"),
            Illegal::FromFinal => assert!(at.is_final() && !wrong_version, "{case:?}"),
            Illegal::OutOfOrder => {
                assert!(refused_by_machine && !at.is_final(), "{case:?}")
            }
        }
    }
    let again = generate(11);
    assert_eq!(
        format!("{cases:?}"),
        format!("{again:?}"),
        "a seed gives the same cases"
    );
}
