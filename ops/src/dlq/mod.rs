//! `pubsubkafka dlq list | inspect | replay`: what operators run on a bad
//! day. `replay` republishes chosen dead letters to their original topic,
//! under its own consumer group, committing each one only once the broker
//! acknowledged the copy: an interrupted replay resumes where it stopped.
//!
//! [`read`] lists and inspects, [`replay`](mod@replay) republishes under
//! a [`ReplayLock`] ([`lock`]), [`print`](mod@print) writes the results
//! for people.

pub mod lock;
pub mod print;
mod progress;
pub mod read;
pub mod replay;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use contract::topics::Domains;
use platform::kafka::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::dead_letters::{DlqError, Filter};
use crate::kafka::KafkaArgs;
use crate::terminal::{emit, print_json};

pub use lock::ReplayLock;
pub use print::{print_listing, print_summary};
pub use progress::{Observer, ReplayProgress};
pub use read::{inspect, list, Group, Inspected, Listing};
pub use replay::{
    destination, replay, ReplayArgs, ReplaySummary, DEFAULT_MAX_REPLAYS, DEFAULT_RATE,
};

/// How long one broker request of a `dlq` command may take.
const TIMEOUT: Duration = Duration::from_secs(10);

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

/// Where the group of `consumer` stopped last time on `topic`, per
/// partition (partitions it never committed on are absent).
fn committed<C: ConsumerContext>(
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

/// `pubsubkafka dlq ...`.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List dead letters, grouped and counted by error class.
    List {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        /// Most dead letters to print.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// A replay group: mark each dead letter pending (not yet reached by
        /// its replays) or done (replayed, parked or passed over).
        #[arg(long)]
        group: Option<String>,
        #[command(flatten)]
        reader: ReaderGroup,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Show one dead letter in full, its payload decoded where possible
    /// (always JSON).
    Inspect {
        /// The dead-letter topic.
        #[arg(long, default_value = contract::topics::ORDERS_DLQ)]
        topic: String,
        /// Partition of the dead letter in the DLQ.
        #[arg(long)]
        partition: i32,
        /// Offset of the dead letter in the DLQ.
        #[arg(long)]
        offset: i64,
        /// Errors as a JSON object on standard output too (the dead letter
        /// is always JSON).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        reader: ReaderGroup,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
    /// Republish selected dead letters to their original topic.
    Replay {
        #[command(flatten)]
        source: Source,
        #[command(flatten)]
        filter: Filter,
        #[command(flatten)]
        args: ReplayArgs,
        #[command(flatten)]
        kafka: KafkaArgs,
    },
}

impl DlqCommand {
    /// Its Kafka options.
    pub fn kafka(&self) -> &KafkaArgs {
        match self {
            Self::List { kafka, .. } | Self::Inspect { kafka, .. } | Self::Replay { kafka, .. } => {
                kafka
            }
        }
    }

    /// Whether it prints JSON, errors included.
    pub fn json(&self) -> bool {
        match self {
            Self::List { source, .. } | Self::Replay { source, .. } => source.json,
            Self::Inspect { json, .. } => *json,
        }
    }

    /// Runs the command and prints its result; the exit code is a failure
    /// when a replay failed or deferred a dead letter.
    /// Its arguments checked before any call to Kafka, so that a wrong
    /// one is said even when Kafka cannot be reached.
    pub fn check(&self, env: &platform::Env) -> Result<(), DlqError> {
        match self {
            Self::List { filter, .. } => filter.validate(),
            Self::Inspect { .. } => Ok(()),
            Self::Replay {
                source,
                filter,
                args,
                ..
            } => replay::check(&domains(env), source, filter, args).map(|_| ()),
        }
    }

    pub async fn run(self, kafka: KafkaSettings, env: &platform::Env) -> anyhow::Result<ExitCode> {
        match self {
            Self::List {
                source,
                filter,
                limit,
                group,
                reader,
                kafka: _,
            } => {
                let listing = list(&kafka, &source, &filter, limit, group.as_deref(), &reader)?;
                if source.json {
                    print_json(&listing)?;
                } else {
                    emit(|out| print_listing(out, &listing))?;
                }
                Ok(ExitCode::SUCCESS)
            }
            Self::Inspect {
                topic,
                partition,
                offset,
                reader,
                json: _,
                kafka: _,
            } => {
                let domains = domains(env);
                print_json(&inspect(
                    &kafka, &domains, &topic, partition, offset, &reader,
                )?)?;
                Ok(ExitCode::SUCCESS)
            }
            Self::Replay {
                source,
                filter,
                args,
                kafka: _,
            } => run_replay(&kafka, env, &source, &filter, &args).await,
        }
    }
}

/// `dlq replay` until done or interrupted, then its summary.
async fn run_replay(
    kafka: &KafkaSettings,
    env: &platform::Env,
    source: &Source,
    filter: &Filter,
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let stop = platform::shutdown::on_signal();
    let domains = domains(env);
    let mut progress = progress::Progress::new();
    let summary = replay(kafka, &domains, source, filter, args, &stop, &mut progress).await?;
    if source.json {
        print_json(&summary)?;
    } else {
        emit(|out| print_summary(out, &summary))?;
    }
    Ok(if summary.failed > 0 || summary.deferred > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
