//! How a replay reports its progress: to an [`Observer`], which is the
//! command line's [`Progress`] on standard error, or a
//! [`tokio::sync::watch`] channel of [`ReplayProgress`] for a page to show.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::replay::ReplaySummary;

/// Hears how a replay goes: after each dead letter it settled (not those it
/// leaves for the next run) and once at its end, `done`.
pub trait Observer {
    /// The replay's `summary` so far (its `expected` says of how many).
    fn report(&mut self, summary: &ReplaySummary, done: bool);
}

/// A replay's counts so far, without its lists: what a page polls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayProgress {
    /// Dead letters the replay reads at most (see [`ReplaySummary::expected`]).
    pub expected: u64,
    /// Read so far.
    pub read: usize,
    /// Republished and acknowledged (or would be, in a dry run).
    pub replayed: usize,
    /// Passed over for good and reported.
    pub parked: usize,
    /// Not selected by the filter.
    pub skipped: usize,
    /// Could not be republished.
    pub failed: usize,
    /// Left for the next run.
    pub deferred: usize,
    /// Whether nothing is published or committed.
    pub dry_run: bool,
    /// Whether the replay ended.
    pub done: bool,
}

impl ReplayProgress {
    /// The counts of `summary`.
    pub fn of(summary: &ReplaySummary, done: bool) -> Self {
        Self {
            expected: summary.expected,
            read: summary.read,
            replayed: summary.replayed,
            parked: summary.parked,
            skipped: summary.skipped,
            failed: summary.failed,
            deferred: summary.deferred,
            dry_run: summary.dry_run,
            done,
        }
    }
}

/// Publishes each report to whoever watches the channel, receivers or not.
impl Observer for tokio::sync::watch::Sender<ReplayProgress> {
    fn report(&mut self, summary: &ReplaySummary, done: bool) {
        self.send_replace(ReplayProgress::of(summary, done));
    }
}

/// Progress of a replay on standard error, every 2 s: one line rewritten
/// in place on a terminal, JSON lines otherwise (for a job's log).
pub(super) struct Progress {
    started: Instant,
    last: Option<Instant>,
    terminal: bool,
}

impl Progress {
    /// Reports on a replay that starts now.
    pub(super) fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            started: Instant::now(),
            last: None,
            terminal: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Progress {
    /// Reports `summary` when 2 s passed since the last report, or when it
    /// is the `last` one (and some report came before it).
    fn report(&mut self, summary: &ReplaySummary, last: bool) {
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if !(due || last && self.last.is_some()) {
            return;
        }
        self.last = Some(Instant::now());
        let seconds = self.started.elapsed().as_secs_f64();
        let read = summary.read as u64;
        let expected = summary.expected;
        let rate = if seconds > 0.0 {
            read as f64 / seconds
        } else {
            0.0
        };
        let left = expected.saturating_sub(read);
        let eta = (rate > 0.0).then(|| left as f64 / rate);
        if self.terminal {
            eprint!(
                "\r{read}/{expected} read, {} replayed, {} parked, {} skipped, {} failed, {rate:.1}/s, {}   ",
                summary.replayed,
                summary.parked,
                summary.skipped,
                summary.failed,
                eta.map_or("done in ?".to_owned(), |s| format!("done in {s:.0}s"))
            );
            if last {
                eprintln!();
            }
        } else {
            let line = serde_json::json!({
                "progress": {
                    "read": read,
                    "expected": expected,
                    "replayed": summary.replayed,
                    "parked": summary.parked,
                    "skipped": summary.skipped,
                    "failed": summary.failed,
                    "rate": (rate * 10.0).round() / 10.0,
                    "eta_seconds": eta.map(f64::round),
                    "done": last,
                }
            });
            eprintln!("{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_observer_holds_the_latest_counts_and_says_when_done() {
        let (mut sender, receiver) = tokio::sync::watch::channel(ReplayProgress::default());
        let mut summary = ReplaySummary {
            expected: 5,
            read: 2,
            replayed: 1,
            skipped: 1,
            ..ReplaySummary::default()
        };
        let observer: &mut dyn Observer = &mut sender;
        observer.report(&summary, false);
        assert_eq!(
            *receiver.borrow(),
            ReplayProgress {
                expected: 5,
                read: 2,
                replayed: 1,
                skipped: 1,
                ..ReplayProgress::default()
            }
        );
        summary.read = 5;
        summary.replayed = 4;
        observer.report(&summary, true);
        let last = receiver.borrow().clone();
        assert!(last.done, "{last:?}");
        assert_eq!((last.read, last.replayed, last.expected), (5, 4, 5));
    }
}
