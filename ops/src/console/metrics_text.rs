//! Reading the services' `/metrics`: fetching it within a deadline and a
//! size bound ([`scrape`]), and parsing the Prometheus text format by
//! sample line ([`parse`]): comments skipped, label values unescaped, a
//! line that is not a sample passed over (never a panic, never a guess).

use std::time::Duration;

/// Largest exposition read.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Longest a scrape may take.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric's name.
    pub name: String,
    /// Its labels, in the order exposed.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a `/metrics` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// No answer, a refused connection, or the deadline passed.
    #[error("scraping {url}: {cause}")]
    Failed {
        /// The URL.
        url: String,
        /// What happened.
        cause: String,
    },
    /// An answer other than 200.
    #[error("scraping {url}: HTTP {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// A body larger than [`MAX_BODY`].
    #[error("scraping {url}: the answer is larger than {MAX_BODY} bytes")]
    TooLarge {
        /// The URL.
        url: String,
    },
}

/// Fetches the exposition at `url` with `client` (whose timeout bounds
/// the whole scrape), at most [`MAX_BODY`] bytes.
pub async fn scrape(client: &reqwest::Client, url: &str) -> Result<String, ScrapeError> {
    let failed = |e: reqwest::Error| ScrapeError::Failed {
        url: url.to_owned(),
        cause: if e.is_timeout() {
            format!("no answer within {SCRAPE_TIMEOUT:?}")
        } else {
            chain(&e)
        },
    };
    let mut response = client.get(url).send().await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(ScrapeError::Status {
            url: url.to_owned(),
            status: response.status().as_u16(),
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ScrapeError::TooLarge {
                url: url.to_owned(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// `error` and its causes, `: `-separated (reqwest's own text alone
/// does not say that the connection was refused).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}

/// The samples of `text`, lines that are not samples passed over.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(sample).collect()
}

/// The sum of the samples of `name` whose labels include `labels`, or
/// `None` when none matches.
pub fn sum(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| s.value)
        .reduce(|a, b| a + b)
}

/// One line as a sample, if it is one.
fn sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remainder) = label_set(after)?;
        labels = parsed;
        rest = remainder;
    }
    let value = rest.split_whitespace().next()?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value: number(value)?,
    })
}

/// A sample value: a float, `NaN`, `+Inf` or `-Inf`.
fn number(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// The labels after `{` up to the closing `}`, and what follows it.
fn label_set(mut text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start_matches([' ', ',']);
        if let Some(after) = text.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = text.split_once('=')?;
        let after = after.trim_start().strip_prefix('"')?;
        let (value, after) = quoted(after)?;
        labels.push((key.trim().to_owned(), value));
        text = after;
    }
}

/// A label value up to its closing quote (escapes `\\`, `\"`, `\n`
/// undone), and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP up 1 while up\n# TYPE up gauge\nup 0\n\
        kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"0\"} 1\n\
        kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"1\"} 0 1700000000000\n\
        odd{path=\"a\\\"b,c}\\\\\"} 2.5\n\
        not a sample line\n\
        broken{topic=\"x} 3\n\
        inf +Inf\n";

    #[test]
    fn samples_are_read_by_line_labels_unescaped() {
        let samples = parse(TEXT);
        assert_eq!(sum(&samples, "up", &[]), Some(0.0), "the HELP text says 1");
        assert_eq!(
            sum(
                &samples,
                "kafka_consumer_dlq_flood_held",
                &[("partition", "0")]
            ),
            Some(1.0)
        );
        assert_eq!(
            sum(&samples, "kafka_consumer_dlq_flood_held", &[]),
            Some(1.0)
        );
        let odd = samples
            .iter()
            .find(|s| s.name == "odd")
            .map(|s| s.label("path"));
        assert_eq!(odd, Some(Some("a\"b,c}\\")));
        assert_eq!(sum(&samples, "broken", &[]), None);
        assert_eq!(sum(&samples, "not", &[]), None);
        assert_eq!(sum(&samples, "inf", &[]), Some(f64::INFINITY));
        assert_eq!(sum(&samples, "missing", &[]), None);
    }

    proptest::proptest! {
        /// Whatever a /metrics answers, parsing never panics, and every
        /// sample found has a name.
        #[test]
        fn any_text_parses_without_panic(text in "\\PC{0,200}|[a-z_{}=\",\\\\ \\n0-9.#]{0,120}") {
            for s in parse(&text) {
                proptest::prop_assert!(!s.name.is_empty());
            }
        }
    }
}
