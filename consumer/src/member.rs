//! The Kafka seam of the worker: what it does to its group member after a
//! batch (store offsets, commit, rewind, hold and release a partition) and
//! during an outage (pause and resume everything), as a trait. The service's rdkafka consumer implements it; the unit
//! tests of the settlement use a recording fake, so deciding and applying
//! a batch's settlement is tested without a broker.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

use crate::context::{self, GroupContext};
use crate::partition::Partition;

/// Why the whole assignment could not be paused or resumed.
#[derive(Debug, thiserror::Error)]
pub enum AssignmentError {
    /// The assignment could not be read: nothing was paused or resumed.
    #[error("cannot read the assignment: {0}")]
    Unread(#[source] KafkaError),
    /// librdkafka refused to pause or resume it.
    #[error("cannot pause or resume partitions: {0}")]
    Refused(#[source] KafkaError),
}

/// What the worker asks of its consumer-group member.
pub trait Member {
    /// Stores `offset`, the last message done of `partition`, for the next
    /// commit (as rdkafka's `store_offset`: the next read starts after it).
    fn store_offset(&self, partition: &Partition, offset: i64) -> KafkaResult<()>;
    /// Makes `offset` the next message read from `partition`.
    fn seek(&self, partition: &Partition, offset: i64) -> KafkaResult<()>;
    /// Commits the stored offsets; "nothing to commit" is no error.
    fn commit(&self, mode: CommitMode) -> KafkaResult<()>;
    /// Stops fetching `partition` (it stays assigned).
    fn pause(&self, partition: &Partition) -> KafkaResult<()>;
    /// Fetches `partition` again.
    fn resume(&self, partition: &Partition) -> KafkaResult<()>;
    /// Pauses every partition assigned, and keeps those assigned later
    /// paused, until [`Member::resume_all`].
    fn pause_all(&self) -> Result<(), AssignmentError>;
    /// Resumes every partition assigned; those assigned later are fetched.
    fn resume_all(&self) -> Result<(), AssignmentError>;
}

/// How long a seek may wait for the partition's fetcher.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

fn one(partition: &Partition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&partition.topic, partition.index);
    tpl
}

/// Sets the flag that keeps newly assigned partitions paused, then pauses
/// or resumes the whole assignment.
fn pause_or_resume_all(
    consumer: &StreamConsumer<GroupContext>,
    paused: bool,
) -> Result<(), AssignmentError> {
    consumer.context().paused.store(paused, Ordering::SeqCst);
    let assignment = consumer.assignment().map_err(AssignmentError::Unread)?;
    let result = if paused {
        Consumer::pause(consumer, &assignment)
    } else {
        Consumer::resume(consumer, &assignment)
    };
    result.map_err(AssignmentError::Refused)
}

impl Member for StreamConsumer<GroupContext> {
    fn store_offset(&self, partition: &Partition, offset: i64) -> KafkaResult<()> {
        Consumer::store_offset(self, &partition.topic, partition.index, offset)
    }

    fn seek(&self, partition: &Partition, offset: i64) -> KafkaResult<()> {
        Consumer::seek(
            self,
            &partition.topic,
            partition.index,
            Offset::Offset(offset),
            SEEK_TIMEOUT,
        )
    }

    fn commit(&self, mode: CommitMode) -> KafkaResult<()> {
        context::commit(self, mode)
    }

    fn pause(&self, partition: &Partition) -> KafkaResult<()> {
        Consumer::pause(self, &one(partition))
    }

    fn resume(&self, partition: &Partition) -> KafkaResult<()> {
        Consumer::resume(self, &one(partition))
    }

    fn pause_all(&self) -> Result<(), AssignmentError> {
        pause_or_resume_all(self, true)
    }

    fn resume_all(&self) -> Result<(), AssignmentError> {
        pause_or_resume_all(self, false)
    }
}

/// Pauses every partition while the circuit is open; a failure is logged
/// (the loop probes and pauses again when a message still arrives).
pub fn pause_everything(member: &impl Member) {
    match member.pause_all() {
        Ok(()) => {}
        Err(AssignmentError::Unread(e)) => {
            tracing::error!(error = %e, "cannot read the assignment");
        }
        Err(AssignmentError::Refused(e)) => {
            tracing::error!(error = %e, paused = true, "cannot pause or resume partitions");
        }
    }
}

/// Resumes every partition when the circuit closes, then pauses again
/// those the flood guard holds (`held`).
pub fn resume_all_but(member: &impl Member, held: &[Partition]) {
    match member.resume_all() {
        Ok(()) => {}
        Err(AssignmentError::Unread(e)) => {
            // Nothing was resumed: the held partitions are still paused.
            tracing::error!(error = %e, "cannot read the assignment");
            return;
        }
        Err(AssignmentError::Refused(e)) => {
            tracing::error!(error = %e, paused = false, "cannot pause or resume partitions");
        }
    }
    for partition in held {
        hold(member, partition);
    }
}

/// Pauses `partition` for the flood guard; one no longer assigned here is
/// only logged (whoever has it now starts afresh).
pub fn hold(member: &impl Member, partition: &Partition) {
    if let Err(e) = member.pause(partition) {
        tracing::warn!(error = %e, topic = partition.topic, partition = partition.index, hold = true, "cannot pause or resume the partition");
    }
}

/// Resumes a partition the flood guard holds, to try one message again.
pub fn resume_held(member: &impl Member, partition: &Partition) {
    if let Err(e) = member.resume(partition) {
        tracing::warn!(error = %e, topic = partition.topic, partition = partition.index, hold = false, "cannot pause or resume the partition");
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A member that records what it is asked, in order.

    use std::sync::Mutex;

    use rdkafka::consumer::CommitMode;
    use rdkafka::error::KafkaResult;

    use super::{AssignmentError, Member};
    use crate::partition::Partition;

    /// One request to the member.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Store(Partition, i64),
        Seek(Partition, i64),
        Commit,
        Pause(Partition),
        Resume(Partition),
        PauseAll,
        ResumeAll,
    }

    /// Records every call; all succeed.
    #[derive(Debug, Default)]
    pub struct Recording {
        calls: Mutex<Vec<Call>>,
    }

    impl Recording {
        /// The calls so far, in order.
        pub fn calls(&self) -> Vec<Call> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }

        fn record(&self, call: Call) -> KafkaResult<()> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(call);
            }
            Ok(())
        }
    }

    impl Member for Recording {
        fn store_offset(&self, partition: &Partition, offset: i64) -> KafkaResult<()> {
            self.record(Call::Store(partition.clone(), offset))
        }
        fn seek(&self, partition: &Partition, offset: i64) -> KafkaResult<()> {
            self.record(Call::Seek(partition.clone(), offset))
        }
        fn commit(&self, _mode: CommitMode) -> KafkaResult<()> {
            self.record(Call::Commit)
        }
        fn pause(&self, partition: &Partition) -> KafkaResult<()> {
            self.record(Call::Pause(partition.clone()))
        }
        fn resume(&self, partition: &Partition) -> KafkaResult<()> {
            self.record(Call::Resume(partition.clone()))
        }
        fn pause_all(&self) -> Result<(), AssignmentError> {
            let _ = self.record(Call::PauseAll);
            Ok(())
        }
        fn resume_all(&self) -> Result<(), AssignmentError> {
            let _ = self.record(Call::ResumeAll);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{Call, Recording};
    use super::*;

    #[test]
    fn closing_the_circuit_resumes_everything_but_what_the_flood_guard_holds() {
        let member = Recording::default();
        pause_everything(&member);
        let held = [Partition::new("orders", 2), Partition::new("users", 0)];
        resume_all_but(&member, &held);
        assert_eq!(
            member.calls(),
            [
                Call::PauseAll,
                Call::ResumeAll,
                Call::Pause(Partition::new("orders", 2)),
                Call::Pause(Partition::new("users", 0)),
            ]
        );
    }
}
