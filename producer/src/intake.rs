//! The one way a request becomes an event on Kafka, for every domain: the
//! body validated by an extractor (handlers never see a refusal), the ids
//! derived ([`contract::ids`]), the full event built, its envelope written,
//! and `202` answered only once the broker acknowledged it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contract::batch::{Batch, ValidItem};
use contract::ids::{self, EventIds};
use contract::request::{parse_json, Intake, Valid};
use contract::{Domain, Envelope, Event, EventMetadata, ValidationErrors};
use serde::Serialize;
use tracing::Span;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::headers::header_text;
use crate::outbox::Entry;
use crate::publish::Delivered;
use crate::state::AppState;

/// Written into every event's metadata.
const PRODUCER: &str = concat!("producer/", env!("CARGO_PKG_VERSION"));

/// A request body of `R`, parsed and valid, and the rest of its request.
pub struct Validated<R: Intake>(pub Valid<R>, pub Received);

/// What a handler needs of a request besides its body: its headers (moved
/// out of the request, not copied) and its trace context as the
/// middleware read it (see [`crate::middleware::observe`]).
pub struct Received {
    headers: HeaderMap,
    trace: Trace,
}

/// The body of `request`, which the admission layer has read whole within
/// its limits already, and the rest of it.
async fn body<S: Send + Sync>(
    mut request: Request,
    state: &S,
) -> Result<(Bytes, Received), ApiError> {
    let received = Received {
        headers: std::mem::take(request.headers_mut()),
        trace: match request.extensions_mut().remove::<Trace>() {
            Some(trace) => trace,
            None => Trace::current(),
        },
    };
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|e| ApiError::Malformed(e.body_text()))?;
    Ok((body, received))
}

impl<R: Intake, S: Send + Sync> FromRequest<S> for Validated<R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let (body, received) = body(request, state).await?;
        Ok(Self(parse_json::<R>(&body)?.validate()?, received))
    }
}

/// What the API answers for an accepted request of each kind.
pub trait Answer: Intake {
    /// The `202` body.
    type Body: Serialize;
    /// The body for `ids`.
    fn answer(ids: &EventIds<Self::Id>) -> Self::Body;
    /// Its span field for the order or user id.
    const ID_FIELD: &'static str;
    /// Puts the order or user id of `ids` on a batch item's outcome.
    fn identify(ids: &EventIds<Self::Id>, outcome: &mut ItemOutcome);
}

/// A batch body of `B`, parsed, every item valid and given its ids.
pub struct ValidatedBatch<B: Batch>(pub Vec<ValidItem<B::Request>>, pub Received);

impl<B: Batch> FromRequest<Arc<AppState>> for ValidatedBatch<B> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (body, received) = body(request, state).await?;
        let batch = parse_json::<B>(&body)?;
        let items = contract::batch::validate(batch, state.max_batch_items, &state.id_keys)?;
        Ok(Self(items, received))
    }
}

/// What became of one item of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOutcome {
    /// The item's place in the request, from 0.
    pub index: usize,
    /// `accepted` (stored by the broker) or `failed` (not stored: send the
    /// item again, with its idempotency key).
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// The order's id (order batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<Uuid>,
    /// The user's id (user batches).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The event's id.
    pub event_id: Uuid,
    /// Where its status is read (`GET`), once accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "/orders/0193a5a0-7c1e-7d2a-9b1e-3f4c5d6e7f80")]
    pub location: Option<String>,
    /// Where the broker stored it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Its offset in that partition.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// Why it failed, as the error code of a single request.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "broker_unavailable")]
    pub error: Option<&'static str>,
    /// For people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The answer of a batch of which at least one item was stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchAnswer {
    /// `accepted` (every item, `200`) or `partial` (some failed, `207`).
    #[schema(example = "accepted")]
    pub status: &'static str,
    /// Items stored by the broker.
    pub accepted: usize,
    /// Items not stored.
    pub failed: usize,
    /// Each item's outcome, in the request's order.
    pub results: Vec<ItemOutcome>,
}

/// Why a batch refuses an `Idempotency-Key` header.
pub const BATCH_KEY_RULE: &str =
    "not taken on a batch: give each item its own idempotency_key (items[].idempotency_key)";

/// The `Idempotency-Key`, if the client sent a usable one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if ids::idempotency_key_ok(key) => Ok(Some(key)),
            _ => {
                let mut errors = ValidationErrors::default();
                errors.add("header:Idempotency-Key", ids::IDEMPOTENCY_KEY_RULE);
                Err(ApiError::Invalid(errors))
            }
        },
    }
}

/// `X-Correlation-ID` when it is sensible, else a new one.
fn correlation_id(headers: &HeaderMap) -> String {
    header_text(headers, "x-correlation-id")
        .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string())
}

/// The request's trace context, read once per request (a batch's events
/// all carry it): its ids for the events' metadata, its W3C headers for
/// the messages.
#[derive(Debug, Clone)]
pub struct Trace {
    ids: Option<(String, String)>,
    headers: Vec<(&'static str, String)>,
}

impl Trace {
    fn current() -> Self {
        Self::from(platform::trace::context(&Span::current()))
    }
}

impl From<Option<platform::trace::TraceContext>> for Trace {
    fn from(context: Option<platform::trace::TraceContext>) -> Self {
        match context {
            None => Self {
                ids: None,
                headers: Vec::new(),
            },
            Some(c) => {
                let mut headers = vec![(contract::headers::TRACEPARENT, c.traceparent)];
                if let Some(state) = c.tracestate {
                    headers.push((contract::headers::TRACESTATE, state));
                }
                Self {
                    ids: Some((c.trace_id, c.span_id)),
                    headers,
                }
            }
        }
    }
}

fn metadata<E: Event>(event_id: Uuid, correlation_id: String, trace: &Trace) -> EventMetadata {
    EventMetadata {
        event_id,
        event_type: E::DOMAIN.event_type().to_owned(),
        schema_version: E::SCHEMA_VERSION,
        occurred_at: Utc::now(),
        producer: PRODUCER.to_owned(),
        correlation_id,
        trace_id: trace.ids.as_ref().map(|(t, _)| t.clone()),
        span_id: trace.ids.as_ref().map(|(_, s)| s.clone()),
    }
}

/// The message of `event`: its topic, key, encoded value, envelope
/// headers and the trace context.
fn message<'a, E: Event>(
    state: &'a AppState,
    event: &E,
    trace: &'a Trace,
) -> Result<Entry<'a>, ApiError> {
    Ok(Entry {
        topic: state.topics.topic(E::DOMAIN),
        key: event.key(),
        headers: Envelope::of(event, state.format).headers(),
        trace: &trace.headers,
        value: event.encode(state.format)?,
    })
}

/// Publishes `entry` and waits for the broker's acknowledgement.
async fn publish(state: &AppState, entry: &Entry<'_>) -> Result<Delivered, ApiError> {
    let delivered = state
        .publisher
        .publish(
            entry.topic,
            &entry.key,
            &entry.value,
            platform::kafka::owned_headers(entry.all_headers()),
        )
        .await?;
    // Debug: a line per request would cost more than the request's own
    // work at high rates; metrics count every outcome.
    tracing::debug!(
        topic = entry.topic,
        partition = delivered.partition,
        offset = delivered.offset,
        "event published"
    );
    Ok(delivered)
}

/// Stores `entries`: in the outbox (one transaction) in outbox mode, else
/// published, each awaited. Each entry's broker position when published.
async fn store(
    state: &AppState,
    entries: &[Entry<'_>],
) -> Result<Vec<Result<Option<Delivered>, ApiError>>, ApiError> {
    if let Some(outbox) = &state.outbox {
        outbox.write(entries).await?;
        return Ok(entries.iter().map(|_| Ok(None)).collect());
    }
    // Every send is queued before any acknowledgement is awaited, so the
    // producer batches them as it batches concurrent requests.
    Ok(
        futures::future::join_all(entries.iter().map(|entry| publish(state, entry)))
            .await
            .into_iter()
            .map(|r| r.map(Some))
            .collect(),
    )
}

/// Accepts a valid request of `R`: its ids, its event, the broker's
/// acknowledgement, then `202`.
pub async fn accept<R: Answer>(
    state: Arc<AppState>,
    Validated(valid, received): Validated<R>,
) -> Result<Response, ApiError> {
    let Received { headers, trace } = received;
    let key = idempotency_key(&headers)?;
    let ids = ids::derive(
        &state.id_keys,
        R::Event::DOMAIN,
        valid.client_id.clone(),
        key,
    );
    let correlation_id = correlation_id(&headers);
    let span = Span::current();
    span.record(R::ID_FIELD, tracing::field::display(&ids.aggregate));
    span.record("correlation_id", correlation_id.as_str());
    let body = R::answer(&ids);
    let location = ids::location(R::Event::DOMAIN, &ids.aggregate.to_string());
    let event = valid.into_event(
        ids.aggregate,
        metadata::<R::Event>(ids.event, correlation_id.clone(), &trace),
    );
    let location = ids::with_content(&location, &event.fingerprint());
    let entry = message(&state, &event, &trace)?;
    for stored in store(&state, std::slice::from_ref(&entry)).await? {
        stored?;
    }
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    Ok(response)
}

/// Accepts a valid batch of `B`: every item's event published at once,
/// then each item's outcome once the broker answered for all of them:
/// `200` when all were stored, `207` when some were, and the error of a
/// single request (`503`) when none was.
pub async fn accept_batch<B: Batch>(
    state: Arc<AppState>,
    ValidatedBatch(items, received): ValidatedBatch<B>,
) -> Result<Response, ApiError>
where
    B::Request: Answer,
{
    let Received { headers, trace } = received;
    if headers.contains_key("idempotency-key") {
        // One key cannot name many orders, and ignoring it would store
        // every order of a retried batch twice.
        let mut errors = ValidationErrors::default();
        errors.add("header:Idempotency-Key", BATCH_KEY_RULE);
        return Err(ApiError::Invalid(errors));
    }
    let correlation_id = correlation_id(&headers);
    Span::current().record("correlation_id", correlation_id.as_str());
    let mut outcomes = Vec::with_capacity(items.len());
    let mut events = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let mut outcome = ItemOutcome {
            index,
            status: "accepted",
            order_id: None,
            user_id: None,
            event_id: item.ids.event,
            location: None,
            partition: None,
            offset: None,
            error: None,
            message: None,
        };
        B::Request::identify(&item.ids, &mut outcome);
        outcomes.push(outcome);
        events.push(item.valid.into_event(
            item.ids.aggregate,
            metadata::<<B::Request as Intake>::Event>(
                item.ids.event,
                correlation_id.clone(),
                &trace,
            ),
        ));
    }
    let entries = events
        .iter()
        .map(|event| message(&state, event, &trace))
        .collect::<Result<Vec<_>, _>>()?;
    let delivered = store(&state, &entries).await?;
    let (status, mut answer) = settle(outcomes, delivered)?;
    for (result, event) in answer.results.iter_mut().zip(&events) {
        if let Some(location) = &mut result.location {
            *location = ids::with_content(location, &event.fingerprint());
        }
    }
    let failed = answer.failed;
    let mut response = (status, Json(answer)).into_response();
    if failed > 0 {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
    }
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    Ok(response)
}

/// Each item's outcome from what the broker answered for it: `200` when
/// all were stored, `207` when some were, the first error when none was.
fn settle(
    mut outcomes: Vec<ItemOutcome>,
    delivered: Vec<Result<Option<Delivered>, ApiError>>,
) -> Result<(StatusCode, BatchAnswer), ApiError> {
    let mut first_error = None;
    for (outcome, result) in outcomes.iter_mut().zip(delivered) {
        match result {
            Ok(at) => {
                outcome.partition = at.map(|a| a.partition);
                outcome.offset = at.map(|a| a.offset);
                outcome.location = match (&outcome.order_id, &outcome.user_id) {
                    (Some(order), _) => Some(ids::location(Domain::Orders, &order.to_string())),
                    (None, Some(user)) => Some(ids::location(Domain::Users, user)),
                    (None, None) => None,
                };
            }
            Err(e) => {
                outcome.status = "failed";
                outcome.error = Some(e.code());
                outcome.message = Some(e.to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
    let accepted = outcomes.len() - failed;
    match first_error {
        Some(e) if accepted == 0 => return Err(e),
        _ => {}
    }
    let status = if failed == 0 {
        StatusCode::OK
    } else {
        StatusCode::MULTI_STATUS
    };
    Ok((
        status,
        BatchAnswer {
            status: if failed == 0 { "accepted" } else { "partial" },
            accepted,
            failed,
            results: outcomes,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::publish::PublishError;

    fn outcome(index: usize) -> ItemOutcome {
        ItemOutcome {
            index,
            status: "accepted",
            order_id: Some(Uuid::new_v4()),
            user_id: None,
            event_id: Uuid::new_v4(),
            location: None,
            partition: None,
            offset: None,
            error: None,
            message: None,
        }
    }

    fn stored(offset: i64) -> Result<Option<Delivered>, ApiError> {
        Ok(Some(Delivered {
            partition: 1,
            offset,
        }))
    }

    fn refused() -> Result<Option<Delivered>, ApiError> {
        Err(ApiError::Unavailable(PublishError::QueueFull))
    }

    #[test]
    fn a_batch_is_200_when_all_are_stored_207_when_some_and_503_when_none() {
        let (status, answer) =
            settle(vec![outcome(0), outcome(1)], vec![stored(7), stored(8)]).expect("stored");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            (answer.status, answer.accepted, answer.failed),
            ("accepted", 2, 0)
        );
        assert_eq!(answer.results[1].offset, Some(8));
        let order = answer.results[1].order_id.expect("an order id");
        assert_eq!(
            answer.results[1].location.as_deref(),
            Some(format!("/orders/{order}").as_str()),
            "an accepted item says where to read it"
        );

        let (status, answer) = settle(
            vec![outcome(0), outcome(1), outcome(2)],
            vec![stored(7), refused(), stored(9)],
        )
        .expect("partly stored");
        assert_eq!(status, StatusCode::MULTI_STATUS);
        assert_eq!(
            (answer.status, answer.accepted, answer.failed),
            ("partial", 2, 1)
        );
        let failed = &answer.results[1];
        assert_eq!(
            (failed.status, failed.error),
            ("failed", Some("producer_queue_full"))
        );
        assert_eq!((failed.offset, &failed.location), (None, &None));
        assert!(failed.order_id.is_some(), "its ids, to send it again");

        let none = settle(vec![outcome(0), outcome(1)], vec![refused(), refused()]);
        assert!(matches!(
            none,
            Err(ApiError::Unavailable(PublishError::QueueFull))
        ));
    }
}
