//! `pubsubkafka order <id>`: what became of one order (or, with `--user`,
//! one user), for an operator: the read side's answer, every event of it in
//! the event store with where it was read in Kafka, and every time a
//! message about it was dead-lettered with where its dead letter sits. For
//! an order, also its status and version, each applied event with the
//! version it made, and each refused change with its class (never its
//! content), the same as `GET /orders/{id}/events`. No customer data: ids,
//! counts, totals.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use contract::lifecycle::OrderStatus;
use contract::Domain;
use serde::Serialize;
use serde_json::Value;
use store::db::{PoolSpec, SessionGuards};
use store::read::{self, Applied, OrderEvent, Status, StoredEvent, Timeline};
use store::rejections::Rejection;

/// Most events and dead letters listed (of an order, most of each outcome:
/// its first applied events, its newest refused ones).
const LIMIT: i64 = 1_000;

/// Why the story of an order could not be told.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The id is not an id of its domain.
    #[error("{id:?} is not an id: {rule}")]
    BadId {
        /// The id given.
        id: String,
        /// The rule it breaks.
        rule: String,
    },
    /// The database did not answer in time.
    #[error("no answer from the database within {0:?}")]
    NoAnswer(Duration),
}

/// Options of `order`.
#[derive(Debug, clap::Args)]
pub struct OrderArgs {
    /// The order's id (a UUID), or with --user the user's id.
    pub id: String,
    /// The id is a user's.
    #[arg(long)]
    pub user: bool,
    /// The database the consumer writes (a read replica works).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://localhost/pubsubkafka"
    )]
    pub database_url: String,
    /// How long after acceptance an id not stored yet counts as pending.
    #[arg(long, env = "PENDING_WINDOW_SECS", default_value_t = 300)]
    pub pending_window: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// The story of one order or user.
#[derive(Debug, Serialize)]
pub struct Story {
    /// `order` or `user`.
    pub kind: &'static str,
    /// Its id, as stored.
    pub id: String,
    /// `persisted`, `rejected`, `pending` or `not_found`.
    pub status: &'static str,
    /// Why it is not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// When its id was assigned, if it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
    /// When the consumer stored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted_at: Option<DateTime<Utc>>,
    /// The event it was stored from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<uuid::Uuid>,
    /// What it holds, without customer data: items, total and currency.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// A stored order's status: `created`, `paid`, `shipped`, `delivered`
    /// or `cancelled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_status: Option<OrderStatus>,
    /// A stored order's version (the read side's `ETag`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// When its latest change was accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changed_at: Option<DateTime<Utc>>,
    /// Its events in the event store, with where each was read (an
    /// order's: each applied one, with the version it made, oldest first).
    pub events: Vec<EventAt>,
    /// Every dead letter of it (an order's: each refused change, with its
    /// event type and class).
    pub dead_letters: Vec<Rejection>,
    /// An order's: whether events or dead letters past the limit were
    /// left out (its oldest refused changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub truncated: Option<bool>,
    /// An order's events and dead letters together, in the order the
    /// consumer decided them (the terminal lists them so).
    #[serde(skip)]
    pub decided: Option<Vec<OrderEvent>>,
}

/// One event and where it sits in Kafka.
#[derive(Debug, Serialize)]
pub struct EventAt {
    /// The version of its order it made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The event's id.
    pub event_id: uuid::Uuid,
    /// Its type.
    pub event_type: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// When it was stored.
    pub recorded_at: DateTime<Utc>,
    /// `topic/partition@offset`.
    pub kafka: String,
    /// Its correlation id.
    pub correlation_id: String,
    /// Its trace id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

impl From<StoredEvent> for EventAt {
    fn from(e: StoredEvent) -> Self {
        Self {
            kafka: format!(
                "{}/{}@{}",
                e.source_topic, e.source_partition, e.source_offset
            ),
            version: None,
            event_id: e.event_id,
            event_type: e.event_type,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            correlation_id: e.correlation_id,
            trace_id: e.trace_id,
        }
    }
}

impl From<&Applied> for EventAt {
    fn from(e: &Applied) -> Self {
        Self {
            kafka: format!(
                "{}/{}@{}",
                e.source_topic, e.source_partition, e.source_offset
            ),
            version: Some(e.version),
            event_id: e.event_id,
            event_type: e.event_type.clone(),
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            correlation_id: e.correlation_id.clone(),
            trace_id: e.trace_id.clone(),
        }
    }
}

fn summary(domain: Domain, body: &Value) -> String {
    match domain {
        Domain::Orders => format!(
            "{} item(s), total {} {}",
            body["totals"]["item_count"],
            body["totals"]["total"].as_str().unwrap_or("?"),
            body["currency"].as_str().unwrap_or("?")
        ),
        Domain::Users => "user stored".to_owned(),
    }
}

/// Longest one read of the database may take.
const DEADLINE: Duration = Duration::from_secs(10);

/// `read` within [`DEADLINE`], acquiring included (see
/// [`store::db::within`]): a database that never answers ends the command
/// with an error instead of a hang.
async fn bounded<T>(
    pool: &sqlx::PgPool,
    read: impl AsyncFnOnce(&mut sqlx::PgConnection) -> Result<T, sqlx::Error>,
) -> anyhow::Result<T> {
    store::db::within(
        pool,
        DEADLINE,
        anyhow::Error::from,
        || OrderError::NoAnswer(DEADLINE).into(),
        async |conn| read(conn).await.map_err(anyhow::Error::from),
    )
    .await
}

/// What the database holds of one id.
struct Read {
    found: read::Found,
    /// What became of each change of an order, or a user's events and
    /// dead letters.
    events: Events,
}

/// The events of an order or a user.
enum Events {
    Order(Timeline),
    User {
        events: Vec<StoredEvent>,
        dead_letters: Vec<Rejection>,
    },
}

/// Reads the story of `args.id`.
pub async fn story(args: &OrderArgs) -> anyhow::Result<Story> {
    let domain = if args.user {
        Domain::Users
    } else {
        Domain::Orders
    };
    let id = contract::ids::parse(domain, args.id.trim()).map_err(|rule| OrderError::BadId {
        id: args.id.clone(),
        rule: rule.to_string(),
    })?;
    let read = read_all(&args.database_url, domain, &id).await?;
    Ok(tell(
        domain,
        id,
        read,
        Utc::now(),
        Duration::from_secs(args.pending_window),
    ))
}

/// The story of `id` from what was `read` of it, at `now`.
fn tell(domain: Domain, id: String, read: Read, now: DateTime<Utc>, window: Duration) -> Story {
    let status = read::status_of(&read.found, &id, now, window);
    let assigned = id
        .parse::<uuid::Uuid>()
        .ok()
        .and_then(|u| contract::ids::assigned_at(&u));
    let record = read.found.record.as_ref();
    let life = record.and_then(|r| r.lifecycle.as_ref());
    let (events, dead_letters, truncated, decided) = match read.events {
        Events::Order(timeline) => {
            let mut events = Vec::new();
            let mut dead_letters = Vec::new();
            for e in &timeline.events {
                match e {
                    OrderEvent::Applied(a) => events.push(EventAt::from(a)),
                    OrderEvent::Refused(r) => dead_letters.push(r.clone()),
                }
            }
            (
                events,
                dead_letters,
                Some(timeline.truncated),
                Some(timeline.events),
            )
        }
        Events::User {
            events,
            dead_letters,
        } => (
            events.into_iter().map(EventAt::from).collect(),
            dead_letters,
            None,
            None,
        ),
    };
    Story {
        kind: domain.noun(),
        status: status.label(),
        reason: match status {
            Status::Unknown(why) => Some(why.code()),
            _ => None,
        },
        accepted_at: assigned,
        persisted_at: record.map(|r| r.persisted_at),
        event_id: record.map(|r| r.event_id),
        summary: record.map(|r| summary(domain, &r.body)),
        order_status: life.map(|l| l.status),
        version: life.map(|l| l.version),
        changed_at: life.and_then(|l| l.changed_at),
        events,
        dead_letters,
        truncated,
        decided,
        id,
    }
}

/// Reads what `database_url` holds of `id`, each read bounded.
async fn read_all(database_url: &str, domain: Domain, id: &str) -> anyhow::Result<Read> {
    let pool = store::db::pool(
        database_url,
        PoolSpec {
            application: "pubsubkafka-order",
            max_connections: 1,
            acquire: Duration::from_secs(5),
            guards: SessionGuards::for_statements(DEADLINE).read_only(),
        },
    )
    .context("DATABASE_URL is not a PostgreSQL URL")?;
    let reading = || {
        format!(
            "reading {} (is the database up, and migrated by the consumer?)",
            crate::dev::redact(database_url)
        )
    };
    let found = bounded(&pool, async |conn| read::find(conn, domain, id).await)
        .await
        .with_context(reading)?;
    let events = match domain {
        Domain::Orders => Events::Order(
            bounded(&pool, async |conn| {
                read::order_events(conn, id, LIMIT).await
            })
            .await
            .with_context(reading)?,
        ),
        Domain::Users => Events::User {
            events: bounded(&pool, async |conn| {
                read::events(conn, domain, id, LIMIT).await
            })
            .await
            .with_context(reading)?,
            dead_letters: bounded(&pool, async |conn| {
                store::rejections::of(conn, domain, id, LIMIT).await
            })
            .await
            .with_context(reading)?,
        },
    };
    pool.close().await;
    Ok(Read { found, events })
}

/// The story for a terminal.
pub fn print(out: &mut impl std::io::Write, story: &Story) -> std::io::Result<()> {
    write!(out, "{} {}: {}", story.kind, story.id, story.status)?;
    if let (Some(at), Some(event)) = (story.persisted_at, story.event_id) {
        write!(out, " at {} from event {event}", at.to_rfc3339())?;
    }
    if let Some(reason) = story.reason {
        write!(out, " ({reason})")?;
    }
    writeln!(out)?;
    if let Some(at) = story.accepted_at {
        writeln!(out, "  accepted at {} (its id says)", at.to_rfc3339())?;
    }
    if let Some(summary) = &story.summary {
        writeln!(out, "  {summary}")?;
    }
    if let (Some(status), Some(version)) = (story.order_status, story.version) {
        write!(out, "  status {status}, version {version}")?;
        if let Some(at) = story.changed_at {
            write!(out, ", changed at {}", at.to_rfc3339())?;
        }
        writeln!(out)?;
    }
    if let Some(decided) = &story.decided {
        // An order: each change and what became of it, in the order the
        // consumer decided them.
        writeln!(out, "events ({}):", decided.len())?;
        for e in decided {
            match e {
                OrderEvent::Applied(a) => applied_line(out, &EventAt::from(a))?,
                OrderEvent::Refused(r) => refused_line(out, r)?,
            }
        }
        if story.truncated == Some(true) {
            writeln!(
                out,
                "  (more than {LIMIT} of one outcome: the oldest refused ones left out)"
            )?;
        }
        return Ok(());
    }
    writeln!(out, "events ({}):", story.events.len())?;
    for e in &story.events {
        applied_line(out, e)?;
    }
    writeln!(out, "dead letters ({}):", story.dead_letters.len())?;
    for d in &story.dead_letters {
        refused_line(out, d)?;
    }
    Ok(())
}

/// One event stored (of an order: the version it made).
fn applied_line(out: &mut impl std::io::Write, e: &EventAt) -> std::io::Result<()> {
    write!(out, "  {}  ", e.recorded_at.to_rfc3339())?;
    if let Some(version) = e.version {
        write!(out, "v{version} applied  ")?;
    }
    writeln!(
        out,
        "{}  {}  read at {}  correlation {}",
        e.event_type, e.event_id, e.kafka, e.correlation_id
    )
}

/// One dead letter (of an order: a refused change, with its event type
/// when it could be read); its class, never its content.
fn refused_line(out: &mut impl std::io::Write, d: &Rejection) -> std::io::Result<()> {
    let at = match (d.dlq_partition, d.dlq_offset) {
        (Some(p), Some(o)) => format!("{}/{p}@{o}", d.dlq_topic),
        _ => format!("{} (refused, passed over)", d.dlq_topic),
    };
    write!(out, "  {}  ", d.rejected_at.to_rfc3339())?;
    if let Some(event_type) = &d.event_type {
        write!(out, "refused {event_type}  ")?;
    }
    if let Some(event_id) = d.event_id {
        write!(out, "{event_id}  ")?;
    }
    writeln!(
        out,
        "{} {}  read at {}/{}@{}  dead letter {at}  group {}",
        d.error_kind,
        d.error_class,
        d.source_topic,
        d.source_partition,
        d.source_offset,
        d.consumer_group
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use contract::dead_letter::{ErrorKind, FailureClass};
    use contract::lifecycle::HistoryEntry;
    use serde_json::json;
    use store::read::{Found, Lifecycle, Record};
    use uuid::Uuid;

    fn applied(version: u32, event_type: &str, minute: i64, offset: i64) -> Applied {
        let at = DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute);
        Applied {
            version,
            event_id: Uuid::new_v4(),
            event_type: event_type.into(),
            occurred_at: at,
            recorded_at: at,
            correlation_id: format!("corr-{version}"),
            trace_id: None,
            source_topic: "orders".into(),
            source_partition: 1,
            source_offset: offset,
        }
    }

    fn refused(event_type: &str, class: FailureClass, minute: i64, offset: i64) -> Rejection {
        Rejection {
            event_id: Some(Uuid::new_v4()),
            event_type: Some(event_type.into()),
            error_kind: ErrorKind::Permanent,
            error_class: class,
            rejected_at: DateTime::<Utc>::UNIX_EPOCH + chrono::Duration::minutes(minute),
            consumer_group: "order-consumer".into(),
            source_topic: "orders".into(),
            source_partition: 1,
            source_offset: offset,
            dlq_topic: "orders-dlq".into(),
            dlq_partition: Some(1),
            dlq_offset: Some(offset + 100),
        }
    }

    /// An order paid and shipped, with a cancellation refused between: its
    /// status and version, each applied event with its version, the
    /// refused one with its class, in JSON and, in the order decided, on
    /// the terminal.
    #[test]
    fn an_order_tells_its_status_version_and_each_changes_outcome() {
        let order_id = Uuid::new_v4();
        let steps = [
            applied(1, "order.created", 0, 10),
            applied(2, "order.paid", 1, 11),
            applied(3, "order.shipped", 3, 13),
        ];
        let cancel = refused("order.cancelled", FailureClass::InvalidTransition, 2, 12);
        let changed_at = steps[2].occurred_at;
        let history = steps
            .iter()
            .map(|a| HistoryEntry {
                version: a.version,
                status: OrderStatus::of_event_type(&a.event_type).unwrap_or(OrderStatus::Created),
                event_id: a.event_id,
                event_type: a.event_type.clone(),
                occurred_at: a.occurred_at,
            })
            .collect();
        let found = Found {
            record: Some(Record {
                event_id: steps[0].event_id,
                persisted_at: steps[0].recorded_at,
                body: json!({"totals": {"item_count": 2, "total": "39.98"}, "currency": "EUR"}),
                fingerprint: None,
                lifecycle: Some(Lifecycle {
                    status: OrderStatus::Shipped,
                    version: 3,
                    changed_at: Some(changed_at),
                    history,
                }),
            }),
            rejection: Some(cancel.clone()),
        };
        let timeline = Timeline {
            events: vec![
                OrderEvent::Applied(steps[0].clone()),
                OrderEvent::Applied(steps[1].clone()),
                OrderEvent::Refused(cancel.clone()),
                OrderEvent::Applied(steps[2].clone()),
            ],
            truncated: false,
        };
        let story = tell(
            Domain::Orders,
            order_id.to_string(),
            Read {
                found,
                events: Events::Order(timeline),
            },
            Utc::now(),
            Duration::from_secs(300),
        );

        let json = serde_json::to_value(&story).expect("json");
        assert_eq!(json["status"], "persisted");
        assert_eq!(json["order_status"], "shipped");
        assert_eq!(json["version"], 3);
        assert_eq!(json["truncated"], false);
        let versions: Vec<_> = json["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| e["version"].as_u64())
            .collect();
        assert_eq!(versions, [Some(1), Some(2), Some(3)]);
        assert_eq!(json["dead_letters"][0]["error_class"], "invalid_transition");
        assert_eq!(json["dead_letters"][0]["event_type"], "order.cancelled");
        assert!(json.get("decided").is_none(), "{json}");

        let mut out = Vec::new();
        print(&mut out, &story).expect("printed");
        let text = String::from_utf8(out).expect("text");
        assert!(
            text.contains(&format!(
                "status shipped, version 3, changed at {}",
                changed_at.to_rfc3339()
            )),
            "{text}"
        );
        let lines: Vec<_> = text.lines().collect();
        let listed = lines
            .iter()
            .position(|l| *l == "events (4):")
            .unwrap_or_else(|| panic!("no events heading: {text}"));
        let expected = [
            format!(
                "v1 applied  order.created  {}  read at orders/1@10",
                steps[0].event_id
            ),
            format!(
                "v2 applied  order.paid  {}  read at orders/1@11",
                steps[1].event_id
            ),
            format!(
                "refused order.cancelled  {}  permanent invalid_transition  read at orders/1@12  \
                 dead letter orders-dlq/1@112",
                cancel.event_id.unwrap_or_default()
            ),
            format!(
                "v3 applied  order.shipped  {}  read at orders/1@13",
                steps[2].event_id
            ),
        ];
        for (line, want) in lines[listed + 1..].iter().zip(&expected) {
            assert!(
                line.contains(want.as_str()),
                "{line:?} should say {want:?}:\n{text}"
            );
        }
        assert_eq!(lines.len(), listed + 1 + expected.len(), "{text}");
    }

    /// A user's story keeps its two lists, without an order's fields.
    #[test]
    fn a_user_tells_its_events_and_dead_letters_apart() {
        let dead = refused("user.created", FailureClass::Validation, 0, 1);
        let story = tell(
            Domain::Users,
            "u-42".into(),
            Read {
                found: Found {
                    record: None,
                    rejection: Some(dead.clone()),
                },
                events: Events::User {
                    events: Vec::new(),
                    dead_letters: vec![dead],
                },
            },
            Utc::now(),
            Duration::from_secs(300),
        );
        let json = serde_json::to_value(&story).expect("json");
        assert_eq!(json["status"], "rejected");
        for field in ["order_status", "version", "truncated"] {
            assert!(json.get(field).is_none(), "{field}: {json}");
        }
        let mut out = Vec::new();
        print(&mut out, &story).expect("printed");
        let text = String::from_utf8(out).expect("text");
        assert!(text.contains("events (0):\ndead letters (1):\n"), "{text}");
    }
}
