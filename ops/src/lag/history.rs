//! A group's measurements over a sliding window, judged partition by
//! partition (see [`crate::verdict`]).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde::Serialize;

use super::{GroupLag, PartitionLag};
use crate::verdict::{assess, combine, Assessment, Sample};

/// A partition's lag with its verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionReport {
    /// The last measurement.
    #[serde(flatten)]
    pub lag: PartitionLag,
    /// The verdict over the window.
    #[serde(flatten)]
    pub verdict: Assessment,
}

/// A group's lag with its verdicts: what `lag` prints and the exporter
/// exports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The group.
    pub group: String,
    /// Active members (`None` when the broker does not say).
    pub members: Option<usize>,
    /// The group's state as the broker reports it.
    pub state: Option<String>,
    /// Sum of the partitions' lag in the last measurement.
    pub total: i64,
    /// Measurements the verdicts are based on.
    pub measurements: usize,
    /// The group's verdict: its worst partition's.
    #[serde(flatten)]
    pub verdict: Assessment,
    /// Per partition.
    pub partitions: Vec<PartitionReport>,
}

/// The measurements of one group over a sliding window.
#[derive(Debug)]
pub struct History {
    window_ms: i64,
    samples: BTreeMap<(String, i32), VecDeque<Sample>>,
    measurements: VecDeque<i64>,
}

impl History {
    /// Keeps what was measured in the last `window`, and the last
    /// measurement before it.
    pub fn new(window: Duration) -> Self {
        Self {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            samples: BTreeMap::new(),
            measurements: VecDeque::new(),
        }
    }

    /// Adds a measurement and returns the verdicts over the window.
    pub fn record(&mut self, lag: &GroupLag) -> Report {
        let oldest = lag.at_ms.saturating_sub(self.window_ms);
        // Kept: the measurements inside the window and the last one before
        // it, so that the verdicts compare across the whole window even
        // when a measurement takes longer than the window.
        self.measurements.push_back(lag.at_ms);
        while self.measurements.get(1).is_some_and(|&at| at <= oldest) {
            self.measurements.pop_front();
        }
        // Partitions no longer measured (a topic deleted) are forgotten.
        self.samples.retain(|(topic, partition), _| {
            lag.partitions
                .iter()
                .any(|p| &p.topic == topic && p.partition == *partition)
        });
        let mut partitions = Vec::with_capacity(lag.partitions.len());
        for p in &lag.partitions {
            let window = self
                .samples
                .entry((p.topic.clone(), p.partition))
                .or_default();
            window.push_back(Sample {
                at_ms: lag.at_ms,
                committed: p.committed,
                high: p.high,
                lag: p.lag,
                lag_seconds: p.lag_seconds,
            });
            while window.get(1).is_some_and(|s| s.at_ms <= oldest) {
                window.pop_front();
            }
            let verdict = assess(window.make_contiguous(), lag.members);
            partitions.push(PartitionReport {
                lag: p.clone(),
                verdict,
            });
        }
        let verdicts: Vec<Assessment> = partitions.iter().map(|p| p.verdict).collect();
        Report {
            group: lag.group.clone(),
            members: lag.members,
            state: lag.state.clone(),
            total: lag.total,
            measurements: self.measurements.len(),
            verdict: combine(&verdicts),
            partitions,
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// One measurement of group `g` on partition 0 of `orders`.
    pub(crate) fn lag(at_ms: i64, committed: Option<i64>, high: i64) -> GroupLag {
        let position = committed.unwrap_or(0);
        GroupLag {
            group: "g".to_owned(),
            at_ms,
            members: Some(1),
            state: Some("Stable".to_owned()),
            partitions: vec![PartitionLag {
                topic: "orders".to_owned(),
                partition: 0,
                committed,
                high,
                lag: high - position,
                lag_seconds: if high > position { at_ms / 1000 } else { 0 },
            }],
            total: high - position,
        }
    }

    #[test]
    fn the_history_judges_only_the_window() {
        let mut history = History::new(Duration::from_secs(10));
        assert_eq!(
            history.record(&lag(0, Some(5), 10)).verdict.status,
            crate::verdict::Severity::Unknown
        );
        assert_eq!(
            history.record(&lag(5_000, Some(5), 12)).verdict.status,
            crate::verdict::Severity::Stall
        );
        // The rewind at 10 s is judged while it is in the window...
        assert_eq!(
            history.record(&lag(10_000, Some(2), 12)).verdict.status,
            crate::verdict::Severity::Rewind
        );
        let report = history.record(&lag(15_000, Some(6), 20));
        assert_eq!(report.verdict.status, crate::verdict::Severity::Rewind);
        assert_eq!(report.measurements, 3, "0 s fell out of the 10 s window");
        // ... and forgotten once it left it.
        let report = history.record(&lag(25_000, Some(20), 20));
        assert_eq!(report.verdict.status, crate::verdict::Severity::Ok);
        assert_eq!(report.partitions[0].verdict.eta_seconds, Some(0.0));
    }
}
