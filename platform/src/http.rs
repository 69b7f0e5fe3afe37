//! The operations routes every service serves (`/healthz`, `/readyz`,
//! `/metrics`) and the HTTP request metrics middleware.

use std::future::Future;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};
use serde_json::json;

use crate::metrics::{register, LATENCY_BUCKETS};

/// The part of a client's address that names its host: all of IPv4, the
/// /64 prefix of IPv6 (one host is usually given a whole /64, so counting
/// its addresses apart would let it be many clients). What the rate limit
/// and the per-client connection cap count by.
pub fn host_of(ip: std::net::IpAddr) -> [u8; 8] {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            [4, 0, 0, 0, a, b, c, d]
        }
        std::net::IpAddr::V6(v6) => {
            let mut prefix = [0; 8];
            prefix.copy_from_slice(&v6.octets()[..8]);
            prefix
        }
    }
}

/// Why a service cannot do its work now.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct NotReady {
    /// What is not ready, such as `database` or `brokers`.
    pub what: &'static str,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl NotReady {
    /// `what` is not ready because of `source`.
    pub fn new(
        what: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            what,
            source: source.into(),
        }
    }
}

/// Whether a service can do its work now, as `/readyz` answers it.
pub trait Readiness: Clone + Send + Sync + 'static {
    /// `Ok` when ready, else why not.
    fn check(&self) -> impl Future<Output = Result<(), NotReady>> + Send;
}

#[derive(Clone)]
struct Ops<R> {
    registry: Registry,
    ready: R,
}

/// `/healthz` (the process is alive), `/readyz` (its dependencies answer)
/// and `/metrics` (Prometheus text format).
pub fn ops_router<R: Readiness>(registry: Registry, ready: R) -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz::<R>))
        .route("/metrics", get(metrics::<R>))
        .with_state(Ops { registry, ready })
}

async fn readyz<R: Readiness>(State(ops): State<Ops<R>>) -> Response {
    match ops.ready.check().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason.to_string()})),
        )
            .into_response(),
    }
}

async fn metrics<R: Readiness>(State(ops): State<Ops<R>>) -> Response {
    let mut body = Vec::new();
    match TextEncoder::new().encode(&ops.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in
/// constant time (no timing tells how much of a guess was right).
pub fn bearer_matches(headers: &axum::http::HeaderMap, token: &str) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|v| v.strip_prefix("Bearer "));
    given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `http_requests_total` and `http_request_duration_seconds`, by route.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    /// Registers the HTTP metrics in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        Ok(Self {
            requests: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "http_requests_total",
                        "HTTP requests answered, by route, method and status",
                    ),
                    &["route", "method", "status"],
                )?,
            )?,
            duration: register(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "http_request_duration_seconds",
                        "Time to answer an HTTP request",
                    )
                    .buckets(LATENCY_BUCKETS.to_vec()),
                    &["route", "method"],
                )?,
            )?,
        })
    }
}

/// The `method` label: one of the standard methods, or `other` (a client
/// may send any token as a method; labels must come from a closed set).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// A request's labels and start, taken before it is handled: its route
/// template (not its raw path) and a known method (not the raw token), so
/// no client can add label values.
pub struct Observed {
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl Observed {
    /// The labels of `request`, timed from now.
    pub fn start(request: &Request) -> Self {
        Self {
            route: request.extensions().get::<MatchedPath>().cloned(),
            method: method_label(request.method()),
            started: Instant::now(),
        }
    }
}

impl HttpMetrics {
    /// Counts and times one request answered with `status`.
    pub fn observe(&self, observed: Observed, status: StatusCode) {
        let route = observed
            .route
            .as_ref()
            .map_or("unmatched", MatchedPath::as_str);
        self.duration
            .with_label_values(&[route, observed.method])
            .observe(observed.started.elapsed().as_secs_f64());
        self.requests
            .with_label_values(&[route, observed.method, status.as_str()])
            .inc();
    }
}

/// Middleware: counts and times each request (see [`Observed`]).
pub async fn track(State(metrics): State<HttpMetrics>, request: Request, next: Next) -> Response {
    let observed = Observed::start(&request);
    let response = next.run(request).await;
    metrics.observe(observed, response.status());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_a_closed_set() {
        assert_eq!(method_label(&Method::POST), "POST");
        for made_up in ["FOO", "X0001-7919", "get", "PROPFIND"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "other", "{made_up}");
        }
    }
}
