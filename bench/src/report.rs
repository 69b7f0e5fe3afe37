//! The figures of a benchmark, each collected over several runs and
//! printed as its median with the spread of the runs.

use crate::stats::Figure;

/// One line of the table.
struct Line {
    section: &'static str,
    name: String,
    unit: &'static str,
    figure: Figure,
}

/// Every figure, in the order it was first measured.
#[derive(Default)]
pub struct Report {
    lines: Vec<Line>,
}

impl Report {
    /// Adds this run's `value` of figure `name`.
    pub fn record(&mut self, section: &'static str, name: &str, unit: &'static str, value: f64) {
        match self
            .lines
            .iter_mut()
            .find(|l| l.section == section && l.name == name)
        {
            Some(line) => line.figure.push(value),
            None => self.lines.push(Line {
                section,
                name: name.to_owned(),
                unit,
                figure: Figure { runs: vec![value] },
            }),
        }
    }

    /// The values of figure `name` so far.
    #[cfg(test)]
    fn runs(&self, section: &str, name: &str) -> Option<&[f64]> {
        self.lines
            .iter()
            .find(|l| l.section == section && l.name == name)
            .map(|l| l.figure.runs.as_slice())
    }

    /// Figures with a run that measured nothing (not a number).
    pub fn missing(&self) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.figure.runs.iter().any(|v| !v.is_finite()))
            .map(|l| format!("{}: {}", l.section, l.name))
            .collect()
    }

    /// The table, as Markdown.
    pub fn table(&self) -> String {
        let mut out = String::from("| section | figure | median | spread (min – max) | runs |\n");
        out.push_str("|---|---|---:|---|---:|\n");
        for l in &self.lines {
            let (min, max) = l.figure.spread();
            out.push_str(&format!(
                "| {} | {} | {} {} | {} – {} | {} |\n",
                l.section,
                l.name,
                number(l.figure.median()),
                l.unit,
                number(min),
                number(max),
                l.figure.runs.len()
            ));
        }
        out
    }
}

/// Three significant digits, without exponent.
fn number(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let a = x.abs();
    if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_runs_per_figure_in_first_seen_order() {
        let mut r = Report::default();
        r.record("ingest", "b", "req/s", 3.0);
        r.record("ingest", "a", "req/s", 1.0);
        r.record("ingest", "b", "req/s", 5.0);
        assert_eq!(r.runs("ingest", "b"), Some(&[3.0, 5.0][..]));
        let table = r.table();
        let b = table.find("| b |").expect("b listed");
        let a = table.find("| a |").expect("a listed");
        assert!(b < a, "{table}");
        assert!(
            table.contains("| 4.00 req/s | 3.00 – 5.00 | 2 |"),
            "{table}"
        );
        assert!(r.missing().is_empty());
        r.record("memory", "peak", "MiB", f64::NAN);
        assert_eq!(r.missing(), vec!["memory: peak".to_owned()]);
    }
}
