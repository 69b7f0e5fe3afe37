//! The Kafka seam of the worker: what it does to its group member after a
//! batch (store offsets, commit, rewind, hold and release a partition),
//! as a trait. The service's rdkafka consumer implements it; the unit
//! tests of the settlement use a recording fake, so deciding and applying
//! a batch's settlement is tested without a broker.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::context;
use crate::partition::Partition;

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
}

/// How long a seek may wait for the partition's fetcher.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

fn one(partition: &Partition) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&partition.topic, partition.index);
    tpl
}

impl<C: ConsumerContext + 'static> Member for StreamConsumer<C> {
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

    use super::Member;
    use crate::partition::Partition;

    /// One request to the member.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Call {
        Store(Partition, i64),
        Seek(Partition, i64),
        Commit,
        Pause(Partition),
        Resume(Partition),
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
    }
}
