//! Whether the consumer is getting anywhere: the loop marks each finished
//! batch, librdkafka's statistics say how far behind the group is, and
//! readiness turns false when there is lag and no progress for too long,
//! whatever the cause (a call that never answers, a partition that cannot
//! move, a broker path that swallows fetches).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::partition::Partition;

/// Shared between the loop, the statistics callback and the readiness check.
#[derive(Debug, Clone)]
pub struct Progress {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: Instant,
    /// Milliseconds after `origin` of the last finished batch.
    last: AtomicU64,
    /// Messages behind, over every assigned partition not held by the
    /// flood guard (librdkafka's view).
    lag: AtomicI64,
    /// Partitions the flood guard holds: their messages wait on purpose
    /// (alerted on by their own metric), so they are no stall.
    held: std::sync::Mutex<std::collections::HashSet<Partition>>,
}

/// Why the consumer is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no progress for {idle:?} with {lag} messages waiting")]
pub struct Stalled {
    /// Since the last finished batch.
    pub idle: Duration,
    /// Messages behind.
    pub lag: i64,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Progress {
    /// Progress as of `now` (start-up counts as progress).
    pub fn new(now: Instant) -> Self {
        Self {
            inner: Arc::new(Inner {
                origin: now,
                last: AtomicU64::new(0),
                lag: AtomicI64::new(0),
                held: std::sync::Mutex::default(),
            }),
        }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.inner.origin).as_millis())
            .unwrap_or(u64::MAX)
    }

    /// A batch finished at `now`.
    pub fn advanced(&self, now: Instant) {
        self.inner
            .last
            .fetch_max(self.millis(now), Ordering::Relaxed);
    }

    fn held(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<Partition>> {
        self.inner
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks `partition` as held by the flood guard.
    pub fn hold(&self, partition: &Partition) {
        self.held().insert(partition.clone());
    }

    /// Marks `partition` as no longer held by the flood guard.
    pub fn release(&self, partition: &Partition) {
        self.held().remove(partition);
    }

    /// Whether the flood guard holds `partition`.
    pub fn is_held(&self, partition: &Partition) -> bool {
        self.held().contains(partition)
    }

    /// The group is `lag` messages behind (held partitions left out).
    pub fn set_lag(&self, lag: i64) {
        self.inner.lag.store(lag, Ordering::Relaxed);
    }

    /// `Err` when messages wait and nothing finished for longer than `limit`.
    pub fn check(&self, now: Instant, limit: Duration) -> Result<(), Stalled> {
        let lag = self.inner.lag.load(Ordering::Relaxed);
        let idle = Duration::from_millis(
            self.millis(now)
                .saturating_sub(self.inner.last.load(Ordering::Relaxed)),
        );
        if lag > 0 && idle > limit {
            return Err(Stalled { idle, lag });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_with_lag_and_no_progress_past_the_limit() {
        let start = Instant::now();
        let limit = Duration::from_secs(60);
        let p = Progress::new(start);
        let later = start + Duration::from_secs(120);
        assert_eq!(p.check(later, limit), Ok(()), "idle without lag is fine");
        p.set_lag(5);
        assert_eq!(
            p.check(later, limit),
            Err(Stalled {
                idle: Duration::from_secs(120),
                lag: 5
            })
        );
        p.advanced(start + Duration::from_secs(100));
        assert_eq!(p.check(later, limit), Ok(()), "progress 20 s ago");
        p.advanced(start + Duration::from_secs(10));
        assert_eq!(p.check(later, limit), Ok(()), "progress never goes back");
    }

    #[test]
    fn held_partitions_are_remembered_until_released() {
        let p = Progress::default();
        let (zero, one) = (Partition::new("orders", 0), Partition::new("orders", 1));
        assert!(!p.is_held(&zero));
        p.hold(&zero);
        assert!(p.is_held(&zero) && !p.is_held(&one));
        p.release(&zero);
        assert!(!p.is_held(&zero));
    }
}
