//! The one way a request becomes an event on Kafka, for every domain: the
//! body validated by an extractor (handlers never see a refusal), the ids
//! derived ([`contract::ids`]), the full event built, its envelope written,
//! and `202` answered only once the broker acknowledged it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contract::ids::{self, EventIds};
use contract::request::{parse_json, Intake, Valid};
use contract::{Envelope, Event, EventMetadata, ValidationErrors};
use serde::Serialize;
use tracing::Span;
use uuid::Uuid;

use crate::admission::header_text;
use crate::error::ApiError;
use crate::routes::AppState;

/// Written into every event's metadata.
const PRODUCER: &str = concat!("producer/", env!("CARGO_PKG_VERSION"));

/// A request body of `R`, parsed and valid.
pub struct Validated<R: Intake>(pub Valid<R>);

impl<R: Intake, S: Send + Sync> FromRequest<S> for Validated<R> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        // The admission layer has read the body within its limits already.
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::Malformed(e.body_text()))?;
        Ok(Self(parse_json::<R>(&body)?.validate()?))
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
}

/// The `Idempotency-Key`, if the client sent a usable one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key)),
            _ => {
                let mut errors = ValidationErrors::default();
                errors.add(
                    "header:Idempotency-Key",
                    "must be 1 to 255 visible ASCII characters",
                );
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

fn metadata<E: Event>(event_id: Uuid, correlation_id: String) -> EventMetadata {
    let trace = platform::trace::ids(&Span::current());
    EventMetadata {
        event_id,
        event_type: E::DOMAIN.event_type().to_owned(),
        schema_version: E::SCHEMA_VERSION,
        occurred_at: Utc::now(),
        producer: PRODUCER.to_owned(),
        correlation_id,
        trace_id: trace.as_ref().map(|(t, _)| t.clone()),
        span_id: trace.map(|(_, s)| s),
    }
}

/// Encodes and publishes `event` with its envelope and the trace context.
async fn publish<E: Event>(state: &AppState, event: &E) -> Result<(), ApiError> {
    let payload = event.encode(state.format)?;
    let mut headers = Envelope::of(event, state.format).headers();
    headers.extend(
        platform::trace::inject(&Span::current())
            .into_iter()
            .filter_map(|(name, value)| {
                // The propagator writes only the W3C names.
                [
                    contract::headers::TRACEPARENT,
                    contract::headers::TRACESTATE,
                ]
                .into_iter()
                .find(|known| *known == name)
                .map(|known| (known, value))
            }),
    );
    let topic = state.topics.topic(E::DOMAIN);
    let delivered = state
        .publisher
        .publish(
            topic,
            &event.key(),
            &payload,
            platform::kafka::owned_headers(headers),
        )
        .await?;
    // Debug: a line per request would cost more than the request's own
    // work at high rates; metrics count every outcome.
    tracing::debug!(
        topic,
        partition = delivered.partition,
        offset = delivered.offset,
        trace_id = event.metadata().trace_id.as_deref().unwrap_or(""),
        "event published"
    );
    Ok(())
}

/// Accepts a valid request of `R`: its ids, its event, the broker's
/// acknowledgement, then `202`.
pub async fn accept<R: Answer>(
    state: Arc<AppState>,
    headers: HeaderMap,
    valid: Valid<R>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let ids = ids::derive(R::Event::DOMAIN, valid.client_id.clone(), key);
    let correlation_id = correlation_id(&headers);
    let span = Span::current();
    span.record(R::ID_FIELD, tracing::field::display(&ids.aggregate));
    span.record("correlation_id", correlation_id.as_str());
    let body = R::answer(&ids);
    let event = valid.into_event(
        ids.aggregate,
        metadata::<R::Event>(ids.event, correlation_id.clone()),
    );
    publish(&state, &event).await?;
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    Ok(response)
}
