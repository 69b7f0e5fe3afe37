//! The replay pages: `GET /replay` (filter, dry run), `POST /replay` (start
//! one), `GET /replay/{id}` and `GET /api/replay/{id}` (progress).

use axum::Router;

use super::Console;

/// Options of the replay pages (flattened into `console`'s).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ReplayOptions {}

/// Replays started from the console (held in [`Console`]).
#[derive(Debug, Default)]
pub struct Replays {}

/// The replay routes.
pub fn routes() -> Router<Console> {
    Router::new()
}
