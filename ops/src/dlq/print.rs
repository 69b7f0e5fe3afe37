//! `dlq list` and `dlq replay` results for people (`--json` prints the
//! same values as JSON).

use std::io::Write;

use super::read::Listing;
use super::replay::ReplaySummary;
use crate::dead_letters::DeadLetter;

/// Most fingerprints a listing shows (`--json` has them all).
const SHOWN_FINGERPRINTS: usize = 20;

/// Writes a listing for people.
pub fn print_listing(out: &mut impl Write, listing: &Listing) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} dead letters, {} selected",
        listing.topic, listing.total, listing.selected
    )?;
    if let (Some(group), Some(pending)) = (&listing.group, listing.pending) {
        writeln!(
            out,
            "group {group}: {pending} pending, {} replayed, parked or passed over",
            listing.selected - pending
        )?;
    }
    if !listing.by_class.is_empty() {
        print_classes(out, listing)?;
        print_fingerprints(out, listing)?;
        writeln!(
            out,
            "\n{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  {:<8} message",
            "part/offset",
            "original",
            "key",
            "kind",
            "class",
            "retries",
            "replays",
            "failed at",
            "replay"
        )?;
    }
    for letter in &listing.dead_letters {
        print_letter(out, letter)?;
    }
    if listing.dead_letters.len() < listing.selected {
        writeln!(
            out,
            "… {} more (raise --limit)",
            listing.selected - listing.dead_letters.len()
        )?;
    }
    Ok(())
}

/// The counts by class, and by first cause when some failed again.
fn print_classes(out: &mut impl Write, listing: &Listing) -> std::io::Result<()> {
    writeln!(out, "\nby error class:")?;
    for (class, n) in listing.by_class.iter() {
        writeln!(out, "  {class:<44} {n:>7}")?;
    }
    if listing.failed_again > 0 {
        writeln!(
            out,
            "\nby first cause (the class of the first failure, across replays):"
        )?;
        for (class, n) in listing.by_first_class.iter() {
            writeln!(out, "  {class:<44} {n:>7}")?;
        }
    }
    Ok(())
}

/// The most frequent fingerprints, most frequent first.
fn print_fingerprints(out: &mut impl Write, listing: &Listing) -> std::io::Result<()> {
    writeln!(
        out,
        "\nby fingerprint (class and error text, numbers blanked):"
    )?;
    let mut prints: Vec<(&String, &usize)> = listing.by_fingerprint.iter().collect();
    prints.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (print, n) in prints.iter().take(SHOWN_FINGERPRINTS) {
        writeln!(out, "  {n:>7}  {print}")?;
    }
    if prints.len() > SHOWN_FINGERPRINTS {
        writeln!(
            out,
            "  … {} more fingerprints (--json has them all)",
            prints.len() - SHOWN_FINGERPRINTS
        )?;
    }
    Ok(())
}

/// One row of the listing's table.
fn print_letter(out: &mut impl Write, l: &DeadLetter) -> std::io::Result<()> {
    let original = format!(
        "{}/{}/{}",
        l.original_topic.as_deref().unwrap_or("?"),
        l.original_partition.map_or("?".into(), |p| p.to_string()),
        l.original_offset.map_or("?".into(), |o| o.to_string())
    );
    let message: String = l
        .error_message
        .as_deref()
        .unwrap_or("")
        .chars()
        .take(80)
        .collect();
    writeln!(
        out,
        "{:<12} {:<22} {:<38} {:<10} {:<26} {:>7} {:>7}  {:<20}  {:<8} {}",
        format!("{}/{}", l.partition, l.offset),
        original,
        l.key.as_deref().unwrap_or("-"),
        l.error_kind.as_deref().unwrap_or("?"),
        l.error_class.as_deref().unwrap_or("?"),
        l.retry_count.map_or("?".into(), |r| r.to_string()),
        l.replay_count,
        l.failed_at
            .map_or("?".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string()),
        match l.pending {
            Some(true) => "pending",
            Some(false) => "done",
            None => "-",
        },
        message
    )
}

/// Writes a replay's summary for people: the counts (a dry run's count of
/// what it would replay says so), then what a dry run would replay, what
/// was parked and what failed.
pub fn print_summary(out: &mut impl Write, summary: &ReplaySummary) -> std::io::Result<()> {
    writeln!(
        out,
        "{}read {}, {} {}, parked {}, skipped {}, failed {}, deferred {}",
        if summary.dry_run { "dry run: " } else { "" },
        summary.read,
        if summary.dry_run {
            "would replay"
        } else {
            "replayed"
        },
        summary.replayed,
        summary.parked,
        summary.skipped,
        summary.failed,
        summary.deferred
    )?;
    for line in summary.replayed_from.iter().filter(|_| summary.dry_run) {
        writeln!(out, "  would replay {line}")?;
    }
    for parked in &summary.parked_letters {
        writeln!(out, "  parked {parked}")?;
    }
    for failure in &summary.failures {
        writeln!(out, "  failed {failure}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(dry_run: bool) -> String {
        let summary = ReplaySummary {
            read: 2,
            replayed: 2,
            dry_run,
            replayed_from: vec!["0/1 -> orders".into(), "0/2 -> orders".into()],
            ..ReplaySummary::default()
        };
        let mut out = Vec::new();
        print_summary(&mut out, &summary).unwrap_or_default();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn a_dry_run_says_what_it_would_replay_not_that_it_replayed() {
        let dry = summary(true);
        assert!(
            dry.starts_with("dry run: read 2, would replay 2, parked 0"),
            "{dry}"
        );
        assert!(!dry.contains("replayed"), "{dry}");
        assert!(dry.contains("  would replay 0/2 -> orders"), "{dry}");
        let done = summary(false);
        assert!(done.starts_with("read 2, replayed 2, parked 0"), "{done}");
        assert!(!done.contains("would"), "{done}");
    }
}
