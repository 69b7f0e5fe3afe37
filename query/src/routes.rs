//! `GET /orders/{order_id}`, `/orders/{order_id}/events` and the same for
//! users: what became of what `POST` accepted, answered from the database.
//! An order answers with its status, version (its `ETag`) and history, and
//! its events with what became of each change, refused ones included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Semaphore;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use contract::Domain;

use crate::metrics::QueryMetrics;
use contract::dead_letter::{ErrorKind, FailureClass};
use store::read::{self, Found, OrderEvent, Status, StoredEvent, Unknown};
use store::rejections::Rejection;

/// Most events one answer lists; of an order's, most of each outcome
/// (applied, refused).
pub const MAX_EVENTS: i64 = 1_000;

/// What the handlers share.
pub struct AppState {
    /// The database.
    pub pool: PgPool,
    /// Counted per lookup.
    pub metrics: QueryMetrics,
    /// See [`crate::QueryConfig::pending_window`].
    pub pending_window: Duration,
    /// Longest a lookup may take.
    pub statement_timeout: Duration,
    /// Bearer token reads need, when set.
    pub api_token: Option<String>,
    /// One permit per lookup answered at once.
    pub permits: Arc<Semaphore>,
}

/// A refused or failed lookup.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// 400: not an id of this resource.
    #[error("invalid id: {0}")]
    BadId(&'static str),
    /// 404: not known.
    #[error("not found: {}", .0.explain())]
    NotFound(Unknown),
    /// 400: the `content` parameter is not a fingerprint.
    #[error("invalid content parameter: {0}")]
    BadContent(&'static str),
    /// 409: the id holds other content than the request whose `Location`
    /// this is: another request under the same `Idempotency-Key` or id was
    /// stored first, and this one was refused.
    #[error(
        "this id holds other content than your request's: another request under the same \
         Idempotency-Key or id was stored first, and yours was refused (a conflict dead letter); \
         send it again under a key of its own"
    )]
    Taken,
    /// 401: missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 503: too many lookups at once.
    #[error("too many lookups at once (QUERY_MAX_IN_FLIGHT): try again")]
    Overloaded,
    /// 503: the database did not answer in time, or failed.
    #[error("the database cannot answer now ({0}): try again")]
    Unavailable(&'static str),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code: `invalid_id`, `invalid_content`, `id_taken`, `not_found`,
    /// `unauthorized`, `overloaded`, `database_unavailable`.
    pub error: &'static str,
    /// For people.
    pub message: String,
    /// For `not_found`: `no_acceptance_time`, `past_pending_window` or
    /// `not_assigned_yet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let (status, code, reason) = match &self {
            QueryError::BadId(_) => (StatusCode::BAD_REQUEST, "invalid_id", None),
            QueryError::BadContent(_) => (StatusCode::BAD_REQUEST, "invalid_content", None),
            QueryError::Taken => (StatusCode::CONFLICT, "id_taken", None),
            QueryError::NotFound(why) => (StatusCode::NOT_FOUND, "not_found", Some(why.code())),
            QueryError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            QueryError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded", None),
            QueryError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                None,
            ),
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
            reason,
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(1));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Where a dead letter sits.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterAt {
    /// The DLQ topic.
    pub topic: String,
    /// Its partition (absent when it was refused even reduced).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    /// Its offset there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
}

/// What every status answer says besides the id and the stored record.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Details {
    /// The event it was stored from (`persisted`), or the dead-lettered
    /// event's (`rejected`, when readable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// When the consumer stored it (`persisted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted_at: Option<DateTime<Utc>>,
    /// When the producer accepted it, as its id says (`pending`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
    /// `permanent` or `transient` (`rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// The failure's class, such as `validation` (`rejected`); never
    /// customer data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<FailureClass>,
    /// When it was dead-lettered (`rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected_at: Option<DateTime<Utc>>,
    /// Where its dead letter sits (`rejected`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<DeadLetterAt>,
}

/// `GET /orders/{order_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderStatus {
    /// `persisted`, `rejected` or `pending`.
    #[schema(example = "persisted")]
    pub status: &'static str,
    /// The order's id.
    pub order_id: String,
    /// What else is known.
    #[serde(flatten)]
    pub outcome: Details,
    /// The order as the consumer stored it (`persisted`): `customer`,
    /// `items`, `currency`, `totals`, `promotion_code`, `occurred_at`,
    /// `correlation_id`, `schema_version`, and its life since: `status`
    /// (`created`, `paid`, `shipped`, `delivered`, `cancelled`), `version`
    /// (1 at creation, one more per applied change; the `ETag`),
    /// `changed_at` (when the latest change was accepted; null until one
    /// is), the data of each change applied (`payment`, `shipment`,
    /// `delivery`, `cancellation`; null until then) and `history`: each
    /// applied event, oldest first, with `version`, `status`, `event_id`,
    /// `event_type` and `occurred_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub order: Option<Value>,
}

/// `GET /users/{user_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStatus {
    /// `persisted`, `rejected` or `pending`.
    #[schema(example = "persisted")]
    pub status: &'static str,
    /// The user's id.
    pub user_id: String,
    /// What else is known.
    #[serde(flatten)]
    pub outcome: Details,
    /// The user as the consumer stored it (`persisted`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub user: Option<Value>,
}

/// `GET /orders/{order_id}/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderEventList {
    /// The order's id.
    pub id: String,
    /// Each change of the order (its creation included) with its
    /// `outcome`, in the order the consumer decided them: `applied` with
    /// the version it made, or `refused` with its kind and class and where
    /// its dead letter sits (never its content). At most 1000 of each
    /// outcome: the first applied ones (an order has at most four) and the
    /// newest refused ones.
    pub events: Vec<OrderEvent>,
    /// Whether some were left out past that limit (older refused ones).
    pub truncated: bool,
}

/// `GET /users/{user_id}/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    /// The user's id.
    pub id: String,
    /// Its events in the order the consumer stored them (at most 1000).
    pub events: Vec<StoredEvent>,
}

/// Bearer token and the in-flight bound, before any lookup.
pub async fn admit(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.api_token {
        if !platform::http::bearer_matches(request.headers(), token) {
            return QueryError::Unauthorized.into_response();
        }
    }
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        return QueryError::Overloaded.into_response();
    };
    state.metrics.in_flight.inc();
    let response = next.run(request).await;
    state.metrics.in_flight.dec();
    response
}

fn parse(domain: Domain, raw: Result<Path<String>, PathRejection>) -> Result<String, QueryError> {
    let Ok(Path(raw)) = raw else {
        return Err(QueryError::BadId("the id is not valid UTF-8 text"));
    };
    contract::ids::parse(domain, &raw).map_err(QueryError::BadId)
}

/// Runs one database call within the statement timeout (acquiring
/// included; a connection that does not answer in time is closed, see
/// [`store::db::within`]), timing and counting it.
async fn bounded<T>(
    state: &AppState,
    domain: Domain,
    work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, sqlx::Error>,
) -> Result<T, QueryError> {
    let started = Instant::now();
    // `None`: no answer within the deadline.
    let result = store::db::within(
        &state.pool,
        state.statement_timeout,
        Some,
        || None,
        async |conn| work(conn).await.map_err(Some),
    )
    .await;
    state
        .metrics
        .duration(domain.resource(), started.elapsed().as_secs_f64());
    let kind = match result {
        Ok(value) => return Ok(value),
        Err(None) => "timeout",
        Err(Some(e)) => store::db::Failure::of(&e).label(),
    };
    state.metrics.database_error(kind);
    tracing::warn!(kind, "lookup failed in the database");
    Err(QueryError::Unavailable(kind))
}

/// The status of `id`, with its stored record when persisted.
async fn status(state: &AppState, domain: Domain, id: &str) -> Result<(Status, Found), QueryError> {
    let found = bounded(state, domain, async |conn| {
        read::find(conn, domain, id).await
    })
    .await?;
    let status = read::status_of(&found, id, Utc::now(), state.pending_window);
    state.metrics.lookup(domain.noun(), status.label());
    Ok((status, found))
}

fn outcome(status: Status, found: &Found) -> Result<Details, QueryError> {
    Ok(match status {
        Status::Persisted => match &found.record {
            Some(r) => Details {
                event_id: Some(r.event_id),
                persisted_at: Some(r.persisted_at),
                ..Details::default()
            },
            None => Details::default(),
        },
        Status::Rejected => match &found.rejection {
            Some(r) => Details {
                event_id: r.event_id,
                error_kind: Some(r.error_kind),
                error_class: Some(r.error_class),
                rejected_at: Some(r.rejected_at),
                dead_letter: Some(DeadLetterAt {
                    topic: r.dlq_topic.clone(),
                    partition: r.dlq_partition,
                    offset: r.dlq_offset,
                }),
                ..Details::default()
            },
            None => Details::default(),
        },
        Status::Pending { since } => Details {
            accepted_at: Some(since),
            ..Details::default()
        },
        Status::Unknown(why) => return Err(QueryError::NotFound(why)),
    })
}

/// Whether the client's `If-None-Match` names `etag` (weak comparison,
/// as RFC 9110 asks of `If-None-Match`).
fn held(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/").as_bytes() == etag.as_bytes())
}

/// `304`: the client holds this version already.
fn not_modified(etag: HeaderValue) -> Response {
    let mut response = StatusCode::NOT_MODIFIED.into_response();
    let h = response.headers_mut();
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// An order's `ETag`: its version, a strong tag (`"3"`), which a change's
/// `If-Match` sends back. (Digits and quotes: always a header value.)
fn version_tag(version: u32) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{version}\"")).ok()
}

/// The answer: `304` when the client holds this version already, the
/// body with an `ETag` when persisted, `Retry-After` while pending.
fn answer(
    status: Status,
    etag: Option<HeaderValue>,
    headers: &HeaderMap,
    body: impl Serialize,
) -> Response {
    if let Some(etag) = etag.as_ref().filter(|etag| held(headers, etag)) {
        return not_modified(etag.clone());
    }
    let mut response = Json(body).into_response();
    let h = response.headers_mut();
    match etag {
        Some(etag) => {
            h.insert(header::ETAG, etag);
            // Stored state may still change (a later change): revalidate.
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        }
        None => {
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    if matches!(status, Status::Pending { .. }) {
        h.insert(header::RETRY_AFTER, HeaderValue::from(1));
    }
    response
}

/// The status answer of the id in `raw`, its body made by `body` from the
/// status label, the id, the outcome and the stored record.
async fn read_status<B: Serialize>(
    state: &AppState,
    domain: Domain,
    headers: &HeaderMap,
    raw: Result<Path<String>, PathRejection>,
    query: Option<&str>,
    body: impl FnOnce(&'static str, String, Details, Option<Value>) -> B,
) -> Result<Response, QueryError> {
    let id = parse(domain, raw)?;
    let expected = contract::ids::content_of(query).map_err(QueryError::BadContent)?;
    if domain == Domain::Orders && headers.contains_key(header::IF_NONE_MATCH) {
        // A client polling with the ETag it holds: the version alone tells.
        let stored = bounded(state, domain, async |conn| {
            read::order_version(conn, &id).await
        })
        .await?;
        if let Some(stored) = stored {
            let other_content = matches!(
                (&expected, &stored.fingerprint),
                (Some(expected), Some(stored)) if expected != stored
            );
            if let Some(etag) =
                version_tag(stored.version).filter(|etag| !other_content && held(headers, etag))
            {
                state
                    .metrics
                    .lookup(domain.noun(), Status::Persisted.label());
                return Ok(not_modified(etag));
            }
        }
    }
    let (status, found) = status(state, domain, &id).await?;
    if let (Some(expected), Some(stored)) = (
        expected,
        found.record.as_ref().and_then(|r| r.fingerprint.as_deref()),
    ) {
        if expected != stored {
            return Err(QueryError::Taken);
        }
    }
    let outcome = outcome(status, &found)?;
    let etag = match (status, &found.record) {
        (Status::Persisted, Some(r)) => match &r.lifecycle {
            Some(life) => version_tag(life.version),
            None => HeaderValue::from_str(&format!("\"{}\"", r.event_id)).ok(),
        },
        _ => None,
    };
    let record = found.record.map(|r| r.body);
    Ok(answer(
        status,
        etag,
        headers,
        body(status.label(), id, outcome, record),
    ))
}

/// What became of an order.
#[utoipa::path(
    get, path = "/orders/{order_id}", tag = "orders",
    params(
        ("order_id" = String, Path, description = "the order_id of the 202 answer"),
        ("content" = Option<String>, Query, description = "the fingerprint the 202's Location names: 409 when the id holds other content"),
        ("If-None-Match" = Option<String>, Header, description = "an ETag held (the order's version): 304 while it is still the stored one"),
    ),
    responses(
        (status = 200, description = "persisted (with the order: its status, version and history), rejected (dead-lettered, with its class) or pending (accepted recently, not stored yet; see Retry-After)", body = OrderStatus,
            headers(("ETag" = String, description = "when persisted: the order's version, a strong tag such as \"3\"; send it back as If-Match to make a change conditional on it, or as If-None-Match to poll"))),
        (status = 304, description = "persisted, and the ETag sent is still its version",
            headers(("ETag" = String, description = "the order's version"))),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token (API_TOKEN)", body = ErrorBody),
        (status = 404, description = "not known: never accepted, past the pending window, or a client-chosen id not stored yet (see reason)", body = ErrorBody),
        (status = 409, description = "id_taken: the id holds other content than the one `content` names (another request under the same key or id was stored first; this one was refused)", body = ErrorBody),
        (status = 503, description = "the database cannot answer now, or too many lookups at once; see Retry-After", body = ErrorBody),
    )
)]
pub async fn get_order(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    raw: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, QueryError> {
    read_status(
        &state,
        Domain::Orders,
        &headers,
        raw,
        query.as_deref(),
        |status, id, outcome, order| OrderStatus {
            status,
            order_id: id,
            outcome,
            order,
        },
    )
    .await
}

/// What became of a user.
#[utoipa::path(
    get, path = "/users/{user_id}", tag = "users",
    params(
        ("user_id" = String, Path, description = "the user_id of the 202 answer"),
        ("content" = Option<String>, Query, description = "the fingerprint the 202's Location names: 409 when the id holds other content"),
        ("If-None-Match" = Option<String>, Header, description = "an ETag held: 304 when unchanged"),
    ),
    responses(
        (status = 200, description = "persisted (with the user and an ETag), rejected or pending", body = UserStatus),
        (status = 304, description = "persisted, and the ETag sent is still its version"),
        (status = 400, description = "not a user id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token (API_TOKEN)", body = ErrorBody),
        (status = 404, description = "not known (see reason)", body = ErrorBody),
        (status = 409, description = "id_taken: the id holds other content than the one `content` names", body = ErrorBody),
        (status = 503, description = "the database cannot answer now, or too many lookups at once; see Retry-After", body = ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    raw: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, QueryError> {
    read_status(
        &state,
        Domain::Users,
        &headers,
        raw,
        query.as_deref(),
        |status, id, outcome, user| UserStatus {
            status,
            user_id: id,
            outcome,
            user,
        },
    )
    .await
}

/// The list of `id`'s events `read` gives, or `404` when it is empty and
/// the id is not known (nothing stored or dead-lettered, and not pending).
async fn list_events<L: Serialize>(
    state: &AppState,
    domain: Domain,
    raw: Result<Path<String>, PathRejection>,
    read: impl AsyncFnOnce(&mut PgConnection, &str) -> Result<L, sqlx::Error>,
    is_empty: impl FnOnce(&L) -> bool,
) -> Result<Response, QueryError> {
    let id = parse(domain, raw)?;
    let list = bounded(state, domain, async |conn| read(conn, &id).await).await?;
    if is_empty(&list) {
        // Known but with nothing stored (pending), or unknown.
        let (status, _) = status(state, domain, &id).await?;
        if let Status::Unknown(why) = status {
            return Err(QueryError::NotFound(why));
        }
    }
    let mut response = Json(list).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// What became of each change of an order.
#[utoipa::path(
    get, path = "/orders/{order_id}/events", tag = "orders",
    params(("order_id" = String, Path, description = "the order's id")),
    responses(
        (status = 200, description = "each change with its outcome, oldest first: applied (with the version it made) or refused (its kind and class and where its dead letter sits, never its content); at most 1000 of each outcome (see truncated); empty while pending", body = OrderEventList),
        (status = 400, description = "not a UUID", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "not known: nothing stored or dead-lettered of it, and not pending (see reason)", body = ErrorBody),
        (status = 503, description = "the database cannot answer now, or too many lookups at once; see Retry-After", body = ErrorBody),
    )
)]
pub async fn get_order_events(
    State(state): State<Arc<AppState>>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Response, QueryError> {
    list_events(
        &state,
        Domain::Orders,
        raw,
        async |conn, id| {
            let timeline = read::order_events(conn, id, MAX_EVENTS).await?;
            Ok(OrderEventList {
                id: id.to_owned(),
                events: timeline.events,
                truncated: timeline.truncated,
            })
        },
        |list| list.events.is_empty(),
    )
    .await
}

/// The events of a user, from the event store.
#[utoipa::path(
    get, path = "/users/{user_id}/events", tag = "users",
    params(("user_id" = String, Path, description = "the user's id")),
    responses(
        (status = 200, description = "its events as stored", body = EventList),
        (status = 400, description = "not a user id", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 404, description = "not known", body = ErrorBody),
        (status = 503, description = "the database cannot answer now; see Retry-After", body = ErrorBody),
    )
)]
pub async fn get_user_events(
    State(state): State<Arc<AppState>>,
    raw: Result<Path<String>, PathRejection>,
) -> Result<Response, QueryError> {
    list_events(
        &state,
        Domain::Users,
        raw,
        async |conn, id| {
            let events = read::events(conn, Domain::Users, id, MAX_EVENTS).await?;
            Ok(EventList {
                id: id.to_owned(),
                events,
            })
        },
        |list| list.events.is_empty(),
    )
    .await
}

/// Served at `/openapi.json`.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "PubSubKafka query",
        description = "The read side: what became of each accepted order and user"
    ),
    paths(get_order, get_order_events, get_user, get_user_events),
    components(schemas(
        OrderStatus,
        UserStatus,
        Details,
        DeadLetterAt,
        EventList,
        StoredEvent,
        OrderEventList,
        OrderEvent,
        read::Applied,
        Rejection,
        ErrorBody
    ))
)]
pub struct ApiDoc;
