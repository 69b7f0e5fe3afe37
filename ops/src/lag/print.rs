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

/// Prints the reports of a `lag` run, and the outbox's backlog when it was
/// read: one JSON value (an object for one group, an array for several,
/// `{"groups", "outbox"}` with the outbox), or tables.
pub fn reports(
    json: bool,
    reports: &[Report],
    outbox: Option<&OutboxBacklog>,
) -> anyhow::Result<()> {
    match (json, reports, outbox) {
        (true, many, Some(outbox)) => {
            print_json(&serde_json::json!({ "groups": many, "outbox": outbox }))
        }
        (true, [one], None) => print_json(one),
        (true, many, None) => print_json(&many),
        (false, many, _) => {
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
            emit(|out| many.iter().try_for_each(|report| print(out, report)))
        }
    }
}
