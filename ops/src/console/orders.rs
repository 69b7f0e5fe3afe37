//! `GET /orders?id=…`: what became of one order, as `pubsubkafka order`
//! tells it (read from PostgreSQL only): status, version, its events with
//! their Kafka positions, its dead letters with their DLQ positions.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use serde::Deserialize;

use super::page::{render, Chrome, Viewer};
use super::Console;
use crate::order::{story, OrderArgs, Story};

/// `/orders`.
pub fn routes() -> Router<Console> {
    Router::new().route("/orders", get(orders))
}

#[derive(Deserialize)]
struct Lookup {
    #[serde(default)]
    id: String,
}

/// An event as the page shows it.
struct EventRow {
    version: String,
    event_type: String,
    occurred_at: String,
    recorded_at: String,
    kafka: String,
}

/// A dead letter as the page shows it.
struct DeadLetterRow {
    event_type: String,
    kind: &'static str,
    class: &'static str,
    rejected_at: String,
    source: String,
    /// The DLQ position, and the detail page's path when it has one.
    dlq: String,
    link: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "orders.html")]
struct OrdersPage<'a> {
    chrome: Chrome<'a>,
    id: &'a str,
    error: Option<String>,
    found: Option<Found>,
}

/// The story's fields, as text.
struct Found {
    status: String,
    order_status: String,
    version: String,
    summary: String,
    persisted_at: String,
    truncated: bool,
    events: Vec<EventRow>,
    dead_letters: Vec<DeadLetterRow>,
}

async fn orders(
    State(console): State<Console>,
    Extension(viewer): Extension<Viewer>,
    Query(lookup): Query<Lookup>,
) -> Response {
    let id = lookup.id.trim();
    let (status, error, found) = match (id.is_empty(), console.database_url.as_deref()) {
        (true, _) => (StatusCode::OK, None, None),
        (false, None) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("No database: start the console with --database-url (or DATABASE_URL).".into()),
            None,
        ),
        (false, Some(url)) => match story(&args(id, url)).await {
            Ok(story) => (StatusCode::OK, None, Some(Found::of(&story))),
            Err(e) => {
                let bad_id = matches!(
                    e.downcast_ref::<crate::order::OrderError>(),
                    Some(crate::order::OrderError::BadId { .. })
                );
                let status = if bad_id {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                (status, Some(format!("{e:#}")), None)
            }
        },
    };
    let mut response = render(&OrdersPage {
        chrome: Chrome::new(&viewer, "orders", "Orders"),
        id,
        error,
        found,
    });
    if response.status().is_success() {
        *response.status_mut() = status;
    }
    response
}

/// What `pubsubkafka order ID` would be given.
fn args(id: &str, database_url: &str) -> OrderArgs {
    OrderArgs {
        id: id.to_owned(),
        user: false,
        database_url: database_url.to_owned(),
        pending_window: 300,
        json: false,
    }
}

fn time(t: Option<chrono::DateTime<chrono::Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string())
        .unwrap_or_else(|| "–".to_owned())
}

impl Found {
    fn of(story: &Story) -> Self {
        let status = match story.reason {
            Some(reason) => format!("{} ({reason})", story.status),
            None => story.status.to_owned(),
        };
        Self {
            status,
            order_status: story
                .order_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "–".into()),
            version: story
                .version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "–".into()),
            summary: story.summary.clone().unwrap_or_else(|| "–".into()),
            persisted_at: time(story.persisted_at),
            truncated: story.truncated == Some(true),
            events: story
                .events
                .iter()
                .map(|e| EventRow {
                    version: e.version.map(|v| v.to_string()).unwrap_or_default(),
                    event_type: e.event_type.clone(),
                    occurred_at: time(Some(e.occurred_at)),
                    recorded_at: time(Some(e.recorded_at)),
                    kafka: e.kafka.clone(),
                })
                .collect(),
            dead_letters: story.dead_letters.iter().map(DeadLetterRow::of).collect(),
        }
    }
}

impl DeadLetterRow {
    fn of(r: &store::rejections::Rejection) -> Self {
        let (dlq, link) = match (r.dlq_partition, r.dlq_offset) {
            (Some(p), Some(o)) => (
                format!("{}/{p}@{o}", r.dlq_topic),
                Some(format!("/dead-letters/{}/{p}/{o}", r.dlq_topic)),
            ),
            _ => ("not written (refused by the DLQ)".to_owned(), None),
        };
        Self {
            event_type: r.event_type.clone().unwrap_or_else(|| "unreadable".into()),
            kind: r.error_kind.as_str(),
            class: r.error_class.as_str(),
            rejected_at: time(Some(r.rejected_at)),
            source: format!(
                "{}/{}@{}",
                r.source_topic, r.source_partition, r.source_offset
            ),
            dlq,
            link,
        }
    }
}
