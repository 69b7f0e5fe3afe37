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
    kafka.reader_config("pubsubkafka-dlq", group)
}

/// The replay job's consumer group unless told otherwise.
pub const DEFAULT_REPLAY_GROUP: &str = "dlq-replay";

/// The group `dlq list` and `dlq inspect` read as. They never join it or
/// commit to it, but librdkafka looks up its coordinator, and a broker
/// enforcing ACLs refuses that unless the principal may describe the group:
/// so it is the replay job's group, which the replay principal has rights on.
#[derive(Debug, Clone, clap::Args)]
pub struct ReaderGroup {
    /// Consumer group to read as (nothing is committed to it).
    #[arg(long = "reader-group", env = "DLQ_REPLAY_GROUP", default_value = DEFAULT_REPLAY_GROUP)]
    pub name: String,
}

/// Summary of a `list`.
#[derive(Debug, Serialize)]
pub struct Listing {
    topic: String,
    total: usize,
    selected: usize,
    /// With `--group`: the group, and how many selected dead letters it has
    /// yet to reach.
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending: Option<usize>,
    /// `class (kind)` -> count, over the selected dead letters.
    by_class: Tally,
    /// The first failure's class -> count (a message that failed again
    /// after a replay counts under its first cause).
    by_first_class: Tally,
    /// Error fingerprint -> count.
    by_fingerprint: Tally,
    /// Selected dead letters of messages that had been replayed (they carry
    /// their first failure).
    failed_again: usize,
    dead_letters: Vec<DeadLetter>,
}

/// Most distinct keys a listing counts under one heading; the rest count
/// under [`Tally::OTHER`], so that however many distinct causes a DLQ
/// holds (texts quoting field names any client chose), a listing's memory
/// stays bounded.
const MAX_TALLIED: usize = 1000;

/// Counts by key, at most [`MAX_TALLIED`] keys.
#[derive(Debug, Default, Serialize)]
#[serde(transparent)]
struct Tally(BTreeMap<String, usize>);

impl Tally {
    /// Where the keys past the limit are counted.
    const OTHER: &'static str = "(other)";

    fn count(&mut self, key: &str) {
        if let Some(n) = self.0.get_mut(key) {
            *n += 1;
            return;
        }
        let key = if self.0.len() < MAX_TALLIED {
            key
        } else {
            Self::OTHER
        };
        *self.0.entry(key.to_owned()).or_default() += 1;
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (&String, &usize)> {
        self.0.iter()
    }
}

/// `dlq list`: the dead letters of a topic, grouped and counted by class,
/// by first cause and by fingerprint; with `group`, each marked pending or
/// not for that replay group.
pub fn list(
    kafka: &KafkaSettings,
    source: &Source,
    filter: &Filter,
    limit: usize,
    group: Option<&str>,
    reader: &ReaderGroup,
) -> Result<Listing, DlqError> {
    filter.validate()?;
    let reached = match group {
        Some(group) => {
            let consumer: BaseConsumer = reader_config(kafka, group).create()?;
            Some(committed(&consumer, &source.topic)?)
        }
        None => None,
    };
    let messages = Snapshot::open(
        &reader_config(kafka, &reader.name),
        &source.topic,
        None,
        TIMEOUT,
    )?;
    let mut listing = Listing {
        topic: source.topic.clone(),
        total: 0,
        selected: 0,
        group: group.map(str::to_owned),
        pending: reached.as_ref().map(|_| 0),
        by_class: Tally::default(),
        by_first_class: Tally::default(),
        by_fingerprint: Tally::default(),
        failed_again: 0,
        dead_letters: Vec::new(),
    };
    for message in messages {
        listing.total += 1;
        let mut letter = DeadLetter::of(&message?);
        if !filter.matches(&letter) {
            continue;
        }
        listing.selected += 1;
        if let Some(reached) = &reached {
            let pending = reached
                .get(&letter.partition)
                .is_none_or(|&next| letter.offset >= next);
            letter.pending = Some(pending);
            if let (true, Some(n)) = (pending, listing.pending.as_mut()) {
                *n += 1;
            }
        }
        let class = format!(
            "{} ({})",
            letter.error_class.as_deref().unwrap_or("?"),
            letter.error_kind.as_deref().unwrap_or("?")
        );
        listing.by_class.count(&class);
        listing.failed_again += usize::from(letter.first_original.is_some());
        listing
            .by_first_class
            .count(letter.first_error_class.as_deref().unwrap_or("?"));
        listing.by_fingerprint.count(&letter.fingerprint);
        if listing.dead_letters.len() < limit {
            listing.dead_letters.push(letter);
        }
    }
    Ok(listing)
}

/// Writes a listing for people.
pub fn print_listing(out: &mut impl std::io::Write, listing: &Listing) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} dead letters, {} selected",
        listing.topic, listing.total, listing.selected
    )?;
    if let (Some(group), Some(pending)) = (&listing.group, listing.pending) {
        writeln!(
            out,
            "group {group}: {pending} pending, {} replayed, parked or passed over",
            listing.selected - pending
        )?;
    }
    if !listing.by_class.is_empty() {
        writeln!(out, "\nby error class:")?;
        for (class, n) in listing.by_class.iter() {
            writeln!(out, "  {class:<44} {n:>7}")?;
        }
        if listing.failed_again > 0 {
            writeln!(
                out,
                "\nby first cause (the class of the first failure, across replays):"
            )?;
            for (class, n) in listing.by_first_class.iter() {
                writeln!(out, "  {class:<44} {n:>7}")?;
            }
        }
        writeln!(
            out,
            "\nby fingerprint (class and error text, numbers blanked):"
        )?;
        let mut prints: Vec<(&String, &usize)> = listing.by_fingerprint.iter().collect();
        prints.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (print, n) in prints.iter().take(20) {
            writeln!(out, "  {n:>7}  {print}")?;
        }
        if prints.len() > 20 {
            writeln!(
                out,
                "  … {} more fingerprints (--json has them all)",
                prints.len() - 20
            )?;
        }
        writeln!(
            out,
            "\n{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  {:<8} message",
            "part/offset",
            "original",
            "key",
            "kind",
            "class",
            "retries",
            "replays",
            "failed at",
            "replay"
        )?;
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
        writeln!(
            out,
            "{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  {:<8} {}",
            format!("{}/{}", l.partition, l.offset),
            original,
            l.key.as_deref().unwrap_or("-"),
            l.error_kind.as_deref().unwrap_or("?"),
            l.error_class.as_deref().unwrap_or("?"),
            l.retry_count.map_or("?".into(), |r| r.to_string()),
            l.replay_count,
            l.failed_at
                .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
            match l.pending {
                Some(true) => "pending",
                Some(false) => "done",
                None => "-",
            },
            message
        )?;
    }
    if listing.dead_letters.len() < listing.selected {
        writeln!(
            out,
            "… {} more (raise --limit)",
            listing.selected - listing.dead_letters.len()
        )?;
    }
    Ok(())
}

/// `dlq inspect`: one dead letter in full, its payload decoded if possible.
pub fn inspect(
    kafka: &KafkaSettings,
    domains: &Domains,
    topic: &str,
    partition: i32,
    offset: i64,
    reader: &ReaderGroup,
) -> Result<serde_json::Value, DlqError> {
    let consumer: BaseConsumer = reader_config(kafka, &reader.name).create()?;
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
    #[arg(long, env = "DLQ_REPLAY_GROUP", default_value = DEFAULT_REPLAY_GROUP)]
    pub group: String,
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
pub struct ReplaySummary {
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

/// The headers of a replayed copy: the original ones without this
/// failure's `dlq-*`, the replay count, and the first failure (carried
/// over, or taken from this dead letter when it is the first).
fn replay_headers(message: &OwnedMessage, count: u32) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    let mut first_known = false;
    if let Some(original) = message.headers() {
        for x in original.iter() {
            let first = x.key.starts_with(h::DLQ_FIRST_PREFIX);
            first_known |= first;
            if first || !x.key.starts_with("dlq-") {
                headers = headers.insert(Header {
                    key: x.key,
                    value: x.value,
                });
            }
        }
    }
    if !first_known {
        for (first, current) in h::DLQ_FIRST_FAILURE {
            if let Some(value) = platform::kafka::header(message, current) {
                headers = headers.insert(Header {
                    key: first,
                    value: Some(value),
                });
            }
        }
    }
    let count = count.to_string();
    headers.insert(Header {
        key: h::DLQ_REPLAY_COUNT,
        value: Some(count.as_str()),
    })
}

/// Knows when the group gave this member its partitions (possibly none).
#[derive(Default)]
struct Membership {
    assigned: std::sync::atomic::AtomicBool,
}

impl rdkafka::ClientContext for Membership {}

impl rdkafka::consumer::ConsumerContext for Membership {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &rdkafka::consumer::Rebalance<'_>) {
        if matches!(rebalance, rdkafka::consumer::Rebalance::Assign(_)) {
            self.assigned
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A replay's member of its group, holding every partition of the DLQ
/// (paused: the snapshot reads them), so that a second replay of the same
/// DLQ and group finds them taken and refuses instead of replaying the same
/// dead letters again. Its commits are the replay's.
type Holder = BaseConsumer<Membership>;

/// Joins `group` on `topic` and checks that this run got every partition.
fn hold(config: &ClientConfig, topic: &str, group: &str) -> Result<Holder, DlqError> {
    // A short session: a replay killed without leaving the group frees it
    // within 10 s (and brokers that wait a session out before the first
    // assignment start it sooner).
    let member: Holder = config
        .clone()
        .set("session.timeout.ms", "10000")
        .create_with_context(Membership::default())?;
    let partitions = crate::dead_letters::watermarks(&member, topic, TIMEOUT)?.len();
    // Asked before joining: a member joining would make the group take
    // partitions from the running replay mid-commit. (Two runs starting at
    // the same moment both get here; the assignment below settles that.)
    if let Some(members) = members_of(&member, group) {
        if members > 0 {
            return Err(DlqError::Busy(format!(
                "another replay of {topic} runs with --group {group} (the group has {members} \
                 member{}): wait for it to end, or use another --group",
                if members == 1 { "" } else { "s" }
            )));
        }
    }
    member.subscribe(&[topic])?;
    let started = Instant::now();
    while !member
        .context()
        .assigned
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        if started.elapsed() > TIMEOUT * 3 {
            return Err(DlqError::Busy(format!(
                "group {group} did not take this replay in within {:?}; is another replay of {topic} \
                 with --group {group} starting? Wait for it to end, or use another --group",
                TIMEOUT * 3
            )));
        }
        // Fetched before the pause below: not this consumer's to handle.
        let _ = member.poll(Duration::from_millis(100));
    }
    let assignment = member.assignment()?;
    member.pause(&assignment)?;
    let got = assignment.count();
    if got < partitions {
        return Err(DlqError::Busy(format!(
            "another replay of {topic} runs with --group {group} (this one got {got} of its \
             {partitions} partitions): wait for it to end, or use another --group"
        )));
    }
    Ok(member)
}

/// How many members `group` has now, if the broker says (it may not let
/// this principal describe the group: then the join decides).
fn members_of(client: &Holder, group: &str) -> Option<usize> {
    match client.fetch_group_list(Some(group), TIMEOUT) {
        Ok(list) => Some(
            list.groups()
                .iter()
                .filter(|g| g.name() == group && g.state() != "Dead" && g.state() != "Empty")
                .map(|g| g.members().len())
                .sum(),
        ),
        Err(e) => {
            tracing::debug!(error = %e, group, "cannot describe the replay group; joining it");
            None
        }
    }
}

/// Serves the holder's group duties (a rebalance when another replay tries
/// to join) and keeps its partitions paused.
fn keep_holding(member: &Holder) {
    let _ = member.poll(Duration::ZERO);
    if let Ok(assignment) = member.assignment() {
        let _ = member.pause(&assignment);
    }
}

/// Where the group stopped last time, per partition.
fn committed<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
) -> Result<BTreeMap<i32, i64>, DlqError> {
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

/// Commits `next` for `partition`, waiting out a rebalance (another replay
/// trying to join) for up to ten seconds.
fn commit(member: &Holder, topic: &str, partition: i32, next: i64) -> Result<(), DlqError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(next))?;
    let started = Instant::now();
    loop {
        match member.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return Ok(()),
            Err(e) if started.elapsed() < TIMEOUT => {
                tracing::debug!(error = %e, "commit refused, retrying");
                keep_holding(member);
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(e.into()),
        }
    }
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

/// `dlq replay`: republishes the selected dead letters of `source` to the
/// topic it is the DLQ of (`domains`).
pub async fn replay(
    kafka: &KafkaSettings,
    domains: &Domains,
    source: &Source,
    filter: &Filter,
    args: &ReplayArgs,
    stop: &CancellationToken,
) -> Result<ReplaySummary, DlqError> {
    filter.validate()?;
    let target = destination(domains, &source.topic)?.to_owned();
    if args.rate.is_nan() || args.rate <= 0.0 {
        return Err(DlqError::BadArgument(
            "--rate must be greater than 0".into(),
        ));
    }
    let config = reader_config(kafka, &args.group);
    let consumer = hold(&config, &source.topic, &args.group)?;
    let start = committed(&consumer, &source.topic)?;
    let messages = Snapshot::open(&config, &source.topic, Some(&start), TIMEOUT)?;
    let mut progress = Progress::new(messages.expected());
    let producer: FutureProducer = kafka
        .client_config(&[
            ("client.id", "pubsubkafka-dlq-replay"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
        ])
        .create()?;
    let mut summary = ReplaySummary {
        dry_run: args.dry_run,
        destination: target.clone(),
        ..ReplaySummary::default()
    };
    let pace = Duration::from_secs_f64(1.0 / args.rate);
    let mut blocked: std::collections::HashSet<i32> = Default::default();
    for m in messages {
        let m = &m?;
        keep_holding(&consumer);
        summary.read += 1;
        if stop.is_cancelled() || blocked.contains(&m.partition()) {
            summary.deferred += 1;
            continue;
        }
        let letter = DeadLetter::of(m);
        let done = if !filter.matches(&letter) {
            summary.skipped += 1;
            true
        } else if let Some(reason) = parking_reason(&letter, &target, args.max_replays) {
            summary.parked += 1;
            if summary.parked_letters.len() < MAX_LISTED {
                summary
                    .parked_letters
                    .push(format!("{}/{}: {reason}", m.partition(), m.offset()));
            }
            true
        } else {
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
        progress.report(&summary, false);
    }
    progress.report(&summary, true);
    Ok(summary)
}

/// Progress of a replay on standard error, every 2 s: one line rewritten
/// in place on a terminal, JSON lines otherwise (for a job's log).
struct Progress {
    started: Instant,
    last: Option<Instant>,
    expected: u64,
    terminal: bool,
}

impl Progress {
    fn new(expected: u64) -> Self {
        use std::io::IsTerminal;
        Self {
            started: Instant::now(),
            last: None,
            expected,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn report(&mut self, summary: &ReplaySummary, last: bool) {
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if !(due || last && self.last.is_some()) {
            return;
        }
        self.last = Some(Instant::now());
        let seconds = self.started.elapsed().as_secs_f64();
        let read = summary.read as u64;
        let rate = if seconds > 0.0 {
            read as f64 / seconds
        } else {
            0.0
        };
        let left = self.expected.saturating_sub(read);
        let eta = (rate > 0.0).then(|| left as f64 / rate);
        if self.terminal {
            eprint!(
                "\r{read}/{} read, {} replayed, {} parked, {} skipped, {} failed, {rate:.1}/s, {}   ",
                self.expected,
                summary.replayed,
                summary.parked,
                summary.skipped,
                summary.failed,
                eta.map_or("done in ?".to_owned(), |s| format!("done in {s:.0}s"))
            );
            if last {
                eprintln!();
            }
        } else {
            let line = serde_json::json!({
                "progress": {
                    "read": read,
                    "expected": self.expected,
                    "replayed": summary.replayed,
                    "parked": summary.parked,
                    "skipped": summary.skipped,
                    "failed": summary.failed,
                    "rate": (rate * 10.0).round() / 10.0,
                    "eta_seconds": eta.map(f64::round),
                    "done": last,
                }
            });
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_keeps_at_most_its_limit_of_keys_and_counts_the_rest_as_other() {
        let mut tally = Tally::default();
        for n in 0..MAX_TALLIED + 500 {
            tally.count(&format!("cause {n}"));
        }
        tally.count("cause 3");
        assert_eq!(tally.0.len(), MAX_TALLIED + 1);
        assert_eq!(tally.0["cause 3"], 2, "a key already kept is still counted");
        assert_eq!(tally.0[Tally::OTHER], 500);
        assert_eq!(
            tally.iter().map(|(_, n)| n).sum::<usize>(),
            MAX_TALLIED + 501
        );
    }
}
