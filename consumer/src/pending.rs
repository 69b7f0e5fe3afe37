//! Messages read but not yet handed to a batch, and which partitions have
//! a batch in flight. Batches of different partitions are written at the
//! same time; a partition never has two batches in flight, so its messages
//! are persisted, dead-lettered and committed in offset order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::partition::Partition;

/// A message as far as batching cares.
pub trait Placed {
    /// Its topic.
    fn topic(&self) -> &str;
    /// Its partition.
    fn partition(&self) -> i32;
    /// Bytes it holds (key and value).
    fn bytes(&self) -> usize;
    /// When it was read.
    fn read_at(&self) -> Instant;
}

/// Most bytes of messages in one batch: with the messages waiting (at
/// most twice this) and the batches in flight, what the loop holds stays
/// bounded whatever size the messages are.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How batches are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most messages in a batch.
    pub messages: usize,
    /// Most bytes in a batch (a batch holds at least one message).
    pub bytes: usize,
    /// Longest a message waits for its batch to fill.
    pub wait: Duration,
}

/// The messages of one partition waiting for a batch, oldest first.
#[derive(Debug)]
struct Lane<M> {
    key: Partition,
    queue: VecDeque<M>,
    /// Bytes of the messages in `queue`.
    bytes: usize,
    busy: bool,
    /// When its last batch finished: what waited meanwhile counts as
    /// waiting from then, so a partition that comes free gets a moment to
    /// fill its next batch instead of sending what it has at once.
    freed_at: Option<Instant>,
}

impl<M: Placed> Lane<M> {
    /// When its oldest message started waiting for a batch.
    fn waiting_since(&self) -> Option<Instant> {
        let first = self.queue.front()?.read_at();
        Some(self.freed_at.map_or(first, |freed| freed.max(first)))
    }
}

/// The messages waiting for a batch, by partition, each partition's in
/// offset order. Partitions are few: they are kept in a list.
#[derive(Debug)]
pub struct Pending<M> {
    lanes: Vec<Lane<M>>,
    len: usize,
    bytes: usize,
}

impl<M> Default for Pending<M> {
    fn default() -> Self {
        Self {
            lanes: Vec::new(),
            len: 0,
            bytes: 0,
        }
    }
}

impl<M: Placed> Pending<M> {
    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes waiting.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether more may be read: room for a full next batch of each of
    /// `max_in_flight` partitions (at least two) while their batches are
    /// written, so a partition that comes free starts its next batch at
    /// once; the bytes waiting stay within two batches' whatever the
    /// messages' size.
    pub fn has_room(&self, limits: &BatchLimits, max_in_flight: usize) -> bool {
        self.len < limits.messages * max_in_flight.max(2) && self.bytes < limits.bytes * 2
    }

    fn lane(&self, topic: &str, partition: i32) -> Option<usize> {
        self.lanes.iter().position(|l| l.key.is(topic, partition))
    }

    /// Adds a message just read.
    pub fn push(&mut self, m: M) {
        self.len += 1;
        self.bytes += m.bytes();
        let at = match self.lane(m.topic(), m.partition()) {
            Some(at) => at,
            None => {
                self.lanes.push(Lane {
                    key: Partition::new(m.topic(), m.partition()),
                    queue: VecDeque::new(),
                    bytes: 0,
                    busy: false,
                    freed_at: None,
                });
                self.lanes.len() - 1
            }
        };
        self.lanes[at].bytes += m.bytes();
        self.lanes[at].queue.push_back(m);
    }

    fn ready(&self) -> impl Iterator<Item = &Lane<M>> {
        self.lanes.iter().filter(|l| !l.busy && !l.queue.is_empty())
    }

    /// When the oldest message of a partition without a batch in flight
    /// must be sent off, if any waits.
    pub fn due_at(&self, limits: &BatchLimits) -> Option<Instant> {
        self.ready()
            .filter_map(Lane::waiting_since)
            .map(|since| since + limits.wait)
            .min()
    }

    /// Whether a batch should be cut now: a full batch is ready, or the
    /// oldest ready message waited long enough.
    pub fn should_cut(&self, limits: &BatchLimits, now: Instant) -> bool {
        let mut count = 0;
        let mut bytes = 0;
        for lane in self.ready() {
            if lane
                .waiting_since()
                .is_some_and(|since| since + limits.wait <= now)
            {
                return true;
            }
            count += lane.queue.len();
            bytes += lane.bytes;
            if count >= limits.messages || bytes >= limits.bytes {
                return true;
            }
        }
        false
    }

    /// Takes a batch of the ready messages within `limits`, the partitions
    /// waiting longest first, each partition's in order, and marks its
    /// partitions busy until [`Pending::finished`].
    pub fn cut(&mut self, limits: &BatchLimits) -> Vec<M> {
        let mut order: Vec<usize> = (0..self.lanes.len())
            .filter(|&i| !self.lanes[i].busy && !self.lanes[i].queue.is_empty())
            .collect();
        order.sort_by_key(|&i| self.lanes[i].queue.front().map(Placed::read_at));
        let mut batch = Vec::new();
        let mut bytes = 0;
        for i in order {
            let lane = &mut self.lanes[i];
            while let Some(m) = lane.queue.front() {
                let full = batch.len() >= limits.messages
                    || (!batch.is_empty() && bytes + m.bytes() > limits.bytes);
                if full {
                    break;
                }
                let Some(m) = lane.queue.pop_front() else {
                    break;
                };
                bytes += m.bytes();
                lane.bytes -= m.bytes();
                lane.busy = true;
                batch.push(m);
            }
        }
        self.len -= batch.len();
        self.bytes -= bytes;
        batch
    }

    /// The batch of these partitions is done (at `now`): they may be
    /// batched again.
    pub fn finished<'a>(
        &mut self,
        partitions: impl IntoIterator<Item = &'a Partition>,
        now: Instant,
    ) {
        for key in partitions {
            if let Some(at) = self.lane(&key.topic, key.index) {
                self.lanes[at].busy = false;
                self.lanes[at].freed_at = Some(now);
            }
        }
        // Partitions with nothing waiting and nothing in flight (revoked,
        // say) are forgotten.
        self.lanes.retain(|l| l.busy || !l.queue.is_empty());
    }

    fn remove_where(&mut self, at: usize, mut drop: impl FnMut(&M) -> bool) {
        let lane = &mut self.lanes[at];
        let before = (lane.queue.len(), lane.bytes);
        lane.queue.retain(|m| {
            let dropped = drop(m);
            if dropped {
                lane.bytes -= m.bytes();
            }
            !dropped
        });
        self.len -= before.0 - lane.queue.len();
        self.bytes -= before.1 - lane.bytes;
    }

    /// Drops every waiting message of `partition` (it is rewound, or no
    /// longer ours).
    pub fn drop_partition(&mut self, partition: &Partition) {
        if let Some(at) = self.lane(&partition.topic, partition.index) {
            self.remove_where(at, |_| true);
        }
    }

    /// Drops the waiting messages of `partition` read before `at` (it was
    /// revoked then).
    pub fn drop_read_before(&mut self, partition: &Partition, at: Instant) {
        if let Some(lane) = self.lane(&partition.topic, partition.index) {
            self.remove_where(lane, |m| m.read_at() < at);
        }
    }

    /// Drops every waiting message; returns the first of each partition.
    pub fn drain_firsts(&mut self) -> Vec<M> {
        let mut firsts = Vec::new();
        for lane in &mut self.lanes {
            let mut queue = std::mem::take(&mut lane.queue);
            lane.bytes = 0;
            if let Some(first) = queue.pop_front() {
                firsts.push(first);
            }
        }
        self.len = 0;
        self.bytes = 0;
        firsts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every count kept on the side matches the messages held.
    fn consistent<M: Placed>(p: &Pending<M>) -> bool {
        let lanes_agree = p
            .lanes
            .iter()
            .all(|l| l.bytes == l.queue.iter().map(Placed::bytes).sum::<usize>());
        let len: usize = p.lanes.iter().map(|l| l.queue.len()).sum();
        let bytes: usize = p.lanes.iter().map(|l| l.bytes).sum();
        lanes_agree && len == p.len() && bytes == p.bytes()
    }

    fn key_of<M: Placed>(m: &M) -> Partition {
        Partition::new(m.topic(), m.partition())
    }

    #[derive(Debug, Clone, PartialEq)]
    struct M {
        partition: i32,
        offset: i64,
        bytes: usize,
        at: Instant,
    }

    impl Placed for M {
        fn topic(&self) -> &str {
            "orders"
        }
        fn partition(&self) -> i32 {
            self.partition
        }
        fn bytes(&self) -> usize {
            self.bytes
        }
        fn read_at(&self) -> Instant {
            self.at
        }
    }

    fn limits(messages: usize, bytes: usize) -> BatchLimits {
        BatchLimits {
            messages,
            bytes,
            wait: Duration::from_millis(5),
        }
    }

    fn m(partition: i32, offset: i64, at: Instant) -> M {
        M {
            partition,
            offset,
            bytes: 10,
            at,
        }
    }

    #[test]
    fn a_partition_with_a_batch_in_flight_waits_the_others_go() {
        let now = Instant::now();
        let mut p = Pending::default();
        for (partition, offset) in [(0, 1), (1, 1), (0, 2), (0, 3), (2, 1)] {
            p.push(m(partition, offset, now));
        }
        let first = p.cut(&limits(2, 1000));
        assert_eq!(
            first
                .iter()
                .map(|m| (m.partition, m.offset))
                .collect::<Vec<_>>(),
            [(0, 1), (0, 2)]
        );
        // Partition 0's next message may not go while its batch is out.
        let second = p.cut(&limits(10, 1000));
        assert_eq!(
            second
                .iter()
                .map(|m| (m.partition, m.offset))
                .collect::<Vec<_>>(),
            [(1, 1), (2, 1)]
        );
        assert_eq!(p.len(), 1);
        assert!(
            p.cut(&limits(10, 1000)).is_empty(),
            "every partition is busy"
        );
        p.finished(&[Partition::new("orders", 0)], now);
        assert_eq!(p.cut(&limits(10, 1000))[0].offset, 3);
    }

    #[test]
    fn batches_are_cut_when_full_or_when_the_oldest_waited_long_enough() {
        let now = Instant::now();
        let mut p = Pending::default();
        p.push(m(0, 1, now));
        assert!(!p.should_cut(&limits(2, 1000), now));
        assert!(p.should_cut(&limits(2, 1000), now + Duration::from_millis(5)));
        assert_eq!(
            p.due_at(&limits(2, 1000)),
            Some(now + Duration::from_millis(5))
        );
        p.push(m(1, 1, now));
        assert!(p.should_cut(&limits(2, 1000), now), "full by count");
        assert!(p.should_cut(&limits(10, 15), now), "full by bytes");
        // A message larger than the byte limit still makes a batch of one.
        let mut big = Pending::default();
        big.push(M {
            bytes: 5000,
            ..m(0, 1, now)
        });
        big.push(m(0, 2, now));
        assert_eq!(big.cut(&limits(10, 100)).len(), 1);
        // A partition that comes free waits from then for its batch to fill.
        let mut freed = Pending::default();
        freed.push(m(0, 1, now));
        let _ = freed.cut(&limits(10, 1000));
        freed.push(m(0, 2, now));
        let later = now + Duration::from_millis(20);
        freed.finished(&[Partition::new("orders", 0)], later);
        assert!(!freed.should_cut(&limits(10, 1000), later + Duration::from_millis(4)));
        assert!(freed.should_cut(&limits(10, 1000), later + Duration::from_millis(5)));
    }

    #[test]
    fn reading_stops_at_a_next_batch_per_partition_in_flight_or_two_batches_of_bytes() {
        let now = Instant::now();
        let lim = limits(3, 100);
        let mut p = Pending::default();
        for offset in 0..5 {
            p.push(m(0, offset, now));
        }
        assert!(p.has_room(&lim, 2), "5 of 6 messages waiting");
        assert!(
            p.has_room(&lim, 1),
            "one in flight still gets two batches' room"
        );
        p.push(m(1, 0, now));
        assert!(!p.has_room(&lim, 2), "a next batch for each of 2 in flight");
        assert!(p.has_room(&lim, 4), "room for 4 in flight: 12 messages");
        // Bytes bound the room whatever the count allows.
        let mut big = Pending::default();
        big.push(M {
            bytes: 199,
            ..m(0, 0, now)
        });
        assert!(big.has_room(&lim, 4));
        big.push(m(0, 1, now));
        assert!(!big.has_room(&lim, 4), "209 bytes of 200 allowed");
    }

    #[test]
    fn dropping_a_partition_or_all_keeps_the_counts_and_returns_the_firsts() {
        let now = Instant::now();
        let mut p = Pending::default();
        for (partition, offset) in [(0, 4), (1, 1), (0, 5)] {
            p.push(m(partition, offset, now));
        }
        p.drop_partition(&Partition::new("orders", 0));
        assert_eq!((p.len(), p.bytes()), (1, 10));
        assert!(consistent(&p));
        p.push(m(2, 9, now));
        p.push(m(2, 10, now));
        let firsts = p.drain_firsts();
        assert_eq!(firsts.iter().map(|m| m.offset).collect::<Vec<_>>(), [1, 9]);
        assert!(p.is_empty());
    }

    #[test]
    fn a_revocation_drops_only_what_was_read_before_it() {
        let then = Instant::now();
        let revoked = then + Duration::from_millis(10);
        let mut p = Pending::default();
        p.push(m(0, 1, then));
        p.push(m(1, 1, then));
        // Assigned again in the same poll: read after the revocation.
        p.push(m(0, 1, revoked + Duration::from_millis(1)));
        p.drop_read_before(&Partition::new("orders", 0), revoked);
        assert_eq!(p.len(), 2);
        assert_eq!(p.bytes(), 20);
        let batch = p.cut(&limits(10, 1000));
        assert_eq!(
            batch
                .iter()
                .map(|m| (m.partition, m.at > revoked))
                .collect::<Vec<_>>(),
            [(1, false), (0, true)]
        );
    }

    proptest! {
        /// Whatever arrives and however batches are cut and finished, each
        /// partition's messages leave in offset order, each exactly once,
        /// never two batches of one partition at a time, and batches keep
        /// their limits.
        #[test]
        fn each_partition_leaves_in_order_once_and_one_batch_at_a_time(
            arrivals in proptest::collection::vec(0..4_i32, 0..300),
            steps in proptest::collection::vec(0..3_u8, 0..300),
            max_messages in 1_usize..20,
            max_bytes in 10_usize..100,
        ) {
            let now = Instant::now();
            let lim = limits(max_messages, max_bytes);
            let mut p = Pending::default();
            let mut next_offset = [0_i64; 4];
            let mut arrivals = arrivals.into_iter();
            let mut in_flight: Vec<Vec<M>> = Vec::new();
            let mut left: std::collections::HashMap<i32, Vec<i64>> = Default::default();
            for step in steps.into_iter().chain(std::iter::repeat_n(2, 2000)) {
                match step {
                    0 => {
                        if let Some(partition) = arrivals.next() {
                            let offset = next_offset[partition as usize];
                            next_offset[partition as usize] += 1;
                            p.push(M { partition, offset, bytes: 7, at: now });
                        }
                    }
                    1 => {
                        let batch = p.cut(&lim);
                        prop_assert!(consistent(&p));
                        prop_assert!(batch.len() <= max_messages);
                        prop_assert!(batch.len() <= 1 || batch.iter().map(|m| m.bytes).sum::<usize>() <= max_bytes);
                        for flying in &in_flight {
                            for m in &batch {
                                prop_assert!(!flying.iter().any(|f| f.partition == m.partition), "two batches of one partition");
                            }
                        }
                        if !batch.is_empty() {
                            in_flight.push(batch);
                        }
                    }
                    _ => {
                        if in_flight.is_empty() {
                            if let Some(partition) = arrivals.next() {
                                let offset = next_offset[partition as usize];
                                next_offset[partition as usize] += 1;
                                p.push(M { partition, offset, bytes: 7, at: now });
                            } else {
                                let batch = p.cut(&lim);
                                if batch.is_empty() { break; }
                                in_flight.push(batch);
                            }
                            continue;
                        }
                        let done = in_flight.remove(0);
                        let keys: Vec<Partition> = done.iter().map(key_of).collect();
                        for m in &done {
                            left.entry(m.partition).or_default().push(m.offset);
                        }
                        p.finished(&keys, now);
                        prop_assert!(consistent(&p));
                    }
                }
            }
            prop_assert!(p.is_empty() && in_flight.is_empty());
            for (partition, offsets) in left {
                let expected: Vec<i64> = (0..next_offset[partition as usize]).collect();
                prop_assert_eq!(offsets, expected, "partition {}", partition);
            }
        }
    }
}
