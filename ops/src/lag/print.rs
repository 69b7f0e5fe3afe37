//! `lag` for people: a table per group, the outbox first when asked for;
//! or the same as JSON.

use super::outbox::OutboxBacklog;
use super::Report;
use crate::terminal::{emit, print_json};

fn eta(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) if s < 1.0 => "0s".to_owned(),
        Some(s) if s < 120.0 => format!("{s:.0}s"),
        Some(s) if s < 7200.0 => format!("{:.0}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
        None => "never".to_owned(),
    }
}

/// Writes a lag table for people.
pub fn print(out: &mut impl std::io::Write, report: &Report) -> std::io::Result<()> {
    writeln!(
        out,
        "group {}: {}{}, total lag {}",
        report.group,
        report.members.map_or(
            "active members unknown (the broker did not describe the group)".to_owned(),
            |m| format!("{m} active member(s)")
        ),
        report
            .state
            .as_ref()
            .map_or(String::new(), |s| format!(", state {s}")),
        report.total
    )?;
    if report.measurements < 2 {
        writeln!(
            out,
            "status {} (one measurement; pass --window SECONDS for a verdict over time)",
            report.verdict.status
        )?;
    } else {
        writeln!(
            out,
            "status {} over {:.0}s ({} measurements), draining {:.1} msg/s, lag 0 in {}",
            report.verdict.status,
            report.verdict.window_seconds,
            report.measurements,
            report.verdict.drain_rate,
            eta(report.verdict.eta_seconds)
        )?;
    }
    writeln!(
        out,
        "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12} {:>8} {:>10} {:>8}",
        "topic", "partition", "committed", "high", "lag", "lag seconds", "status", "drain/s", "eta"
    )?;
    for p in &report.partitions {
        writeln!(
            out,
            "{:<20} {:>9} {:>12} {:>12} {:>10} {:>12} {:>8} {:>10.1} {:>8}",
            p.lag.topic,
            p.lag.partition,
            p.lag.committed.map_or("-".to_owned(), |c| c.to_string()),
            p.lag.high,
            p.lag.lag,
            p.lag.lag_seconds,
            p.verdict.status.as_str(),
            p.verdict.drain_rate,
            eta(p.verdict.eta_seconds)
        )?;
    }
    Ok(())
}

/// What `lag --json` prints, whatever the options: every group's report,
/// in the order of `--group`, and the outbox's backlog, `null` unless
/// `--outbox` was given. One shape, so that a script reads
/// `.groups[0].total` and `.outbox` the same way every time.
#[derive(Debug, serde::Serialize)]
pub struct LagJson<'a> {
    /// One report per group.
    pub groups: &'a [Report],
    /// The outbox's backlog, or `null`.
    pub outbox: Option<&'a OutboxBacklog>,
}

/// Prints the reports of a `lag` run, and the outbox's backlog when it was
/// read: one JSON object ([`LagJson`]), or tables.
pub fn reports(
    json: bool,
    reports: &[Report],
    outbox: Option<&OutboxBacklog>,
) -> anyhow::Result<()> {
    if json {
        return print_json(&LagJson {
            groups: reports,
            outbox,
        });
    }
    if let Some(o) = outbox {
        emit(|out| {
            use std::io::Write;
            writeln!(
                out,
                "outbox: {} row(s) waiting, the oldest {:.0} s old\n",
                o.rows, o.oldest_seconds
            )
        })?;
    }
    emit(|out| reports.iter().try_for_each(|report| print(out, report)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outbox is there, `null`, when not asked for: the shape is the
    /// same with and without `--outbox`.
    #[test]
    fn the_json_has_one_shape_with_or_without_the_outbox() {
        let keys = |value: &serde_json::Value| {
            value
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
        };
        let without = serde_json::to_value(LagJson {
            groups: &[],
            outbox: None,
        })
        .unwrap_or_default();
        assert_eq!(without["outbox"], serde_json::Value::Null, "{without}");
        assert!(without["groups"].is_array(), "{without}");
        let backlog = OutboxBacklog {
            rows: 3,
            oldest_seconds: 1.5,
        };
        let with = serde_json::to_value(LagJson {
            groups: &[],
            outbox: Some(&backlog),
        })
        .unwrap_or_default();
        assert_eq!(with["outbox"]["rows"], 3, "{with}");
        assert_eq!(keys(&with), keys(&without));
        assert_eq!(keys(&with), Some(vec!["groups".into(), "outbox".into()]));
    }
}
