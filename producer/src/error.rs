//! Every way a request can fail, and the one place they become HTTP answers:
//! a status and a JSON body that names each field at fault.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use contract::request::RequestError;
use contract::{FieldError, ValidationErrors};
use serde::Serialize;
use utoipa::ToSchema;

use crate::events::Refusal;
use crate::headers::IfMatchError;
use crate::publish::PublishError;

/// A refused request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: not well-formed JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// 400: the path names no order (`/orders/{id}/...` takes a UUID).
    #[error("the path names no order: {0}")]
    BadId(&'static str),
    /// 400: an `If-Match` that names no one version of the order.
    #[error("If-Match {0}; send \"*\" or the order's ETag, such as \"3\"")]
    IfMatch(#[from] IfMatchError),
    /// 422: wrong shape, unknown field or broken rule.
    #[error("invalid request")]
    Invalid(ValidationErrors),
    /// 415: not `application/json`.
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// 413: body over the limit.
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 408: the body did not arrive in time.
    #[error("the request body did not arrive within {0:?}")]
    BodyTimeout(std::time::Duration),
    /// 429: over the client's rate limit.
    #[error("too many requests: try again in {} s", .0.reset_seconds)]
    TooManyRequests(crate::rate_limit::Decision),
    /// 401: missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 404: a read (`GET /orders/{id}`, `/users/{id}`, where a client that
    /// resolved a relative `Location` against the producer goes): the
    /// producer keeps no state; the query service answers it.
    #[error(
        "the producer takes writes only: GET {0} is answered by the query service (the read \
         side, QUERY_HTTP_ADDR; 127.0.0.1:8082 under `pubsubkafka dev`) at the same path"
    )]
    ReadSide(String),
    /// 404: no route has this path.
    #[error("no such route: {0}; see /openapi.json")]
    NotFound(String),
    /// 503: the broker did not acknowledge the write.
    #[error("event not accepted: {0}")]
    Unavailable(#[from] PublishError),
    /// 503: the outbox transaction did not commit (outbox mode).
    #[error("event not accepted: {0}")]
    OutboxUnavailable(#[from] crate::outbox::OutboxUnavailable),
    /// 500: a bug; the details stay in the logs.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The JSON body of every error.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code, such as `validation_failed`.
    pub error: &'static str,
    /// For people.
    pub message: String,
    /// Each field at fault (only for `validation_failed`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        match e {
            RequestError::Malformed(reason) => ApiError::Malformed(reason),
            RequestError::Invalid(errors) => ApiError::Invalid(errors),
        }
    }
}

impl From<contract::EncodeError> for ApiError {
    fn from(e: contract::EncodeError) -> Self {
        ApiError::Internal(Box::new(e))
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        ApiError::Invalid(e)
    }
}

impl ApiError {
    /// The stable code of the answer, such as `broker_unavailable`.
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::BadId(_) => (StatusCode::BAD_REQUEST, "invalid_id"),
            ApiError::IfMatch(_) => (StatusCode::BAD_REQUEST, "invalid_if_match"),
            ApiError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::BodyTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::TooManyRequests(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::ReadSide(_) => (StatusCode::NOT_FOUND, "read_side"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Unavailable(PublishError::QueueFull) => {
                (StatusCode::SERVICE_UNAVAILABLE, "producer_queue_full")
            }
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable"),
            ApiError::OutboxUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "outbox_unavailable")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let refusal = Refusal {
            code,
            detail: match &self {
                ApiError::Internal(source) => source.to_string(),
                ApiError::Unavailable(e) => e.to_string(),
                other => other.to_string(),
            },
        };
        let fields = match &self {
            ApiError::Invalid(errors) => errors.0.clone(),
            _ => Vec::new(),
        };
        let message = match &self {
            ApiError::Invalid(errors) => {
                format!("the request breaks {} rule(s): {errors}", errors.0.len())
            }
            other => other.to_string(),
        };
        let retry_after = match &self {
            ApiError::TooManyRequests(decision) => Some(decision.reset_seconds),
            ApiError::Unavailable(_) | ApiError::OutboxUnavailable(_) => Some(1),
            _ => None,
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: code,
                message,
                fields,
            }),
        )
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let ApiError::TooManyRequests(decision) = &self {
            decision.write_headers(response.headers_mut());
        }
        if matches!(self, ApiError::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response.extensions_mut().insert(refusal);
        response
    }
}
