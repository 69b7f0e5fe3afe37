//! The one way tests wait for something that happens in another task,
//! process or machine: ask the observable thing (a row count, a metric, a
//! topic, an HTTP answer) again and again until it says yes, within a
//! deadline. A fixed sleep standing for "by now it has happened" is wrong
//! twice: too short on a loaded machine (a flaky test), too long everywhere
//! else (a slow suite).
//!
//! A negative check ("nothing more arrives") cannot end early by nature; it
//! goes through [`stays_quiet_for`], which names the quiet period and fails
//! the moment the forbidden thing shows up, rather than sleeping and
//! looking once.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a probe rests between two asks: short, so a test waits barely
/// longer than the effect takes, and long enough not to hammer a service.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a probe answers: a value, or why there is none yet. Implemented for
/// `Option<T>` (none yet) and `Result<T, E>` (the error says why), so a
/// probe returns whatever is natural for the thing it asks.
pub trait Attempt {
    /// The value a successful probe yields.
    type Value;
    /// The value, or a description of why there is none yet.
    fn into_result(self) -> Result<Self::Value, String>;
}

impl<T> Attempt for Option<T> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".to_owned())
    }
}

impl<T, E: fmt::Display> Attempt for Result<T, E> {
    type Value = T;
    fn into_result(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Why a wait failed. Its `Debug` is its message, so a test that unwraps or
/// returns it prints what was awaited and what was last seen.
pub enum WaitError {
    /// [`eventually`]'s probe never succeeded within the deadline.
    TimedOut {
        /// What was awaited.
        what: String,
        /// The deadline that passed.
        deadline: Duration,
        /// How many times the probe was asked.
        polls: u32,
        /// The probe's last answer.
        last: String,
    },
    /// [`stays_quiet_for`]'s probe saw what must not happen.
    Happened {
        /// What had to stay true.
        what: String,
        /// When in the quiet period it broke.
        after: Duration,
        /// The quiet period that was asked for.
        period: Duration,
        /// What the probe saw.
        seen: String,
    },
}

impl fmt::Display for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitError::TimedOut {
                what,
                deadline,
                polls,
                last,
            } => write!(
                f,
                "timed out after {deadline:?} ({polls} polls) waiting for {what}; last seen: {last}"
            ),
            WaitError::Happened {
                what,
                after,
                period,
                seen,
            } => write!(
                f,
                "{what}: broken after {after:?} of a {period:?} quiet period; saw: {seen}"
            ),
        }
    }
}

impl fmt::Debug for WaitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for WaitError {}

/// Asks `probe` every [`POLL_INTERVAL`] until it yields a value, and returns
/// it; fails after `deadline` with `what` and the probe's last answer. The
/// probe is asked at least once, and once more at the deadline.
///
/// The deadline is a bound on a broken run, not the expected time: make it
/// generous, since a passing run returns as soon as the condition holds.
pub async fn eventually<F, Fut, A>(
    deadline: Duration,
    what: &str,
    mut probe: F,
) -> Result<A::Value, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = A>,
    A: Attempt,
{
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        polls += 1;
        let last = match probe().await.into_result() {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        let elapsed = started.elapsed();
        if elapsed >= deadline {
            return Err(WaitError::TimedOut {
                what: what.to_owned(),
                deadline,
                polls,
                last,
            });
        }
        tokio::time::sleep(POLL_INTERVAL.min(deadline - elapsed)).await;
    }
}

/// Asks `probe` every [`POLL_INTERVAL`] for the whole of `period`, and fails
/// as soon as it reports (as `Some`) what must not happen; `what` names the
/// rule that must hold. The period is the test's claim of how long "never"
/// is observed: name it and say why at the call site.
pub async fn stays_quiet_for<F, Fut, S>(
    period: Duration,
    what: &str,
    mut probe: F,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<S>>,
    S: fmt::Debug,
{
    let started = Instant::now();
    loop {
        if let Some(seen) = probe().await {
            return Err(WaitError::Happened {
                what: what.to_owned(),
                after: started.elapsed(),
                period,
                seen: format!("{seen:?}"),
            });
        }
        let elapsed = started.elapsed();
        if elapsed >= period {
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL.min(period - elapsed)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[tokio::test]
    async fn a_probe_that_succeeds_on_the_third_poll_yields_its_value() {
        let polls = Cell::new(0);
        let started = Instant::now();
        let value = eventually(Duration::from_secs(5), "the third poll", || {
            polls.set(polls.get() + 1);
            let n = polls.get();
            async move { (n >= 3).then_some(n * 10) }
        })
        .await;
        assert_eq!(value.ok(), Some(30));
        assert_eq!(polls.get(), 3, "no poll after success");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "returns as soon as the probe succeeds"
        );
    }

    #[tokio::test]
    async fn a_probe_that_never_succeeds_fails_naming_what_and_the_last_error() {
        let polls = Cell::new(0);
        let deadline = Duration::from_millis(200);
        let started = Instant::now();
        let outcome = eventually(deadline, "the duplicate metric", || {
            polls.set(polls.get() + 1);
            let n = polls.get();
            async move { Err::<(), _>(format!("count was {n}")) }
        })
        .await;
        assert!(started.elapsed() >= deadline, "waits the whole deadline");
        let message = match outcome {
            Err(e @ WaitError::TimedOut { .. }) => e.to_string(),
            other => panic!("expected a time-out, got {other:?}"),
        };
        assert!(message.contains("the duplicate metric"), "{message}");
        assert!(
            message.contains(&format!("count was {}", polls.get())),
            "names the last probe error: {message}"
        );
    }

    #[tokio::test]
    async fn a_quiet_check_catches_a_late_event() {
        let started = Instant::now();
        let late = Duration::from_millis(150);
        let outcome = stays_quiet_for(Duration::from_secs(5), "no second dead letter", || {
            let now = started.elapsed();
            async move { (now >= late).then_some("dead letter #2") }
        })
        .await;
        let message = match outcome {
            Err(e @ WaitError::Happened { .. }) => e.to_string(),
            other => panic!("expected the late event to be caught, got {other:?}"),
        };
        assert!(message.contains("no second dead letter"), "{message}");
        assert!(message.contains("dead letter #2"), "{message}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "fails as soon as the event shows, not at the period's end"
        );
    }

    #[tokio::test]
    async fn a_quiet_check_lasts_its_whole_period() {
        let polls = Cell::new(0);
        let period = Duration::from_millis(200);
        let started = Instant::now();
        let outcome = stays_quiet_for(period, "nothing arrives", || {
            polls.set(polls.get() + 1);
            async { None::<()> }
        })
        .await;
        assert!(outcome.is_ok());
        assert!(started.elapsed() >= period);
        assert!(polls.get() > 1, "asked throughout, not once");
    }
}
