//! Following a drain to its end: a count of what is stored, asked again
//! and again, gives the rate from the first stored item to the last and
//! the CPU the processes used over the same time (the start-up before the
//! first item is not the drain's). One home for the consumer's drain and
//! Kafka Connect's.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::system::{CpuMeter, Source};

/// Something that counts what a drain stored so far.
pub trait Count {
    /// The count now; an error ends the drain (a process that exited, say).
    async fn count(&mut self) -> anyhow::Result<u64>;
}

/// What following a drain measured.
pub struct Followed {
    /// Items per second from the first stored item to the last.
    pub rate: f64,
    /// The sources' CPU from the first stored item on.
    pub cpu: CpuMeter,
}

/// Asks `counter` every `every` until it counts `expected`, failing when
/// the count does not grow for `stall` (start-up included) or one answer
/// takes that long.
pub async fn follow(
    counter: &mut impl Count,
    expected: usize,
    every: Duration,
    stall: Duration,
    sources: &[(&'static str, Source)],
) -> anyhow::Result<Followed> {
    let mut first: Option<(Instant, u64, CpuMeter)> = None;
    let mut last_progress = (Instant::now(), 0u64);
    loop {
        let n = tokio::time::timeout(stall, counter.count())
            .await
            .with_context(|| format!("no count within {stall:?}"))??;
        let now = Instant::now();
        if n > 0 && first.is_none() {
            first = Some((now, n, CpuMeter::start(sources)));
        }
        if n as usize >= expected {
            let (t0, n0, cpu) = match first {
                Some(first) => first,
                None => (now, 0, CpuMeter::start(sources)),
            };
            let secs = now.duration_since(t0).as_secs_f64();
            return Ok(Followed {
                rate: (n - n0) as f64 / secs.max(1e-3),
                cpu,
            });
        }
        if n > last_progress.1 {
            last_progress = (now, n);
        }
        if last_progress.0.elapsed() >= stall {
            bail!("stalled at {n} of {expected} for {stall:?}");
        }
        tokio::time::sleep(every).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts `step` more each time it is asked, up to `stop`, or fails.
    struct Steps {
        now: u64,
        step: u64,
        stop: u64,
        fail_at: Option<u64>,
    }

    impl Steps {
        /// From 0 by tens up to `stop`, failing when it reaches `fail_at`.
        fn by_ten(stop: u64, fail_at: Option<u64>) -> Self {
            Self {
                now: 0,
                step: 10,
                stop,
                fail_at,
            }
        }
    }

    impl Count for Steps {
        async fn count(&mut self) -> anyhow::Result<u64> {
            if self.fail_at == Some(self.now) {
                bail!("the worker exited");
            }
            self.now = (self.now + self.step).min(self.stop);
            Ok(self.now)
        }
    }

    const EVERY: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn follows_to_the_expected_count() {
        let mut steps = Steps::by_ten(100, None);
        let followed = follow(&mut steps, 100, EVERY, Duration::from_secs(5), &[])
            .await
            .expect("followed");
        assert_eq!(steps.now, 100);
        assert!(
            followed.rate > 0.0 && followed.rate.is_finite(),
            "{}",
            followed.rate
        );
    }

    #[tokio::test]
    async fn a_count_that_stops_growing_is_a_stall() {
        let mut steps = Steps::by_ten(50, None);
        let err = follow(&mut steps, 100, EVERY, Duration::from_millis(100), &[])
            .await
            .err()
            .expect("a stall");
        assert!(err.to_string().contains("stalled at 50 of 100"), "{err:#}");
    }

    #[tokio::test]
    async fn a_failed_count_ends_the_drain() {
        let mut steps = Steps::by_ten(100, Some(30));
        let err = follow(&mut steps, 100, EVERY, Duration::from_secs(5), &[])
            .await
            .err()
            .expect("an error");
        assert!(format!("{err:#}").contains("the worker exited"), "{err:#}");
    }
}
