//! `dlq replay`: republishes the selected dead letters of a DLQ to the
//! topic it belongs to, under a [`ReplayLock`], committing each dead letter
//! once it is settled (republished and acknowledged, parked or passed
//! over), so that an interrupted replay resumes where it stopped.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use contract::topics::Domains;
use platform::kafka::KafkaSettings;
use platform::kafka::ObservedContext;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::progress::Observer;
use super::{reader_config, ReplayLock, Source, DEFAULT_REPLAY_GROUP, TIMEOUT};
use crate::dead_letters::{DeadLetter, DlqError, Filter, Snapshot};

/// Most replayed dead letters a summary names (it counts them all).
const MAX_LISTED: usize = 1000;

/// Most messages a replay republishes per second unless told otherwise.
pub const DEFAULT_RATE: f64 = 100.0;
/// Replays after which a dead letter is parked unless told otherwise.
pub const DEFAULT_MAX_REPLAYS: u32 = 3;

/// Options of `dlq replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Show what would be replayed; publish and commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most messages republished per second.
    #[arg(long, default_value_t = DEFAULT_RATE)]
    pub rate: f64,
    /// A dead letter already replayed this many times is parked: reported,
    /// passed over, never republished again.
    #[arg(long, default_value_t = DEFAULT_MAX_REPLAYS)]
    pub max_replays: u32,
    /// Consumer group that remembers how far replays got. Use a new one per
    /// campaign when filters differ: messages a filter passes over are
    /// passed over for good by that group.
    #[arg(long, env = "DLQ_REPLAY_GROUP", default_value = DEFAULT_REPLAY_GROUP)]
    pub group: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplaySummary {
    /// Dead letters the replay reads at most: the offsets between the
    /// group's position and the high watermarks when it started.
    pub expected: u64,
    /// Dead letters read (from the group's position to the high watermark).
    pub read: usize,
    /// Republished and acknowledged (or would be, in a dry run).
    pub replayed: usize,
    /// Passed over for good and reported: replayed too often already, or
    /// naming another original topic than the one this DLQ belongs to.
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
    /// The first parked dead letters (at most 1000), with why:
    /// `partition/offset: reason`.
    pub parked_letters: Vec<String>,
    /// Where the replay publishes: the topic this DLQ belongs to, by
    /// configuration (`ORDERS_TOPIC`, `USERS_TOPIC`).
    pub destination: String,
}

/// The headers of a replayed copy (see [`contract::dead_letter::replay_headers`]).
fn replay_headers(message: &OwnedMessage, count: u32) -> OwnedHeaders {
    let original: Vec<(&str, Option<&[u8]>)> = message
        .headers()
        .iter()
        .flat_map(|hs| hs.iter())
        .map(|x| (x.key, x.value))
        .collect();
    contract::dead_letter::replay_headers(&original, count)
        .iter()
        .fold(OwnedHeaders::new(), |headers, (key, value)| {
            headers.insert(Header {
                key,
                value: value.as_deref(),
            })
        })
}

/// Where a replay of `dlq` publishes: the configured topic whose DLQ it
/// is. Never a dead letter's own `dlq-original-topic`, which whoever may
/// write to the DLQ chooses.
pub fn destination<'a>(domains: &'a Domains, dlq: &str) -> Result<&'a str, DlqError> {
    domains.dead_lettered_by(dlq).ok_or_else(|| {
        DlqError::BadArgument(format!(
            "{dlq:?} is not the dead-letter topic of a configured topic: a replay publishes to the \
             topic a DLQ belongs to, {:?} (ORDERS_TOPIC) or {:?} (USERS_TOPIC)",
            contract::topics::dlq_of(&domains.orders),
            contract::topics::dlq_of(&domains.users)
        ))
    })
}

/// Why `letter`, selected for a replay to `destination`, must not be
/// published, if it must not.
fn parking_reason(letter: &DeadLetter, destination: &str, max_replays: u32) -> Option<String> {
    if letter.replay_count >= max_replays {
        return Some(format!("replayed {} times already", letter.replay_count));
    }
    match letter.original_topic.as_deref() {
        Some(topic) if topic == destination => None,
        Some(topic) => Some(format!(
            "its dlq-original-topic {topic:?} is not {destination}, the topic this DLQ belongs to"
        )),
        None => Some(format!(
            "no dlq-original-topic header (not written by the consumer of {destination})"
        )),
    }
}

/// A replay's arguments checked before any call to Kafka; its destination.
pub fn check(
    domains: &Domains,
    source: &Source,
    filter: &Filter,
    args: &ReplayArgs,
) -> Result<String, DlqError> {
    filter.validate()?;
    let target = destination(domains, &source.topic)?.to_owned();
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(DlqError::BadArgument(
            "--rate must be greater than 0".into(),
        ));
    }
    Ok(target)
}

/// `dlq replay`: republishes the selected dead letters of `source` to the
/// topic it is the DLQ of (`domains`), telling `observer` how it goes.
///
/// Its Kafka calls block between its awaits: run it on a thread of its own
/// (`spawn_blocking`) where other tasks share the runtime.
pub async fn replay(
    kafka: &KafkaSettings,
    domains: &Domains,
    source: &Source,
    filter: &Filter,
    args: &ReplayArgs,
    stop: &CancellationToken,
    observer: &mut dyn Observer,
) -> Result<ReplaySummary, DlqError> {
    let target = check(domains, source, filter, args)?;
    let config = reader_config(kafka, &args.group);
    let lock = ReplayLock::acquire(&config, &source.topic, &args.group)?;
    let messages = Snapshot::open(&config, &source.topic, Some(&lock.committed()?), TIMEOUT)?;
    let mut run = Run::new(kafka, lock, filter, args, target)?;
    run.summary.expected = messages.expected();
    for m in messages {
        let m = &m?;
        run.lock.keep_alive();
        if run.settle(m, stop).await {
            observer.report(&run.summary, false);
        }
    }
    observer.report(&run.summary, true);
    Ok(run.summary)
}

/// What becomes of a dead letter read by a replay.
enum Plan {
    /// Not selected by the filter: passed over.
    Skip,
    /// Selected but never to be published, for this reason.
    Park(String),
    /// Published again to the destination.
    Republish,
}

/// A replay under way: its lock, its publisher and what it did so far.
struct Run<'a> {
    lock: ReplayLock,
    producer: FutureProducer<ObservedContext>,
    filter: &'a Filter,
    args: &'a ReplayArgs,
    target: String,
    pace: Duration,
    /// Partitions where a dead letter failed: the rest of each is deferred,
    /// so that a commit never passes over a failure.
    blocked: HashSet<i32>,
    summary: ReplaySummary,
}

impl<'a> Run<'a> {
    fn new(
        kafka: &KafkaSettings,
        lock: ReplayLock,
        filter: &'a Filter,
        args: &'a ReplayArgs,
        target: String,
    ) -> Result<Self, DlqError> {
        let producer: FutureProducer<ObservedContext> = kafka
            .client_config(&[
                ("client.id", "pubsubkafka-dlq-replay"),
                ("enable.idempotence", "true"),
                ("acks", "all"),
            ])
            .create_with_context(crate::kafka::observed())?;
        Ok(Self {
            lock,
            producer,
            filter,
            args,
            pace: Duration::from_secs_f64(1.0 / args.rate),
            blocked: HashSet::new(),
            summary: ReplaySummary {
                dry_run: args.dry_run,
                destination: target.clone(),
                ..ReplaySummary::default()
            },
            target,
        })
    }

    /// Plans, republishes and commits `m`; false when it is left for the
    /// next run (an interruption, or a failure in its partition).
    async fn settle(&mut self, m: &OwnedMessage, stop: &CancellationToken) -> bool {
        self.summary.read += 1;
        if stop.is_cancelled() || self.blocked.contains(&m.partition()) {
            self.summary.deferred += 1;
            return false;
        }
        let letter = DeadLetter::of(m);
        match self.plan(&letter) {
            Plan::Skip => self.summary.skipped += 1,
            Plan::Park(reason) => self.park(m, &reason),
            Plan::Republish => {
                if !self.republish(m, &letter).await {
                    return false;
                }
            }
        }
        if !self.args.dry_run {
            self.commit(m);
        }
        true
    }

    fn plan(&self, letter: &DeadLetter) -> Plan {
        if !self.filter.matches(letter) {
            Plan::Skip
        } else if let Some(reason) = parking_reason(letter, &self.target, self.args.max_replays) {
            Plan::Park(reason)
        } else {
            Plan::Republish
        }
    }

    fn park(&mut self, m: &OwnedMessage, reason: &str) {
        self.summary.parked += 1;
        if self.summary.parked_letters.len() < MAX_LISTED {
            self.summary
                .parked_letters
                .push(format!("{}/{}: {reason}", m.partition(), m.offset()));
        }
    }

    /// Publishes a copy of `m` (not in a dry run) at the replay's pace;
    /// false when the broker did not acknowledge it.
    async fn republish(&mut self, m: &OwnedMessage, letter: &DeadLetter) -> bool {
        if !self.args.dry_run {
            let paced = Instant::now();
            let mut record: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(&self.target).headers(replay_headers(m, letter.replay_count + 1));
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            if let Some(payload) = m.payload() {
                record = record.payload(payload);
            }
            if let Err((e, _)) = self.producer.send(record, TIMEOUT).await {
                self.fail(m, &e.to_string());
                return false;
            }
            tokio::time::sleep(self.pace.saturating_sub(paced.elapsed())).await;
        }
        self.summary.replayed += 1;
        if self.summary.replayed_from.len() < MAX_LISTED {
            self.summary.replayed_from.push(format!(
                "{}/{} -> {}",
                m.partition(),
                m.offset(),
                self.target
            ));
        }
        true
    }

    /// Commits past `m`, which is settled.
    fn commit(&mut self, m: &OwnedMessage) {
        if let Err(e) = self.lock.commit(m.partition(), m.offset() + 1) {
            self.fail(m, &format!("commit failed: {e}"));
        }
    }

    /// Counts a failure of `m` and defers the rest of its partition.
    fn fail(&mut self, m: &OwnedMessage, reason: &str) {
        self.summary.failed += 1;
        self.summary
            .failures
            .push(format!("{}/{}: {reason}", m.partition(), m.offset()));
        self.blocked.insert(m.partition());
    }
}
