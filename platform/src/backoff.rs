//! A wait that doubles after each failure, up to a ceiling, and starts
//! over after a success: the consumer's circuit breaker probes and its
//! retries of an unavailable DLQ, and the outbox relay after a failed
//! database round, all wait this way.

use std::time::Duration;

/// The next wait of a doubling backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Doubling {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Doubling {
    /// Waits `first`, then twice as long each time, never more than `max`
    /// (but `first` itself is waited even when larger).
    pub const fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The wait to use now; the one after it is twice as long (up to the
    /// ceiling).
    pub fn take(&mut self) -> Duration {
        let wait = self.next;
        self.next = (wait * 2).min(self.max);
        wait
    }

    /// Starts over at the first wait.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_ceiling_and_starts_over() {
        let mut d = Doubling::new(Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| d.take().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        d.reset();
        assert_eq!(d.take(), Duration::from_secs(1), "the first wait again");
        let mut large = Doubling::new(Duration::from_secs(60), Duration::from_secs(30));
        assert_eq!(large.take(), Duration::from_secs(60), "the first as given");
        assert_eq!(large.take(), Duration::from_secs(30));
    }
}
