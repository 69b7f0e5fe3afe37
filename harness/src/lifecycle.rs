//! An order's life as a client lives it and as the pipeline records it,
//! for the end-to-end lifecycle scenarios: the changes a client posts
//! (`POST /orders/{id}/payment|shipment|delivery|cancellation`) and what
//! each accepted one must leave behind (the stored status, version and
//! history, one `orders-state` message per version), a pipeline of its own
//! on a shared broker (its topics, ACLs, groups, database and services),
//! and readers of what the pipeline wrote: the database, the query
//! service, the dead letters and the state topic.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use contract::headers as h;
use contract::lifecycle::{
    state_event_id, Cancellation, CancellationReason, Change, Delivery, OrderChange, OrderState,
    OrderStatus, Shipment, ORDER_CHANGE_SCHEMA_VERSION, ORDER_STATE,
};
use contract::{Domain, DomainEvent, Envelope, EventCodec, EventMetadata, Format};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::broker::Broker;
use crate::cluster::{grants, Role, Security};
use crate::database::TestDatabase;
use crate::events::Outgoing;
use crate::kafka::{header, read_topic_to_high_watermarks, Topics};
use crate::process::{binary, Service};
use crate::stack::{consumer_env, producer_env, READY};

/// Whether the state machine lets an order go from `from` to `to`:
/// created → paid → shipped → delivered, cancelled from created or paid,
/// nothing after delivered or cancelled. The test's own statement of the
/// rules, to generate sequences and to judge outcomes by.
pub fn allowed(from: OrderStatus, to: OrderStatus) -> bool {
    use OrderStatus::{Cancelled, Created, Delivered, Paid, Shipped};
    matches!(
        (from, to),
        (Created, Paid) | (Paid, Shipped) | (Shipped, Delivered) | (Created | Paid, Cancelled)
    )
}

/// The change that brings an order to `target`, its data told apart by
/// `n`: a payment of `amount` (money text) in `currency`, a shipment, a
/// delivery or a cancellation. `None` for `created`, which no change
/// reaches.
pub fn change_to(target: OrderStatus, amount: &str, currency: &str, n: usize) -> Option<Change> {
    Some(match target {
        OrderStatus::Created => return None,
        OrderStatus::Paid => Change::Payment(
            serde_json::from_value(json!({
                "reference": format!("pay-{n}"),
                "amount": amount,
                "currency": currency,
            }))
            .expect("a payment of money text"),
        ),
        OrderStatus::Shipped => Change::Shipment(Shipment {
            carrier: "DHL".to_owned(),
            tracking_number: format!("JD{n:010}"),
        }),
        OrderStatus::Delivered => Change::Delivery(Delivery {
            received_by: n.is_multiple_of(2).then(|| "front desk".to_owned()),
        }),
        OrderStatus::Cancelled => Change::Cancellation(Cancellation {
            reason: CancellationReason::ALL[n % CancellationReason::ALL.len()],
            note: n.is_multiple_of(3).then(|| format!("note {n}")),
        }),
    })
}

/// The JSON body of `POST /orders/{id}/<change.name()>`.
pub fn request_body(change: &Change) -> Value {
    match change {
        Change::Payment(p) => serde_json::to_value(p),
        Change::Shipment(s) => serde_json::to_value(s),
        Change::Delivery(d) => serde_json::to_value(d),
        Change::Cancellation(c) => serde_json::to_value(c),
    }
    .expect("a change serialises")
}

/// One step of an order's history: the version it made, the event type
/// and the event id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1 for the creation, one more per applied change.
    pub version: u32,
    /// `order.created`, `order.paid`, ...
    pub event_type: String,
    /// The event applied.
    pub event_id: Uuid,
}

/// What the pipeline accepted for one order: its creation and each change
/// the producer answered `202` for, in the order they were posted (each
/// waited for the previous one's `202`), all of them legal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lived {
    /// The order.
    pub order_id: Uuid,
    /// The creation's event id.
    pub created: Uuid,
    /// Each change's target status and event id, oldest first.
    pub changes: Vec<(OrderStatus, Uuid)>,
}

impl Lived {
    /// An order just created by event `created`.
    pub fn new(order_id: Uuid, created: Uuid) -> Self {
        Self {
            order_id,
            created,
            changes: Vec::new(),
        }
    }

    /// The version the accepted changes make.
    pub fn version(&self) -> u32 {
        1 + self.changes.len() as u32
    }

    /// The status the accepted changes reach.
    pub fn status(&self) -> OrderStatus {
        self.status_at(self.version())
    }

    /// The status at `version` (1: created).
    pub fn status_at(&self, version: u32) -> OrderStatus {
        version
            .checked_sub(2)
            .and_then(|i| self.changes.get(i as usize))
            .map_or(OrderStatus::Created, |(status, _)| *status)
    }

    /// The history the accepted changes make, oldest first.
    pub fn history(&self) -> Vec<Step> {
        let mut steps = vec![Step {
            version: 1,
            event_type: OrderStatus::Created.event_type().to_owned(),
            event_id: self.created,
        }];
        for (i, (status, event_id)) in self.changes.iter().enumerate() {
            steps.push(Step {
                version: i as u32 + 2,
                event_type: status.event_type().to_owned(),
                event_id: *event_id,
            });
        }
        steps
    }

    /// Why `stored` is not what was accepted, if it is not.
    pub fn differs_from(&self, stored: Option<&StoredOrder>) -> Option<String> {
        let Some(stored) = stored else {
            return Some(format!("order {} not stored", self.order_id));
        };
        let (status, version, history) = (self.status(), self.version(), self.history());
        (stored.status != status.as_str()
            || stored.version != i64::from(version)
            || stored.history != history)
            .then(|| {
                format!(
                    "order {}: stored {} v{} {:?}, accepted {status} v{version} {history:?}",
                    self.order_id, stored.status, stored.version, stored.history
                )
            })
    }
}

/// A `202` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// `order_id` of the answer.
    pub order_id: Uuid,
    /// `event_id` of the answer.
    pub event_id: Uuid,
    /// How many requests it took (retries of 503, 429 or no answer).
    pub attempts: u32,
}

/// POSTs `body` to `url` with `headers` until it is answered `202`,
/// retrying as a client does, with the same headers (so the same
/// `Idempotency-Key`), on no answer, 429, 502, 503 and 504, for at most
/// `deadline`. Any other answer is an error that says what it was.
pub async fn post_until_accepted(
    client: &reqwest::Client,
    url: &str,
    body: &Value,
    headers: &[(&str, String)],
    deadline: Duration,
) -> Result<Accepted, String> {
    let started = Instant::now();
    let mut attempts = 0;
    loop {
        attempts += 1;
        let mut request = client.post(url).json(body).timeout(Duration::from_secs(10));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let last = match request.send().await {
            Ok(r) if r.status().as_u16() == 202 => {
                let answer: Value = r
                    .json()
                    .await
                    .map_err(|e| format!("{url}: a 202 without JSON: {e}"))?;
                let id = |field: &str| {
                    answer[field]
                        .as_str()
                        .and_then(|t| Uuid::parse_str(t).ok())
                        .ok_or_else(|| format!("{url}: a 202 without {field}: {answer}"))
                };
                return Ok(Accepted {
                    order_id: id("order_id")?,
                    event_id: id("event_id")?,
                    attempts,
                });
            }
            Ok(r) if matches!(r.status().as_u16(), 429 | 502 | 503 | 504) => {
                format!("answered {}", r.status())
            }
            Ok(r) => {
                let status = r.status();
                let text = r.text().await.unwrap_or_default();
                return Err(format!("{url} answered {status}: {text}"));
            }
            Err(e) => format!("no answer: {e}"),
        };
        if started.elapsed() > deadline {
            return Err(format!(
                "{url}: no 202 within {deadline:?} ({attempts} tries); last {last}"
            ));
        }
        // A client's pause before it tries again, not a wait for an effect.
        tokio::time::sleep(crate::load::RETRY_PAUSE).await;
    }
}

/// `If-Match` for `version`, as the read side's `ETag` spells it.
pub fn if_match(version: u32) -> (&'static str, String) {
    ("if-match", format!("\"{version}\""))
}

/// The pipeline of one scenario on a shared broker: topics of its own
/// (`orders-<tag>` and the rest), on a secured cluster the ACLs of
/// `acls.json` on them for consumer and replay groups of its own, a
/// database of its own, and the `producer`, `consumer` and `query`
/// binaries. Scenarios sharing a cluster never see each other's messages.
pub struct Pipeline {
    /// The database the consumer writes and the query service reads.
    pub db: TestDatabase,
    /// The scenario's topics.
    pub topics: Topics,
    /// The consumer's group.
    pub group: String,
    /// The group `pubsubkafka dlq replay` remembers its progress in.
    pub replay_group: String,
    /// The producer process.
    pub producer: Service,
    /// The consumer process.
    pub consumer: Service,
    /// The query service process.
    pub query: Service,
    bootstrap: String,
    security: Option<Security>,
    client: ClientConfig,
}

/// Sets `name` to `value` in `env`, in place of any value it had.
fn set(env: &mut Vec<(&'static str, String)>, name: &'static str, value: &str) {
    env.retain(|(k, _)| *k != name);
    env.push((name, value.to_owned()));
}

impl Pipeline {
    /// Creates the topics (and on a secured cluster grants the ACLs) of a
    /// pipeline called `name` on `broker`, and starts its services, all
    /// ready: the producer writes its events, and the consumer the order
    /// states, in `format`.
    pub async fn start(broker: &Broker, name: &str, format: Format) -> Self {
        let tag = format!("{name}-{}", &Uuid::new_v4().simple().to_string()[..8]);
        let topics = Topics::named(&format!("orders-{tag}"), &format!("users-{tag}"));
        let replication = broker.cluster.as_ref().map_or(1, |c| c.len().min(3)) as i32;
        topics.create(broker.client(), replication).await;
        let group = format!("order-consumer-{tag}");
        let replay_group = format!("dlq-replay-{tag}");
        if let (Some(cluster), Some(_)) = (&broker.cluster, broker.security()) {
            cluster.change_acls(true, &grants(&topics, &group, &replay_group));
        }
        let db = TestDatabase::create().await;
        let mut consumer = consumer_env(broker, &db.url);
        set(&mut consumer, "ORDERS_TOPIC", &topics.orders);
        set(&mut consumer, "USERS_TOPIC", &topics.users);
        set(&mut consumer, "ORDERS_STATE_TOPIC", &topics.orders_state);
        set(&mut consumer, "KAFKA_CONSUMER_GROUP", &group);
        set(&mut consumer, "ORDERS_STATE_FORMAT", format.name());
        let mut producer = producer_env(broker);
        set(&mut producer, "ORDERS_TOPIC", &topics.orders);
        set(&mut producer, "USERS_TOPIC", &topics.users);
        set(&mut producer, "MESSAGE_FORMAT", format.name());
        let mut consumer = Service::start("consumer", "CONSUMER_HTTP_ADDR", &consumer);
        let mut producer = Service::start("producer", "PRODUCER_HTTP_ADDR", &producer);
        // The consumer migrates the database before it is ready; the query
        // service reads the tables it made.
        consumer.wait_ready("/readyz", READY).await;
        let mut query = Service::start(
            "query",
            "QUERY_HTTP_ADDR",
            &[
                ("DATABASE_URL", db.url.clone()),
                ("QUERY_ALLOW_ANONYMOUS", "true".to_owned()),
                ("LOG_LEVEL", "info".to_owned()),
            ],
        );
        producer.wait_ready("/readyz", READY).await;
        query.wait_ready("/readyz", READY).await;
        Self {
            db,
            topics,
            group,
            replay_group,
            producer,
            consumer,
            query,
            bootstrap: broker.bootstrap.clone(),
            security: broker.security().cloned(),
            client: broker.client(),
        }
    }

    /// A test client of the broker, whom no ACL limits.
    pub fn client(&self) -> ClientConfig {
        self.client.clone()
    }

    /// Runs the operator tool `pubsubkafka` with `args` against this
    /// pipeline's topics and database, logged in as the replay job.
    pub async fn operator(&self, args: &[&str]) -> Output {
        let mut command = tokio::process::Command::new(binary("pubsubkafka"));
        command
            .args(args)
            .env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap)
            .env("ORDERS_TOPIC", &self.topics.orders)
            .env("USERS_TOPIC", &self.topics.users)
            .env("DATABASE_URL", &self.db.url)
            .env("LOG_LEVEL", "warn");
        if let Some(security) = &self.security {
            command.envs(security.env(Role::Operator));
        }
        command.output().await.expect("run pubsubkafka")
    }

    /// Every message of `topic`, up to where it ended when asked.
    pub async fn read(&self, topic: &str) -> Result<Vec<OwnedMessage>, String> {
        let (config, topic) = (self.client(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            read_topic_to_high_watermarks(config, &topic, Duration::from_secs(60))
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// The dead letters of the orders topic, in (partition, offset) order.
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetter>, String> {
        Ok(self
            .read(&self.topics.orders_dlq)
            .await?
            .iter()
            .map(DeadLetter::of)
            .collect())
    }

    /// The messages of the state topic, in (partition, offset) order.
    pub async fn states(&self) -> Result<Vec<StateMessage>, String> {
        Ok(self
            .read(&self.topics.orders_state)
            .await?
            .iter()
            .map(StateMessage::of)
            .collect())
    }

    /// `GET` of `path` on the query service: the status and the body.
    pub async fn get(&self, path: &str) -> Result<(u16, Option<String>, Value), String> {
        let answer = reqwest::Client::new()
            .get(self.query.url(path))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = answer.status().as_u16();
        let etag = answer
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = answer
            .json()
            .await
            .map_err(|e| format!("GET {path}: not JSON: {e}"))?;
        Ok((status, etag, body))
    }
}

/// A dead letter of the orders topic, as far as the test reads it.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// Its partition in the DLQ.
    pub partition: i32,
    /// Its offset there.
    pub offset: i64,
    /// The original key.
    pub key: Option<String>,
    /// `dlq-error-kind`.
    pub kind: Option<String>,
    /// `dlq-error-class`.
    pub class: Option<String>,
    /// `dlq-replay-count` (absent on a first failure).
    pub replays: Option<u32>,
    /// `event-type` of the original.
    pub event_type: Option<String>,
    /// The event id of the original value, when it decodes.
    pub event_id: Option<Uuid>,
}

impl DeadLetter {
    /// Reads `m`, decoding its value as the envelope it kept says.
    pub fn of(m: &OwnedMessage) -> Self {
        let event = Envelope::read(
            |name| platform::kafka::header(m, name),
            Some(Domain::Orders),
        )
        .and_then(|envelope| envelope.decode(m.payload().unwrap_or_default()));
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            kind: header(m, h::DLQ_ERROR_KIND),
            class: header(m, h::DLQ_ERROR_CLASS),
            replays: header(m, h::DLQ_REPLAY_COUNT).and_then(|v| v.parse().ok()),
            event_type: header(m, h::EVENT_TYPE),
            event_id: event.ok().map(|e: DomainEvent| e.metadata().event_id),
        }
    }
}

/// A message of the state topic.
#[derive(Debug, Clone)]
pub struct StateMessage {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key: the order id.
    pub key: Option<String>,
    /// The state, or why it did not decode.
    pub state: Result<OrderState, String>,
}

impl StateMessage {
    /// Reads `m` by its headers (`content-type`, `schema-version`,
    /// `event-type`).
    pub fn of(m: &OwnedMessage) -> Self {
        Self {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            state: decode_state(m),
        }
    }
}

fn decode_state(m: &OwnedMessage) -> Result<OrderState, String> {
    let event_type = header(m, h::EVENT_TYPE);
    if event_type.as_deref() != Some(ORDER_STATE) {
        return Err(format!("event-type {event_type:?}, not {ORDER_STATE}"));
    }
    let content_type = header(m, h::CONTENT_TYPE).ok_or("no content-type")?;
    let format = Format::from_content_type(&content_type).map_err(|e| e.to_string())?;
    let version = match header(m, h::SCHEMA_VERSION) {
        Some(v) => v
            .parse()
            .map_err(|_| format!("schema-version {v:?} is not a number"))?,
        None => OrderState::SCHEMA_VERSION,
    };
    OrderState::decode(m.payload().unwrap_or_default(), format, version).map_err(|e| e.to_string())
}

/// Judges one order's messages on the state topic, read in offset order,
/// against what was accepted for it: each message carries its version,
/// the status and history of that version and the version's deterministic
/// event id; the versions, with repeats of an already-seen version dropped
/// (the relay publishes at least once), are exactly 1..N; the last message
/// is version N. How many repeats there were, or what is wrong.
pub fn judge_states(states: &[&OrderState], lived: &Lived) -> Result<usize, StateVerdict> {
    let history = lived.history();
    let mut seen: Vec<u32> = Vec::new();
    let mut repeats = 0;
    for state in states {
        let v = state.version;
        state_differs(state, lived, &history)
            .map_err(|why| StateVerdict::Wrong(format!("order {} v{v}: {why}", lived.order_id)))?;
        if seen.contains(&v) {
            repeats += 1;
        } else {
            seen.push(v);
        }
    }
    judge_versions(&seen, states.last().copied(), lived)?;
    Ok(repeats)
}

/// Why one state message is not what was accepted at its version: another
/// order, an event id not the version's own, a version never accepted, or
/// a status or history not the version's.
fn state_differs(state: &OrderState, lived: &Lived, history: &[Step]) -> Result<(), String> {
    let (id, v) = (lived.order_id, state.version);
    if state.order_id != id {
        return Err(format!("the value names order {}", state.order_id));
    }
    if state.metadata.event_id != state_event_id(id, v) {
        return Err(format!(
            "event id {} is not the version's own",
            state.metadata.event_id
        ));
    }
    if v == 0 || v > lived.version() {
        return Err(format!(
            "no such version was accepted (N = {})",
            lived.version()
        ));
    }
    if state.status != lived.status_at(v) {
        return Err(format!(
            "status {}, accepted {}",
            state.status,
            lived.status_at(v)
        ));
    }
    let carried: Vec<Step> = state
        .history
        .iter()
        .map(|e| Step {
            version: e.version,
            event_type: e.event_type.clone(),
            event_id: e.event_id,
        })
        .collect();
    if carried != history[..v as usize] {
        return Err(format!(
            "history {carried:?}, accepted {:?}",
            &history[..v as usize]
        ));
    }
    Ok(())
}

/// Judges the versions of an order's messages, `seen` each the first time
/// in offset order, and its `last` message: 1..N in order, all of them,
/// and N last.
fn judge_versions(
    seen: &[u32],
    last: Option<&OrderState>,
    lived: &Lived,
) -> Result<(), StateVerdict> {
    let id = lived.order_id;
    let want: Vec<u32> = (1..=lived.version()).collect();
    if !want.starts_with(seen) {
        return Err(StateVerdict::Wrong(format!(
            "order {id}: versions first seen in offset order {seen:?}, accepted 1..={}",
            lived.version()
        )));
    }
    if seen.len() < want.len() {
        return Err(StateVerdict::Incomplete(format!(
            "order {id}: versions {seen:?} of 1..={} so far",
            lived.version()
        )));
    }
    match last {
        Some(last) if last.version == lived.version() => Ok(()),
        last => Err(StateVerdict::Wrong(format!(
            "order {id}: the last message is v{:?}, not the latest v{}: a reader keeping \
             the last value per key goes back in time",
            last.map(|s| s.version),
            lived.version()
        ))),
    }
}

/// Why an order's state messages are not (yet) right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateVerdict {
    /// Right so far, versions still to come.
    Incomplete(String),
    /// Wrong, whatever comes next.
    Wrong(String),
}

/// What the state topic says of a set of orders.
#[derive(Debug, Clone, Default)]
pub struct TopicVerdict {
    /// Messages read.
    pub messages: usize,
    /// Copies of a version already seen before, in all.
    pub repeats: usize,
    /// Orders whose versions are right so far, with some still to come.
    pub incomplete: Vec<String>,
    /// What is wrong for good: an order's messages out of order, a message
    /// that does not decode, is of no order of the set, or under another
    /// key than its order.
    pub wrong: Vec<String>,
}

impl TopicVerdict {
    /// Whether every order's versions are all there, each right.
    pub fn complete(&self) -> bool {
        self.incomplete.is_empty() && self.wrong.is_empty()
    }
}

/// Judges the state topic's `messages` (in offset order per partition)
/// against what was accepted for each order of `lived` ([`judge_states`]).
pub fn judge_state_topic(messages: &[StateMessage], lived: &[Lived]) -> TopicVerdict {
    let mut verdict = TopicVerdict {
        messages: messages.len(),
        ..TopicVerdict::default()
    };
    let mut by_order: BTreeMap<Uuid, Vec<&OrderState>> = BTreeMap::new();
    for m in messages {
        match &m.state {
            Ok(state) if m.key.as_deref() == Some(state.order_id.to_string().as_str()) => {
                by_order.entry(state.order_id).or_default().push(state);
            }
            Ok(state) => verdict.wrong.push(format!(
                "{}[{}]: order {} under key {:?}",
                m.partition, m.offset, state.order_id, m.key
            )),
            Err(why) => verdict.wrong.push(format!(
                "{}[{}] does not decode: {why}",
                m.partition, m.offset
            )),
        }
    }
    for order in lived {
        let states = by_order.remove(&order.order_id).unwrap_or_default();
        match judge_states(&states, order) {
            Ok(repeats) => verdict.repeats += repeats,
            Err(StateVerdict::Incomplete(why)) => verdict.incomplete.push(why),
            Err(StateVerdict::Wrong(why)) => verdict.wrong.push(why),
        }
    }
    for (id, states) in by_order {
        verdict.wrong.push(format!(
            "{} messages of order {id}, which was never accepted",
            states.len()
        ));
    }
    verdict
}

/// An order as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    /// `orders.status`.
    pub status: String,
    /// `orders.version`.
    pub version: i64,
    /// Its `event_store` rows by version (`COALESCE(aggregate_version, 1)`).
    pub history: Vec<Step>,
}

/// The stored orders among `ids`, with their history.
pub async fn stored_orders(
    pool: &PgPool,
    ids: &[Uuid],
) -> Result<BTreeMap<Uuid, StoredOrder>, sqlx::Error> {
    let rows: Vec<(Uuid, String, i32)> =
        sqlx::query_as("SELECT order_id, status, version FROM orders WHERE order_id = ANY($1)")
            .bind(ids)
            .fetch_all(pool)
            .await?;
    let mut out: BTreeMap<Uuid, StoredOrder> = rows
        .into_iter()
        .map(|(id, status, version)| {
            (
                id,
                StoredOrder {
                    status,
                    version: i64::from(version),
                    history: Vec::new(),
                },
            )
        })
        .collect();
    let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let events: Vec<(String, i32, String, Uuid)> = sqlx::query_as(
        "SELECT aggregate_id, COALESCE(aggregate_version, 1), event_type, event_id
         FROM event_store WHERE aggregate_id = ANY($1)
         ORDER BY aggregate_id, COALESCE(aggregate_version, 1), stored_seq",
    )
    .bind(&texts)
    .fetch_all(pool)
    .await?;
    for (aggregate, version, event_type, event_id) in events {
        let Ok(id) = Uuid::parse_str(&aggregate) else {
            continue;
        };
        if let Some(order) = out.get_mut(&id) {
            order.history.push(Step {
                version: u32::try_from(version).unwrap_or(0),
                event_type,
                event_id,
            });
        }
    }
    Ok(out)
}

/// A row of `rejections`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The order id (the message key).
    pub aggregate_id: String,
    /// The refused event, when it could be read.
    pub event_id: Option<Uuid>,
    /// `error_class`.
    pub class: String,
    /// `event_type`, when it could be read.
    pub event_type: Option<String>,
}

/// Every rejection recorded, oldest first.
pub async fn rejections(pool: &PgPool) -> Result<Vec<Rejection>, sqlx::Error> {
    let rows: Vec<(String, Option<Uuid>, String, Option<String>)> = sqlx::query_as(
        "SELECT aggregate_id, event_id, error_class, event_type FROM rejections
         ORDER BY rejected_at, source_partition, source_offset",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(aggregate_id, event_id, class, event_type)| Rejection {
            aggregate_id,
            event_id,
            class,
            event_type,
        })
        .collect())
}

/// A change of `order_id` as the producer would publish it, accepted at
/// `occurred_at`, with an event id of its own.
pub fn order_change(
    order_id: Uuid,
    change: Change,
    expected_version: Option<u32>,
    occurred_at: DateTime<Utc>,
) -> OrderChange {
    OrderChange {
        metadata: EventMetadata {
            event_id: Uuid::new_v4(),
            event_type: change.event_type().to_owned(),
            schema_version: ORDER_CHANGE_SCHEMA_VERSION,
            occurred_at,
            producer: "test".to_owned(),
            correlation_id: format!("corr-{order_id}"),
            trace_id: None,
            span_id: None,
        },
        order_id,
        expected_version,
        change,
    }
}

/// `change` as a message to `topic` in `format`, with the contract's
/// envelope, keyed by its order id.
pub fn change_message(change: &OrderChange, topic: &str, format: Format) -> Outgoing {
    Outgoing {
        topic: topic.to_owned(),
        partition: None,
        key: change.order_id.to_string().into_bytes(),
        value: change.encode(format).expect("encode the change"),
        headers: Envelope::of(change, format)
            .headers()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::lifecycle::HistoryEntry;
    use OrderStatus::{Cancelled, Created, Delivered, Paid, Shipped};

    #[test]
    fn the_machine_allows_the_forward_path_and_cancellation_before_shipping_only() {
        let legal: Vec<(OrderStatus, OrderStatus)> = OrderStatus::ALL
            .into_iter()
            .flat_map(|from| OrderStatus::ALL.into_iter().map(move |to| (from, to)))
            .filter(|(from, to)| allowed(*from, *to))
            .collect();
        assert_eq!(
            legal,
            [
                (Created, Paid),
                (Created, Cancelled),
                (Paid, Shipped),
                (Paid, Cancelled),
                (Shipped, Delivered)
            ]
        );
    }

    #[test]
    fn each_change_body_is_what_its_route_takes() {
        let pay = change_to(Paid, "44.98", "EUR", 7).expect("a payment");
        assert_eq!(pay.name(), "payment");
        assert_eq!(
            request_body(&pay),
            json!({"reference": "pay-7", "amount": "44.98", "currency": "EUR"})
        );
        let cancel = change_to(Cancelled, "0", "EUR", 3).expect("a cancellation");
        assert_eq!(
            request_body(&cancel),
            json!({"reason": "fraud_suspected", "note": "note 3"})
        );
        assert_eq!(change_to(Created, "1", "EUR", 0), None);
        for target in [Paid, Shipped, Delivered, Cancelled] {
            let change = change_to(target, "1.00", "EUR", 1).expect("a change");
            assert_eq!(change.target(), target);
        }
    }

    fn lived() -> Lived {
        let mut lived = Lived::new(Uuid::new_v4(), Uuid::new_v4());
        lived.changes.push((Paid, Uuid::new_v4()));
        lived.changes.push((Shipped, Uuid::new_v4()));
        lived
    }

    fn state(lived: &Lived, version: u32) -> OrderState {
        let event = crate::events::order_event(1);
        let history = lived
            .history()
            .iter()
            .take(version as usize)
            .map(|s| HistoryEntry {
                version: s.version,
                status: OrderStatus::of_event_type(&s.event_type).expect("a status"),
                event_id: s.event_id,
                event_type: s.event_type.clone(),
                occurred_at: Utc::now(),
            })
            .collect();
        OrderState {
            metadata: EventMetadata {
                event_id: state_event_id(lived.order_id, version),
                event_type: ORDER_STATE.to_owned(),
                ..event.metadata.clone()
            },
            order_id: lived.order_id,
            version,
            status: lived.status_at(version),
            customer: event.customer,
            items: event.items,
            totals: event.totals,
            currency: event.currency,
            promotion_code: None,
            payment: None,
            shipment: None,
            delivery: None,
            cancellation: None,
            history,
            updated_at: Utc::now(),
        }
    }

    fn judge(lived: &Lived, versions: &[u32]) -> Result<usize, StateVerdict> {
        let states: Vec<OrderState> = versions.iter().map(|v| state(lived, *v)).collect();
        judge_states(&states.iter().collect::<Vec<_>>(), lived)
    }

    #[test]
    fn each_version_once_in_order_passes_and_repeats_are_counted() {
        let lived = lived();
        assert_eq!(lived.version(), 3);
        assert_eq!(lived.status(), Shipped);
        assert_eq!(judge(&lived, &[1, 2, 3]), Ok(0));
        assert_eq!(judge(&lived, &[1, 2, 2, 3]), Ok(1));
        assert_eq!(judge(&lived, &[1, 1, 2, 3, 3]), Ok(2));
    }

    #[test]
    fn a_gap_a_reversal_or_a_stale_last_value_fails() {
        let lived = lived();
        assert!(matches!(
            judge(&lived, &[1, 2]),
            Err(StateVerdict::Incomplete(_))
        ));
        assert!(matches!(
            judge(&lived, &[]),
            Err(StateVerdict::Incomplete(_))
        ));
        for wrong in [&[1, 3][..], &[2, 1, 3], &[1, 2, 3, 2], &[1, 2, 3, 4]] {
            assert!(
                matches!(judge(&lived, wrong), Err(StateVerdict::Wrong(_))),
                "{wrong:?}"
            );
        }
    }

    #[test]
    fn a_state_with_a_foreign_event_id_or_status_fails() {
        let lived = lived();
        let mut bad = state(&lived, 2);
        bad.metadata.event_id = Uuid::new_v4();
        let good = [state(&lived, 1), bad, state(&lived, 3)];
        assert!(matches!(
            judge_states(&good.iter().collect::<Vec<_>>(), &lived),
            Err(StateVerdict::Wrong(_))
        ));
        let mut bad = state(&lived, 2);
        bad.status = Cancelled;
        let states = [state(&lived, 1), bad, state(&lived, 3)];
        assert!(matches!(
            judge_states(&states.iter().collect::<Vec<_>>(), &lived),
            Err(StateVerdict::Wrong(_))
        ));
    }

    #[test]
    fn a_stored_order_is_judged_on_status_version_and_history() {
        let lived = lived();
        let stored = StoredOrder {
            status: "shipped".into(),
            version: 3,
            history: lived.history(),
        };
        assert_eq!(lived.differs_from(Some(&stored)), None);
        let mut behind = stored.clone();
        behind.history.pop();
        assert!(lived.differs_from(Some(&behind)).is_some());
        assert!(lived.differs_from(None).is_some());
    }
}
