//! A run's results, machine-readable: where and how it ran, and every
//! figure with its runs, as JSON. Written by a run (`--results FILE`), or
//! read from the Markdown a run printed (`bench import-table`).

use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::report::{Line, Report};
use crate::stats::Figure;

/// Version of the JSON layout.
const FORMAT: u64 = 1;

/// Where the runs of an imported table come from.
pub const IMPORTED: &str =
    "read from the printed Markdown table: runs rebuilt from median, min, max and count";

/// One benchmark run and its figures.
pub struct Results {
    /// When it ran (UTC date, `YYYY-MM-DD`).
    pub date: String,
    pub machine: String,
    /// The harness's settings, as the run printed them.
    pub settings: String,
    /// `KEY=VALUE` settings of every service started, as printed.
    pub service_settings: Option<String>,
    pub broker: Option<String>,
    /// A smoke run: not figures to quote.
    pub smoke: bool,
    /// `measured`, or how the figures were recovered.
    pub source: String,
    pub report: Report,
}

impl Results {
    pub fn to_json(&self) -> Value {
        let figures: Vec<Value> = self
            .report
            .lines()
            .iter()
            .map(|l| {
                // JSON has no NaN: a run that measured nothing is null.
                let runs: Vec<Option<f64>> = l
                    .figure
                    .runs
                    .iter()
                    .map(|v| v.is_finite().then_some(*v))
                    .collect();
                json!({"section": l.section, "name": l.name, "unit": l.unit, "runs": runs})
            })
            .collect();
        json!({
            "format": FORMAT,
            "date": self.date,
            "machine": self.machine,
            "settings": self.settings,
            "service_settings": self.service_settings,
            "broker": self.broker,
            "smoke": self.smoke,
            "source": self.source,
            "figures": figures,
        })
    }

    pub fn from_json(v: &Value) -> anyhow::Result<Self> {
        let format = v["format"].as_u64();
        anyhow::ensure!(
            format == Some(FORMAT),
            "results format {format:?}, not {FORMAT}"
        );
        let text = |key: &str| -> anyhow::Result<String> {
            v[key]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("results: no text `{key}`"))
        };
        let figures = v["figures"]
            .as_array()
            .context("results: no list `figures`")?;
        let lines = figures
            .iter()
            .enumerate()
            .map(|(i, f)| figure_from_json(f).with_context(|| format!("results: figure {i}")))
            .collect::<anyhow::Result<_>>()?;
        Ok(Self {
            date: text("date")?,
            machine: text("machine")?,
            settings: text("settings")?,
            service_settings: v["service_settings"].as_str().map(str::to_owned),
            broker: v["broker"].as_str().map(str::to_owned),
            smoke: v["smoke"].as_bool().context("results: no flag `smoke`")?,
            source: text("source")?,
            report: Report::from_lines(lines),
        })
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(&self.to_json())?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        Self::from_json(&value).with_context(|| format!("in {}", path.display()))
    }

    /// The run printed in `markdown`: the `machine:`, `settings:` and
    /// `service settings:` lines and the figures' table, in the section under
    /// the heading `heading` (any level; the whole text when `None`).
    pub fn import(
        markdown: &str,
        heading: Option<&str>,
        date: &str,
        broker: Option<&str>,
    ) -> anyhow::Result<Self> {
        let section = match heading {
            None => markdown,
            Some(h) => section_under(markdown, h).with_context(|| format!("no heading `{h}`"))?,
        };
        let field = |key: &str| {
            section
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_owned())
        };
        Ok(Self {
            date: date.to_owned(),
            machine: field("machine:").context("no line `machine: …`")?,
            settings: field("settings:").context("no line `settings: …`")?,
            service_settings: field("service settings:"),
            broker: broker.map(str::to_owned),
            smoke: section.lines().any(|l| l.contains("(smoke: not figures")),
            source: IMPORTED.to_owned(),
            report: Report::parse_table(section)?,
        })
    }
}

fn figure_from_json(f: &Value) -> anyhow::Result<Line> {
    let text = |key: &str| -> anyhow::Result<String> {
        f[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no text `{key}`"))
    };
    let runs = f["runs"]
        .as_array()
        .context("no list `runs`")?
        .iter()
        .map(|r| match r {
            Value::Null => Ok(f64::NAN),
            r => r.as_f64().context("a run is not a number"),
        })
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok(Line {
        section: text("section")?,
        name: text("name")?,
        unit: text("unit")?,
        figure: Figure { runs },
    })
}

/// The text under the Markdown heading whose title is `title`, up to the
/// next heading of the same or a higher level.
fn section_under<'a>(markdown: &'a str, title: &str) -> Option<&'a str> {
    let level = |l: &str| {
        let hashes = l.chars().take_while(|c| *c == '#').count();
        (hashes > 0 && l[hashes..].starts_with(' ')).then_some(hashes)
    };
    let mut offset = 0;
    let mut start = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_end();
        match (start, level(trimmed)) {
            (None, Some(n)) if trimmed[n..].trim() == title => start = Some((offset, n)),
            (Some((from, n)), Some(m)) if m <= n => return Some(&markdown[from..offset]),
            _ => {}
        }
        offset += line.len();
    }
    start.map(|(from, _)| &markdown[from..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Results {
        let mut report = Report::default();
        for v in [22798.0, 19078.0, 24257.0] {
            report.record(
                "ingest",
                "POST /orders at saturation (8 clients)",
                "req/s",
                v,
            );
        }
        report.record("memory", "consumer peak RSS (drain)", "MiB", f64::NAN);
        Results {
            date: "2026-11-23".into(),
            machine: "2 CPUs (AMD EPYC), 24 GiB".into(),
            settings: "3 run(s), 5s load phases".into(),
            service_settings: None,
            broker: Some("tansu 0.6.0".into()),
            smoke: false,
            source: "measured".into(),
            report,
        }
    }

    #[test]
    fn json_round_trips_with_unmeasured_runs_as_null() {
        let r = sample();
        let json = r.to_json();
        assert_eq!(json["figures"][1]["runs"][0], Value::Null);
        let back = Results::from_json(&json).expect("reads back");
        assert_eq!(back.to_json(), json);
        assert!(back.report.lines()[1].figure.runs[0].is_nan());
        let mut wrong = json.clone();
        wrong["format"] = json!(2);
        assert!(Results::from_json(&wrong).is_err());
    }

    #[test]
    fn imports_the_run_under_its_heading() {
        let r = sample();
        let markdown = format!(
            "# Results\n\n## Earlier\n\nmachine: other\n\n## The run\n\nSome notes.\n\n\
             machine: {}\nsettings: {}\n\n{}\n## Later\n\nsettings: not this\n",
            r.machine,
            r.settings,
            r.report.table()
        );
        let back = Results::import(
            &markdown,
            Some("The run"),
            "2026-11-23",
            Some("tansu 0.6.0"),
        )
        .expect("imports");
        assert_eq!(back.machine, r.machine);
        assert_eq!(back.settings, r.settings);
        assert_eq!(back.source, IMPORTED);
        assert_eq!(back.report.table(), r.report.table());
        assert!(Results::import(&markdown, Some("Missing"), "d", None).is_err());
        assert!(Results::import("machine: m\nsettings: s\n", None, "d", None).is_err());
    }
}
