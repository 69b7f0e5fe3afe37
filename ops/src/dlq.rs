//! `pubsubkafka dlq list | inspect | replay`: what operators run on a bad
//! day. `replay` republishes chosen dead letters to their original topic,
//! under its own consumer group, committing each one only once the broker
//! acknowledged the copy: an interrupted replay resumes where it stopped.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use contract::headers as h;
use contract::topics::Domains;
use platform::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::dead_letters::{decode_payload, DeadLetter, DlqError, Filter, Snapshot};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Most replayed dead letters a summary names (it counts them all).
const MAX_LISTED: usize = 1000;

/// Options every `dlq` command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// The dead-letter topic.
    #[arg(long, default_value = contract::topics::ORDERS_DLQ)]
    pub topic: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn reader_config(kafka: &KafkaSettings, group: &str) -> ClientConfig {
    kafka.client_config(&[
        ("group.id", group),
        ("client.id", "pubsubkafka-dlq"),
        ("enable.auto.commit", "false"),
        ("enable.partition.eof", "false"),
    ])
}

/// Summary of a `list`.
#[derive(Debug, Serialize)]
pub struct Listing {
    topic: String,
    total: usize,
    selected: usize,
    /// `class (kind)` -> count, over the selected dead letters.
    by_class: BTreeMap<String, usize>,
    dead_letters: Vec<DeadLetter>,
}

/// `dlq list`: the dead letters of a topic, grouped and counted by class.
pub fn list(
    kafka: &KafkaSettings,
    source: &Source,
    filter: &Filter,
    limit: usize,
) -> Result<Listing, DlqError> {
    filter.validate()?;
    let messages = Snapshot::open(
        &reader_config(kafka, "pubsubkafka-dlq-list"),
        &source.topic,
        None,
        TIMEOUT,
    )?;
    let mut listing = Listing {
        topic: source.topic.clone(),
        total: 0,
        selected: 0,
        by_class: BTreeMap::new(),
        dead_letters: Vec::new(),
    };
    for message in messages {
        listing.total += 1;
        let letter = DeadLetter::of(&message?);
        if !filter.matches(&letter) {
            continue;
        }
        listing.selected += 1;
        let class = format!(
            "{} ({})",
            letter.error_class.as_deref().unwrap_or("?"),
            letter.error_kind.as_deref().unwrap_or("?")
        );
        *listing.by_class.entry(class).or_default() += 1;
        if listing.dead_letters.len() < limit {
            listing.dead_letters.push(letter);
        }
    }
    Ok(listing)
}

/// Prints a listing for people.
pub fn print_listing(listing: &Listing) {
    println!(
        "{}: {} dead letters, {} selected",
        listing.topic, listing.total, listing.selected
    );
    if !listing.by_class.is_empty() {
        println!("\nby error class:");
        for (class, n) in &listing.by_class {
            println!("  {class:<44} {n:>7}");
        }
        println!(
            "\n{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  message",
            "part/offset", "original", "key", "kind", "class", "retries", "replays", "failed at"
        );
    }
    for l in &listing.dead_letters {
        let original = format!(
            "{}/{}/{}",
            l.original_topic.as_deref().unwrap_or("?"),
            l.original_partition.map_or("?".into(), |p| p.to_string()),
            l.original_offset.map_or("?".into(), |o| o.to_string())
        );
        let message: String = l
            .error_message
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(80)
            .collect();
        println!(
            "{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  {}",
            format!("{}/{}", l.partition, l.offset),
            original,
            l.key.as_deref().unwrap_or("-"),
            l.error_kind.as_deref().unwrap_or("?"),
            l.error_class.as_deref().unwrap_or("?"),
            l.retry_count.map_or("?".into(), |r| r.to_string()),
            l.replay_count,
            l.failed_at
                .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            message
        );
    }
    if listing.dead_letters.len() < listing.selected {
        println!(
            "… {} more (raise --limit)",
            listing.selected - listing.dead_letters.len()
        );
    }
}

/// `dlq inspect`: one dead letter in full, its payload decoded if possible.
pub fn inspect(
    kafka: &KafkaSettings,
    domains: &Domains,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<serde_json::Value, DlqError> {
    let consumer: BaseConsumer = reader_config(kafka, "pubsubkafka-dlq-inspect").create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    consumer.assign(&assignment)?;
    let started = Instant::now();
    while started.elapsed() < TIMEOUT {
        if let Some(result) = consumer.poll(Duration::from_millis(200)) {
            let m = result?.detach();
            if m.offset() != offset {
                break;
            }
            let payload = match decode_payload(&m, domains) {
                Ok(event) => serde_json::json!({"decoded": event}),
                Err(reason) => serde_json::json!({
                    "undecodable": reason.to_string(),
                    "bytes": m.payload().map_or(0, <[u8]>::len),
                    "text": m.payload().map(|p| String::from_utf8_lossy(p).into_owned()),
                }),
            };
            return Ok(serde_json::json!({"dead_letter": DeadLetter::of(&m), "payload": payload}));
        }
    }
    Err(DlqError::NotFound(format!(
        "no message at {topic} partition {partition} offset {offset}"
    )))
}

/// Which topic carries which domain: `ORDERS_TOPIC` and `USERS_TOPIC`, as
/// the services read them, so a dead letter without `event-type` is read as
/// the consumer read it.
pub fn domains(env: &platform::Env) -> Domains {
    let defaults = Domains::default();
    Domains {
        orders: env.string("ORDERS_TOPIC", &defaults.orders),
        users: env.string("USERS_TOPIC", &defaults.users),
    }
}

/// Options of `dlq replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Show what would be replayed; publish and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most messages republished per second.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// A dead letter already replayed this many times is parked: reported,
    /// passed over, never republished again.
    #[arg(long, default_value_t = 3)]
    pub max_replays: u32,
    /// Consumer group that remembers how far replays got. Use a new one per
    /// campaign when filters differ: messages a filter passes over are
    /// passed over for good by that group.
    #[arg(long, env = "DLQ_REPLAY_GROUP", default_value = "dlq-replay")]
    pub group: String,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
    /// Dead letters read (from the group's position to the high watermark).
    pub read: usize,
    /// Republished and acknowledged (or would be, in a dry run).
    pub replayed: usize,
    /// Passed over: replayed too often already.
    pub parked: usize,
    /// Passed over: not selected by the filter.
    pub skipped: usize,
    /// Could not be republished; left for the next run.
    pub failed: usize,
    /// Left for the next run after an interruption or a failure earlier in
    /// their partition.
    pub deferred: usize,
    /// Whether nothing was published or committed.
    pub dry_run: bool,
    /// The first replayed dead letters (at most 1000):
    /// `partition/offset -> original topic`.
    pub replayed_from: Vec<String>,
    /// Each failure, with its reason.
    pub failures: Vec<String>,
}

fn replay_headers(message: &OwnedMessage, count: u32) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for x in original.iter().filter(|x| !x.key.starts_with("dlq-")) {
            headers = headers.insert(Header {
                key: x.key,
                value: x.value,
            });
        }
    }
    let count = count.to_string();
    headers.insert(Header {
        key: h::DLQ_REPLAY_COUNT,
        value: Some(count.as_str()),
    })
}

/// Where the group stopped last time, per partition.
fn committed(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, DlqError> {
    let marks = crate::dead_letters::watermarks(consumer, topic, TIMEOUT)?;
    let mut tpl = TopicPartitionList::new();
    for (partition, _, _) in &marks {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

fn commit(consumer: &BaseConsumer, topic: &str, partition: i32, next: i64) -> Result<(), DlqError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    consumer.commit(&tpl, CommitMode::Sync)?;
    Ok(())
}

/// `dlq replay`.
pub async fn replay(
    kafka: &KafkaSettings,
    source: &Source,
    filter: &Filter,
    args: &ReplayArgs,
    stop: &CancellationToken,
) -> Result<ReplaySummary, DlqError> {
    filter.validate()?;
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(DlqError::BadArgument(
            "--rate must be greater than 0".into(),
        ));
    }
    let config = reader_config(kafka, &args.group);
    let consumer: BaseConsumer = config.create()?;
    let start = committed(&consumer, &source.topic)?;
    let messages = Snapshot::open(&config, &source.topic, Some(&start), TIMEOUT)?;
    let producer: FutureProducer = kafka
        .client_config(&[
            ("client.id", "pubsubkafka-dlq-replay"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
        ])
        .create()?;
    let mut summary = ReplaySummary {
        dry_run: args.dry_run,
        ..ReplaySummary::default()
    };
    let pace = Duration::from_secs_f64(1.0 / args.rate);
    let mut blocked: std::collections::HashSet<i32> = Default::default();
    let mut last_progress = Instant::now();
    for m in messages {
        let m = &m?;
        summary.read += 1;
        if stop.is_cancelled() || blocked.contains(&m.partition()) {
            summary.deferred += 1;
            continue;
        }
        let letter = DeadLetter::of(m);
        let done = if !filter.matches(&letter) {
            summary.skipped += 1;
            true
        } else if letter.replay_count >= args.max_replays {
            summary.parked += 1;
            eprintln!(
                "parked {}/{} (key {}): replayed {} times already",
                m.partition(),
                m.offset(),
                letter.key.as_deref().unwrap_or("-"),
                letter.replay_count
            );
            true
        } else {
            let Some(target) = letter.original_topic.clone() else {
                summary.failed += 1;
                summary.failures.push(format!(
                    "{}/{}: no dlq-original-topic header",
                    m.partition(),
                    m.offset()
                ));
                blocked.insert(m.partition());
                continue;
            };
            if !args.dry_run {
                let paced = Instant::now();
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&target).headers(replay_headers(m, letter.replay_count + 1));
                if let Some(key) = m.key() {
                    record = record.key(key);
                }
                if let Some(payload) = m.payload() {
                    record = record.payload(payload);
                }
                if let Err((e, _)) = producer.send(record, TIMEOUT).await {
                    summary.failed += 1;
                    summary
                        .failures
                        .push(format!("{}/{}: {e}", m.partition(), m.offset()));
                    blocked.insert(m.partition());
                    continue;
                }
                tokio::time::sleep(pace.saturating_sub(paced.elapsed())).await;
            }
            summary.replayed += 1;
            if summary.replayed_from.len() < MAX_LISTED {
                summary
                    .replayed_from
                    .push(format!("{}/{} -> {target}", m.partition(), m.offset()));
            }
            true
        };
        if done && !args.dry_run {
            if let Err(e) = commit(&consumer, &source.topic, m.partition(), m.offset() + 1) {
                summary.failed += 1;
                summary.failures.push(format!(
                    "{}/{}: commit failed: {e}",
                    m.partition(),
                    m.offset()
                ));
                blocked.insert(m.partition());
            }
        }
        if last_progress.elapsed() > Duration::from_secs(2) {
            eprintln!(
                "progress: {} read, {} replayed, {} parked, {} skipped, {} failed",
                summary.read, summary.replayed, summary.parked, summary.skipped, summary.failed
            );
            last_progress = Instant::now();
        }
    }
    Ok(summary)
}
