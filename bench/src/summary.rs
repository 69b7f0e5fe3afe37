//! The summary of a run: its headline figures next to the baselines
//! measured in the same run, as a Markdown table and an SVG chart of the
//! ratios, and the Markdown put between markers in a notebook.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::chart::{svg, Bar};
use crate::end_to_end::{FETCH_WAIT_DEFAULT_MS, FETCH_WAIT_SHORT_MS};
use crate::ingest::{BRIDGE_P99, BRIDGE_PER_CORE, PRODUCER_OVER_BRIDGE, PRODUCER_PER_CORE};
use crate::persist::{CONNECT_PER_CORE, CONSUMER_OVER_CONNECT, CONSUMER_PER_CORE};
use crate::report::{number, Line};
use crate::results::Results;

pub const START: &str = "<!-- summary:start -->";
pub const END: &str = "<!-- summary:end -->";

/// A figure chosen by section and name; `prefix` for names that carry the
/// run's settings (client count, batch size).
struct Pick {
    section: &'static str,
    name: String,
    prefix: bool,
}

fn exact(section: &'static str, name: &str) -> Pick {
    Pick {
        section,
        name: name.to_owned(),
        prefix: false,
    }
}

fn starting(section: &'static str, name: &str) -> Pick {
    Pick {
        prefix: true,
        ..exact(section, name)
    }
}

/// A headline figure, its baseline, and their ratio as the run measured it
/// (run by run, so its median and spread are the ratio's own).
struct Comparison {
    headline: &'static str,
    figure: Pick,
    baseline: Pick,
    ratio: Pick,
    /// What the ratio should be, where the project set a goal.
    goal: &'static str,
}

fn comparisons() -> Vec<Comparison> {
    let ingest = || starting("ingest", "POST /orders at saturation (");
    let drain = || exact("persist", "consumer drain");
    vec![
        Comparison {
            headline: "ingest vs bare HTTP",
            figure: ingest(),
            baseline: starting("ingest", "bare axum 202 at saturation ("),
            ratio: exact("ratio", "ingest saturation / bare HTTP saturation"),
            goal: "",
        },
        Comparison {
            headline: "ingest vs raw produce",
            figure: ingest(),
            baseline: exact("ingest", "raw produce, same settings, no HTTP"),
            ratio: exact("ratio", "ingest saturation / raw produce"),
            goal: "",
        },
        Comparison {
            headline: "consumer drain vs bare COPY",
            figure: drain(),
            baseline: starting("persist", "bare COPY, "),
            ratio: exact("ratio", "consumer drain / bare COPY"),
            goal: "",
        },
        Comparison {
            headline: "consumer drain vs naive consumer",
            figure: drain(),
            baseline: exact("persist", "naive consumer, one row one commit"),
            ratio: exact("ratio", "consumer drain / naive consumer"),
            goal: "",
        },
        Comparison {
            headline: "consumer vs Kafka Connect's JDBC sink, rows/s per core",
            figure: exact("persist", CONSUMER_PER_CORE),
            baseline: exact("persist", CONNECT_PER_CORE),
            ratio: exact("ratio", CONSUMER_OVER_CONNECT),
            goal: "≥ 3",
        },
        Comparison {
            headline: "producer vs an HTTP bridge, req/s per core",
            figure: exact("ingest", PRODUCER_PER_CORE),
            baseline: exact("ingest", BRIDGE_PER_CORE),
            ratio: exact("ratio", PRODUCER_OVER_BRIDGE),
            goal: "≥ 2",
        },
        Comparison {
            headline: "producer CPU per request vs bare handler's",
            figure: exact("cpu", "POST /orders: producer CPU per request"),
            baseline: exact("cpu", "bare axum: CPU per request"),
            ratio: exact("ratio", "producer CPU per request / bare handler's"),
            goal: "≤ 2",
        },
    ]
}

/// Latency and memory: figures without a baseline of their own.
fn singles() -> Vec<(String, Pick)> {
    let mut out = Vec::new();
    for wait in [FETCH_WAIT_DEFAULT_MS, FETCH_WAIT_SHORT_MS] {
        for p in ["p50", "p99"] {
            out.push((
                format!("end to end {p}, fetch.wait.max.ms {wait}"),
                exact(
                    "end to end",
                    &format!("fetch.wait.max.ms {wait}: request to row {p}"),
                ),
            ));
        }
    }
    out.push((
        "POST /orders p99 at saturation".into(),
        exact("ingest", "POST /orders at saturation p99"),
    ));
    out.push((
        "HTTP bridge p99 at saturation".into(),
        exact("ingest", BRIDGE_P99),
    ));
    out.push((
        "producer peak RSS, ingest at saturation".into(),
        exact("memory", "producer peak RSS (ingest)"),
    ));
    out.push((
        "consumer peak RSS, draining".into(),
        exact("memory", "consumer peak RSS (drain)"),
    ));
    out.push((
        "Kafka Connect worker peak RSS, draining".into(),
        exact("memory", "Kafka Connect worker peak RSS (drain)"),
    ));
    out.push((
        "HTTP bridge peak RSS, at saturation".into(),
        exact("memory", "HTTP bridge peak RSS"),
    ));
    out
}

/// The figure `pick` names, if the run measured it in every run.
fn find<'a>(results: &'a Results, pick: &Pick) -> Option<&'a Line> {
    results
        .report
        .lines()
        .iter()
        .find(|l| {
            l.section == pick.section
                && (l.name == pick.name || (pick.prefix && l.name.starts_with(&pick.name)))
        })
        .filter(|l| !l.figure.runs.is_empty() && l.figure.runs.iter().all(|v| v.is_finite()))
}

/// `median unit (min – max)`, or `not measured`.
fn cell(line: Option<&Line>) -> String {
    match line {
        None => "not measured".into(),
        Some(l) => {
            let (min, max) = l.figure.spread();
            format!(
                "{} {} ({} – {})",
                number(l.figure.median()),
                l.unit,
                number(min),
                number(max)
            )
        }
    }
}

/// The line naming the run the summary comes from.
fn provenance(results: &Results) -> String {
    let mut out = format!(
        "From the run of {}{}: machine {}; broker {}; settings: {}",
        results.date,
        if results.smoke {
            " (a smoke run: not figures to quote)"
        } else {
            ""
        },
        results.machine,
        results.broker.as_deref().unwrap_or("not recorded"),
        results.settings
    );
    if let Some(service) = &results.service_settings {
        out.push_str(&format!("; service settings: {service}"));
    }
    if results.source != "measured" {
        out.push_str(&format!(" ({})", results.source));
    }
    out.push('.');
    out
}

/// The summary as Markdown, between the markers; `chart` is the link to
/// the SVG chart, if there is one.
pub fn markdown(results: &Results, chart: Option<&str>) -> String {
    let mut out = format!(
        "{START}\n<!-- Generated by `bench summary` from a run's results: edit the run, not this. -->\n\
         ## Summary\n\n{}\n\n",
        provenance(results)
    );
    out.push_str(
        "A full run regenerates this summary (`./scripts/bench.sh --summary`); dated sections \
         below may be later than this run and measure parts of it again.\n\n",
    );
    if let Some(link) = chart {
        out.push_str(&format!(
            "![Headline figures as a ratio of their baseline, median and spread of the runs]({link})\n\n"
        ));
    }
    out.push_str(
        "| headline | measured | baseline, same run | ratio | goal |\n|---|---|---|---|---|\n",
    );
    for c in comparisons() {
        let figure = find(results, &c.figure);
        let baseline = find(results, &c.baseline);
        let named = |l: Option<&Line>, pick: &Pick| {
            format!(
                "{}: {}",
                l.map_or(pick.name.trim_end_matches([' ', '(', ',']), |l| &l.name),
                cell(l)
            )
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            c.headline,
            named(figure, &c.figure),
            named(baseline, &c.baseline),
            cell(find(results, &c.ratio)),
            c.goal
        ));
    }
    out.push_str("\n| latency and memory | median (min – max) |\n|---|---|\n");
    for (label, pick) in singles() {
        out.push_str(&format!("| {label} | {} |\n", cell(find(results, &pick))));
    }
    out.push_str(END);
    out.push('\n');
    out
}

/// The chart of the ratios, median and spread of the runs.
pub fn chart(results: &Results) -> String {
    let bars: Vec<Bar> = comparisons()
        .into_iter()
        .map(|c| Bar {
            label: if c.goal.is_empty() {
                c.headline.to_owned()
            } else {
                format!("{} (goal {})", c.headline, c.goal)
            },
            value: find(results, &c.ratio).map(|l| {
                let (min, max) = l.figure.spread();
                (l.figure.median(), min, max)
            }),
        })
        .collect();
    let title = format!(
        "Headline figures as a multiple of their baseline, run of {}{}",
        results.date,
        if results.smoke { " (smoke)" } else { "" }
    );
    svg(&title, &bars)
}

/// Where `bench summary` writes.
pub struct Outputs {
    /// The summary alone, as Markdown.
    pub markdown: Option<PathBuf>,
    /// The chart.
    pub svg: Option<PathBuf>,
    /// A notebook whose summary (between the markers) is replaced.
    pub update: Option<PathBuf>,
}

/// Renders the summary of the results at `results` into `outputs`.
pub fn write(results: &Path, outputs: &Outputs) -> anyhow::Result<()> {
    let documents: Vec<&PathBuf> = outputs.markdown.iter().chain(&outputs.update).collect();
    anyhow::ensure!(
        !documents.is_empty() || outputs.svg.is_some(),
        "nothing to write: give --markdown, --svg or --update"
    );
    let results = Results::read(results)?;
    if let Some(svg) = &outputs.svg {
        std::fs::write(svg, chart(&results))
            .with_context(|| format!("writing {}", svg.display()))?;
    }
    for document in documents {
        let link = outputs
            .svg
            .as_deref()
            .map(|svg| link(svg, document))
            .transpose()?;
        let block = markdown(&results, link.as_deref());
        let text = if Some(document) == outputs.update.as_ref() {
            let old = std::fs::read_to_string(document)
                .with_context(|| format!("reading {}", document.display()))?;
            update(&old, &block).with_context(|| format!("in {}", document.display()))?
        } else {
            block
        };
        std::fs::write(document, text)
            .with_context(|| format!("writing {}", document.display()))?;
    }
    Ok(())
}

/// The chart's address as seen from `document`: its file name when both
/// are in one directory, else its path as given.
fn link(svg: &Path, document: &Path) -> anyhow::Result<String> {
    let dir = |p: &Path| std::path::absolute(p).map(|a| a.parent().map(Path::to_path_buf));
    let same = dir(svg)? == dir(document)?;
    Ok(match svg.file_name() {
        Some(name) if same => name.to_string_lossy().into_owned(),
        _ => svg.to_string_lossy().into_owned(),
    })
}

/// `document` with `block` between the markers, in place of what was
/// there; after the first line (the title) when there are no markers yet.
pub fn update(document: &str, block: &str) -> anyhow::Result<String> {
    match (document.find(START), document.find(END)) {
        (Some(start), Some(end)) if start < end => {
            let rest = document[end + END.len()..]
                .strip_prefix('\n')
                .unwrap_or(&document[end + END.len()..]);
            Ok(format!("{}{block}{rest}", &document[..start]))
        }
        (None, None) => {
            let (title, rest) = document.split_once('\n').unwrap_or((document, ""));
            Ok(format!(
                "{title}\n\n{block}\n{}",
                rest.trim_start_matches('\n')
            ))
        }
        _ => anyhow::bail!("the summary markers `{START}` and `{END}` are not a pair in order"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;

    fn results(report: Report) -> Results {
        Results {
            date: "2026-11-23".into(),
            machine: "2 CPUs".into(),
            settings: "3 run(s)".into(),
            service_settings: None,
            broker: None,
            smoke: false,
            source: "measured".into(),
            report,
        }
    }

    #[test]
    fn missing_figures_are_not_measured_never_zero() {
        let mut report = Report::default();
        for v in [20000.0, 22000.0, 24000.0] {
            report.record(
                "ingest",
                "POST /orders at saturation (256 clients)",
                "req/s",
                v,
            );
        }
        report.record("ratio", "ingest saturation / raw produce", "x", 0.18);
        report.record("memory", "consumer peak RSS (drain)", "MiB", f64::NAN);
        let md = markdown(&results(report), Some("summary.svg"));
        assert!(
            md.starts_with(START) && md.ends_with(&format!("{END}\n")),
            "{md}"
        );
        assert!(md.contains("![") && md.contains("(summary.svg)"), "{md}");
        assert!(
            md.contains(
                "| ingest vs raw produce | POST /orders at saturation (256 clients): \
                 22000 req/s (20000 – 24000) | raw produce, same settings, no HTTP: not measured \
                 | 0.180 x (0.180 – 0.180) |  |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| consumer drain vs bare COPY | consumer drain: not measured | bare COPY: not measured | not measured |  |"),
            "{md}"
        );
        assert!(
            md.contains("| consumer peak RSS, draining | not measured |"),
            "{md}"
        );
        assert!(!md.contains("| 0 "), "{md}");
    }

    /// The summary at the top of RESULTS.md and the chart beside it are
    /// what the committed results render to: generated, not edited.
    #[test]
    fn the_committed_summary_is_the_committed_results_rendered() {
        let json = serde_json::from_str(include_str!("../results.json")).expect("JSON");
        let results = Results::from_json(&json).expect("results");
        let block = markdown(&results, Some("summary.svg"));
        assert!(!block.contains("not measured"), "{block}");
        assert!(
            include_str!("../RESULTS.md").contains(&block),
            "bench/RESULTS.md does not hold the summary of bench/results.json: run \
             `bench summary bench/results.json --svg bench/summary.svg --update bench/RESULTS.md`"
        );
        let svg = chart(&results);
        crate::chart::tests::assert_well_formed(&svg);
        assert_eq!(include_str!("../summary.svg"), svg);
    }

    #[test]
    fn update_replaces_between_markers_or_inserts_under_the_title() {
        let block = format!("{START}\nnew\n{END}\n");
        let fresh = update("# Title\n\nText.\n", &block).expect("inserts");
        assert_eq!(fresh, format!("# Title\n\n{block}\nText.\n"));
        let again = update(&fresh, &format!("{START}\nnewer\n{END}\n")).expect("replaces");
        assert_eq!(
            again,
            format!("# Title\n\n{START}\nnewer\n{END}\n\nText.\n")
        );
        assert_eq!(update(&fresh, &block).expect("same"), fresh);
        assert!(update(&format!("{END}\n{START}\n"), &block).is_err());
        assert!(update(&format!("# T\n{START}\n"), &block).is_err());
    }
}
