//! `POST /orders` and `POST /users`, their batches, and the changes of an
//! order (`POST /orders/{id}/payment`, `/shipment`, `/delivery`,
//! `/cancellation`): thin handlers over the one intake flow
//! ([`crate::intake`]), with what each answers and its OpenAPI description;
//! and what the producer answers a read or an unknown path.

use std::sync::Arc;

use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use contract::batch::{OrderBatch, UserBatch};
use contract::ids::EventIds;
use contract::request::{
    CancellationRequest, CreateOrderRequest, CreateUserRequest, DeliveryRequest, PaymentRequest,
    ShipmentRequest,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{ApiError, ErrorBody};
use crate::intake::{
    self, AcceptedChange, Answer, BatchAnswer, ItemOutcome, OrderId, Validated, ValidatedBatch,
};
use crate::state::AppState;

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

/// Accept an order.
#[utoipa::path(
    post, path = "/orders", tag = "orders",
    request_body(content = CreateOrderRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key map to the same order_id"),
        ("X-Correlation-ID" = Option<String>, Header, description = "carried into the event; generated when absent"),
    ),
    responses(
        (status = 202, description = "stored by the broker; poll the Location for what became of it", body = AcceptedOrder,
            headers(("Location" = String, description = "/orders/{id}: its status on the read side"))),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "invalid: every field at fault is listed", body = ErrorBody),
        (status = 429, description = "over the client's rate limit (RATE_LIMIT_RPS); see Retry-After and RateLimit-Reset", body = ErrorBody),
        (status = 503, description = "broker unavailable or queue full; see Retry-After", body = ErrorBody),
    )
)]
pub async fn create_order(
    State(state): State<Arc<AppState>>,
    request: Validated<CreateOrderRequest>,
) -> Result<Response, ApiError> {
    intake::accept(state, request).await
}

impl Answer for CreateOrderRequest {
    type Body = AcceptedOrder;
    const ID_FIELD: &'static str = "order_id";
    fn answer(ids: &EventIds<Uuid>) -> AcceptedOrder {
        AcceptedOrder {
            order_id: ids.aggregate,
            event_id: ids.event,
            status: "accepted",
        }
    }
    fn identify(ids: &EventIds<Uuid>, outcome: &mut ItemOutcome) {
        outcome.order_id = Some(ids.aggregate);
    }
}

/// The answers of a batch, beside those of a single request.
macro_rules! batch_path {
    ($name:ident, $path:literal, $tag:literal, $body:ty, $what:literal) => {
        #[doc = concat!("Accept many ", $what, " at once.")]
        #[utoipa::path(
            post, path = $path, tag = $tag,
            request_body(content = $body, content_type = "application/json"),
            params(
                ("X-Correlation-ID" = Option<String>, Header, description = "carried into every event; generated when absent"),
            ),
            responses(
                (status = 200, description = "every item stored by the broker", body = BatchAnswer),
                (status = 207, description = "some items stored, the others failed (see each item's error; send those again)", body = BatchAnswer),
                (status = 400, description = "malformed JSON", body = ErrorBody),
                (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
                (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
                (status = 413, description = "body over MAX_BATCH_BODY_BYTES", body = ErrorBody),
                (status = 415, description = "not application/json", body = ErrorBody),
                (status = 422, description = "an item is invalid (each path starts with its index), too many items, or two items are the same; nothing was published", body = ErrorBody),
                (status = 429, description = "over the client's rate limit (a batch is one request); see Retry-After", body = ErrorBody),
                (status = 503, description = "no item stored: broker unavailable or queue full; see Retry-After", body = ErrorBody),
            )
        )]
        pub async fn $name(
            State(state): State<Arc<AppState>>,
            request: ValidatedBatch<$body>,
        ) -> Result<Response, ApiError> {
            tracing::Span::current().record("items", request.0.len());
            intake::accept_batch::<$body>(state, request).await
        }
    };
}

batch_path!(
    create_orders,
    "/orders/batch",
    "orders",
    OrderBatch,
    "orders"
);
batch_path!(create_users, "/users/batch", "users", UserBatch, "users");

/// Accept a user.
#[utoipa::path(
    post, path = "/users", tag = "users",
    request_body(content = CreateUserRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "retries with the same key map to the same user_id"),
        ("X-Correlation-ID" = Option<String>, Header, description = "carried into the event; generated when absent"),
    ),
    responses(
        (status = 202, description = "stored by the broker; poll the Location for what became of it", body = AcceptedUser,
            headers(("Location" = String, description = "/users/{id}: its status on the read side"))),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
        (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
        (status = 413, description = "body too large", body = ErrorBody),
        (status = 415, description = "not application/json", body = ErrorBody),
        (status = 422, description = "invalid: every field at fault is listed", body = ErrorBody),
        (status = 429, description = "over the client's rate limit (RATE_LIMIT_RPS); see Retry-After and RateLimit-Reset", body = ErrorBody),
        (status = 503, description = "broker unavailable or queue full; see Retry-After", body = ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<Arc<AppState>>,
    request: Validated<CreateUserRequest>,
) -> Result<Response, ApiError> {
    intake::accept(state, request).await
}

impl Answer for CreateUserRequest {
    type Body = AcceptedUser;
    const ID_FIELD: &'static str = "user_id";
    fn answer(ids: &EventIds<String>) -> AcceptedUser {
        AcceptedUser {
            user_id: ids.aggregate.clone(),
            event_id: ids.event,
            status: "accepted",
        }
    }
    fn identify(ids: &EventIds<String>, outcome: &mut ItemOutcome) {
        outcome.user_id = Some(ids.aggregate.clone());
    }
}

/// A change of an order: its route, handler and OpenAPI description.
macro_rules! change_path {
    ($name:ident, $path:literal, $body:ty, $event:literal, $what:literal) => {
        #[doc = concat!("Record that an order ", $what, " (`", $event, "`).")]
        #[utoipa::path(
            post, path = $path, tag = "orders",
            description = concat!(
                "Publishes `", $event, "` for the order, keyed by its id (the partition of its ",
                "creation). The producer keeps no state: whether the order exists and its status ",
                "allows the change (created → paid → shipped → delivered; cancelled from created ",
                "or paid) is decided by the consumer, and shown by `GET /orders/{id}`."
            ),
            request_body(content = $body, content_type = "application/json"),
            params(
                ("id" = Uuid, Path, description = "the order's id"),
                ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key (or, without any key, any repeat of this change of this order) gets the same event_id"),
                ("If-Match" = Option<String>, Header, description = "the order's ETag (`\"3\"`, from GET /orders/{id}): the change applies only to that version, else the consumer refuses it as a version_conflict; `*` or absent: no condition. A weak tag, several tags or any other form is a 400"),
                ("X-Correlation-ID" = Option<String>, Header, description = "carried into the event; generated when absent"),
            ),
            responses(
                (status = 202, description = "stored by the broker; poll the Location for what became of it", body = AcceptedChange,
                    headers(("Location" = String, description = "/orders/{id}: the order's status, version and history on the read side"))),
                (status = 400, description = "malformed JSON (malformed_json), an id that is no UUID (invalid_id), or an If-Match that names no one version (invalid_if_match)", body = ErrorBody),
                (status = 401, description = "missing or wrong bearer token", body = ErrorBody),
                (status = 408, description = "the body did not arrive within HTTP_BODY_TIMEOUT_MS", body = ErrorBody),
                (status = 413, description = "body too large", body = ErrorBody),
                (status = 415, description = "not application/json", body = ErrorBody),
                (status = 422, description = "invalid: every field at fault is listed (an unknown field, a broken rule, the Idempotency-Key)", body = ErrorBody),
                (status = 429, description = "over the client's rate limit (RATE_LIMIT_RPS); see Retry-After and RateLimit-Reset", body = ErrorBody),
                (status = 503, description = "broker unavailable or queue full; see Retry-After", body = ErrorBody),
            )
        )]
        pub async fn $name(
            State(state): State<Arc<AppState>>,
            order: OrderId,
            request: Validated<$body>,
        ) -> Result<Response, ApiError> {
            intake::accept_change(state, order, request).await
        }
    };
}

change_path!(
    pay_order,
    "/orders/{id}/payment",
    PaymentRequest,
    "order.paid",
    "was paid"
);
change_path!(
    ship_order,
    "/orders/{id}/shipment",
    ShipmentRequest,
    "order.shipped",
    "was handed to a carrier"
);
change_path!(
    deliver_order,
    "/orders/{id}/delivery",
    DeliveryRequest,
    "order.delivered",
    "was delivered"
);
change_path!(
    cancel_order,
    "/orders/{id}/cancellation",
    CancellationRequest,
    "order.cancelled",
    "was cancelled"
);

/// The routes of the changes of an order, for the router of single
/// requests (same admission: token, rate limit, content type, body limit).
pub fn order_changes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/orders/{id}/payment", post(pay_order))
        .route("/orders/{id}/shipment", post(ship_order))
        .route("/orders/{id}/delivery", post(deliver_order))
        .route("/orders/{id}/cancellation", post(cancel_order))
}

/// The reads of the read side (`GET /orders/{id}`, `/users/{id}`), which
/// the producer does not answer: it keeps no state. A client that resolves
/// a `202`'s relative `Location` against the producer's address lands
/// here, and is told where to send it instead (JSON `404 read_side`, the
/// path in the message).
pub fn read_side<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/orders/{id}", get(elsewhere))
        .route("/users/{id}", get(elsewhere))
}

async fn elsewhere(uri: Uri) -> ApiError {
    ApiError::ReadSide(path_of(&uri))
}

/// A path no route has: the JSON `404 not_found` every refusal's shape.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(path_of(&uri))
}

fn path_of(uri: &Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}
