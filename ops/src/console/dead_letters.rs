//! The dead-letter pages: `GET /dead-letters` (groups by fingerprint, the
//! letters) and `GET /dead-letters/{topic}/{partition}/{offset}` (one
//! letter; its payload revealed by a POST, logged).

use axum::Router;

use super::Console;

/// Options of the dead-letter pages (flattened into `console`'s).
#[derive(Debug, Clone, clap::Args)]
pub struct DeadLetterOptions {
    /// Consumer group the console reads dead-letter topics as (nothing is
    /// committed to it), as `dlq list --reader-group`.
    #[arg(
        long = "reader-group",
        env = "DLQ_REPLAY_GROUP",
        default_value = crate::dlq::DEFAULT_REPLAY_GROUP
    )]
    pub reader_group: String,
}

/// The dead-letter routes.
pub fn routes() -> Router<Console> {
    Router::new()
}
