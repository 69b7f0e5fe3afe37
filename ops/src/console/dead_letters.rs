//! The dead-letter pages: `GET /dead-letters` (groups by fingerprint, the
//! letters) and `GET /dead-letters/{topic}/{partition}/{offset}` (one
//! letter; its payload revealed by a POST, logged).
//!
//! They read as `dlq list` and `dlq inspect` do (one code path), on a
//! thread of their own: the Kafka calls block.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use contract::headers as h;
use serde::Deserialize;

use super::page::{age, error_page, render, Chrome, Viewer};
use super::Console;
use crate::dead_letters::{DeadLetter, DlqError, Filter};
use crate::dlq::{Group, Inspected, ReaderGroup, Source};

/// Most dead letters the listing page shows (its groups count them all).
const SHOWN: usize = 200;

/// Longest header value shown, in characters (any client may write to a
/// DLQ).
const MAX_SHOWN_CHARS: usize = 300;

/// Options of the dead-letter pages (flattened into `console`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct DeadLetterOptions {
    /// Consumer group the console reads dead-letter topics as (nothing is
    /// committed to it), as `dlq list --reader-group`.
    #[arg(
        long = "reader-group",
        env = "DLQ_REPLAY_GROUP",
        default_value = crate::dlq::DEFAULT_REPLAY_GROUP
    )]
    pub reader_group: String,
}

/// The dead-letter routes.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/dead-letters", get(listing))
        .route("/dead-letters/{topic}/{partition}/{offset}", get(detail))
        .route(
            "/dead-letters/{topic}/{partition}/{offset}/reveal",
            post(reveal),
        )
}

/// The dead-letter topics of the configured topics: the only ones the
/// pages read.
pub(super) fn dlq_topics(console: &Console) -> Vec<String> {
    vec![
        contract::topics::dlq_of(&console.domains.orders),
        contract::topics::dlq_of(&console.domains.users),
    ]
}

/// A failure of the dead-letter or replay pages, as a status and a text.
#[derive(Debug, Clone)]
pub(super) struct Failed {
    pub(super) status: StatusCode,
    pub(super) message: String,
}

impl Failed {
    /// The page saying so.
    pub(super) fn page(&self, viewer: &Viewer) -> Response {
        error_page(Some(viewer), self.status, &self.message)
    }

    /// `topic` when it is a dead-letter topic of the pipeline.
    pub(super) fn check_topic(console: &Console, topic: &str) -> Result<(), Self> {
        if dlq_topics(console).iter().any(|t| t == topic) {
            Ok(())
        } else {
            Err(Self {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "{topic:?} is not a dead-letter topic of this pipeline ({})",
                    dlq_topics(console).join(", ")
                ),
            })
        }
    }
}

impl From<DlqError> for Failed {
    fn from(e: DlqError) -> Self {
        let status = match &e {
            DlqError::NoTopic(_)
            | DlqError::NoPartition { .. }
            | DlqError::OffsetOutOfRange { .. }
            | DlqError::NotFound(_) => StatusCode::NOT_FOUND,
            DlqError::BadArgument(_) => StatusCode::BAD_REQUEST,
            DlqError::Busy(_) => StatusCode::CONFLICT,
            DlqError::Kafka(_) | DlqError::Stalled { .. } => StatusCode::BAD_GATEWAY,
        };
        Self {
            status,
            message: e.to_string(),
        }
    }
}

/// `work` (blocking Kafka calls) on a thread of its own.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DlqError> + Send + 'static,
) -> Result<T, Failed> {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done.map_err(Failed::from),
        Err(e) => Err(Failed {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("the read failed: {e}"),
        }),
    }
}

/// `at` as a page shows it.
pub(super) fn time(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "–".to_owned(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// How long ago `at` was.
fn ago(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "–".to_owned(),
        |t| age((Utc::now() - t).num_milliseconds() as f64 / 1000.0),
    )
}

/// `text` cut at [`MAX_SHOWN_CHARS`], saying so.
fn shown(text: &str) -> String {
    match text.char_indices().nth(MAX_SHOWN_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    fingerprint: String,
}

/// A fingerprint's row.
struct GroupRow {
    group: Group,
    oldest: String,
    newest: String,
    /// Whether a filter can select it (not the dead letters past the
    /// listing's limit of fingerprints).
    selectable: bool,
}

/// A dead letter's row.
struct LetterRow {
    partition: i32,
    offset: i64,
    key: String,
    kind: String,
    class: String,
    failed_at: String,
    replays: u32,
    message: String,
}

impl LetterRow {
    fn of(l: &DeadLetter) -> Self {
        Self {
            partition: l.partition,
            offset: l.offset,
            key: shown(l.key.as_deref().unwrap_or("–")),
            kind: shown(l.error_kind.as_deref().unwrap_or("?")),
            class: shown(l.error_class.as_deref().unwrap_or("?")),
            failed_at: time(l.failed_at),
            replays: l.replay_count,
            message: shown(l.error_message.as_deref().unwrap_or("")),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "dead_letters_list.html")]
struct ListPage<'a> {
    chrome: Chrome<'a>,
    topics: Vec<String>,
    topic: &'a str,
    fingerprint: &'a str,
    /// Why the topic could not be read.
    error: Option<String>,
    total: usize,
    selected: usize,
    groups: Vec<GroupRow>,
    letters: Vec<LetterRow>,
    allow_replay: bool,
}

async fn listing(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Query(query): Query<ListQuery>,
) -> Response {
    let topics = dlq_topics(&console);
    let topic = match query.topic.trim() {
        "" => topics.first().cloned().unwrap_or_default(),
        given => given.to_owned(),
    };
    if let Err(failed) = Failed::check_topic(&console, &topic) {
        return failed.page(&viewer);
    }
    let fingerprint = query.fingerprint.trim().to_owned();
    let filter = Filter {
        fingerprint: (!fingerprint.is_empty()).then(|| fingerprint.clone()),
        ..Filter::default()
    };
    let source = Source {
        topic: topic.clone(),
        json: false,
    };
    let (kafka, reader) = (console.kafka.clone(), reader_group(&console));
    let read =
        blocking(move || crate::dlq::list(&kafka, &source, &filter, SHOWN, None, &reader)).await;
    let mut page = ListPage {
        chrome: Chrome::new(&viewer, "dead-letters", "Dead letters"),
        topics,
        topic: &topic,
        fingerprint: &fingerprint,
        error: None,
        total: 0,
        selected: 0,
        groups: Vec::new(),
        letters: Vec::new(),
        allow_replay: console.allow_replay,
    };
    // A failed read keeps the page (its topic selector) and says why.
    let status = match read {
        Ok(listing) => {
            page.fill(&listing);
            StatusCode::OK
        }
        Err(failed) => {
            page.error = Some(failed.message);
            failed.status
        }
    };
    let mut response = render(&page);
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

impl ListPage<'_> {
    /// The counts, groups and letters of `listing`.
    fn fill(&mut self, listing: &crate::dlq::Listing) {
        self.total = listing.total();
        self.selected = listing.selected();
        self.groups = listing
            .groups()
            .into_iter()
            .map(|group| GroupRow {
                oldest: ago(group.oldest),
                newest: ago(group.newest),
                selectable: !group.is_other(),
                group,
            })
            .collect();
        self.letters = listing.dead_letters().iter().map(LetterRow::of).collect();
    }
}

fn reader_group(console: &Console) -> ReaderGroup {
    ReaderGroup {
        name: console.dead_letter_options.reader_group.clone(),
    }
}

/// Where a dead letter is.
#[derive(Debug, Deserialize)]
struct Position {
    topic: String,
    partition: i32,
    offset: i64,
}

/// A line of a dead letter's failure history.
struct Failure {
    which: &'static str,
    at: String,
    read_at: String,
    kind: String,
    class: String,
    message: String,
}

#[derive(askama::Template)]
#[template(path = "dead_letters_detail.html")]
struct DetailPage<'a> {
    chrome: Chrome<'a>,
    position: &'a Position,
    key: String,
    retries: String,
    replays: u32,
    fingerprint: String,
    history: Vec<Failure>,
    headers: Vec<(String, String)>,
    /// The payload, pretty JSON, once revealed.
    payload: Option<String>,
    allow_replay: bool,
}

async fn detail(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Path(position): Path<Position>,
) -> Response {
    show(&console, &viewer, &position, false).await
}

/// `POST …/reveal`: the page with the payload shown, logged for audit
/// (who and which letter, never the payload).
async fn reveal(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Path(position): Path<Position>,
) -> Response {
    show(&console, &viewer, &position, true).await
}

async fn show(console: &Console, viewer: &Viewer, position: &Position, reveal: bool) -> Response {
    if let Err(failed) = Failed::check_topic(console, &position.topic) {
        return failed.page(viewer);
    }
    let (kafka, domains, reader) = (
        console.kafka.clone(),
        console.domains.clone(),
        reader_group(console),
    );
    let (topic, partition, offset) = (position.topic.clone(), position.partition, position.offset);
    let inspected = match blocking(move || {
        crate::dlq::inspect(&kafka, &domains, &topic, partition, offset, &reader)
    })
    .await
    {
        Ok(inspected) => inspected,
        Err(failed) => return failed.page(viewer),
    };
    if reveal {
        tracing::info!(
            target: "console::audit",
            session = %viewer.who(),
            topic = %position.topic,
            partition = position.partition,
            offset = position.offset,
            "dead letter payload revealed"
        );
    }
    render(&detail_page(console, viewer, position, &inspected, reveal))
}

fn detail_page<'a>(
    console: &Console,
    viewer: &'a Viewer,
    position: &'a Position,
    inspected: &Inspected,
    reveal: bool,
) -> DetailPage<'a> {
    let letter = &inspected.dead_letter;
    DetailPage {
        chrome: Chrome::new(viewer, "dead-letters", "Dead letter"),
        position,
        key: shown(letter.key.as_deref().unwrap_or("–")),
        retries: letter
            .retry_count
            .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        replays: letter.replay_count,
        fingerprint: letter.fingerprint.clone(),
        history: history(letter),
        headers: letter
            .headers
            .iter()
            .map(|(k, v)| (shown(k), shown(v)))
            .collect(),
        payload: reveal.then(|| {
            serde_json::to_string_pretty(&inspected.payload)
                .unwrap_or_else(|e| format!("(not shown: {e})"))
        }),
        allow_replay: console.allow_replay,
    }
}

/// The letter's failures: the first (when it failed again after a
/// replay), then the latest.
fn history(letter: &DeadLetter) -> Vec<Failure> {
    let get = |name: &str| shown(letter.headers.get(name).map_or("?", String::as_str));
    let mut failures = Vec::new();
    if let Some(first) = &letter.first_original {
        failures.push(Failure {
            which: "First failure",
            at: get(h::DLQ_FIRST_FAILED_AT),
            read_at: first.clone(),
            kind: get(h::DLQ_FIRST_ERROR_KIND),
            class: shown(letter.first_error_class.as_deref().unwrap_or("?")),
            message: String::new(),
        });
    }
    failures.push(Failure {
        which: if failures.is_empty() {
            "Failure"
        } else {
            "Latest failure"
        },
        at: time(letter.failed_at),
        read_at: format!(
            "{}/{}/{}",
            shown(letter.original_topic.as_deref().unwrap_or("?")),
            letter
                .original_partition
                .map_or("?".into(), |p| p.to_string()),
            letter.original_offset.map_or("?".into(), |o| o.to_string())
        ),
        kind: shown(letter.error_kind.as_deref().unwrap_or("?")),
        class: shown(letter.error_class.as_deref().unwrap_or("?")),
        message: shown(letter.error_message.as_deref().unwrap_or("")),
    });
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_foreign_texts_are_cut_and_say_so() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(MAX_SHOWN_CHARS + 10);
        let cut = shown(&long);
        assert_eq!(cut.chars().count(), MAX_SHOWN_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}
