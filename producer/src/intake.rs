//! The one way a request becomes an event on Kafka, for every domain and
//! every change of an order: the body validated by an extractor (handlers
//! never see a refusal), the ids derived ([`contract::ids`]), the full event
//! built, its envelope written, and `202` answered only once the broker
//! acknowledged it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::LOCATION;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contract::batch::{Batch, ValidItem};
use contract::ids::{self, EventIds};
use contract::request::{parse_json, Intake, Valid};
use contract::{Domain, Envelope, Event, EventMetadata, OrderChange, ValidationErrors};
use serde::Serialize;
use tracing::Span;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::ApiError;
use crate::headers::{self, header_text};
use crate::publish::Delivered;
use crate::record::Record;
use crate::state::AppState;

/// Written into every event's metadata.
const PRODUCER: &str = concat!("producer/", env!("CARGO_PKG_VERSION"));

/// A request body of `R`, parsed and valid, and the rest of its request.
pub struct Validated<R: Intake>(pub Valid<R>, pub Received);

/// What a handler needs of a request besides its body: its headers (moved
/// out of the request, not copied), and its trace context and correlation
/// id as the middleware read them (see [`crate::middleware::observe`]).
pub struct Received {
    headers: HeaderMap,
    trace: Trace,
    correlation_id: String,
}

/// The body of `request`, which the admission layer has read whole within
/// its limits already, and the rest of it.
async fn body<S: Send + Sync>(
    mut request: Request,
    state: &S,
) -> Result<(Bytes, Received), ApiError> {
    let correlation_id = match request.extensions_mut().remove::<CorrelationId>() {
        Some(CorrelationId(id)) => id,
        None => CorrelationId::of(request.headers()).0,
    };
    let received = Received {
        headers: std::mem::take(request.headers_mut()),
        trace: match request.extensions_mut().remove::<Trace>() {
            Some(trace) => trace,
            None => Trace::current(),
        },
        correlation_id,
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

/// Whether one item of a batch was stored, as its answer spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// Stored by the broker (or, in outbox mode, the outbox).
    Accepted,
    /// Not stored: send the item again, with its idempotency key.
    Failed,
}

/// What became of a batch as a whole, as its answer spells it (a batch of
/// which no item was stored gets the error of a single request instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchStatus {
    /// Every item stored (`200`).
    Accepted,
    /// Some items stored, the others failed (`207`).
    Partial,
}

/// What became of one item of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemOutcome {
    /// The item's place in the request, from 0.
    pub index: usize,
    /// `accepted` (stored by the broker) or `failed` (not stored: send the
    /// item again, with its idempotency key).
    pub status: ItemStatus,
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
    pub status: BatchStatus,
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

/// A request's correlation id, carried into its events and answered in
/// `X-Correlation-ID` on every answer, refusals included: chosen once per
/// request by the middleware ([`crate::middleware::observe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationId(pub String);

impl CorrelationId {
    /// The header's name, in requests and answers.
    pub const HEADER: &'static str = "x-correlation-id";

    /// The request's `X-Correlation-ID` when it is sensible, else a new one.
    pub fn of(headers: &HeaderMap) -> Self {
        Self(
            header_text(headers, Self::HEADER)
                .filter(|v| v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
                .map(str::to_owned)
                .unwrap_or_else(|| Uuid::new_v4().to_string()),
        )
    }
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

/// The metadata of an event of `event_type` (an [`Event`] type may carry
/// several, as an order change does).
fn metadata<E: Event>(
    event_type: &'static str,
    event_id: Uuid,
    correlation_id: String,
    trace: &Trace,
) -> EventMetadata {
    EventMetadata {
        event_id,
        event_type: event_type.to_owned(),
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
) -> Result<Record<'a>, ApiError> {
    Ok(Record {
        topic: state.topics.topic(E::DOMAIN),
        key: event.key(),
        headers: Envelope::of(event, state.format).headers(),
        trace: &trace.headers,
        value: event.encode(state.format)?,
    })
}

/// Accepts a valid request of `R`: its ids, its event, the broker's
/// acknowledgement, then `202`.
pub async fn accept<R: Answer>(
    state: Arc<AppState>,
    Validated(valid, received): Validated<R>,
) -> Result<Response, ApiError> {
    let Received {
        headers,
        trace,
        correlation_id,
    } = received;
    let key = idempotency_key(&headers)?;
    let ids = ids::derive(
        &state.id_keys,
        R::Event::DOMAIN,
        valid.client_id.clone(),
        key,
    );
    Span::current().record(R::ID_FIELD, tracing::field::display(&ids.aggregate));
    let body = R::answer(&ids);
    let location = ids::location(R::Event::DOMAIN, &ids.aggregate.to_string());
    let event_type = valid.event_type();
    let event = valid.into_event(
        ids.aggregate,
        metadata::<R::Event>(event_type, ids.event, correlation_id, &trace),
    );
    let location = ids::with_content(&location, &event.fingerprint());
    store_one(&state, &event, &trace).await?;
    Ok(accepted(body, &location))
}

/// Stores `event` (published, or in the outbox) and waits for the answer.
async fn store_one<E: Event>(state: &AppState, event: &E, trace: &Trace) -> Result<(), ApiError> {
    let entry = message(state, event, trace)?;
    for stored in state.sink.store(std::slice::from_ref(&entry)).await? {
        stored?;
    }
    Ok(())
}

/// `202` with `body` and where to read what became of it (the middleware
/// adds the correlation id).
fn accepted(body: impl Serialize, location: &str) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// The order a change names in its path (`/orders/{id}/payment`), in the
/// form the consumer stores order ids ([`ids::parse`]); a path that names
/// no order is a `400`, before the body is read.
#[derive(Debug, Clone, Copy)]
pub struct OrderId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for OrderId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        const RULE: &str = "an order id is a UUID";
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                // A route without its `{id}` is the server's mistake; a
                // segment that is no text (bad percent-encoding) the
                // client's.
                if e.status().is_server_error() {
                    ApiError::Internal(Box::new(e))
                } else {
                    ApiError::BadId(RULE)
                }
            })?;
        let id = ids::parse(Domain::Orders, &raw).map_err(ApiError::BadId)?;
        id.parse().map(OrderId).map_err(|_| ApiError::BadId(RULE))
    }
}

/// The answer of an accepted change of an order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedChange {
    /// The order changed (the Kafka key).
    pub order_id: Uuid,
    /// The change's event id: the same for a retry of the request
    /// (same order, change and `Idempotency-Key`, or none).
    pub event_id: Uuid,
    /// Always `accepted`: stored by the broker; whether the order's state
    /// allowed the change the consumer decides (see `GET /orders/{id}`).
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// Accepts a valid change of the order `order_id`: its event id derived
/// from the order, the change and the `Idempotency-Key` (so a retry maps to
/// the same event), conditional on the version of its `If-Match`, keyed by
/// the order (its creation's partition), then `202` once stored. Whether
/// the change is allowed from the order's state is the consumer's to
/// decide: the producer keeps no state.
pub async fn accept_change<R>(
    state: Arc<AppState>,
    OrderId(order_id): OrderId,
    Validated(valid, received): Validated<R>,
) -> Result<Response, ApiError>
where
    R: Intake<Id = Uuid, Event = OrderChange>,
{
    let Received {
        headers,
        trace,
        correlation_id,
    } = received;
    let key = idempotency_key(&headers)?;
    let expected_version = headers::if_match(&headers)?;
    let event_type = valid.event_type();
    let event_id = ids::change_event(&state.id_keys, order_id, event_type, key);
    Span::current().record("order_id", tracing::field::display(&order_id));
    let metadata = metadata::<OrderChange>(event_type, event_id, correlation_id, &trace);
    let mut event = valid.into_event(order_id, metadata);
    event.expected_version = expected_version;
    store_one(&state, &event, &trace).await?;
    let body = AcceptedChange {
        order_id,
        event_id,
        status: "accepted",
    };
    let location = ids::location(Domain::Orders, &order_id.to_string());
    Ok(accepted(body, &location))
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
    let Received {
        headers,
        trace,
        correlation_id,
    } = received;
    refuse_batch_key(&headers)?;
    let (outcomes, events) = prepare::<B::Request>(items, &correlation_id, &trace);
    let entries = events
        .iter()
        .map(|event| message(&state, event, &trace))
        .collect::<Result<Vec<_>, _>>()?;
    let delivered = state.sink.store(&entries).await?;
    let (status, answer) = settle(outcomes, delivered)?;
    Ok(batch_response(status, answer))
}

/// Refuses an `Idempotency-Key` header on a batch: one key cannot name
/// many orders, and ignoring it would store every order of a retried batch
/// twice.
fn refuse_batch_key(headers: &HeaderMap) -> Result<(), ApiError> {
    if !headers.contains_key("idempotency-key") {
        return Ok(());
    }
    let mut errors = ValidationErrors::default();
    errors.add("header:Idempotency-Key", BATCH_KEY_RULE);
    Err(ApiError::Invalid(errors))
}

/// Each item's event, and its outcome should it be stored: its ids and
/// where its status is read.
fn prepare<R: Answer>(
    items: Vec<ValidItem<R>>,
    correlation_id: &str,
    trace: &Trace,
) -> (Vec<ItemOutcome>, Vec<R::Event>) {
    items
        .into_iter()
        .enumerate()
        .map(|(index, ValidItem { valid, ids })| {
            let home = ids::location(R::Event::DOMAIN, &ids.aggregate.to_string());
            let mut outcome = ItemOutcome::pending(index, ids.event);
            R::identify(&ids, &mut outcome);
            let metadata = metadata::<R::Event>(
                valid.event_type(),
                ids.event,
                correlation_id.to_owned(),
                trace,
            );
            let event = valid.into_event(ids.aggregate, metadata);
            outcome.location = Some(ids::with_content(&home, &event.fingerprint()));
            (outcome, event)
        })
        .unzip()
}

impl ItemOutcome {
    /// An item not stored yet, known by its event id only.
    fn pending(index: usize, event_id: Uuid) -> Self {
        Self {
            index,
            status: ItemStatus::Accepted,
            order_id: None,
            user_id: None,
            event_id,
            location: None,
            partition: None,
            offset: None,
            error: None,
            message: None,
        }
    }
}

/// The answer of a batch of which at least one item was stored, with
/// `Retry-After` when some failed (the middleware adds the correlation id).
fn batch_response(status: StatusCode, answer: BatchAnswer) -> Response {
    let failed = answer.failed;
    let mut response = (status, Json(answer)).into_response();
    if failed > 0 {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

/// Each item's outcome from what the broker answered for it: `200` when
/// all were stored, `207` when some were, the first error when none was.
/// A stored item keeps its location and gets its place on the broker; a
/// failed one says why, and has no location to read.
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
            }
            Err(e) => {
                outcome.status = ItemStatus::Failed;
                outcome.location = None;
                outcome.error = Some(e.code());
                outcome.message = Some(e.to_string());
                first_error.get_or_insert(e);
            }
        }
    }
    let failed = outcomes
        .iter()
        .filter(|o| o.status == ItemStatus::Failed)
        .count();
    let accepted = outcomes.len() - failed;
    match first_error {
        Some(e) if accepted == 0 => return Err(e),
        _ => {}
    }
    let (status, batch) = if failed == 0 {
        (StatusCode::OK, BatchStatus::Accepted)
    } else {
        (StatusCode::MULTI_STATUS, BatchStatus::Partial)
    };
    Ok((
        status,
        BatchAnswer {
            status: batch,
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

    /// An order item as [`prepare`] leaves it: its ids and its location.
    fn outcome(index: usize) -> ItemOutcome {
        let order_id = Uuid::new_v4();
        ItemOutcome {
            index,
            status: ItemStatus::Accepted,
            order_id: Some(order_id),
            user_id: None,
            event_id: Uuid::new_v4(),
            location: Some(ids::location(Domain::Orders, &order_id.to_string())),
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
            (BatchStatus::Accepted, 2, 0)
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
            (BatchStatus::Partial, 2, 1)
        );
        let failed = &answer.results[1];
        assert_eq!(
            (failed.status, failed.error),
            (ItemStatus::Failed, Some("producer_queue_full"))
        );
        assert_eq!((failed.offset, &failed.location), (None, &None));
        assert!(failed.order_id.is_some(), "its ids, to send it again");

        let none = settle(vec![outcome(0), outcome(1)], vec![refused(), refused()]);
        assert!(matches!(
            none,
            Err(ApiError::Unavailable(PublishError::QueueFull))
        ));
    }

    /// The statuses are written as the strings they replaced: the JSON of
    /// a batch answer is the same, byte for byte.
    #[test]
    fn a_batch_answer_is_written_as_before() {
        let mut first = outcome(0);
        let mut second = outcome(1);
        for (item, n) in [(&mut first, 1u128), (&mut second, 2)] {
            item.order_id = Some(Uuid::from_u128(n));
            item.event_id = Uuid::from_u128(n + 10);
            item.location = Some(format!("/orders/{}", Uuid::from_u128(n)));
        }
        let (_, answer) =
            settle(vec![first, second], vec![stored(7), refused()]).expect("one stored");
        assert_eq!(
            serde_json::to_string(&answer).expect("serialised"),
            concat!(
                r#"{"status":"partial","accepted":1,"failed":1,"results":["#,
                r#"{"index":0,"status":"accepted","order_id":"00000000-0000-0000-0000-000000000001","#,
                r#""event_id":"00000000-0000-0000-0000-00000000000b","#,
                r#""location":"/orders/00000000-0000-0000-0000-000000000001","partition":1,"offset":7},"#,
                r#"{"index":1,"status":"failed","order_id":"00000000-0000-0000-0000-000000000002","#,
                r#""event_id":"00000000-0000-0000-0000-00000000000c","error":"producer_queue_full","#,
                r#""message":"event not accepted: producer queue is full"}]}"#
            )
        );
        let (_, all) = settle(vec![outcome(0)], vec![stored(1)]).expect("stored");
        let all = serde_json::to_value(&all).expect("serialised");
        assert_eq!(all["status"], "accepted");
    }

    /// Each prepared item carries its own ids and the location of its own
    /// content, as the events were built.
    #[test]
    fn a_prepared_item_is_located_by_its_own_id_and_content() {
        let items = (0..2)
            .map(|n| serde_json::json!({"idempotency_key": format!("k-{n}"), "order": contract::request::example_order()}))
            .collect::<Vec<_>>();
        let body = serde_json::json!({ "orders": items }).to_string();
        let batch = parse_json::<contract::batch::OrderBatch>(body.as_bytes()).expect("parsed");
        let valid =
            contract::batch::validate(batch, 10, &ids::KeyDerivation::public()).expect("valid");
        let trace = Trace::from(None);
        let (outcomes, events) = prepare(valid, "corr", &trace);
        assert_eq!(outcomes.len(), 2);
        for (n, (outcome, event)) in outcomes.iter().zip(&events).enumerate() {
            let order = outcome.order_id.expect("an order id");
            assert_eq!((outcome.index, outcome.status), (n, ItemStatus::Accepted));
            assert_eq!(outcome.event_id, event.metadata.event_id);
            assert_eq!(order, event.order_id);
            let home = ids::location(Domain::Orders, &order.to_string());
            assert_eq!(
                outcome.location.as_deref(),
                Some(ids::with_content(&home, &event.fingerprint()).as_str())
            );
        }
    }
}
