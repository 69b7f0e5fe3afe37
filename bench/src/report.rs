//! The figures of a benchmark, each collected over several runs and
//! printed as its median with the spread of the runs; and that table read
//! back.

use crate::stats::Figure;

/// The table's header, as printed and as looked for when read back.
const HEADER: &str = "| section | figure | median | spread (min – max) | runs |";

/// One line of the table: a figure and its runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub section: String,
    pub name: String,
    pub unit: String,
    pub figure: Figure,
}

/// A table that is not the one [`Report::table`] prints.
#[derive(Debug, PartialEq)]
pub enum TableError {
    NoHeader,
    Row { line: usize, reason: String },
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoHeader => write!(f, "no line `{HEADER}`"),
            Self::Row { line, reason } => write!(f, "table line {line}: {reason}"),
        }
    }
}

impl std::error::Error for TableError {}

/// Every figure, in the order it was first measured.
#[derive(Default)]
pub struct Report {
    lines: Vec<Line>,
}

impl Report {
    /// Adds this run's `value` of figure `name`.
    pub fn record(&mut self, section: &str, name: &str, unit: &str, value: f64) {
        match self
            .lines
            .iter_mut()
            .find(|l| l.section == section && l.name == name)
        {
            Some(line) => line.figure.push(value),
            None => self.lines.push(Line {
                section: section.to_owned(),
                name: name.to_owned(),
                unit: unit.to_owned(),
                figure: Figure { runs: vec![value] },
            }),
        }
    }

    /// Every figure, in the order it was first measured.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// A report of these figures.
    pub fn from_lines(lines: Vec<Line>) -> Self {
        Self { lines }
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
        let mut out = format!("{HEADER}\n");
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

    /// Reads back the first table [`Report::table`] printed in `text`. The
    /// table holds only the median, minimum, maximum and count of each
    /// figure's runs, so the runs are rebuilt from them: `[min, median, …,
    /// median, max]`, which has the same median, spread and count (exactly
    /// the runs, sorted, when there were three).
    pub fn parse_table(text: &str) -> Result<Self, TableError> {
        if !text.lines().any(|l| l.trim() == HEADER) {
            return Err(TableError::NoHeader);
        }
        let lines = text
            .lines()
            .enumerate()
            .skip_while(|(_, l)| l.trim() != HEADER)
            .skip(2)
            .take_while(|(_, l)| l.trim_start().starts_with('|'))
            .map(|(i, l)| {
                parse_row(l).map_err(|reason| TableError::Row {
                    line: i + 1,
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { lines })
    }
}

/// One row of the table: `| section | name | median unit | min – max | runs |`.
fn parse_row(row: &str) -> Result<Line, String> {
    let inner = row.trim().trim_start_matches('|').trim_end_matches('|');
    let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
    let [section, name, median, spread, runs] = cells[..] else {
        return Err(format!("{} cells, not 5", cells.len()));
    };
    let (median, unit) = median
        .split_once(' ')
        .ok_or_else(|| format!("median `{median}` has no unit"))?;
    let (min, max) = spread
        .split_once(" – ")
        .ok_or_else(|| format!("spread `{spread}` is not `min – max`"))?;
    let count: usize = runs
        .parse()
        .map_err(|_| format!("runs `{runs}` is not a count"))?;
    let (median, min, max) = (
        parse_number(median)?,
        parse_number(min)?,
        parse_number(max)?,
    );
    let runs = match count {
        0 => return Err("0 runs".into()),
        1 => vec![median],
        2 => vec![min, max],
        n => std::iter::once(min)
            .chain(std::iter::repeat_n(median, n - 2))
            .chain(std::iter::once(max))
            .collect(),
    };
    Ok(Line {
        section: section.to_owned(),
        name: name.to_owned(),
        unit: unit.trim().to_owned(),
        figure: Figure { runs },
    })
}

/// A number as [`number`] prints it.
fn parse_number(text: &str) -> Result<f64, String> {
    if text == "n/a" {
        return Ok(f64::NAN);
    }
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}

/// Three significant digits, without exponent.
pub fn number(x: f64) -> String {
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

    #[test]
    fn the_printed_table_reads_back() {
        let mut r = Report::default();
        for v in [22798.0, 19078.0, 24257.0] {
            r.record(
                "ingest",
                "POST /orders at saturation (256 clients)",
                "req/s",
                v,
            );
        }
        for v in [0.339, 0.366, 0.365] {
            r.record("ratio", "ingest saturation / raw produce", "x", v);
        }
        r.record("memory", "producer peak RSS (ingest)", "MiB", 25.7);
        r.record("memory", "consumer peak RSS (drain)", "MiB", f64::NAN);
        let text = format!("# Title\n\nmachine: m\n\n{}\nafter the table\n", r.table());
        let back = Report::parse_table(&text).expect("reads back");
        assert_eq!(back.table(), r.table());
        // Three runs come back as they were, sorted.
        assert_eq!(back.lines()[0].figure.runs, vec![19078.0, 22798.0, 24257.0]);
        assert_eq!(back.lines()[1].figure.runs, vec![0.339, 0.365, 0.366]);
        assert_eq!(back.lines()[2].unit, "MiB");
        assert!(back.lines()[3].figure.runs[0].is_nan());
        assert_eq!(back.lines().len(), 4);
    }

    #[test]
    fn other_counts_keep_median_spread_and_count() {
        let text = format!(
            "{HEADER}\n|---|---|---:|---|---:|\n| a | one | 5.00 ms | 5.00 – 5.00 | 1 |\n\
             | a | two | 2.00 ms | 1.00 – 3.00 | 2 |\n| a | five | 4.00 ms | 1.00 – 9.00 | 5 |\n"
        );
        let back = Report::parse_table(&text).expect("reads back");
        assert_eq!(back.table(), text);
        assert_eq!(back.lines()[2].figure.runs.len(), 5);
    }

    #[test]
    fn a_foreign_table_is_refused() {
        assert_eq!(
            Report::parse_table("| a | b |\n|---|---|\n| 1 | 2 |\n").err(),
            Some(TableError::NoHeader)
        );
        let bad = format!("{HEADER}\n|---|---|---:|---|---:|\n| a | b | fast | 1 – 2 | 3 |\n");
        assert!(matches!(
            Report::parse_table(&bad),
            Err(TableError::Row { line: 3, .. })
        ));
        let bad =
            format!("{HEADER}\n|---|---|---:|---|---:|\n| a | b | 1.00 x | 1 – 2 | three |\n");
        assert!(matches!(
            Report::parse_table(&bad),
            Err(TableError::Row { line: 3, .. })
        ));
    }
}
