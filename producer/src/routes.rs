//! `POST /orders` and `POST /users`: check, validate, enrich into the full
//! ECST event, publish, and answer `202` only once the broker acknowledged.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use contract::request::{parse_json, CreateOrderRequest, CreateUserRequest};
use contract::{headers as h, EventCodec, EventMetadata, Keyed};
use governor::DefaultDirectRateLimiter;
use rdkafka::message::{Header, OwnedHeaders};
use serde::Serialize;
use tracing::Span;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::admission::header_text;
use crate::error::{ApiError, ErrorBody};
use crate::publish::Publisher;

/// Namespace of the ids derived from an `Idempotency-Key`.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2a3e_8d4b_4c1f_9a0e_5b7d_3c2e_1f40);
/// Written into every event's metadata.
const PRODUCER: &str = concat!("producer/", env!("CARGO_PKG_VERSION"));

/// What the handlers share.
pub struct AppState {
    /// The one producer.
    pub publisher: Publisher,
    /// Encoding of published values.
    pub format: contract::Format,
    /// Topic of order events.
    pub orders_topic: String,
    /// Topic of user events.
    pub users_topic: String,
    /// Body size limit (larger bodies get 413).
    pub max_body_bytes: usize,
    /// Longest a client may take to send its body (then 408).
    pub body_timeout: std::time::Duration,
    /// Global request rate limit.
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// Bearer token required on write endpoints.
    pub api_token: Option<String>,
}

/// Answer of an accepted order.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedOrder {
    /// The order's id (the Kafka key).
    pub order_id: Uuid,
    /// The event's id.
    pub event_id: Uuid,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// Answer of an accepted user.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedUser {
    /// The user's id (the Kafka key).
    pub user_id: String,
    /// The event's id.
    pub event_id: Uuid,
    /// Always `accepted`.
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// The `Idempotency-Key`, if the client sent a usable one.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    match headers.get("idempotency-key") {
        None => Ok(None),
        Some(value) => match value.to_str() {
            Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key)),
            _ => {
                let mut errors = contract::ValidationErrors::default();
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

fn metadata(
    event_id: Uuid,
    event_type: &str,
    schema_version: u32,
    correlation_id: String,
) -> EventMetadata {
    let ids = platform::trace::ids(&Span::current());
    EventMetadata {
        event_id,
        event_type: event_type.to_owned(),
        schema_version,
        occurred_at: Utc::now(),
        producer: PRODUCER.to_owned(),
        correlation_id,
        trace_id: ids.as_ref().map(|(t, _)| t.clone()),
        span_id: ids.map(|(_, s)| s),
    }
}

/// Encodes and publishes `event` with the headers every message carries.
async fn publish<E: EventCodec + Keyed>(
    state: &AppState,
    topic: &str,
    event: &E,
    fingerprint: &contract::fingerprint::Fingerprint,
) -> Result<(), ApiError> {
    let payload = event
        .encode(state.format)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let meta = event.metadata();
    let version = meta.schema_version.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(7)
        .insert(Header {
            key: h::CONTENT_TYPE,
            value: Some(state.format.content_type()),
        })
        .insert(Header {
            key: h::SCHEMA_VERSION,
            value: Some(version.as_str()),
        })
        .insert(Header {
            key: h::EVENT_TYPE,
            value: Some(meta.event_type.as_str()),
        })
        .insert(Header {
            key: h::CORRELATION_ID,
            value: Some(meta.correlation_id.as_str()),
        })
        .insert(Header {
            key: h::CONTENT_FINGERPRINT,
            value: Some(fingerprint.as_str()),
        });
    for (name, value) in platform::trace::inject(&Span::current()) {
        headers = headers.insert(Header {
            key: name.as_str(),
            value: Some(value.as_str()),
        });
    }
    let key = event.key();
    let delivered = state
        .publisher
        .publish(topic, &key, &payload, headers)
        .await?;
    // Debug: a line per request would cost more than the request's own
    // work at high rates; metrics count every outcome.
    tracing::debug!(
        topic,
        partition = delivered.partition,
        offset = delivered.offset,
        trace_id = meta.trace_id.as_deref().unwrap_or(""),
        "event published"
    );
    Ok(())
}

fn accepted<T: Serialize>(body: T, correlation_id: &str) -> Response {
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(correlation_id) {
        response.headers_mut().insert("x-correlation-id", value);
    }
    response
}

/// Accept an order.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body(content = CreateOrderRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key map to the same order_id"),
        ("X-Correlation-ID" = Option<String>, Header, description = "carried into the event; generated when absent"),
    ),
    responses(
        (status = 202, description = "stored by the broker", body = AcceptedOrder),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "invalid: every field at fault is listed", body = ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = ErrorBody),
        (status = 503, description = "broker unavailable or queue full; see Retry-After", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_order", skip_all, fields(order_id, correlation_id))]
pub async fn create_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let valid = parse_json::<CreateOrderRequest>(&body)?.validate()?;
    let order_id = valid.order_id.unwrap_or_else(|| match key {
        Some(key) => Uuid::new_v5(&ID_NAMESPACE, format!("order:{key}").as_bytes()),
        None => Uuid::new_v4(),
    });
    // One creation event per order: a retried request repeats the same
    // event id, which the consumer's event store recognises.
    let event_id = Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{}:{order_id}", contract::model::ORDER_CREATED).as_bytes(),
    );
    let correlation_id = correlation_id(&headers);
    let span = Span::current();
    span.record("order_id", tracing::field::display(order_id));
    span.record("correlation_id", correlation_id.as_str());
    let meta = metadata(
        event_id,
        contract::model::ORDER_CREATED,
        contract::model::ORDER_SCHEMA_VERSION,
        correlation_id.clone(),
    );
    let event = valid.into_event(order_id, meta);
    let fingerprint = contract::fingerprint::order(&event);
    publish(&state, &state.orders_topic, &event, &fingerprint).await?;
    Ok(accepted(
        AcceptedOrder {
            order_id,
            event_id,
            status: "accepted",
        },
        &correlation_id,
    ))
}

/// Accept a user.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body(content = CreateUserRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key map to the same user_id"),
        ("X-Correlation-ID" = Option<String>, Header, description = "carried into the event; generated when absent"),
    ),
    responses(
        (status = 202, description = "stored by the broker", body = AcceptedUser),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "invalid: every field at fault is listed", body = ErrorBody),
        (status = 429, description = "rate limited; see Retry-After", body = ErrorBody),
        (status = 503, description = "broker unavailable or queue full; see Retry-After", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "create_user", skip_all, fields(user_id, correlation_id))]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let valid = parse_json::<CreateUserRequest>(&body)?.validate()?;
    let user_id = valid.user_id.clone().unwrap_or_else(|| match key {
        Some(key) => Uuid::new_v5(&ID_NAMESPACE, format!("user:{key}").as_bytes()).to_string(),
        None => Uuid::new_v4().to_string(),
    });
    let event_id = Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{}:{user_id}", contract::model::USER_REGISTERED).as_bytes(),
    );
    let correlation_id = correlation_id(&headers);
    let span = Span::current();
    span.record("user_id", user_id.as_str());
    span.record("correlation_id", correlation_id.as_str());
    let meta = metadata(
        event_id,
        contract::model::USER_REGISTERED,
        contract::model::USER_SCHEMA_VERSION,
        correlation_id.clone(),
    );
    let event = valid.into_event(user_id.clone(), meta);
    let fingerprint = contract::fingerprint::user(&event);
    publish(&state, &state.users_topic, &event, &fingerprint).await?;
    Ok(accepted(
        AcceptedUser {
            user_id,
            event_id,
            status: "accepted",
        },
        &correlation_id,
    ))
}
