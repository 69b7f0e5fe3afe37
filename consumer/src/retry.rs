//! How long to wait between tries of a transient failure: exponential
//! backoff with jitter, bounded by a number of retries.

use std::time::Duration;

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;

/// `MAX_RETRIES` retries after the first try, waiting about
/// `initial_backoff`, then twice that, and so on (±25 % jitter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0: none).
    pub max_retries: u32,
    /// Wait before the first retry.
    pub initial_backoff: Duration,
}

impl RetryPolicy {
    /// The waits before each retry, in order; `max_retries` of them.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        let mut backoff = ExponentialBackoff {
            initial_interval: self.initial_backoff,
            current_interval: self.initial_backoff,
            multiplier: 2.0,
            randomization_factor: 0.25,
            max_interval: Duration::from_secs(300),
            max_elapsed_time: None,
            ..ExponentialBackoff::default()
        };
        backoff.reset();
        (0..self.max_retries).map_while(move |_| backoff.next_backoff())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_bounded_jitter_and_stop_after_max_retries() {
        let policy = RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_secs(1),
        };
        let delays: Vec<Duration> = policy.delays().collect();
        assert_eq!(delays.len(), 3);
        for (delay, nominal) in delays.iter().zip([1.0, 2.0, 4.0]) {
            let secs = delay.as_secs_f64();
            assert!(
                (nominal * 0.75..=nominal * 1.25).contains(&secs),
                "{secs} s is not within 25 % of {nominal} s"
            );
        }
    }

    #[test]
    fn jitter_spreads_the_waits() {
        let policy = RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_secs(1),
        };
        let firsts: std::collections::HashSet<Duration> =
            (0..20).filter_map(|_| policy.delays().next()).collect();
        assert!(firsts.len() > 1, "20 draws gave one value: no jitter");
    }

    #[test]
    fn zero_retries_means_no_wait() {
        let policy = RetryPolicy {
            max_retries: 0,
            initial_backoff: Duration::from_secs(1),
        };
        assert_eq!(policy.delays().count(), 0);
    }
}
