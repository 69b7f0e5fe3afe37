//! Reading a Prometheus text exposition the way a scraper does: by sample
//! line, never by substring (a `# HELP` text can contain anything).

/// The value of the sample `series` (name and labels exactly as exposed,
/// labels in the exporter's order), if present.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(s, _)| *s == series)
        .and_then(|(_, v)| v.parse().ok())
}

/// The sum of every sample of metric `name` whose labels include all of
/// `labels` (`key="value"` pairs), or `None` when no sample matches.
pub fn sum(exposition: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut total = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        let have: Vec<&str> = rest.trim_end_matches('}').split(',').collect();
        if labels.iter().all(|l| have.contains(l)) {
            if let Ok(v) = value.parse::<f64>() {
                *total.get_or_insert(0.0) += v;
            }
        }
    }
    total
}

/// A `/metrics` endpoint on a free local port answering what `text`
/// gives at each scrape (a service's exposition as a test wants it); its
/// URL. It serves until the runtime ends.
pub async fn serve(text: impl Fn() -> String + Clone + Send + Sync + 'static) -> String {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let now = text();
            async move { now }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a metrics fixture");
    let url = format!(
        "http://{}/metrics",
        listener.local_addr().expect("the fixture's address")
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP up 1 while up\n# TYPE up gauge\nup 0\n\
        hits{route=\"/a\",status=\"200\"} 3\nhits{route=\"/b\",status=\"200\"} 4\n";

    #[test]
    fn samples_are_read_by_line_not_by_substring() {
        assert_eq!(sample(TEXT, "up"), Some(0.0), "the HELP text says 1");
        assert_eq!(sample(TEXT, "hits{route=\"/a\",status=\"200\"}"), Some(3.0));
        assert_eq!(sample(TEXT, "down"), None);
        assert_eq!(sum(TEXT, "hits", &["status=\"200\""]), Some(7.0));
        assert_eq!(sum(TEXT, "hits", &["route=\"/b\""]), Some(4.0));
        assert_eq!(sum(TEXT, "hits", &["route=\"/c\""]), None);
    }
}
