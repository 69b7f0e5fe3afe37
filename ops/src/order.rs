//! `pubsubkafka order <id>`: what became of one order (or, with `--user`,
//! one user), for an operator: the read side's answer, every event of it in
//! the event store with where it was read in Kafka, and every time a
//! message about it was dead-lettered with where its dead letter sits. No
//! customer data: ids, counts, totals.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use contract::Domain;
use serde::Serialize;
use serde_json::Value;
use store::db::{PoolSpec, SessionGuards};
use store::read::{self, Status, StoredEvent};
use store::rejections::Rejection;

/// Most events and dead letters listed.
const LIMIT: i64 = 1_000;

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
    /// Its events in the event store, with where each was read.
    pub events: Vec<EventAt>,
    /// Every dead letter of it.
    pub dead_letters: Vec<Rejection>,
}

/// One event and where it sits in Kafka.
#[derive(Debug, Serialize)]
pub struct EventAt {
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
            event_id: e.event_id,
            event_type: e.event_type,
            occurred_at: e.occurred_at,
            recorded_at: e.recorded_at,
            correlation_id: e.correlation_id,
            trace_id: e.trace_id,
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
        || anyhow::anyhow!("no answer from the database within {DEADLINE:?}"),
        async |conn| read(conn).await.map_err(anyhow::Error::from),
    )
    .await
}

/// What the database holds of one id.
struct Read {
    found: read::Found,
    events: Vec<StoredEvent>,
    dead_letters: Vec<Rejection>,
}

/// Reads the story of `args.id`.
pub async fn story(args: &OrderArgs) -> anyhow::Result<Story> {
    let domain = if args.user {
        Domain::Users
    } else {
        Domain::Orders
    };
    let id = contract::ids::parse(domain, args.id.trim())
        .map_err(|rule| anyhow::anyhow!("{:?} is not an id: {rule}", args.id))?;
    let read = read_all(&args.database_url, domain, &id).await?;
    let status = read::status_of(
        &read.found,
        &id,
        Utc::now(),
        Duration::from_secs(args.pending_window),
    );
    let assigned = id
        .parse::<uuid::Uuid>()
        .ok()
        .and_then(|u| contract::ids::assigned_at(&u));
    let record = read.found.record.as_ref();
    Ok(Story {
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
        events: read.events.into_iter().map(EventAt::from).collect(),
        dead_letters: read.dead_letters,
        id,
    })
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
    let events = bounded(&pool, async |conn| {
        read::events(conn, domain, id, LIMIT).await
    })
    .await
    .with_context(reading)?;
    let dead_letters = bounded(&pool, async |conn| {
        store::rejections::of(conn, domain, id, LIMIT).await
    })
    .await
    .with_context(reading)?;
    pool.close().await;
    Ok(Read {
        found,
        events,
        dead_letters,
    })
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
    writeln!(out, "events ({}):", story.events.len())?;
    for e in &story.events {
        writeln!(
            out,
            "  {}  {}  {}  read at {}  correlation {}",
            e.recorded_at.to_rfc3339(),
            e.event_type,
            e.event_id,
            e.kafka,
            e.correlation_id
        )?;
    }
    writeln!(out, "dead letters ({}):", story.dead_letters.len())?;
    for d in &story.dead_letters {
        let at = match (d.dlq_partition, d.dlq_offset) {
            (Some(p), Some(o)) => format!("{}/{p}@{o}", d.dlq_topic),
            _ => format!("{} (refused, passed over)", d.dlq_topic),
        };
        writeln!(
            out,
            "  {}  {} {}  read at {}/{}@{}  dead letter {at}  group {}",
            d.rejected_at.to_rfc3339(),
            d.error_kind,
            d.error_class,
            d.source_topic,
            d.source_partition,
            d.source_offset,
            d.consumer_group
        )?;
    }
    Ok(())
}
