//! What every write request must pass before a handler sees it, as
//! middleware: the bearer token, the client's rate limit (its `RateLimit-*`
//! headers go on the answer) and the content type, then
//! the body, read whole within `MAX_BODY_BYTES` and `HTTP_BODY_TIMEOUT_MS`
//! (a client that trickles its body does not hold a handler).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::headers::header_text;
use crate::rate_limit::Decision;
use crate::state::AppState;

/// Token, rate, content type: checked before the body is read. The rate
/// limit's decision, when there is a limit, goes on the answer.
fn check(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Option<Decision>, ApiError> {
    if let Some(token) = &state.api_token {
        if !platform::http::bearer_matches(headers, token) {
            return Err(ApiError::Unauthorized);
        }
    }
    let decision = state.rate_limit.as_ref().map(|l| l.check(headers, peer));
    if let Some(refused) = decision.filter(|d| !d.admitted) {
        return Err(ApiError::TooManyRequests(refused));
    }
    let content_type = header_text(headers, header::CONTENT_TYPE.as_str()).unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::UnsupportedMediaType(content_type.to_owned()));
    }
    Ok(decision)
}

/// What the admission layer of a group of routes needs: the service's
/// state and the body limit of those routes (a batch may be larger).
#[derive(Clone)]
pub struct Admission {
    /// The service's state.
    pub state: Arc<AppState>,
    /// Larger bodies get 413.
    pub max_body_bytes: usize,
}

/// Admits a write request and reads its body whole, within the size limit
/// and the body deadline, before the handler runs.
pub async fn admit(
    State(Admission {
        state,
        max_body_bytes,
    }): State<Admission>,
    request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let announced = announces_body(request.headers());
    let decision = match check(&state, request.headers(), peer) {
        Ok(decision) => decision,
        Err(refused) => return closing(refused.into_response(), announced),
    };
    let (parts, body) = request.into_parts();
    let mut response = match read_body(body, max_body_bytes, state.body_timeout).await {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(refused) => closing(refused.into_response(), announced),
    };
    if let Some(decision) = decision {
        decision.write_headers(response.headers_mut());
    }
    response
}

/// Whether the request says a body follows.
fn announces_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || header_text(headers, header::CONTENT_LENGTH.as_str()).is_some_and(|n| n != "0")
}

/// A refusal sent before the body was read whole: the server cannot read
/// the next request on this connection, so it closes it, and says so
/// (`Connection: close`) rather than leave a keep-alive client to find out
/// on its next request.
fn closing(mut response: Response, body_unread: bool) -> Response {
    if body_unread {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn read_body(
    body: Body,
    limit: usize,
    deadline: Duration,
) -> Result<axum::body::Bytes, ApiError> {
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, limit)).await {
        Err(_) => Err(ApiError::BodyTimeout(deadline)),
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(e)) => {
            let too_large =
                std::iter::successors(Some(&e as &(dyn std::error::Error + 'static)), |e| {
                    e.source()
                })
                .any(|e| e.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                ApiError::TooLarge(limit)
            } else {
                ApiError::Malformed("the request body could not be read".into())
            })
        }
    }
}
