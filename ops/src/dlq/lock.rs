//! The replay lock: a replay's member of its consumer group, holding every
//! partition of the DLQ, so that a second replay of the same DLQ and group
//! finds them taken and refuses instead of replaying the same dead letters
//! again. The lock's commits are the replay's progress.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use super::TIMEOUT;
use crate::dead_letters::DlqError;

/// Knows when the group gave this member its partitions (possibly none).
/// Its librdkafka lines go through the tool's throttle, as a reader's do.
struct Membership {
    assigned: AtomicBool,
    observed: platform::kafka::ObservedContext,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            assigned: AtomicBool::new(false),
            observed: crate::kafka::observed(),
        }
    }
}

impl ClientContext for Membership {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.observed.log(level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.observed.error(error, reason);
    }
}

impl ConsumerContext for Membership {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.assigned.store(true, Ordering::SeqCst);
        }
    }
}

/// A replay's hold on its group: every partition of the DLQ, paused (the
/// snapshot reads them). Held while it lives; its liveness needs
/// [`Self::keep_alive`] between two dead letters. Dropping it leaves the
/// group.
pub struct ReplayLock {
    member: BaseConsumer<Membership>,
    topic: String,
}

impl ReplayLock {
    /// Joins `group` on `topic` and checks that this run got every
    /// partition; [`DlqError::Busy`] when another replay holds them.
    pub fn acquire(config: &ClientConfig, topic: &str, group: &str) -> Result<Self, DlqError> {
        // A short session: a replay killed without leaving the group frees it
        // within 10 s (and brokers that wait a session out before the first
        // assignment start it sooner).
        let member: BaseConsumer<Membership> = config
            .clone()
            .set("session.timeout.ms", "10000")
            .create_with_context(Membership::default())?;
        let partitions = crate::dead_letters::watermarks(&member, topic, TIMEOUT)?.len();
        // Asked before joining: a member joining would make the group take
        // partitions from the running replay mid-commit. (Two runs starting at
        // the same moment both get here; the assignment below settles that.)
        if let Some(members) = members_of(&member, group).filter(|&m| m > 0) {
            return Err(DlqError::Busy(format!(
                "another replay of {topic} runs with --group {group} (the group has {members} \
                 member{}): wait for it to end, or use another --group",
                if members == 1 { "" } else { "s" }
            )));
        }
        member.subscribe(&[topic])?;
        let lock = Self {
            member,
            topic: topic.to_owned(),
        };
        lock.wait_for_assignment(group)?;
        let assignment = lock.member.assignment()?;
        lock.member.pause(&assignment)?;
        let got = assignment.count();
        if got < partitions {
            return Err(DlqError::Busy(format!(
                "another replay of {topic} runs with --group {group} (this one got {got} of its \
                 {partitions} partitions): wait for it to end, or use another --group"
            )));
        }
        Ok(lock)
    }

    /// Waits until the group assigned this member its partitions.
    fn wait_for_assignment(&self, group: &str) -> Result<(), DlqError> {
        let started = Instant::now();
        while !self.member.context().assigned.load(Ordering::SeqCst) {
            if started.elapsed() > TIMEOUT * 3 {
                return Err(DlqError::Busy(format!(
                    "group {group} did not take this replay in within {:?}; is another replay of {} \
                     with --group {group} starting? Wait for it to end, or use another --group",
                    TIMEOUT * 3,
                    self.topic
                )));
            }
            // Fetched before the pause: not this consumer's to handle.
            let _ = self.member.poll(Duration::from_millis(100));
        }
        Ok(())
    }

    /// Where the group stopped last time, per partition: where this replay
    /// starts.
    pub fn committed(&self) -> Result<BTreeMap<i32, i64>, DlqError> {
        super::committed(&self.member, &self.topic)
    }

    /// Serves the lock's group duties (a rebalance when another replay
    /// tries to join) and keeps its partitions paused.
    pub fn keep_alive(&self) {
        let _ = self.member.poll(Duration::ZERO);
        if let Ok(assignment) = self.member.assignment() {
            let _ = self.member.pause(&assignment);
        }
    }

    /// Commits `next` for `partition`, waiting out a rebalance (another
    /// replay trying to join) for up to ten seconds.
    pub fn commit(&self, partition: i32, next: i64) -> Result<(), DlqError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, partition, Offset::Offset(next))?;
        let started = Instant::now();
        loop {
            match self.member.commit(&tpl, CommitMode::Sync) {
                Ok(()) => return Ok(()),
                Err(e) if started.elapsed() < TIMEOUT => {
                    tracing::debug!(error = %e, "commit refused, retrying");
                    self.keep_alive();
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// How many members `group` has now, if the broker says (it may not let
/// this principal describe the group: then the join decides).
fn members_of(client: &BaseConsumer<Membership>, group: &str) -> Option<usize> {
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
