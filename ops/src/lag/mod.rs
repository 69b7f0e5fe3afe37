//! `pubsubkafka lag`: consumer lag from the broker's point of view, so it
//! is known when the consumer is down (that is when it matters): committed
//! offsets of the group, high watermarks of the partitions, the age of the
//! oldest unconsumed message, and the group's active members and state;
//! and, over a window of such measurements, a verdict on each partition's
//! progress (see [`crate::verdict`]).
//!
//! [`measure`](mod@measure) takes the measurements ([`Measurer`], the
//! one loop of `lag` and of the exporter), [`history`] keeps the window
//! and judges it, [`print`](mod@print) writes it for people, [`metrics`]
//! and [`exporter`] serve it to Prometheus (`--serve`), [`outbox`] adds
//! the producers' outbox (`--outbox`).

pub mod exporter;
pub mod history;
pub mod measure;
pub mod metrics;
pub mod outbox;
pub mod print;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use platform::kafka::KafkaSettings;
use serde::Serialize;

pub use history::{History, PartitionReport, Report};
pub use measure::{measure, Measurer, NewGroups};
pub use metrics::LagMetrics;
pub use print::print;

/// Lag of one partition.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// The high watermark (next offset to be written).
    pub high: i64,
    /// Messages not yet consumed.
    pub lag: i64,
    /// Age in seconds of the oldest unconsumed message (0 when no lag).
    pub lag_seconds: i64,
}

/// Lag of a group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupLag {
    /// The group.
    pub group: String,
    /// When it was measured, milliseconds since the Unix epoch.
    #[serde(skip)]
    pub at_ms: i64,
    /// Active members (`None` when the broker does not say).
    pub members: Option<usize>,
    /// The group's state as the broker reports it (`Stable`, `Empty`,
    /// `PreparingRebalance`, ...; `None` when it does not say).
    pub state: Option<String>,
    /// Per partition.
    pub partitions: Vec<PartitionLag>,
    /// Sum over partitions.
    pub total: i64,
}

/// A group to measure and its topics: `NAME`, or `NAME=TOPIC,TOPIC` for
/// topics other than the default ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group.
    pub name: String,
    /// Its topics.
    pub topics: Vec<String>,
}

/// A `--group` value that cannot be a group.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not NAME or NAME=TOPIC,TOPIC (an empty group or topic name)")]
pub struct BadGroupSpec(String);

impl GroupSpec {
    /// Parses `spec`, with `default_topics` when it names none.
    pub fn parse(spec: &str, default_topics: &[String]) -> Result<Self, BadGroupSpec> {
        let bad = || BadGroupSpec(spec.to_owned());
        let (name, topics) = match spec.split_once('=') {
            Some((name, topics)) => {
                let topics: Vec<String> = topics.split(',').map(|t| t.trim().to_owned()).collect();
                if topics.iter().any(String::is_empty) {
                    return Err(bad());
                }
                (name.trim(), topics)
            }
            None => (spec.trim(), default_topics.to_vec()),
        };
        if name.is_empty() || topics.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            name: name.to_owned(),
            topics,
        })
    }
}

/// Why the lag could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum LagError {
    /// The broker could not be asked, or refused.
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A topic asked for is not on the cluster: its lag is not 0, it is
    /// a mistake (a typo, another cluster).
    #[error("topic {topic:?} does not exist ({error})")]
    UnknownTopic {
        /// The topic.
        topic: String,
        /// What the broker said.
        error: String,
    },
    /// The age of the oldest unconsumed message could not be read: without
    /// `Read` on the topic (the lag exporter's ACLs), or with no message at
    /// the committed offset in time. Never reported as 0 seconds.
    #[error(
        "cannot read the message at {topic}[{partition}] offset {offset} to date the time lag \
         ({cause}); the lag exporter's principal needs Describe and Read on the topic"
    )]
    TimeLag {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The committed offset (the oldest unconsumed message).
        offset: i64,
        /// What the broker or the client said.
        cause: String,
    },
    /// The broker refused this principal the group's committed offsets.
    #[error(
        "the broker refuses to tell group {group:?}'s committed offsets: {cause}; this principal \
         needs Describe on the group"
    )]
    Refused {
        /// The group.
        group: String,
        /// What the broker said.
        cause: String,
    },
    /// The group has no member and never committed on these topics: a
    /// typo, another cluster, or consumers that have not started yet.
    #[error(
        "group {group:?} is not known to the broker: no committed offset on {topics} and no member \
         it reports (some brokers, Tansu among them, report none); check the name, or, if its \
         consumers have not committed yet, pass --allow-new-group to see everything in the log as its lag"
    )]
    UnknownGroup {
        /// The group.
        group: String,
        /// The topics looked at, comma-separated.
        topics: String,
    },
}

impl GroupLag {
    /// Whether the broker knows the group: it committed on one of the
    /// partitions measured, or has members.
    pub fn known(&self) -> bool {
        self.members.is_some_and(|m| m > 0) || self.partitions.iter().any(|p| p.committed.is_some())
    }
}

/// The groups whose lag is measured: `lag`'s and the console's options.
#[derive(Debug, Clone, clap::Args)]
pub struct GroupArgs {
    /// The consumer group; repeat for several. NAME=TOPIC,TOPIC gives a
    /// group its own topics (the replay group reads the DLQs).
    #[arg(
        long = "group",
        env = "KAFKA_CONSUMER_GROUP",
        default_value = contract::topics::DEFAULT_CONSUMER_GROUP,
        value_name = "NAME[=TOPIC,...]"
    )]
    pub groups: Vec<String>,
    /// Topics of the groups that name none.
    #[arg(long, value_delimiter = ',', default_value = "orders,users")]
    pub topics: Vec<String>,
}

impl GroupArgs {
    /// Each `--group`, its topics resolved.
    pub fn specs(&self) -> Result<Vec<GroupSpec>, BadGroupSpec> {
        self.groups
            .iter()
            .map(|spec| GroupSpec::parse(spec, &self.topics))
            .collect()
    }
}

/// Options of `lag`.
#[derive(Debug, clap::Args)]
pub struct LagArgs {
    #[command(flatten)]
    pub groups: GroupArgs,
    /// Print JSON instead of a table (one object; an array for several groups).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 2 when a group's total lag is above this.
    #[arg(long)]
    pub threshold: Option<i64>,
    /// Run as an exporter: serve /metrics on this address instead of printing once.
    #[arg(long)]
    pub serve: Option<std::net::SocketAddr>,
    /// Seconds between measurements (within --window, or when serving).
    #[arg(long, default_value_t = 15)]
    pub interval: u64,
    /// Seconds of measurements the verdicts (OK, WARN, STALL, STOP, REWIND)
    /// look at. Printing: measure every --interval for this long first
    /// (default 0: one measurement, no verdict unless caught up). Serving:
    /// the history kept (default 300).
    #[arg(long)]
    pub window: Option<u64>,
    /// Report a group that has no member and never committed (its
    /// consumers not started yet) instead of refusing it as unknown.
    #[arg(long)]
    pub allow_new_group: bool,
    /// Also report the producers' outbox (outbox mode): rows waiting and
    /// the oldest one's age, from this database.
    #[arg(long, env = "OUTBOX_DATABASE_URL", value_name = "URL")]
    pub outbox: Option<String>,
    #[command(flatten)]
    pub kafka: crate::kafka::KafkaArgs,
}

/// `lag`: serves the exporter with `--serve`; else measures over the
/// window, prints, and exits with status 2 when a group is above
/// `--threshold`.
pub async fn run(kafka: KafkaSettings, args: LagArgs) -> anyhow::Result<ExitCode> {
    let groups = args.groups.specs()?;
    let interval = Duration::from_secs(args.interval.max(1));
    // An exporter may start before the consumers it watches: it exports a
    // new group's whole log as its lag, with or without --allow-new-group.
    let new_groups = if args.allow_new_group || args.serve.is_some() {
        NewGroups::Measure
    } else {
        NewGroups::Refuse
    };
    if let Some(addr) = args.serve {
        let window = Duration::from_secs(args.window.unwrap_or(300));
        let measurer = Measurer::new(kafka, groups, window, new_groups);
        let stop = platform::shutdown::on_signal();
        exporter::run(measurer, addr, interval, stop).await?;
        return Ok(ExitCode::SUCCESS);
    }
    let window = Duration::from_secs(args.window.unwrap_or(0));
    let mut measurer = Measurer::new(kafka, groups, window, new_groups);
    let reports = measure_window(&mut measurer, window, interval).await?;
    let outbox = match &args.outbox {
        Some(url) => Some(outbox::backlog(url).await?),
        None => None,
    };
    print::reports(args.json, &reports, outbox.as_ref())?;
    Ok(threshold_status(&reports, args.threshold))
}

/// Measures every group, then again every `interval` until `window` has
/// passed (at least two measurements then, however long one takes); the
/// reports of the last round.
async fn measure_window(
    measurer: &mut Measurer,
    window: Duration,
    interval: Duration,
) -> anyhow::Result<Vec<Report>> {
    let started = Instant::now();
    let mut taken = 1;
    loop {
        let reports = measure_all(measurer).await?;
        let left = window.saturating_sub(started.elapsed());
        if window.is_zero() || (left.is_zero() && taken >= 2) {
            return Ok(reports);
        }
        taken += 1;
        tokio::time::sleep(left.min(interval)).await;
    }
}

/// One report per group, or the first group's failure.
async fn measure_all(measurer: &mut Measurer) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::with_capacity(measurer.len());
    for n in 0..measurer.len() {
        let report = measurer.measure(n).await?.with_context(|| {
            format!(
                "measuring the lag of group {:?} on {}",
                measurer.group(n).name,
                measurer.brokers()
            )
        })?;
        reports.push(report);
    }
    Ok(reports)
}

/// Exit status 2 when a group's total lag is above `threshold` (each such
/// group said on standard error), else success.
fn threshold_status(reports: &[Report], threshold: Option<i64>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for report in reports {
        if let Some(limit) = threshold.filter(|&limit| report.total > limit) {
            eprintln!(
                "total lag {} of group {} is above the threshold {limit}",
                report.total, report.group
            );
            code = ExitCode::from(2);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_specs_name_their_topics_or_take_the_default_ones() {
        let default = vec!["orders".to_owned(), "users".to_owned()];
        assert_eq!(
            GroupSpec::parse("order-consumer", &default),
            Ok(GroupSpec {
                name: "order-consumer".to_owned(),
                topics: default.clone()
            })
        );
        assert_eq!(
            GroupSpec::parse("order-replay=orders-dlq,users-dlq", &default),
            Ok(GroupSpec {
                name: "order-replay".to_owned(),
                topics: vec!["orders-dlq".to_owned(), "users-dlq".to_owned()]
            })
        );
        for bad in ["", "=orders", "g=", "g=orders,", "g=,orders", " "] {
            assert!(GroupSpec::parse(bad, &default).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        /// Whatever `--group` holds, it is a group with topics, none of
        /// them empty or carrying a comma, or it is refused.
        #[test]
        fn any_group_spec_is_a_group_with_topics_or_refused(spec in "[a-z=, ]{0,12}|\\PC{0,40}") {
            let default = vec!["orders".to_owned()];
            if let Ok(g) = GroupSpec::parse(&spec, &default) {
                proptest::prop_assert!(!g.name.is_empty() && !g.name.contains('='));
                proptest::prop_assert!(!g.topics.is_empty());
                for t in &g.topics {
                    proptest::prop_assert!(!t.is_empty() && !t.contains(','));
                }
            }
        }
    }
}
