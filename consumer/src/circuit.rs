//! The circuit breaker for a database outage. While it is open the consumer
//! pauses its partitions instead of dead-lettering every message, probes the
//! database with growing waits, and resumes when a probe succeeds.

use std::time::{Duration, Instant};

use platform::backoff::Doubling;

/// Longest wait between two probes.
pub const MAX_PROBE_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { next_probe: Instant },
}

/// Closed (consuming) or open (paused, probing).
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    state: State,
    waits: Doubling,
}

impl CircuitBreaker {
    /// A closed breaker whose first probe comes `first_wait` after opening.
    pub fn new(first_wait: Duration) -> Self {
        Self {
            state: State::Closed,
            waits: Doubling::new(first_wait, MAX_PROBE_WAIT),
        }
    }

    /// Whether consumption is paused.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open { .. })
    }

    /// Opens the breaker (no-op if already open).
    pub fn open(&mut self, now: Instant) {
        if !self.is_open() {
            self.waits.reset();
            self.state = State::Open {
                next_probe: now + self.waits.take(),
            };
        }
    }

    /// How long until the next probe is due (zero when closed or due).
    pub fn until_probe(&self, now: Instant) -> Duration {
        match self.state {
            State::Closed => Duration::ZERO,
            State::Open { next_probe } => next_probe.saturating_duration_since(now),
        }
    }

    /// A probe failed: wait twice as long for the next, up to [`MAX_PROBE_WAIT`].
    pub fn probe_failed(&mut self, now: Instant) {
        if self.is_open() {
            self.state = State::Open {
                next_probe: now + self.waits.take(),
            };
        }
    }

    /// A probe succeeded: close.
    pub fn close(&mut self) {
        self.state = State::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_backs_off_between_probes_and_closes() {
        let start = Instant::now();
        let mut breaker = CircuitBreaker::new(Duration::from_secs(1));
        assert!(!breaker.is_open());
        breaker.open(start);
        assert!(breaker.is_open());
        assert_eq!(breaker.until_probe(start), Duration::from_secs(1));
        breaker.open(start + Duration::from_millis(500));
        assert_eq!(
            breaker.until_probe(start),
            Duration::from_secs(1),
            "re-opening keeps the schedule"
        );
        breaker.probe_failed(start);
        assert_eq!(breaker.until_probe(start), Duration::from_secs(2));
        for _ in 0..10 {
            breaker.probe_failed(start);
        }
        assert_eq!(breaker.until_probe(start), MAX_PROBE_WAIT);
        breaker.close();
        assert!(!breaker.is_open());
        breaker.open(start);
        assert_eq!(
            breaker.until_probe(start),
            Duration::from_secs(1),
            "a new outage starts over"
        );
    }
}
