//! What the handlers and the admission layer share, built once at start-up
//! ([`crate::startup`]). Its own module so that the modules reading it
//! (admission, intake, routes) do not depend on one another for it.

use std::sync::Arc;

use contract::topics::Domains;

use crate::rate_limit::RateLimit;
use crate::sink::Sink;

/// What the handlers share.
pub struct AppState {
    /// Where accepted events go (the broker, or the outbox).
    pub sink: Sink,
    /// Encoding of published values.
    pub format: contract::Format,
    /// The topic of each domain.
    pub topics: Domains,
    /// Most items of a batch request.
    pub max_batch_items: usize,
    /// Longest a client may take to send its body (then 408).
    pub body_timeout: std::time::Duration,
    /// Per-client rate limit of write requests.
    pub rate_limit: Option<Arc<RateLimit>>,
    /// Bearer token required on write endpoints.
    pub api_token: Option<String>,
    /// How ids are derived from idempotency keys.
    pub id_keys: contract::ids::KeyDerivation,
}
