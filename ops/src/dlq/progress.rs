//! A replay's progress on standard error.

use std::time::{Duration, Instant};

use super::replay::ReplaySummary;

/// Progress of a replay on standard error, every 2 s: one line rewritten
/// in place on a terminal, JSON lines otherwise (for a job's log).
pub(super) struct Progress {
    started: Instant,
    last: Option<Instant>,
    expected: u64,
    terminal: bool,
}

impl Progress {
    /// Reports on a replay of `expected` dead letters.
    pub(super) fn new(expected: u64) -> Self {
        use std::io::IsTerminal;
        Self {
            started: Instant::now(),
            last: None,
            expected,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Reports `summary` when 2 s passed since the last report, or when it
    /// is the `last` one (and some report came before it).
    pub(super) fn report(&mut self, summary: &ReplaySummary, last: bool) {
        let due = self
            .last
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(2));
        if !(due || last && self.last.is_some()) {
            return;
        }
        self.last = Some(Instant::now());
        let seconds = self.started.elapsed().as_secs_f64();
        let read = summary.read as u64;
        let rate = if seconds > 0.0 {
            read as f64 / seconds
        } else {
            0.0
        };
        let left = self.expected.saturating_sub(read);
        let eta = (rate > 0.0).then(|| left as f64 / rate);
        if self.terminal {
            eprint!(
                "\r{read}/{} read, {} replayed, {} parked, {} skipped, {} failed, {rate:.1}/s, {}   ",
                self.expected,
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
                    "expected": self.expected,
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
