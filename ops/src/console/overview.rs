//! The overview (`GET /` and `GET /api/overview`): intake and persist
//! rates, lag per group with its verdict, the dead-letter topics' depth
//! and oldest age, the circuit breaker and the flood guard per partition,
//! the outbox backlog.
//!
//! Measured on demand, at most once per [`REFRESH`] whoever asks ([`Live`]):
//! the API waits for a measurement, the page never does (it shows the last
//! one, or "measuring" before the first, and the script brings the rest);
//! the services' `/metrics` scraped (rates from two successive scrapes),
//! Kafka asked on a task of its own ([`KafkaSide`]: one measurement in
//! flight at a time, shown as failed after [`super::DEADLINE`]). A
//! measurement that fails is an error in its section, never a 0.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use platform::kafka::KafkaSettings;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use super::metrics_text::{self, Sample};
use super::page::{age, render, Chrome, Viewer};
use super::{Console, DEADLINE};
use crate::lag::{GroupSpec, Measurer, NewGroups};

/// What a figure not measured yet shows.
const MEASURING: &str = "measuring…";
/// A measurement younger than this is served again instead of taken anew.
pub const REFRESH: Duration = Duration::from_millis(1500);
/// Kafka measurements younger than this are served again.
const KAFKA_FRESH: Duration = Duration::from_secs(4);
/// How long one broker request of the DLQ measurement may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(5);
/// The window of the lag verdicts, as the exporter's default.
const LAG_WINDOW: Duration = Duration::from_secs(300);

/// What the overview measures besides the lag.
pub struct Sources {
    /// Consumers' /metrics URLs.
    pub consumer_metrics: Vec<String>,
    /// Producers' /metrics URLs.
    pub producer_metrics: Vec<String>,
    /// The dead-letter topics.
    pub dlq_topics: Vec<String>,
    /// The group the DLQs are read as (nothing committed).
    pub reader_group: String,
    /// The outbox's database, if given.
    pub outbox: Option<sqlx::PgPool>,
}

/// A pool on the outbox database (connects on first use).
pub fn outbox_pool(url: &str) -> anyhow::Result<sqlx::PgPool> {
    use anyhow::Context;
    store::db::pool(
        url,
        store::db::PoolSpec {
            application: "pubsubkafka-console",
            max_connections: 1,
            acquire: Duration::from_secs(5),
            guards: store::db::SessionGuards::for_statements(Duration::from_secs(10)).read_only(),
        },
    )
    .context("--outbox-database-url is not a PostgreSQL URL")
}

/// A measurement, or why it failed; neither while it is being taken
/// (a rate after the first scrape).
#[derive(Debug, Clone, Serialize)]
pub struct Section<T> {
    /// The measurement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<T>,
    /// Why it is missing or incomplete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl<T> Section<T> {
    fn ok(value: T) -> Self {
        Self {
            value: Some(value),
            error: None,
        }
    }

    fn failed(error: impl Into<String>) -> Self {
        Self {
            value: None,
            error: Some(error.into()),
        }
    }

    fn pending() -> Self {
        Self {
            value: None,
            error: None,
        }
    }
}

/// A group's lag.
#[derive(Debug, Clone, Serialize)]
pub struct GroupRow {
    /// The group.
    pub group: String,
    /// Its verdict (OK, WARN, STALL, STOP, REWIND, UNKNOWN).
    pub status: Option<String>,
    /// Messages behind.
    pub lag: Option<i64>,
    /// Seconds until caught up at the current drain rate.
    pub eta_seconds: Option<f64>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

/// A dead-letter topic's depth.
#[derive(Debug, Clone, Serialize)]
pub struct DlqRow {
    /// The topic.
    pub topic: String,
    /// Dead letters it holds (high minus low watermarks).
    pub depth: Option<i64>,
    /// Age of its oldest dead letter, seconds (`None`: empty).
    pub oldest_age_seconds: Option<f64>,
    /// Why it could not be measured.
    pub error: Option<String>,
}

/// A partition as the consumers report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PartitionRow {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The consumer's circuit breaker: `open` or `closed`.
    pub circuit: &'static str,
    /// The DLQ flood guard: `held` or `flowing`.
    pub flood_guard: &'static str,
}

/// The outbox's backlog.
#[derive(Debug, Clone, Serialize)]
pub struct Outbox {
    /// Rows waiting.
    pub rows: i64,
    /// Age of the oldest, seconds.
    pub oldest_seconds: f64,
}

/// Everything the overview shows; `/api/overview` answers it as JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was measured.
    pub measured_at: DateTime<Utc>,
    /// Orders the producers had acknowledged per second.
    pub accepted_per_second: Section<f64>,
    /// Messages the consumers persisted per second.
    pub persisted_per_second: Section<f64>,
    /// Lag per group.
    pub lag: Section<Vec<GroupRow>>,
    /// Depth per dead-letter topic.
    pub dlq: Section<Vec<DlqRow>>,
    /// Per partition the consumers report.
    pub partitions: Section<Vec<PartitionRow>>,
    /// The outbox (`None`: no outbox database given).
    pub outbox: Option<Section<Outbox>>,
    /// The texts of the page's live elements, by their `data-live` key.
    pub live: BTreeMap<String, String>,
}

/// The overview's measurements, shared by every request.
pub struct Live {
    sources: Sources,
    http: reqwest::Client,
    kafka: Arc<KafkaSide>,
    rates: Rates,
    /// Held while measuring: one measurement at a time.
    measuring: tokio::sync::Mutex<()>,
    /// The last overview and when it was measured, readable while a
    /// measurement is under way.
    shown: Mutex<Option<(Instant, Arc<Overview>)>>,
}

impl Live {
    /// Measures `groups` and `sources` on `kafka`.
    pub fn new(
        kafka: KafkaSettings,
        groups: Vec<GroupSpec>,
        sources: Sources,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(metrics_text::SCRAPE_TIMEOUT)
            .connect_timeout(metrics_text::SCRAPE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let side = KafkaSide {
            measurer: Arc::new(tokio::sync::Mutex::new(Measurer::new(
                kafka.clone(),
                groups,
                LAG_WINDOW,
                NewGroups::Measure,
            ))),
            kafka,
            dlq_topics: sources.dlq_topics.clone(),
            reader_group: sources.reader_group.clone(),
            last: Mutex::new(None),
        };
        Ok(Self {
            sources,
            http,
            kafka: Arc::new(side),
            rates: Rates::default(),
            measuring: tokio::sync::Mutex::new(()),
            shown: Mutex::new(None),
        })
    }

    /// The last overview measured, however old, without waiting; and
    /// whether it is younger than [`REFRESH`].
    pub fn shown(&self) -> (Option<Arc<Overview>>, bool) {
        let shown = self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match shown.as_ref() {
            Some((at, overview)) => (Some(overview.clone()), at.elapsed() < REFRESH),
            None => (None, false),
        }
    }

    /// Whether an outbox database was given (its section is shown).
    pub fn outbox_configured(&self) -> bool {
        self.sources.outbox.is_some()
    }

    /// The overview, measured anew unless the last one is younger than
    /// [`REFRESH`] (one measurement at a time, whoever asks).
    pub async fn current(&self) -> Arc<Overview> {
        let _measuring = self.measuring.lock().await;
        if let (Some(overview), true) = self.shown() {
            return overview;
        }
        let overview = Arc::new(self.measure().await);
        *self
            .shown
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((Instant::now(), overview.clone()));
        overview
    }

    async fn measure(&self) -> Overview {
        let (producers, consumers, kafka, outbox) = tokio::join!(
            self.scrape_all(&self.sources.producer_metrics),
            self.scrape_all(&self.sources.consumer_metrics),
            self.kafka.parts(),
            self.outbox(),
        );
        let accepted = self.rate(
            &producers,
            "--producer-metrics",
            "kafka_producer_messages_total",
            "acked",
        );
        let persisted = self.rate(
            &consumers,
            "--consumer-metrics",
            "kafka_consumer_messages_total",
            "persisted",
        );
        let mut overview = Overview {
            measured_at: Utc::now(),
            accepted_per_second: accepted,
            persisted_per_second: persisted,
            lag: kafka.lag,
            dlq: kafka.dlq,
            partitions: partitions(&consumers),
            outbox,
            live: BTreeMap::new(),
        };
        overview.live = View::of(&overview).live();
        overview
    }

    /// Each URL's samples, or why it could not be scraped.
    async fn scrape_all(&self, urls: &[String]) -> Vec<(String, Result<Vec<Sample>, String>)> {
        let scrapes = urls.iter().map(|url| async move {
            let samples = metrics_text::scrape(&self.http, url)
                .await
                .map(|text| metrics_text::parse(&text))
                .map_err(|e| e.to_string());
            (url.clone(), samples)
        });
        futures::future::join_all(scrapes).await
    }

    /// The summed rate of counter `name{outcome}` over `scrapes`.
    fn rate(
        &self,
        scrapes: &[(String, Result<Vec<Sample>, String>)],
        option: &str,
        name: &str,
        outcome: &str,
    ) -> Section<f64> {
        if scrapes.is_empty() {
            return Section::failed(format!("not measured: start the console with {option} URL"));
        }
        let now = Instant::now();
        let mut total = Some(0.0);
        let mut errors = Vec::new();
        for (url, scraped) in scrapes {
            let counter = scraped.as_ref().map_err(Clone::clone).and_then(|samples| {
                metrics_text::sum(samples, name, &[("outcome", outcome)]).ok_or_else(|| {
                    format!("{url} exports no {name}{{outcome=\"{outcome}\"}}: is it the right service?")
                })
            });
            match counter {
                Ok(value) => {
                    let rate = self.rates.rate(url, name, now, value);
                    total = total.zip(rate).map(|(a, b)| a + b);
                }
                Err(e) => errors.push(e),
            }
        }
        match (errors.is_empty(), total) {
            (false, _) => Section::failed(errors.join("; ")),
            (true, Some(rate)) => Section::ok(rate),
            (true, None) => Section::pending(),
        }
    }

    async fn outbox(&self) -> Option<Section<Outbox>> {
        let pool = self.sources.outbox.as_ref()?;
        let read = tokio::time::timeout(
            DEADLINE,
            store::outbox::backlog(pool, Duration::from_secs(5)),
        )
        .await;
        Some(match read {
            Ok(Ok((rows, oldest_seconds))) => Section::ok(Outbox {
                rows,
                oldest_seconds,
            }),
            Ok(Err(e)) => Section::failed(format!(
                "reading the outbox (is it the database of PRODUCER_MODE=outbox?): {e}"
            )),
            Err(_) => Section::failed(format!(
                "no answer from the outbox database within {DEADLINE:?}"
            )),
        })
    }
}

/// The last value of each counter per URL, to make rates of.
#[derive(Default)]
struct Rates(Mutex<HashMap<(String, String), (Instant, f64)>>);

impl Rates {
    /// Per second since the last value of `name` at `url` (`None` for the
    /// first); a counter that went down restarted from 0.
    fn rate(&self, url: &str, name: &str, now: Instant, value: f64) -> Option<f64> {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = last.insert((url.to_owned(), name.to_owned()), (now, value));
        let (at, before) = previous?;
        let seconds = now.duration_since(at).as_secs_f64();
        if seconds < 0.1 {
            return None;
        }
        let increase = if value >= before {
            value - before
        } else {
            value
        };
        Some(increase / seconds)
    }
}

/// The partitions the consumers report, with their circuit breaker's and
/// flood guard's state; an error names the consumers that could not be
/// scraped.
fn partitions(consumers: &[(String, Result<Vec<Sample>, String>)]) -> Section<Vec<PartitionRow>> {
    if consumers.is_empty() {
        return Section::failed("not measured: start the console with --consumer-metrics URL");
    }
    let mut rows: BTreeMap<(String, i32), PartitionRow> = BTreeMap::new();
    let mut errors = Vec::new();
    for (url, scraped) in consumers {
        let samples = match scraped {
            Ok(samples) => samples,
            Err(e) => {
                errors.push(e.clone());
                continue;
            }
        };
        let Some(circuit) = metrics_text::sum(samples, "kafka_consumer_circuit_open", &[]) else {
            errors.push(format!(
                "{url} exports no kafka_consumer_circuit_open: is it a consumer?"
            ));
            continue;
        };
        for (topic, partition, held) in consumer_partitions(samples) {
            let row = rows
                .entry((topic.clone(), partition))
                .or_insert(PartitionRow {
                    topic,
                    partition,
                    circuit: "closed",
                    flood_guard: "flowing",
                });
            if circuit > 0.0 {
                row.circuit = "open";
            }
            if held {
                row.flood_guard = "held";
            }
        }
    }
    Section {
        value: Some(rows.into_values().collect()),
        error: (!errors.is_empty()).then(|| errors.join("; ")),
    }
}

/// Every (topic, partition) a consumer's samples name (flood guard or
/// lag), and whether the flood guard holds it.
fn consumer_partitions(samples: &[Sample]) -> Vec<(String, i32, bool)> {
    let mut found: BTreeMap<(String, i32), bool> = BTreeMap::new();
    for s in samples {
        let flood = s.name == "kafka_consumer_dlq_flood_held";
        if !flood && s.name != "kafka_consumer_lag" {
            continue;
        }
        let (Some(topic), Some(Ok(partition))) = (
            s.label("topic"),
            s.label("partition").map(str::parse::<i32>),
        ) else {
            continue;
        };
        let held = found.entry((topic.to_owned(), partition)).or_default();
        *held |= flood && s.value > 0.0;
    }
    found.into_iter().map(|((t, p), h)| (t, p, h)).collect()
}

/// The lag and the DLQ depths: measured on a task of their own, one at a
/// time, so that a slow broker never piles up blocking threads.
struct KafkaSide {
    measurer: Arc<tokio::sync::Mutex<Measurer>>,
    kafka: KafkaSettings,
    dlq_topics: Vec<String>,
    reader_group: String,
    last: Mutex<Option<(Instant, KafkaParts)>>,
}

#[derive(Clone)]
struct KafkaParts {
    lag: Section<Vec<GroupRow>>,
    dlq: Section<Vec<DlqRow>>,
}

impl KafkaParts {
    fn failed(error: &str) -> Self {
        Self {
            lag: Section::failed(error),
            dlq: Section::failed(error),
        }
    }
}

impl KafkaSide {
    /// The last parts if younger than `fresh`.
    fn cached(&self, fresh: Duration) -> Option<KafkaParts> {
        let last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < fresh)
            .map(|(_, parts)| parts.clone())
    }

    /// Recent parts, or measured anew within [`DEADLINE`].
    async fn parts(self: &Arc<Self>) -> KafkaParts {
        if let Some(parts) = self.cached(KAFKA_FRESH) {
            return parts;
        }
        let Ok(measurer) = self.measurer.clone().try_lock_owned() else {
            return self.cached(DEADLINE * 2).unwrap_or_else(|| {
                KafkaParts::failed(&format!(
                    "no answer from Kafka ({}) yet: the last measurement has not ended",
                    self.kafka.bootstrap_servers
                ))
            });
        };
        let side = self.clone();
        let task = tokio::spawn(async move {
            let parts = side.measure(measurer).await;
            if let Ok(mut last) = side.last.lock() {
                *last = Some((Instant::now(), parts.clone()));
            }
            parts
        });
        match tokio::time::timeout(DEADLINE, task).await {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => KafkaParts::failed(&format!("the Kafka measurement failed: {e}")),
            Err(_) => KafkaParts::failed(&format!(
                "no answer from Kafka ({}) within {DEADLINE:?}",
                self.kafka.bootstrap_servers
            )),
        }
    }

    async fn measure(&self, mut measurer: tokio::sync::OwnedMutexGuard<Measurer>) -> KafkaParts {
        let (kafka, topics, group) = (
            self.kafka.clone(),
            self.dlq_topics.clone(),
            self.reader_group.clone(),
        );
        let dlq = tokio::task::spawn_blocking(move || {
            topics
                .iter()
                .map(|topic| dlq_row(&kafka, &group, topic))
                .collect::<Vec<_>>()
        });
        let mut lag = Vec::with_capacity(measurer.len());
        for n in 0..measurer.len() {
            let group = measurer.group(n).name.clone();
            lag.push(match measurer.measure(n).await {
                Ok(Ok(report)) => GroupRow {
                    group,
                    status: Some(report.verdict.status.as_str().to_owned()),
                    lag: Some(report.total),
                    eta_seconds: report.verdict.eta_seconds,
                    error: None,
                },
                Ok(Err(e)) => GroupRow::failed(group, e.to_string()),
                Err(e) => GroupRow::failed(group, e.to_string()),
            });
        }
        let dlq = match dlq.await {
            Ok(rows) => Section::ok(rows),
            Err(e) => Section::failed(format!("the DLQ measurement failed: {e}")),
        };
        KafkaParts {
            lag: Section::ok(lag),
            dlq,
        }
    }
}

impl GroupRow {
    fn failed(group: String, error: String) -> Self {
        Self {
            group,
            status: None,
            lag: None,
            eta_seconds: None,
            error: Some(error),
        }
    }
}

/// The depth and oldest age of DLQ `topic` (blocking).
fn dlq_row(kafka: &KafkaSettings, group: &str, topic: &str) -> DlqRow {
    let measured = dlq_depth(kafka, group, topic);
    DlqRow {
        topic: topic.to_owned(),
        depth: measured.as_ref().ok().map(|m| m.0),
        oldest_age_seconds: measured.as_ref().ok().and_then(|m| m.1),
        error: measured.err(),
    }
}

/// Dead letters held by `topic` and its oldest one's age in seconds
/// (`None` when empty).
fn dlq_depth(
    kafka: &KafkaSettings,
    group: &str,
    topic: &str,
) -> Result<(i64, Option<f64>), String> {
    let reader = crate::kafka::reader(&kafka.reader_config("pubsubkafka-console", group))
        .map_err(|e| e.to_string())?;
    let marks = crate::dead_letters::watermarks(&reader, topic, KAFKA_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let depth = marks.iter().map(|(_, low, high)| (high - low).max(0)).sum();
    let oldest = oldest_timestamp(&reader, topic, &marks)?;
    let now = Utc::now().timestamp_millis();
    Ok((depth, oldest.map(|ms| ((now - ms).max(0)) as f64 / 1000.0)))
}

/// The earliest timestamp of the first message of each non-empty
/// partition (`None`: all empty); an error when one cannot be read within
/// [`KAFKA_TIMEOUT`].
fn oldest_timestamp(
    reader: &crate::kafka::Reader,
    topic: &str,
    marks: &[(i32, i64, i64)],
) -> Result<Option<i64>, String> {
    let mut tpl = TopicPartitionList::new();
    let mut waiting = HashSet::new();
    for &(partition, low, _) in marks.iter().filter(|(_, low, high)| high > low) {
        tpl.add_partition_offset(topic, partition, Offset::Offset(low))
            .map_err(|e| e.to_string())?;
        waiting.insert(partition);
    }
    if waiting.is_empty() {
        return Ok(None);
    }
    reader.assign(&tpl).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut oldest: Option<i64> = None;
    let mut last_error = None;
    while !waiting.is_empty() && started.elapsed() < KAFKA_TIMEOUT {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) if waiting.remove(&m.partition()) => {
                if let Some(ms) = m.timestamp().to_millis() {
                    oldest = Some(oldest.map_or(ms, |o| o.min(ms)));
                }
            }
            Some(Err(e)) => last_error = Some(e.to_string()),
            _ => {}
        }
    }
    if waiting.is_empty() {
        return Ok(oldest);
    }
    let mut partitions: Vec<i32> = waiting.into_iter().collect();
    partitions.sort_unstable();
    Err(format!(
        "could not read the oldest dead letter of {topic} partitions {partitions:?} within {KAFKA_TIMEOUT:?}{}",
        last_error.map(|e| format!(" ({e})")).unwrap_or_default()
    ))
}

/// A live element of the page: its `data-live` key and text.
#[derive(Debug, Clone)]
pub struct Cell {
    /// The `data-live` key.
    pub key: String,
    /// The text.
    pub text: String,
}

fn cell(key: impl Into<String>, text: impl Into<String>) -> Cell {
    Cell {
        key: key.into(),
        text: text.into(),
    }
}

/// The text of a section's error element (empty when it has none).
fn error_cell<T>(key: &str, section: &Section<T>) -> Cell {
    cell(
        format!("{key}.error"),
        section.error.clone().unwrap_or_default(),
    )
}

/// A rate as shown.
fn rate_cell(key: &str, rate: &Section<f64>) -> Cell {
    let text = match (&rate.value, &rate.error) {
        (Some(r), _) => format!("{r:.1}/s"),
        (None, Some(_)) => "unknown".to_owned(),
        (None, None) => MEASURING.to_owned(),
    };
    cell(key, text)
}

/// A group's row as shown.
pub struct LagView {
    /// The group.
    pub group: String,
    /// Verdict, lag, ETA and error cells.
    pub status: Cell,
    /// Messages behind.
    pub lag: Cell,
    /// Time to catch up.
    pub eta: Cell,
    /// Why it could not be measured.
    pub error: Cell,
}

/// A DLQ topic's row as shown.
pub struct DlqView {
    /// The topic.
    pub topic: String,
    /// Dead letters held.
    pub depth: Cell,
    /// The oldest one's age.
    pub oldest: Cell,
    /// Why it could not be measured.
    pub error: Cell,
}

/// A partition's row as shown.
pub struct PartitionView {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// `open` or `closed`.
    pub circuit: Cell,
    /// `held` or `flowing`.
    pub flood: Cell,
}

/// The overview as the page shows it: the one place its texts are made,
/// for the page and for the live updates alike.
pub struct View {
    /// When measured.
    pub measured_at: Cell,
    /// Intake and its error.
    pub accepted: Cell,
    /// Why the intake rate is unknown.
    pub accepted_error: Cell,
    /// Persist rate.
    pub persisted: Cell,
    /// Why the persist rate is unknown.
    pub persisted_error: Cell,
    /// The lag section's error.
    pub lag_error: Cell,
    /// Per group.
    pub lag: Vec<LagView>,
    /// The DLQ section's error.
    pub dlq_error: Cell,
    /// Per DLQ topic.
    pub dlq: Vec<DlqView>,
    /// The partitions section's error.
    pub partitions_error: Cell,
    /// Per partition.
    pub partitions: Vec<PartitionView>,
    /// Whether an outbox database was given.
    pub outbox_configured: bool,
    /// Rows waiting.
    pub outbox_rows: Cell,
    /// The oldest row's age.
    pub outbox_oldest: Cell,
    /// The outbox section's error.
    pub outbox_error: Cell,
}

impl View {
    /// The view of `o`.
    pub fn of(o: &Overview) -> Self {
        let outbox = o.outbox.as_ref();
        let outbox_value = outbox.and_then(|s| s.value.as_ref());
        Self {
            measured_at: cell(
                "measured_at",
                o.measured_at.format("%H:%M:%S UTC").to_string(),
            ),
            accepted: rate_cell("intake.accepted", &o.accepted_per_second),
            accepted_error: error_cell("intake.accepted", &o.accepted_per_second),
            persisted: rate_cell("intake.persisted", &o.persisted_per_second),
            persisted_error: error_cell("intake.persisted", &o.persisted_per_second),
            lag_error: error_cell("lag", &o.lag),
            lag: o.lag.value.iter().flatten().map(LagView::of).collect(),
            dlq_error: error_cell("dlq", &o.dlq),
            dlq: o.dlq.value.iter().flatten().map(DlqView::of).collect(),
            partitions_error: error_cell("partitions", &o.partitions),
            partitions: o
                .partitions
                .value
                .iter()
                .flatten()
                .map(PartitionView::of)
                .collect(),
            outbox_configured: outbox.is_some(),
            outbox_rows: cell(
                "outbox.rows",
                outbox_value
                    .map(|v| v.rows.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            outbox_oldest: cell(
                "outbox.oldest",
                outbox_value
                    .map(|v| age(v.oldest_seconds))
                    .unwrap_or_else(|| "unknown".into()),
            ),
            outbox_error: cell(
                "outbox.error",
                outbox.and_then(|s| s.error.clone()).unwrap_or_default(),
            ),
        }
    }

    /// The view before the first measurement has ended: every figure
    /// "measuring…", no rows yet (the script adds them).
    pub fn pending(outbox_configured: bool) -> Self {
        let measuring = |key: &str| cell(key, MEASURING);
        let none = |key: &str| cell(format!("{key}.error"), "");
        Self {
            measured_at: cell("measured_at", "not yet"),
            accepted: measuring("intake.accepted"),
            accepted_error: none("intake.accepted"),
            persisted: measuring("intake.persisted"),
            persisted_error: none("intake.persisted"),
            lag_error: none("lag"),
            lag: Vec::new(),
            dlq_error: none("dlq"),
            dlq: Vec::new(),
            partitions_error: none("partitions"),
            partitions: Vec::new(),
            outbox_configured,
            outbox_rows: measuring("outbox.rows"),
            outbox_oldest: measuring("outbox.oldest"),
            outbox_error: cell("outbox.error", ""),
        }
    }

    /// Every cell's text by key: what `/api/overview` gives the script.
    pub fn live(&self) -> BTreeMap<String, String> {
        let mut cells = vec![
            &self.measured_at,
            &self.accepted,
            &self.accepted_error,
            &self.persisted,
            &self.persisted_error,
            &self.lag_error,
            &self.dlq_error,
            &self.partitions_error,
        ];
        if self.outbox_configured {
            cells.extend([&self.outbox_rows, &self.outbox_oldest, &self.outbox_error]);
        }
        for row in &self.lag {
            cells.extend([&row.status, &row.lag, &row.eta, &row.error]);
        }
        for row in &self.dlq {
            cells.extend([&row.depth, &row.oldest, &row.error]);
        }
        for row in &self.partitions {
            cells.extend([&row.circuit, &row.flood]);
        }
        cells
            .into_iter()
            .map(|c| (c.key.clone(), c.text.clone()))
            .collect()
    }
}

impl LagView {
    fn of(row: &GroupRow) -> Self {
        let key = |field: &str| format!("lag.{}.{field}", row.group);
        let unknown = || "unknown".to_owned();
        let eta = match row.eta_seconds {
            Some(s) if s <= 0.0 => "caught up".to_owned(),
            Some(s) => age(s),
            None if row.error.is_some() => unknown(),
            None => "not draining".to_owned(),
        };
        Self {
            group: row.group.clone(),
            status: cell(key("status"), row.status.clone().unwrap_or_else(unknown)),
            lag: cell(
                key("lag"),
                row.lag.map(|l| l.to_string()).unwrap_or_else(unknown),
            ),
            eta: cell(key("eta"), eta),
            error: cell(key("error"), row.error.clone().unwrap_or_default()),
        }
    }
}

impl DlqView {
    fn of(row: &DlqRow) -> Self {
        let key = |field: &str| format!("dlq.{}.{field}", row.topic);
        let oldest = match (row.depth, row.oldest_age_seconds) {
            (_, Some(s)) => age(s),
            (Some(0), None) => "empty".to_owned(),
            _ => "unknown".to_owned(),
        };
        Self {
            topic: row.topic.clone(),
            depth: cell(
                key("depth"),
                row.depth
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "unknown".into()),
            ),
            oldest: cell(key("oldest"), oldest),
            error: cell(key("error"), row.error.clone().unwrap_or_default()),
        }
    }
}

impl PartitionView {
    fn of(row: &PartitionRow) -> Self {
        let key = |field: &str| format!("partitions.{}.{}.{field}", row.topic, row.partition);
        Self {
            topic: row.topic.clone(),
            partition: row.partition,
            circuit: cell(key("circuit"), row.circuit),
            flood: cell(key("flood"), row.flood_guard),
        }
    }
}

/// `GET /` and `GET /api/overview`.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/", get(page))
        .route("/api/overview", get(api))
}

#[derive(askama::Template)]
#[template(path = "overview.html")]
struct OverviewPage<'a> {
    chrome: Chrome<'a>,
    view: View,
}

/// The page never waits for a measurement: it shows the last one (or
/// "measuring" before the first) and starts the next in the background;
/// the script's polls bring what it measures.
async fn page(State(console): State<Console>, Extension(viewer): Extension<Viewer>) -> Response {
    let (shown, fresh) = console.overview.shown();
    if !fresh {
        let measuring = console.clone();
        tokio::spawn(async move { measuring.overview.current().await });
    }
    let view = match shown {
        Some(overview) => View::of(&overview),
        None => View::pending(console.overview.outbox_configured()),
    };
    render(&OverviewPage {
        chrome: Chrome::new(&viewer, "overview", "Overview"),
        view,
    })
}

async fn api(State(console): State<Console>) -> Response {
    let overview = console.overview.current().await;
    Json(overview.as_ref().clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_two_scrapes_and_survive_a_restart() {
        let rates = Rates::default();
        let t0 = Instant::now();
        assert_eq!(rates.rate("u", "c", t0, 10.0), None, "one scrape: no rate");
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(rates.rate("u", "c", t1, 30.0), Some(10.0));
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(rates.rate("u", "c", t2, 4.0), Some(2.0), "restarted from 0");
    }

    #[test]
    fn partitions_come_from_the_flood_guard_and_lag_series() {
        let text = "kafka_consumer_circuit_open 1\n\
            kafka_consumer_dlq_flood_held{topic=\"orders\",partition=\"1\"} 1\n\
            kafka_consumer_lag{group=\"g\",topic=\"orders\",partition=\"0\"} 5\n\
            kafka_consumer_lag{group=\"g\",topic=\"orders\",partition=\"x\"} 5\n";
        let scrapes = vec![
            ("a".to_owned(), Ok(metrics_text::parse(text))),
            ("b".to_owned(), Err("scraping b: refused".to_owned())),
        ];
        let section = partitions(&scrapes);
        let rows = section.value.unwrap_or_default();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].partition, rows[0].circuit, rows[0].flood_guard),
            (0, "open", "flowing")
        );
        assert_eq!((rows[1].partition, rows[1].flood_guard), (1, "held"));
        assert_eq!(section.error.as_deref(), Some("scraping b: refused"));
        let none = partitions(&[("c".to_owned(), Ok(metrics_text::parse("up 1\n")))]);
        assert!(none
            .error
            .is_some_and(|e| e.contains("kafka_consumer_circuit_open")));
    }
}
