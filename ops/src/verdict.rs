//! A verdict on a partition's progress from a window of lag measurements,
//! in the spirit of Burrow's evaluator, but read from the broker's offsets
//! and the exact time lag rather than from commit timestamps, so that it
//! does not depend on how often the group commits:
//!
//! - `REWIND`: the committed offset went back inside the window.
//! - `OK`: the group caught up at some point of the window (lag 0), or it
//!   advances and the oldest unconsumed message is not getting older.
//! - `WARN`: it advances but falls behind: the message lag did not shrink
//!   and the oldest unconsumed message got older.
//! - `STALL`: lag throughout the window and the committed offset never
//!   moved, while the group has members (a consumer stuck, or paused by its
//!   circuit breaker) or the broker does not say.
//! - `STOP`: the same with no member in the group: nobody consumes.
//! - `UNKNOWN`: lag but a single measurement; nothing to compare.
//!
//! Partitions are ranked by severity: `OK`, `UNKNOWN`, then the others in
//! the order above; a group's verdict is its worst partition's.

use serde::Serialize;

/// One measurement of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// When it was taken, milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// The high watermark.
    pub high: i64,
    /// Messages not consumed.
    pub lag: i64,
    /// Age in seconds of the oldest unconsumed message.
    pub lag_seconds: i64,
}

/// The verdict, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// Caught up or catching up.
    Ok,
    /// Lag and a single measurement.
    Unknown,
    /// Advancing, not catching up.
    Warn,
    /// The committed offset went back.
    Rewind,
    /// Lag and no progress while the group has members.
    Stall,
    /// Lag and no progress, and nobody in the group.
    Stop,
}

impl Severity {
    /// Every status, for exporting one series per status.
    pub const ALL: [Severity; 6] = [
        Severity::Ok,
        Severity::Unknown,
        Severity::Warn,
        Severity::Rewind,
        Severity::Stall,
        Severity::Stop,
    ];

    /// The name printed, exported and documented.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "UNKNOWN",
            Severity::Ok => "OK",
            Severity::Warn => "WARN",
            Severity::Rewind => "REWIND",
            Severity::Stall => "STALL",
            Severity::Stop => "STOP",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verdict on one partition and how fast its lag moves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Assessment {
    /// The verdict.
    pub status: Severity,
    /// Seconds between the first and the last measurement.
    pub window_seconds: f64,
    /// Messages per second the group consumed over the window.
    pub consume_rate: f64,
    /// Messages per second the lag shrank over the window (negative:
    /// it grew).
    pub drain_rate: f64,
    /// Seconds until the lag is 0 at the drain rate: 0 when there is no
    /// lag, `None` when it is not shrinking.
    pub eta_seconds: Option<f64>,
}

/// Assesses `window` (measurements of one partition, oldest first).
/// `members` is the group's active member count, `None` when the broker
/// does not say.
pub fn assess(window: &[Sample], members: Option<usize>) -> Assessment {
    let (Some(first), Some(last)) = (window.first(), window.last()) else {
        return Assessment {
            status: Severity::Unknown,
            window_seconds: 0.0,
            consume_rate: 0.0,
            drain_rate: 0.0,
            eta_seconds: None,
        };
    };
    let seconds = (last.at_ms - first.at_ms).max(0) as f64 / 1000.0;
    let per_second = |delta: i64| {
        if seconds > 0.0 {
            delta as f64 / seconds
        } else {
            0.0
        }
    };
    let consumed = match (first.committed, last.committed) {
        (Some(from), Some(to)) => to - from,
        _ => 0,
    };
    let drain_rate = per_second(first.lag - last.lag);
    let eta_seconds = if last.lag == 0 {
        Some(0.0)
    } else if drain_rate > 0.0 {
        Some(last.lag as f64 / drain_rate)
    } else {
        None
    };
    Assessment {
        status: status(window, first, last, members),
        window_seconds: seconds,
        consume_rate: per_second(consumed),
        drain_rate,
        eta_seconds,
    }
}

fn status(window: &[Sample], first: &Sample, last: &Sample, members: Option<usize>) -> Severity {
    let rewound = window
        .windows(2)
        .any(|pair| match (pair[0].committed, pair[1].committed) {
            (Some(before), Some(after)) => after < before,
            (Some(_), None) => true,
            _ => false,
        });
    if rewound {
        return Severity::Rewind;
    }
    if window.iter().any(|s| s.lag == 0) {
        return Severity::Ok;
    }
    if window.len() < 2 || last.at_ms <= first.at_ms {
        return Severity::Unknown;
    }
    if window.iter().all(|s| s.committed == first.committed) {
        return if members == Some(0) {
            Severity::Stop
        } else {
            Severity::Stall
        };
    }
    if last.lag >= first.lag && last.lag_seconds > first.lag_seconds {
        Severity::Warn
    } else {
        Severity::Ok
    }
}

/// A group's verdict from its partitions': the worst one, the summed rates,
/// and the longest time to drain (`None` when any lagging partition does not
/// drain).
pub fn combine(partitions: &[Assessment]) -> Assessment {
    let status = partitions
        .iter()
        .map(|a| a.status)
        .max()
        .unwrap_or(Severity::Ok);
    let eta_seconds = partitions.iter().try_fold(0.0_f64, |longest, a| {
        a.eta_seconds.map(|eta| longest.max(eta))
    });
    Assessment {
        status,
        window_seconds: partitions
            .iter()
            .map(|a| a.window_seconds)
            .fold(0.0, f64::max),
        consume_rate: partitions.iter().map(|a| a.consume_rate).sum(),
        drain_rate: partitions.iter().map(|a| a.drain_rate).sum(),
        eta_seconds,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(second: i64, committed: Option<i64>, high: i64, lag_seconds: i64) -> Sample {
        let position = committed.unwrap_or(0);
        Sample {
            at_ms: second * 1000,
            committed,
            high,
            lag: high - position,
            lag_seconds,
        }
    }

    #[test]
    fn each_verdict_from_the_window_that_defines_it() {
        let cases = [
            (
                "caught up once",
                vec![at(0, Some(5), 10, 3), at(10, Some(10), 10, 0)],
                Some(1),
                Severity::Ok,
            ),
            (
                "catching up",
                vec![at(0, Some(0), 100, 30), at(10, Some(80), 110, 5)],
                Some(1),
                Severity::Ok,
            ),
            (
                "advancing, falling behind",
                vec![at(0, Some(0), 100, 30), at(10, Some(10), 200, 38)],
                Some(1),
                Severity::Warn,
            ),
            (
                "not moving, members",
                vec![at(0, Some(3), 10, 30), at(10, Some(3), 12, 40)],
                Some(2),
                Severity::Stall,
            ),
            (
                "not moving, members unknown",
                vec![at(0, Some(3), 10, 30), at(10, Some(3), 12, 40)],
                None,
                Severity::Stall,
            ),
            (
                "not moving, nobody",
                vec![at(0, None, 10, 30), at(10, None, 12, 40)],
                Some(0),
                Severity::Stop,
            ),
            (
                "went back",
                vec![
                    at(0, Some(9), 10, 1),
                    at(5, Some(2), 10, 9),
                    at(10, Some(10), 10, 0),
                ],
                Some(1),
                Severity::Rewind,
            ),
            (
                "offsets deleted",
                vec![at(0, Some(9), 10, 1), at(10, None, 10, 50)],
                Some(1),
                Severity::Rewind,
            ),
            (
                "one measurement",
                vec![at(0, Some(3), 10, 30)],
                Some(1),
                Severity::Unknown,
            ),
        ];
        for (name, window, members, expected) in cases {
            assert_eq!(assess(&window, members).status, expected, "{name}");
        }
    }

    #[test]
    fn rates_and_time_to_drain() {
        let draining = assess(
            &[at(0, Some(0), 100, 30), at(10, Some(60), 110, 5)],
            Some(1),
        );
        assert_eq!(draining.consume_rate, 6.0);
        assert_eq!(draining.drain_rate, 5.0);
        assert_eq!(draining.eta_seconds, Some(10.0), "50 left at 5 per second");
        let growing = assess(
            &[at(0, Some(0), 100, 30), at(10, Some(10), 200, 38)],
            Some(1),
        );
        assert_eq!(growing.drain_rate, -9.0, "lag 100 to 190 in 10 s");
        assert_eq!(growing.eta_seconds, None);
        let done = assess(
            &[at(0, Some(0), 100, 30), at(10, Some(100), 100, 0)],
            Some(1),
        );
        assert_eq!(done.eta_seconds, Some(0.0));
        let group = combine(&[draining, done]);
        assert_eq!(group.status, Severity::Ok);
        assert_eq!(group.eta_seconds, Some(10.0));
        assert_eq!(combine(&[draining, growing]).eta_seconds, None);
        assert_eq!(combine(&[draining, growing]).status, Severity::Warn);
    }

    fn window() -> impl Strategy<Value = (Vec<Sample>, Option<usize>)> {
        let sample = (
            0..3_600_000_i64,
            // Often from a few values, so that equal and decreasing
            // neighbours (stalls and rewinds) are common.
            proptest::option::of(prop_oneof![0..4_i64, 0..1_000_i64]),
            0..1_000_i64,
            0..100_000_i64,
        );
        (
            proptest::collection::vec(sample, 0..12),
            proptest::option::of(0..4_usize),
        )
            .prop_map(|(raw, members)| {
                let mut samples: Vec<Sample> = raw
                    .into_iter()
                    .map(|(at_ms, committed, extra, lag_seconds)| {
                        let committed = committed.map(|c| c.min(1_000));
                        let high = committed.unwrap_or(0) + extra;
                        Sample {
                            at_ms,
                            committed,
                            high,
                            lag: extra,
                            lag_seconds: if extra == 0 { 0 } else { lag_seconds },
                        }
                    })
                    .collect();
                samples.sort_by_key(|s| s.at_ms);
                (samples, members)
            })
    }

    proptest! {
        /// The definitions hold for any window: a committed offset that went
        /// back is always REWIND, a lag of 0 otherwise always OK, STOP only
        /// with no member, and the time to drain is never negative.
        #[test]
        fn verdicts_follow_their_definitions((samples, members) in window()) {
            let verdict = assess(&samples, members);
            // Stated apart from the production rule (adjacent pairs): a
            // committed offset below one already seen, or none once one
            // was known.
            let mut highest: Option<i64> = None;
            let mut went_back = false;
            for sample in &samples {
                match (sample.committed, highest) {
                    (Some(c), Some(h)) if c < h => went_back = true,
                    (None, Some(_)) => went_back = true,
                    _ => {}
                }
                highest = highest.max(sample.committed);
            }
            prop_assert_eq!(verdict.status == Severity::Rewind, went_back);
            if !went_back && samples.iter().any(|s| s.lag == 0) {
                prop_assert_eq!(verdict.status, Severity::Ok);
            }
            if verdict.status == Severity::Stop {
                prop_assert_eq!(members, Some(0));
            }
            if matches!(verdict.status, Severity::Stall | Severity::Stop) {
                prop_assert!(samples.iter().all(|s| s.committed == samples[0].committed && s.lag > 0));
            }
            if let Some(eta) = verdict.eta_seconds {
                prop_assert!(eta >= 0.0 && eta.is_finite());
            }
            prop_assert!(verdict.window_seconds >= 0.0);
        }

        /// A group is never better off than its worst partition.
        #[test]
        fn a_group_is_as_bad_as_its_worst_partition(windows in proptest::collection::vec(window(), 1..6)) {
            let parts: Vec<Assessment> = windows.iter().map(|(s, m)| assess(s, *m)).collect();
            let group = combine(&parts);
            prop_assert!(parts.iter().all(|p| p.status <= group.status));
            prop_assert!(parts.iter().any(|p| p.status == group.status));
        }
    }
}
