//! What finishing a batch decides, as a value. After the worker has walked
//! a batch's verdicts (dead letters sent, the flood guard asked), a pure
//! function, [`settle`], turns how far the walk got and why it stopped into
//! a [`Settlement`]: the offsets to store and commit, the partitions to
//! rewind and from where, the partition to hold and those released for the
//! flood guard, and what the DLQ backoff and the circuit breaker do next.
//! [`Settlement::apply`] then does the Kafka part through the
//! [`Member`] seam. The decisions are unit-tested here without a broker.

use std::time::{Duration, Instant};

use platform::backoff::Doubling;
use rdkafka::consumer::CommitMode;

use crate::flood::Tripped;
use crate::member::{self, Member};
use crate::offsets;
use crate::partition::Partition;
use crate::process::Halt;

/// Longest wait before writing to an unavailable DLQ again.
pub const MAX_DLQ_WAIT: Duration = Duration::from_secs(30);

/// First wait before writing to an unavailable DLQ again.
const FIRST_DLQ_WAIT: Duration = Duration::from_secs(1);

/// How far the walk over a batch's verdicts got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walked {
    /// Messages settled (persisted, or dead-lettered and recorded),
    /// counted from the start of the batch.
    pub settled: usize,
    /// Why the walk stopped before the end of the verdicts, if it did.
    pub stopped: Option<Stopped>,
    /// Partitions the flood guard held that handled a message again.
    pub released: Vec<Partition>,
}

/// Why a walk stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The flood guard holds `partition` instead of dead-lettering the
    /// message the walk stopped at, for `tripped`.
    Held {
        /// The partition held.
        partition: Partition,
        /// What tripped the guard.
        tripped: Tripped,
    },
    /// A dead letter could not be settled (the DLQ or the rejection record
    /// is unavailable): the message waits.
    Unsettled,
}

/// The wait before batches start again while the DLQ is unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DlqBackoff {
    until: Option<Instant>,
    waits: Doubling,
}

impl Default for DlqBackoff {
    fn default() -> Self {
        Self {
            until: None,
            waits: Doubling::new(FIRST_DLQ_WAIT, MAX_DLQ_WAIT),
        }
    }
}

impl DlqBackoff {
    /// Until when no batch may start, if that is after `now`.
    pub fn blocks_until(&self, now: Instant) -> Option<Instant> {
        self.until.filter(|until| *until > now)
    }

    /// A dead letter failed at `now`: wait, twice as long as last time
    /// (up to [`MAX_DLQ_WAIT`]). Returns the wait.
    fn failed(&mut self, now: Instant) -> Duration {
        let wait = self.waits.take();
        self.until = Some(now + wait);
        wait
    }

    /// A batch settled without a DLQ failure: a wait that is over ends,
    /// and the next failure waits the first wait again.
    fn succeeded(&mut self, now: Instant) {
        if self.until.is_some_and(|until| until <= now) {
            self.until = None;
            self.waits.reset();
        }
    }
}

/// What to do after a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The partition to pause: the flood guard holds it.
    pub hold: Option<Partition>,
    /// Partitions the flood guard no longer holds.
    pub release: Vec<Partition>,
    /// Per partition, the last offset settled: stored for the commit.
    pub store: Vec<(Partition, i64)>,
    /// Per partition, the first offset not settled: read again from there
    /// (what waits of it is dropped).
    pub rewind: Vec<(Partition, i64)>,
    /// Every partition of the batch: free for its next batch.
    pub finished: Vec<Partition>,
    /// Whether any message was settled.
    pub advanced: bool,
    /// Set when the database is down for everyone: open the circuit, for
    /// this (scrubbed) reason.
    pub open_circuit: Option<String>,
    /// Set when a dead letter could not be settled: no batch starts for
    /// this long.
    pub backed_off: Option<Duration>,
    /// The DLQ backoff from now on.
    pub dlq: DlqBackoff,
}

/// Decides what to do after a batch whose messages were read at `batch`
/// (in order), whose walk got as far as `walked`, and whose processing
/// halted as `halted`; `dlq` is the DLQ backoff before it.
pub fn settle(
    batch: &[(Partition, i64)],
    walked: &Walked,
    halted: Option<&Halt>,
    mut dlq: DlqBackoff,
    now: Instant,
) -> Settlement {
    let settled = walked.settled.min(batch.len());
    let (done, undone) = batch.split_at(settled);
    let mut open_circuit = None;
    let mut backed_off = None;
    match (halted, &walked.stopped) {
        (Some(Halt::Outage(error)), _) => {
            open_circuit = Some(contract::redact::scrub(&error.to_string()));
        }
        (Some(Halt::Stopping), _) => {}
        (None, Some(Stopped::Unsettled)) => backed_off = Some(dlq.failed(now)),
        (None, _) => dlq.succeeded(now),
    }
    Settlement {
        hold: match &walked.stopped {
            Some(Stopped::Held { partition, .. }) => Some(partition.clone()),
            _ => None,
        },
        release: walked.released.clone(),
        store: offsets::spans(done.iter().cloned())
            .into_iter()
            .map(|(partition, (_, last))| (partition, last))
            .collect(),
        rewind: offsets::spans(undone.iter().cloned())
            .into_iter()
            .map(|(partition, (first, _))| (partition, first))
            .collect(),
        finished: offsets::spans(batch.iter().cloned()).into_keys().collect(),
        advanced: settled > 0,
        open_circuit,
        backed_off,
        dlq,
    }
}

impl Settlement {
    /// Does the Kafka part: pauses the held partition, stores the offsets
    /// settled, rewinds what is not, and commits (asynchronously; a failed
    /// commit is made good by the next one).
    pub fn apply(&self, consumer: &impl Member) {
        if let Some(partition) = &self.hold {
            member::hold(consumer, partition);
        }
        for (partition, offset) in &self.store {
            offsets::store(consumer, partition, *offset);
        }
        for (partition, offset) in &self.rewind {
            offsets::seek(consumer, partition, *offset);
        }
        if let Err(e) = consumer.commit(CommitMode::Async) {
            tracing::warn!(error = %e, "commit failed; will commit with the next batch");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::fake::{Call, Recording};
    use crate::persist::{PersistError, PersistErrorKind};

    fn p(topic: &str, index: i32) -> Partition {
        Partition::new(topic, index)
    }

    /// orders/0 at 5, 6, 7 and orders/1 at 9, 10, interleaved.
    fn batch() -> Vec<(Partition, i64)> {
        vec![
            (p("orders", 0), 5),
            (p("orders", 1), 9),
            (p("orders", 0), 6),
            (p("orders", 1), 10),
            (p("orders", 0), 7),
        ]
    }

    fn walked(settled: usize, stopped: Option<Stopped>) -> Walked {
        Walked {
            settled,
            stopped,
            released: Vec::new(),
        }
    }

    #[test]
    fn a_whole_batch_stores_the_last_offsets_and_rewinds_nothing() {
        let now = Instant::now();
        let s = settle(&batch(), &walked(5, None), None, DlqBackoff::default(), now);
        assert_eq!(s.store, [(p("orders", 0), 7), (p("orders", 1), 10)]);
        assert!(s.rewind.is_empty() && s.hold.is_none());
        assert_eq!(s.finished, [p("orders", 0), p("orders", 1)]);
        assert!(s.advanced && s.open_circuit.is_none() && s.backed_off.is_none());
        let member = Recording::default();
        s.apply(&member);
        assert_eq!(
            member.calls(),
            [
                Call::Store(p("orders", 0), 7),
                Call::Store(p("orders", 1), 10),
                Call::Commit
            ]
        );
    }

    #[test]
    fn a_held_partition_is_paused_rewound_to_its_first_unsettled_offset_and_not_committed_past_it()
    {
        let now = Instant::now();
        // orders/0 at 6 would flood the DLQ: the walk stops there.
        let s = settle(
            &batch(),
            &walked(
                2,
                Some(Stopped::Held {
                    partition: p("orders", 0),
                    tripped: Tripped {
                        in_row: 3,
                        in_window: 3,
                        window: 10,
                    },
                }),
            ),
            None,
            DlqBackoff::default(),
            now,
        );
        assert_eq!(s.hold, Some(p("orders", 0)));
        assert_eq!(s.store, [(p("orders", 0), 5), (p("orders", 1), 9)]);
        assert_eq!(s.rewind, [(p("orders", 0), 6), (p("orders", 1), 10)]);
        assert!(s.backed_off.is_none(), "a hold is no DLQ failure");
        let member = Recording::default();
        s.apply(&member);
        assert_eq!(
            member.calls(),
            [
                Call::Pause(p("orders", 0)),
                Call::Store(p("orders", 0), 5),
                Call::Store(p("orders", 1), 9),
                Call::Seek(p("orders", 0), 6),
                Call::Seek(p("orders", 1), 10),
                Call::Commit
            ]
        );
    }

    #[test]
    fn a_failed_dead_letter_backs_off_doubling_and_rewinds_while_the_other_partition_commits() {
        let now = Instant::now();
        // orders/1 at 10 could not be dead-lettered; orders/0 was done
        // up to 6 before it.
        let s = settle(
            &batch(),
            &walked(3, Some(Stopped::Unsettled)),
            None,
            DlqBackoff::default(),
            now,
        );
        assert_eq!(s.backed_off, Some(Duration::from_secs(1)));
        assert_eq!(s.dlq.blocks_until(now), Some(now + Duration::from_secs(1)));
        assert_eq!(s.store, [(p("orders", 0), 6), (p("orders", 1), 9)]);
        assert_eq!(s.rewind, [(p("orders", 0), 7), (p("orders", 1), 10)]);
        assert!(s.hold.is_none());
        // Failing again doubles the wait; a success after it is over starts
        // over, but not while it runs.
        let again = settle(
            &batch(),
            &walked(0, Some(Stopped::Unsettled)),
            None,
            s.dlq,
            now,
        );
        assert_eq!(again.backed_off, Some(Duration::from_secs(2)));
        assert!(!again.advanced && again.store.is_empty());
        let early = settle(&batch(), &walked(5, None), None, again.dlq, now);
        assert_eq!(early.dlq, again.dlq, "the wait runs on");
        let later = now + Duration::from_secs(3);
        let over = settle(&batch(), &walked(5, None), None, again.dlq, later);
        assert_eq!(over.dlq, DlqBackoff::default());
    }

    #[test]
    fn an_outage_opens_the_circuit_and_wins_over_a_dlq_failure_stopping_does_neither() {
        let now = Instant::now();
        let outage = Halt::Outage(PersistError::new(
            PersistErrorKind::Unavailable,
            "connection refused",
        ));
        let s = settle(
            &batch(),
            &walked(1, Some(Stopped::Unsettled)),
            Some(&outage),
            DlqBackoff::default(),
            now,
        );
        assert!(s.open_circuit.is_some());
        assert!(s.backed_off.is_none() && s.dlq == DlqBackoff::default());
        assert_eq!(s.store, [(p("orders", 0), 5)]);
        assert_eq!(s.rewind, [(p("orders", 0), 6), (p("orders", 1), 9)]);
        let stopping = settle(
            &batch(),
            &walked(1, Some(Stopped::Unsettled)),
            Some(&Halt::Stopping),
            DlqBackoff::default(),
            now,
        );
        assert!(stopping.open_circuit.is_none() && stopping.backed_off.is_none());
    }

    #[test]
    fn released_partitions_are_passed_on_and_a_batch_cut_short_by_a_halt_rewinds_the_rest() {
        let now = Instant::now();
        // Processing halted after two verdicts: the walk settled both.
        let s = settle(
            &batch(),
            &Walked {
                settled: 2,
                stopped: None,
                released: vec![p("orders", 1)],
            },
            Some(&Halt::Stopping),
            DlqBackoff::default(),
            now,
        );
        assert_eq!(s.release, [p("orders", 1)]);
        assert_eq!(s.rewind, [(p("orders", 0), 6), (p("orders", 1), 10)]);
        assert_eq!(s.finished.len(), 2);
    }
}
