//! The dead-letter flood guard. A bad deploy of a producer, or a contract
//! change the consumer does not know yet, makes every message fail
//! validation; dead-lettering them all would move the whole stream into the
//! DLQ, to be replayed by hand. Instead, when too many of a partition's
//! recent messages would be dead-lettered (more than `max_in_row` in a row,
//! or more than `max_percent` % of the last `window`), the guard holds the
//! partition: the message that would have gone to the DLQ stays where it is,
//! the partition is paused, and an alert fires. After `retry_after` one
//! message is tried again: a success lets the partition go on, another
//! dead letter holds it again. A restart (say, with the fix deployed)
//! starts every partition afresh.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::partition::Partition;

/// When the guard holds a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    /// `DLQ_FLOOD_MAX_IN_ROW`: most dead letters in a row (0: no limit).
    pub max_in_row: u32,
    /// `DLQ_FLOOD_WINDOW`: the recent messages the share is taken over.
    pub window: usize,
    /// `DLQ_FLOOD_MAX_PERCENT`: most dead letters among them, in percent
    /// (100: no limit).
    pub max_percent: u32,
    /// `DLQ_FLOOD_RETRY_SECS`: how long a held partition waits before one
    /// message is tried again.
    pub retry_after: Duration,
}

impl FloodLimits {
    /// No limit: every failure is dead-lettered.
    pub const OFF: FloodLimits = FloodLimits {
        max_in_row: 0,
        window: 1,
        max_percent: 100,
        retry_after: Duration::from_secs(300),
    };
}

/// Why a partition is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tripped {
    /// Dead letters in a row before the held message.
    pub in_row: u32,
    /// Dead letters among the last `window` messages.
    pub in_window: usize,
    /// The window.
    pub window: usize,
}

/// What the guard remembers of one partition.
#[derive(Debug, Clone, Default)]
struct Recent {
    /// Recent outcomes, `true` for a dead letter.
    recent: VecDeque<bool>,
    dead_in_window: usize,
    in_row: u32,
    held_until: Option<Instant>,
}

/// The guard's memory of each partition.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    limits: FloodLimits,
    partitions: HashMap<Partition, Recent>,
}

impl FloodGuard {
    /// A guard with `limits` that has seen nothing.
    pub fn new(limits: FloodLimits) -> Self {
        Self {
            limits,
            partitions: HashMap::new(),
        }
    }

    /// How long a held partition waits before one message is tried again.
    pub fn retry_after(&self) -> Duration {
        self.limits.retry_after
    }

    fn recent(&mut self, partition: &Partition) -> &mut Recent {
        self.partitions.entry(partition.clone()).or_default()
    }

    fn push(limits: &FloodLimits, p: &mut Recent, dead: bool) {
        p.recent.push_back(dead);
        p.dead_in_window += usize::from(dead);
        while p.recent.len() > limits.window {
            if p.recent.pop_front() == Some(true) {
                p.dead_in_window -= 1;
            }
        }
    }

    /// Asks to dead-letter one more message of `partition`: `Ok`
    /// when it may go (count it with [`FloodGuard::dead_lettered`] once it
    /// went), `Err` when the partition is to be held instead, until
    /// `now + retry_after`.
    pub fn admit(&mut self, partition: &Partition, now: Instant) -> Result<(), Tripped> {
        let limits = self.limits;
        let p = self.recent(partition);
        let too_many_in_row = limits.max_in_row > 0 && p.in_row >= limits.max_in_row;
        // Would this one make the share of the window too large?
        let leaving = p.recent.len() >= limits.window && p.recent.front() == Some(&true);
        let in_window = p.dead_in_window + 1 - usize::from(leaving);
        let too_large_a_share = limits.max_percent < 100
            && in_window * 100 > limits.window * limits.max_percent as usize;
        if too_many_in_row || too_large_a_share {
            p.held_until = Some(now + limits.retry_after);
            return Err(Tripped {
                in_row: p.in_row,
                in_window: p.dead_in_window,
                window: limits.window,
            });
        }
        Ok(())
    }

    /// Counts a dead letter of `partition` that was written.
    pub fn dead_lettered(&mut self, partition: &Partition) {
        let limits = self.limits;
        let p = self.recent(partition);
        Self::push(&limits, p, true);
        p.in_row += 1;
    }

    /// Records a message of `partition` handled without a dead letter;
    /// returns whether the partition was held until now.
    pub fn handled(&mut self, partition: &Partition) -> bool {
        let limits = self.limits;
        let p = self.recent(partition);
        Self::push(&limits, p, false);
        p.in_row = 0;
        p.held_until.take().is_some()
    }

    /// Where this guard would hold a batch whose messages, in order, are
    /// `(partition, fails)` (`fails`: known to be dead-lettered, such
    /// as undecodable; the others counted as handled): the index of the first
    /// failing message it would not admit. Advances the guard as settling
    /// the messages before it would; call it on a copy, to decide how much of
    /// a batch to write before the worker's own guard settles it.
    pub fn first_held(
        &mut self,
        messages: impl IntoIterator<Item = (Partition, bool)>,
    ) -> Option<usize> {
        let now = Instant::now();
        for (i, (partition, fails)) in messages.into_iter().enumerate() {
            if fails {
                if self.admit(&partition, now).is_err() {
                    return Some(i);
                }
                self.dead_lettered(&partition);
            } else {
                self.handled(&partition);
            }
        }
        None
    }

    /// The held partitions whose wait is over, to try one message again.
    /// They stay marked as held until a message of theirs is handled.
    pub fn due(&mut self, now: Instant) -> Vec<Partition> {
        let mut due = Vec::new();
        for (partition, p) in &mut self.partitions {
            if p.held_until.is_some_and(|until| until <= now) {
                p.held_until = Some(now + self.limits.retry_after);
                due.push(partition.clone());
            }
        }
        due
    }

    /// When the next held partition is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.partitions.values().filter_map(|p| p.held_until).min()
    }

    /// The partitions held now.
    pub fn held(&self) -> Vec<Partition> {
        self.partitions
            .iter()
            .filter(|(_, p)| p.held_until.is_some())
            .map(|(k, _)| k.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_batch_is_cut_where_the_guard_would_hold_and_the_guard_itself_is_left_alone() {
        let guard = FloodGuard::new(limits(2, 100, 100));
        let batch = [
            (p("orders", 0), false),
            (p("orders", 0), true),
            (p("orders", 1), true),
            (p("orders", 0), true),
            (p("orders", 0), true),
            (p("orders", 0), false),
        ];
        assert_eq!(
            guard.clone().first_held(batch.clone()),
            Some(4),
            "the third in a row on 0"
        );
        assert_eq!(guard.clone().first_held(batch[..4].iter().cloned()), None);
        assert!(guard.held().is_empty(), "a copy was asked");
        let off = FloodGuard::new(FloodLimits::OFF);
        assert_eq!(off.clone().first_held(batch), None);
    }

    fn p(topic: &str, index: i32) -> Partition {
        Partition::new(topic, index)
    }

    /// Dead-letters one message if the guard admits it.
    fn send(
        guard: &mut FloodGuard,
        topic: &str,
        partition: i32,
        now: Instant,
    ) -> Result<(), Tripped> {
        let partition = p(topic, partition);
        guard.admit(&partition, now)?;
        guard.dead_lettered(&partition);
        Ok(())
    }

    fn limits(max_in_row: u32, window: usize, max_percent: u32) -> FloodLimits {
        FloodLimits {
            max_in_row,
            window,
            max_percent,
            retry_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn more_than_the_limit_in_a_row_holds_the_partition() {
        let mut guard = FloodGuard::new(limits(3, 100, 100));
        let now = Instant::now();
        for _ in 0..3 {
            assert!(send(&mut guard, "orders", 0, now).is_ok());
        }
        let tripped = send(&mut guard, "orders", 0, now).unwrap_err();
        assert_eq!(tripped.in_row, 3);
        assert_eq!(guard.held(), [p("orders", 0)]);
        // Other partitions are not affected.
        assert!(send(&mut guard, "orders", 1, now).is_ok());
        // Still failing after the wait: held again; a success releases it.
        assert!(guard.due(now + Duration::from_secs(5)).is_empty());
        assert_eq!(guard.due(now + Duration::from_secs(10)).len(), 1);
        assert!(send(&mut guard, "orders", 0, now).is_err());
        assert!(guard.handled(&p("orders", 0)), "the success ends the hold");
        assert!(guard.held().is_empty());
        assert!(send(&mut guard, "orders", 0, now).is_ok());
    }

    #[test]
    fn too_large_a_share_of_the_window_holds_the_partition() {
        // At most 50 % of the last 10.
        let mut guard = FloodGuard::new(limits(0, 10, 50));
        let now = Instant::now();
        for n in 0..10 {
            if n % 2 == 0 {
                assert!(send(&mut guard, "users", 2, now).is_ok(), "{n}");
            } else {
                guard.handled(&p("users", 2));
            }
        }
        // 5 of the last 10: one more, with a dead letter leaving the
        // window, is still 5.
        assert!(send(&mut guard, "users", 2, now).is_ok());
        // Now 6 of 10 would be too many.
        assert!(send(&mut guard, "users", 2, now).is_err());
    }

    #[test]
    fn without_limits_everything_is_dead_lettered() {
        let mut guard = FloodGuard::new(FloodLimits::OFF);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(send(&mut guard, "orders", 0, now).is_ok());
        }
    }

    proptest! {
        /// Whatever the outcomes, no partition ever has more dead letters in
        /// a row, or in its window, than the limits allow.
        #[test]
        fn the_limits_are_never_exceeded(
            max_in_row in 1_u32..20,
            window in 1_usize..50,
            max_percent in 1_u32..100,
            outcomes in proptest::collection::vec((0..3_i32, any::<bool>()), 0..400),
        ) {
            let mut guard = FloodGuard::new(limits(max_in_row, window, max_percent));
            let now = Instant::now();
            let mut history: HashMap<i32, Vec<bool>> = HashMap::new();
            for (partition, fails) in outcomes {
                let sent = if fails {
                    send(&mut guard, "t", partition, now).is_ok()
                } else {
                    guard.handled(&p("t", partition));
                    false
                };
                if fails && !sent {
                    continue;
                }
                let h = history.entry(partition).or_default();
                h.push(sent);
                let in_row = h.iter().rev().take_while(|d| **d).count();
                prop_assert!(in_row <= max_in_row as usize);
                let recent = &h[h.len().saturating_sub(window)..];
                let dead = recent.iter().filter(|d| **d).count();
                prop_assert!(dead * 100 <= window * max_percent as usize, "{dead} of {window}");
            }
        }
    }
}
