//! The replay pages: `GET /replay` (filter, dry run), `POST /replay` (start
//! one), `GET /replay/{id}` and `GET /api/replay/{id}` (progress).
//!
//! A replay from the console is `dlq replay` (one code path,
//! [`crate::dlq::replay`]): the same [`crate::dlq::ReplayLock`], loop guard
//! and pace, its progress told to a [`watch`] channel the pages read. It
//! runs on a thread of its own, its Kafka calls blocking.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use chrono::{DateTime, Utc};
use contract::dead_letter::{ErrorKind, FailureClass};
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::dead_letters::{blocking, dlq_topics, time, Failed};
use super::page::{error_page, render, Chrome, Viewer};
use super::Console;
use crate::dead_letters::{DlqError, Filter};
use crate::dlq::{Observer, ReplayArgs, ReplayProgress, ReplaySummary, Source};

/// What a console without `--allow-replay` answers (403).
pub const NOT_ALLOWED: &str = "Replay is not allowed";
/// What a replay refused by the lock answers (409).
pub const BUSY: &str = "Another replay is running";
/// Most replays the console remembers; past it the oldest finished goes.
const KEPT: usize = 50;
/// How long `POST /replay` waits for the replay to take its lock and
/// settle a first dead letter before showing its page (the lock gives up
/// within 30 s).
const START_WAIT: Duration = Duration::from_secs(45);
/// Most parked or failed dead letters a page lists.
const LISTED: usize = 20;

/// Options of the replay pages (flattened into `console`'s): those of
/// `dlq replay`, with its defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayOptions {
    /// The consumer group a replay remembers its progress in unless its
    /// page names another, as `dlq replay --group`.
    #[arg(
        long = "replay-group",
        env = "DLQ_REPLAY_GROUP",
        default_value = crate::dlq::DEFAULT_REPLAY_GROUP
    )]
    pub replay_group: String,
    /// Most messages a replay republishes per second, as `dlq replay
    /// --rate`.
    #[arg(long = "replay-rate", default_value_t = crate::dlq::DEFAULT_RATE)]
    pub replay_rate: f64,
    /// A dead letter already replayed this many times is parked, as `dlq
    /// replay --max-replays`.
    #[arg(long = "max-replays", default_value_t = crate::dlq::DEFAULT_MAX_REPLAYS)]
    pub max_replays: u32,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            replay_group: crate::dlq::DEFAULT_REPLAY_GROUP.to_owned(),
            replay_rate: crate::dlq::DEFAULT_RATE,
            max_replays: crate::dlq::DEFAULT_MAX_REPLAYS,
        }
    }
}

/// The replay routes.
pub fn routes() -> Router<Console> {
    Router::new()
        .route("/replay", get(form).post(start))
        .route("/replay/dry-run", post(dry_run))
        .route("/replay/{id}", get(run_page))
        .route("/api/replay/{id}", get(api))
}

/// What a replay selects, as its form and query carry it (empty: any).
#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct Selection {
    #[serde(default)]
    topic: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default)]
    class: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    group: String,
}

/// A selection checked: what `dlq replay` is run with.
struct Request {
    source: Source,
    filter: Filter,
    group: String,
}

/// Longest fingerprint a selection takes (a class, ": " and the 120
/// characters `dlq list` keeps of an error).
const MAX_FINGERPRINT_CHARS: usize = 200;

fn bad(message: String) -> Failed {
    Failed {
        status: StatusCode::BAD_REQUEST,
        message,
    }
}

impl Selection {
    /// Trimmed, the console's topic and group standing for empty ones.
    fn completed(mut self, console: &Console) -> Self {
        for field in [
            &mut self.topic,
            &mut self.fingerprint,
            &mut self.class,
            &mut self.kind,
            &mut self.group,
        ] {
            *field = field.trim().to_owned();
        }
        if self.topic.is_empty() {
            self.topic = dlq_topics(console).swap_remove(0);
        }
        if self.group.is_empty() {
            self.group = console.replay_options.replay_group.clone();
        }
        self
    }

    fn request(&self, console: &Console) -> Result<Request, Failed> {
        Failed::check_topic(console, &self.topic)?;
        let group_ok = !self.group.is_empty()
            && self.group.len() <= 200
            && self
                .group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !group_ok {
            return Err(bad(
                "a replay group is 1 to 200 letters, digits, '.', '_' and '-'".into(),
            ));
        }
        Ok(Request {
            source: Source {
                topic: self.topic.clone(),
                json: false,
            },
            filter: self.filter()?,
            group: self.group.clone(),
        })
    }

    /// The filter `dlq replay` gets: the class and kind by their names.
    fn filter(&self) -> Result<Filter, Failed> {
        // A fingerprint is a class and at most 120 characters of text: a
        // longer one selects nothing, and would only fill the audit log.
        if self.fingerprint.chars().count() > MAX_FINGERPRINT_CHARS {
            return Err(bad(format!(
                "a fingerprint is at most {MAX_FINGERPRINT_CHARS} characters"
            )));
        }
        let class = match self.class.as_str() {
            "" => None,
            c => Some(c.parse::<FailureClass>().map_err(|e| bad(e.to_string()))?),
        };
        let kind = match self.kind.as_str() {
            "" => None,
            k => Some(k.parse::<ErrorKind>().map_err(|e| bad(e.to_string()))?),
        };
        Ok(Filter {
            class,
            kind,
            fingerprint: (!self.fingerprint.is_empty()).then(|| self.fingerprint.clone()),
            ..Filter::default()
        })
    }

    /// The selection in words.
    fn describe(&self) -> String {
        let mut parts = vec![format!("topic {}", self.topic)];
        for (name, value) in [
            ("fingerprint", &self.fingerprint),
            ("class", &self.class),
            ("kind", &self.kind),
        ] {
            if !value.is_empty() {
                parts.push(format!("{name} {value}"));
            }
        }
        if parts.len() == 1 {
            parts.push("every dead letter".into());
        }
        parts.join(", ")
    }
}

/// `dlq replay` of `request` with the console's options, on this thread
/// (one of `spawn_blocking`'s), telling `observer`.
fn replay_here(
    console: &Console,
    request: &Request,
    dry_run: bool,
    observer: &mut dyn Observer,
) -> Result<ReplaySummary, DlqError> {
    let options = &console.replay_options;
    let args = ReplayArgs {
        dry_run,
        rate: options.replay_rate,
        max_replays: options.max_replays,
        group: request.group.clone(),
    };
    let runtime = tokio::runtime::Handle::current();
    runtime.block_on(crate::dlq::replay(
        &console.kafka,
        &console.domains,
        &request.source,
        &request.filter,
        &args,
        &console.replays.stop,
        observer,
    ))
}

/// A replay started from the console.
#[derive(Debug)]
struct Run {
    seq: u64,
    selection: Selection,
    started: DateTime<Utc>,
    progress: watch::Receiver<ReplayProgress>,
    outcome: OnceLock<Result<ReplaySummary, Failed>>,
}

/// Replays started from the console (held in [`Console`]).
#[derive(Debug, Default)]
pub struct Replays {
    runs: Mutex<BTreeMap<String, Arc<Run>>>,
    next: AtomicU64,
    stop: CancellationToken,
    /// The replays' threads, awaited at shutdown.
    tasks: tokio_util::task::TaskTracker,
}

impl Replays {
    /// Asks every running replay to stop after the dead letter in hand,
    /// leaving the rest for the next run (as Ctrl-C does to `dlq
    /// replay`): for the console's shutdown.
    pub fn stop_all(&self) {
        self.stop.cancel();
    }

    /// Stops every running replay ([`Self::stop_all`]) and waits up to
    /// `deadline` for each to settle the dead letter in hand (published
    /// and committed, or neither): a copy published but not committed would
    /// be published again by the next run. Whether they all ended in time.
    pub async fn stop_and_wait(&self, deadline: Duration) -> bool {
        self.stop_all();
        self.tasks.close();
        tokio::time::timeout(deadline, self.tasks.wait())
            .await
            .is_ok()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Run>>> {
        // A panic while holding it leaves a map that is still whole.
        self.runs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `run` under a new id, forgetting the oldest finished runs past
    /// [`KEPT`].
    fn insert(
        &self,
        selection: Selection,
        progress: watch::Receiver<ReplayProgress>,
    ) -> (String, Arc<Run>) {
        let run = Arc::new(Run {
            seq: self.next.fetch_add(1, Ordering::Relaxed),
            selection,
            started: Utc::now(),
            progress,
            outcome: OnceLock::new(),
        });
        let id = super::security::random_token()[..16].to_owned();
        let mut runs = self.lock();
        while runs.len() >= KEPT {
            let oldest = runs
                .iter()
                .filter(|(_, r)| r.outcome.get().is_some())
                .min_by_key(|(_, r)| r.seq)
                .map(|(id, _)| id.clone());
            match oldest {
                Some(id) => runs.remove(&id),
                None => break,
            };
        }
        runs.insert(id.clone(), run.clone());
        (id, run)
    }

    fn get(&self, id: &str) -> Option<Arc<Run>> {
        self.lock().get(id).cloned()
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// The 403 of a read-only console, or nothing when replays are allowed.
fn refuse_read_only(console: &Console, viewer: &Viewer) -> Option<Response> {
    (!console.allow_replay).then(|| {
        error_page(
            Some(viewer),
            StatusCode::FORBIDDEN,
            &format!("{NOT_ALLOWED}: this console was started without --allow-replay."),
        )
    })
}

/// `failed` as a page; a replay the lock refused says [`BUSY`].
fn failed_page(viewer: &Viewer, failed: &Failed) -> Response {
    if failed.status == StatusCode::CONFLICT {
        let message = format!("{BUSY}: {}", failed.message);
        return error_page(Some(viewer), StatusCode::CONFLICT, &message);
    }
    failed.page(viewer)
}

/// An option of a select.
struct Choice {
    value: &'static str,
    selected: bool,
}

fn choices(names: impl Iterator<Item = &'static str>, chosen: &str) -> Vec<Choice> {
    names
        .map(|value| Choice {
            value,
            selected: value == chosen,
        })
        .collect()
}

#[derive(askama::Template)]
#[template(path = "replay_form.html")]
struct FormPage<'a> {
    chrome: Chrome<'a>,
    selection: &'a Selection,
    topics: Vec<String>,
    classes: Vec<Choice>,
    kinds: Vec<Choice>,
    dry: Option<DryRun>,
}

/// A dry run's result as the page shows it.
struct DryRun {
    summary: ReplaySummary,
    describe: String,
}

fn form_page(
    console: &Console,
    viewer: &Viewer,
    selection: &Selection,
    dry: Option<DryRun>,
) -> Response {
    render(&FormPage {
        chrome: Chrome::new(viewer, "dead-letters", "Replay"),
        selection,
        topics: dlq_topics(console),
        classes: choices(
            FailureClass::ALL.iter().map(|c| c.as_str()),
            &selection.class,
        ),
        kinds: choices(ErrorKind::ALL.iter().map(|k| k.as_str()), &selection.kind),
        dry,
    })
}

/// `GET /replay`: the filter, and the `Dry run` button.
async fn form(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Query(selection): Query<Selection>,
) -> Response {
    if let Some(refused) = refuse_read_only(&console, &viewer) {
        return refused;
    }
    let selection = selection.completed(&console);
    if let Err(failed) = selection.request(&console) {
        return failed.page(&viewer);
    }
    form_page(&console, &viewer, &selection, None)
}

/// `selection` completed and checked, when this console may replay: the
/// refusal page otherwise (read-only, or a selection refused by name).
fn allowed(
    console: &Console,
    viewer: &Viewer,
    selection: Selection,
) -> Result<(Selection, Request), Box<Response>> {
    if let Some(refused) = refuse_read_only(console, viewer) {
        return Err(Box::new(refused));
    }
    let selection = selection.completed(console);
    match selection.request(console) {
        Ok(request) => Ok((selection, request)),
        Err(failed) => Err(Box::new(failed.page(viewer))),
    }
}

/// `POST /replay/dry-run`: what a replay would do, and the button that
/// starts it.
async fn dry_run(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Form(selection): Form<Selection>,
) -> Response {
    let (selection, request) = match allowed(&console, &viewer, selection) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let inner = console.clone();
    let ran = blocking(move || {
        let (mut unwatched, _) = watch::channel(ReplayProgress::default());
        replay_here(&inner, &request, true, &mut unwatched)
    })
    .await;
    match ran {
        Ok(summary) => {
            let describe = selection.describe();
            form_page(
                &console,
                &viewer,
                &selection,
                Some(DryRun { summary, describe }),
            )
        }
        Err(failed) => failed_page(&viewer, &failed),
    }
}

/// `POST /replay`: starts the replay in the background, then shows its
/// page (or why it could not start: [`BUSY`] when another holds the lock).
async fn start(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Form(selection): Form<Selection>,
) -> Response {
    let (selection, request) = match allowed(&console, &viewer, selection) {
        Ok(checked) => checked,
        Err(refused) => return *refused,
    };
    let (mut sender, mut receiver) = watch::channel(ReplayProgress::default());
    let (id, run) = console.replays.insert(selection, receiver.clone());
    tracing::info!(
        target: "console::audit",
        session = %viewer.who(),
        replay = %id,
        group = %request.group,
        selection = %run.selection.describe(),
        "replay started"
    );
    let (inner, ran, task_id) = (console.clone(), run.clone(), id.clone());
    console.replays.tasks.spawn_blocking(move || {
        let result = replay_here(&inner, &request, false, &mut sender);
        match &result {
            Ok(summary) => tracing::info!(
                replay = %task_id, replayed = summary.replayed, failed = summary.failed,
                "console replay ended"
            ),
            Err(e) => tracing::warn!(replay = %task_id, error = %e, "console replay failed"),
        }
        let _ = ran.outcome.set(result.map_err(Failed::from));
        // The sender goes last: whoever waits on it finds the outcome.
        drop(sender);
    });
    let _ = tokio::time::timeout(START_WAIT, receiver.changed()).await;
    if let Some(Err(failed)) = run.outcome.get() {
        console.replays.remove(&id);
        return failed_page(&viewer, failed);
    }
    Redirect::to(&format!("/replay/{id}")).into_response()
}

/// Where a replay stands, for its page and its JSON alike.
struct Status {
    progress: ReplayProgress,
    state: String,
    done: bool,
    failures: String,
}

impl Status {
    fn of(run: &Run) -> Self {
        match run.outcome.get() {
            Some(Ok(summary)) => {
                let state = if summary.failed + summary.deferred > 0 {
                    format!(
                        "Done: {} failed, {} left for the next run",
                        summary.failed, summary.deferred
                    )
                } else {
                    "Done".to_owned()
                };
                let failures = summary
                    .failures
                    .iter()
                    .take(LISTED)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ");
                Self {
                    progress: ReplayProgress::of(summary, true),
                    state,
                    done: true,
                    failures,
                }
            }
            Some(Err(failed)) => Self {
                progress: run.progress.borrow().clone(),
                state: format!("Failed: {}", failed.message),
                done: true,
                failures: String::new(),
            },
            // The sender gone without an outcome: the task died.
            None if run.progress.has_changed().is_err() => Self {
                progress: run.progress.borrow().clone(),
                state: "Failed: the replay stopped unexpectedly (see the console's log)".into(),
                done: true,
                failures: String::new(),
            },
            None => Self {
                progress: run.progress.borrow().clone(),
                state: "Running".into(),
                done: false,
                failures: String::new(),
            },
        }
    }

    /// The texts of the page's `data-live` elements.
    fn live(&self) -> BTreeMap<&'static str, String> {
        let p = &self.progress;
        BTreeMap::from([
            ("state", self.state.clone()),
            ("expected", p.expected.to_string()),
            ("read", p.read.to_string()),
            ("replayed", p.replayed.to_string()),
            ("parked", p.parked.to_string()),
            ("skipped", p.skipped.to_string()),
            ("failed", p.failed.to_string()),
            ("deferred", p.deferred.to_string()),
            ("failures", self.failures.clone()),
        ])
    }
}

#[derive(askama::Template)]
#[template(path = "replay_run.html")]
struct RunPage<'a> {
    chrome: Chrome<'a>,
    id: &'a str,
    topic: &'a str,
    describe: String,
    group: &'a str,
    started: String,
    status: Status,
    parked: Vec<String>,
}

/// `GET /replay/{id}`: a replay's progress, live.
async fn run_page(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Response {
    if let Some(refused) = refuse_read_only(&console, &viewer) {
        return refused;
    }
    let Some(run) = console.replays.get(&id) else {
        return error_page(
            Some(&viewer),
            StatusCode::NOT_FOUND,
            "No such replay (the console forgets them when it restarts)",
        );
    };
    let parked = match run.outcome.get() {
        Some(Ok(summary)) => summary
            .parked_letters
            .iter()
            .take(LISTED)
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    render(&RunPage {
        chrome: Chrome::new(&viewer, "dead-letters", "Replay"),
        id: &id,
        topic: &run.selection.topic,
        describe: run.selection.describe(),
        group: &run.selection.group,
        started: time(Some(run.started)),
        status: Status::of(&run),
        parked,
    })
}

/// `GET /api/replay/{id}`: a replay's progress as JSON: `live` (the
/// page's texts), `done`, `progress` (the counts).
async fn api(State(console): State<Console>, Path(id): Path<String>) -> Response {
    if !console.allow_replay {
        let body = serde_json::json!({"error": NOT_ALLOWED});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let Some(run) = console.replays.get(&id) else {
        let body = serde_json::json!({"error": "no such replay"});
        return (StatusCode::NOT_FOUND, Json(body)).into_response();
    };
    let status = Status::of(&run);
    Json(serde_json::json!({
        "live": status.live(),
        "done": status.done,
        "progress": status.progress,
        "state": status.state,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(class: &str, kind: &str, fingerprint: &str) -> Selection {
        Selection {
            topic: "orders-dlq".into(),
            fingerprint: fingerprint.into(),
            class: class.into(),
            kind: kind.into(),
            group: "dlq-replay".into(),
        }
    }

    #[test]
    fn a_selection_is_the_filter_of_dlq_replay_or_refused_by_name() {
        let filter = selection("validation", "permanent", "validation: bad #")
            .filter()
            .unwrap_or_default();
        assert_eq!(filter.class, Some(FailureClass::Validation));
        assert_eq!(filter.kind, Some(ErrorKind::Permanent));
        assert_eq!(filter.fingerprint.as_deref(), Some("validation: bad #"));
        let any = selection("", "", "").filter().unwrap_or_default();
        assert!(any.class.is_none() && any.kind.is_none() && any.fingerprint.is_none());
        let refused = selection("Validation", "", "").filter().err();
        let refused = refused.map(|f| (f.status, f.message));
        assert!(
            refused.as_ref().is_some_and(
                |(s, m)| *s == StatusCode::BAD_REQUEST && m.contains("database_transient")
            ),
            "{refused:?}"
        );
        assert!(selection("", "sometimes", "").filter().is_err());
    }

    proptest::proptest! {
        /// Any form a browser or a script may send: refused by name or
        /// taken as sent, never a panic; an overlong fingerprint refused.
        #[test]
        fn any_selection_is_a_filter_or_a_clear_refusal(
            class in "\\PC{0,40}|validation|database_transient",
            kind in "\\PC{0,20}|permanent|transient",
            fingerprint in "\\PC{0,300}",
        ) {
            let chosen = selection(&class, &kind, &fingerprint);
            match chosen.filter() {
                Ok(filter) => {
                    proptest::prop_assert!(fingerprint.chars().count() <= MAX_FINGERPRINT_CHARS);
                    let taken = filter.fingerprint.unwrap_or_default();
                    proptest::prop_assert_eq!(taken, fingerprint);
                    proptest::prop_assert_eq!(filter.class.is_some(), !class.is_empty());
                    proptest::prop_assert_eq!(filter.kind.is_some(), !kind.is_empty());
                }
                Err(failed) => {
                    proptest::prop_assert_eq!(failed.status, StatusCode::BAD_REQUEST);
                    proptest::prop_assert!(!failed.message.is_empty());
                }
            }
            proptest::prop_assert!(chosen.describe().starts_with("topic orders-dlq"));
        }
    }

    #[test]
    fn a_selection_says_what_it_selects() {
        assert_eq!(
            selection("", "", "").describe(),
            "topic orders-dlq, every dead letter"
        );
        assert_eq!(
            selection("validation", "", "validation: bad #").describe(),
            "topic orders-dlq, fingerprint validation: bad #, class validation"
        );
    }

    #[test]
    fn finished_replays_are_forgotten_oldest_first_past_the_limit() {
        let replays = Replays::default();
        let (_, progress) = watch::channel(ReplayProgress::default());
        let (first, run) = replays.insert(Selection::default(), progress.clone());
        let _ = run.outcome.set(Ok(ReplaySummary::default()));
        let (running, _) = replays.insert(Selection::default(), progress.clone());
        for _ in 0..KEPT {
            let (_, run) = replays.insert(Selection::default(), progress.clone());
            let _ = run.outcome.set(Ok(ReplaySummary::default()));
        }
        assert!(
            replays.get(&first).is_none(),
            "the oldest finished one went"
        );
        assert!(replays.get(&running).is_some(), "a running one stays");
        assert_eq!(replays.lock().len(), KEPT);
    }
}
